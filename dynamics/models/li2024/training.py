"""Training replicas of H. Li et al.'s network and evaluating trained states on test grids.

A reproduce target trains ``R`` replicas: replica ``r`` is one Monte Carlo run of the front end,
``run(Li2024, method="mc", seed=seed + r)``, so each replica draws its own data model (the
training tasks ``T_tr``, the ODI rotation, ...) as well as its own initialisation and prompts.
The targets' means are therefore averages over the draw of ``T_tr`` too, which matters out of
domain: the trained attention learns negative couplings between the two patterns of each
training task, so how many of the IDR pairs grouped into an ODR pattern are training tasks moves
the OOD error (docs/models/li2024.md, "Findings").  Runs are independent, so ``workers > 1``
trains them in that many processes with identical results.

Trained states are then evaluated on grids of *test* parameters (``S1``, ``alpha_test``,
``l_test``), which do not enter training, so one training serves a whole grid.  Evaluation draws
use common random numbers: the generator of grid point ``(replica, length)`` is seeded by
``(seed, r, length)``, so curves for different ``S1`` (or ``alpha'``) are evaluated on prompts
that differ only in the swept parameter.  Means over replicas come with the standard error of
the replica mean (sample standard deviation over ``sqrt(R)``): it includes the training
randomness, the draw of ``T_tr`` and the test-prompt noise.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np

from dynamics.core.stats import mean_se
from dynamics.methods.run import run
from dynamics.models.li2024.evaluation import evaluate, rebuild
from dynamics.models.li2024.model import Li2024
from dynamics.models.shared.replicas import Replica, from_result


def train_one(seed: int, steps: int, batch: int, snapshots: int, n_eval: int, params: dict) -> Replica:
    """One Monte Carlo run (:func:`dynamics.methods.run.run`) with ``replicas = 1``."""
    res = run(Li2024, method="mc", seed=int(seed), replicas=1, steps=int(steps), batch=int(batch),
              snapshots=int(snapshots), n_eval=int(n_eval), **params)
    return from_result(res)


def _train_job(args):
    return train_one(*args)


def train_replicas(replicas: int, seed: int, steps: int, batch: int, snapshots: int = 2, n_eval: int = 200,
                   workers: int | None = None, **params) -> list:
    """``replicas`` runs with seeds ``seed .. seed + replicas - 1`` (module docstring), in
    ``workers`` processes when ``workers > 1``.  Returns a list of :class:`Replica`."""
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers}")
    jobs = [(seed + r, steps, batch, snapshots, n_eval, params) for r in range(int(replicas))]
    if workers and int(workers) > 1:
        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            return list(pool.map(_train_job, jobs))
    return [train_one(*job) for job in jobs]


replica_mean = mean_se
"""Mean over replicas and its standard error (:func:`dynamics.core.stats.mean_se`)."""


def error_grid(reps, *, domain: str, lengths, n: int, seed: int, overrides=None, key="error",
               per_replica: bool = False):
    """Test-time grid over the replicas ``reps``: ``{(override label, length): (mean, se)}`` of
    ``key`` (``error``, ``hinge`` or ``attn_same``); with ``per_replica`` also
    ``{(label, length): array (R,)}`` of the replicas' own estimates (for paired differences).

    ``overrides`` maps a label to a dict of test parameters (``S1``, ``odr_construction``,
    ``alpha_test``, ...: :data:`~.evaluation.TEST_SETTINGS`); data parameters rebuild each replica's
    model through :func:`~.evaluation.rebuild` (checked; its training tasks stay: they have their own
    stream of the seed) and ``alpha_test`` sets the test fraction.
    """
    overrides = overrides or {None: {}}
    out, raw = {}, {}
    for label, ov in overrides.items():
        cfgs = [{**rep.model.config, **ov} for rep in reps]
        datas = [rebuild(rep.model, {k: v for k, v in ov.items() if k != "alpha_test"}).data
                 if set(ov) - {"alpha_test"} else rep.model.data for rep in reps]
        for length in lengths:
            per = []
            for r, (rep, cfg, data) in enumerate(zip(reps, cfgs, datas)):
                rng = np.random.default_rng([int(seed), r, int(length)])
                per.append(evaluate(rep.model, rep.state, rng, n, domain, alpha=cfg["alpha_test"],
                                    length=int(length), data=data)[key][0])
            out[(label, int(length))] = replica_mean(per)
            raw[(label, int(length))] = np.array(per)
    return (out, raw) if per_replica else out
