"""Training replicas of H. Li et al.'s network and evaluating trained states on test grids.

The reproduce targets train ``R`` independent replicas (replica ``r`` is an ``mc`` run with seed
``seed + r``: its numbers never depend on how many replicas or workers there are), then
evaluate the final states on grids of *test* parameters (``S1``, ``alpha_test``, ``l_test``),
which do not enter training, so one training serves a whole grid.  Evaluation draws use
common random numbers: the generator of grid point ``(replica, length)`` is seeded by
``(seed, r, length)``, so curves for different ``S1`` (or ``alpha'``) are evaluated on prompts
that differ only in the swept parameter, and their differences are less noisy.

Means over replicas are reported with the standard error of the replica mean (sample standard
deviation over ``sqrt(R)``): it includes the training randomness and the test-prompt noise.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np

from dynamics.core.trajectory import Recorder, snapshot_steps
from dynamics.methods.montecarlo import run_mc
from dynamics.models.li2024.evaluation import evaluate
from dynamics.models.li2024.model import Li2024, build_data


def train_one(params: dict, seed: int, steps: int, batch: int, snapshots: int | None = None, n_eval: int = 200,
              train_set: int = 0):
    """One Monte Carlo training (online SGD, or on ``train_set`` fixed prompts).

    Returns ``(dataset, final_state)``: the recorded observables (``t`` dimension, no replica
    dimension) at ``snapshots`` log-spaced iterations (only ``0`` and ``steps`` if None) and the
    final weights.
    """
    model = Li2024.create(**params)
    model.n_eval = int(n_eval)
    save = snapshot_steps(steps, snapshots) if snapshots else np.array([0, int(steps)], dtype=np.int64)
    rec = Recorder(model.observables("mc"), model.coords(), save, replicas=1)
    final, _ = run_mc(model, steps=int(steps), save_at=save, recorder=rec, seed=int(seed), replicas=1,
                      batch=int(batch), train_set=int(train_set))
    return rec.dataset().isel(replica=0), {k: v[0] for k, v in final.items()}


def _train_args(args):
    return train_one(*args)


def train_replicas(params: dict, replicas: int, seed: int, steps: int, batch: int, snapshots: int | None = None,
                   n_eval: int = 200, workers: int | None = None):
    """``replicas`` independent trainings (seeds ``seed .. seed + replicas - 1``), in ``workers``
    processes when ``workers > 1``.  Returns ``(model, [dataset], [final state])``."""
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers}")
    model = Li2024.create(**params)
    jobs = [(params, seed + r, steps, batch, snapshots, n_eval) for r in range(int(replicas))]
    if workers and int(workers) > 1:
        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            runs = list(pool.map(_train_args, jobs))
    else:
        runs = [train_one(*job) for job in jobs]
    return model, [r[0] for r in runs], [r[1] for r in runs]


def replica_mean(values) -> tuple:
    """Mean over replicas and its standard error (``nan`` with one replica)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def error_grid(model, states, *, domain: str, lengths, n: int, seed: int, overrides=None, key="error") -> dict:
    """Test-time grid: ``{(override label, length): (mean, se)}`` of ``key`` (``error``, ``hinge``
    or ``attn_same``) over replicas.

    ``overrides`` maps a label to a dict of test parameters (``S1``, ``odr_spread``,
    ``alpha_test``, ...); data parameters rebuild the data model (the training tasks stay, they
    depend on ``task_seed`` only) and ``alpha_test`` sets the test fraction.
    """
    overrides = overrides or {None: {}}
    out = {}
    for label, ov in overrides.items():
        cfg = {**model.config, **ov}
        data = build_data(cfg) if set(ov) - {"alpha_test"} else model.data
        for length in lengths:
            per = []
            for r, st in enumerate(states):
                rng = np.random.default_rng([int(seed), r, int(length)])
                per.append(evaluate(model, st, rng, n, domain, alpha=cfg["alpha_test"], length=int(length),
                                    data=data)[key][0])
            out[(label, int(length))] = replica_mean(per)
    return out
