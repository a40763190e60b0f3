"""Replicas of the chain-of-thought model trained through the front end, and test grids on them.

Replica ``r`` of a reproduce target is the run ``run(Li2024CoT, method="mc", seed=seed +
r)``: its own initialisation-free training stream, its own prompts and its own draw of the test
task's correct steps (the statistics ``tau^f, rho^f, ...`` are the same for every draw).  Runs
are independent, so ``workers > 1`` trains them in that many processes with identical results;
within one process a training already done with the same arguments is reused (the quick targets
of the tests share one).

Trained states are evaluated on grids of *test* parameters (``alpha_test``, ``tau_f``,
``condition1``, ``l_test``, ...), which do not enter training.  Evaluation draws use common
random numbers: the generator of grid point ``(replica, length)`` is seeded by ``(seed, r,
length)`` whatever the other test parameters, so curves are compared on the same uniforms.
Means over replicas come with the standard error of the replica mean
(:func:`dynamics.core.stats.mean_se`): it contains the training randomness and
the test-prompt noise.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np

from dynamics.methods.run import run
from dynamics.models.li2024_cot.decoding import per_prompt
from dynamics.models.li2024_cot.model import Li2024CoT
from dynamics.models.shared.replicas import from_result

MODEL = "li2024_cot"
_DONE: dict = {}
"""Trainings of this process: key -> list of :class:`Replica` (see the module docstring)."""


def _run(job):
    seed, steps, snapshots, n_eval, save_at, params = job
    res = run(Li2024CoT, method="mc", seed=int(seed), replicas=1, steps=int(steps), snapshots=int(snapshots),
              n_eval=int(n_eval), save_at=save_at, **params)
    return from_result(res)


def train_replicas(replicas: int, seed: int, steps: int, *, snapshots: int = 2, n_eval: int = 200, save_at=None,
                   workers: int | None = None, **params) -> list:
    """``replicas`` runs with seeds ``seed .. seed + replicas - 1`` (module docstring), in
    ``workers`` processes when ``workers > 1``; ``params`` are model parameters."""
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers}")
    at = None if save_at is None else tuple(int(x) for x in save_at)
    key = (int(replicas), int(seed), int(steps), int(snapshots), int(n_eval), at, tuple(sorted(params.items())))
    if key not in _DONE:
        jobs = [(seed + r, steps, snapshots, n_eval, at, params) for r in range(int(replicas))]
        if workers and int(workers) > 1:
            with ProcessPoolExecutor(max_workers=int(workers)) as pool:
                _DONE[key] = list(pool.map(_run, jobs))
        else:
            _DONE[key] = [_run(job) for job in jobs]
    return _DONE[key]


def error_grid(reps, *, lengths, n: int, seed: int, overrides: dict) -> dict:
    """``{(label, length): {"cot": array (R,), "icl": array (R,), "steps": (R, K)}}``: each
    replica's mean errors on ``n`` test prompts per grid point.

    ``overrides`` maps a label to test parameters (``tau_f``, ``condition1``, ``alpha_test``,
    ``noise``, ...) applied to each replica's model (:meth:`Model.with_params`); ``alpha_test``
    and the data are taken from the overridden model.
    """
    out = {}
    for label, ov in overrides.items():
        models = [rep.model.with_params("mc", **ov) if ov else rep.model for rep in reps]
        for length in lengths:
            per = [per_prompt(m, rep.state, np.random.default_rng([int(seed), r, int(length)]), n, length=int(length))
                   for r, (m, rep) in enumerate(zip(models, reps))]
            out[(label, int(length))] = {"cot": np.array([p["cot"].mean() for p in per]),
                                         "icl": np.array([p["icl"].mean() for p in per]),
                                         "steps": np.array([p["steps"].mean(axis=0) for p in per])}
    return out

