"""Independent jobs in parallel on this machine: :func:`pmap` (``concurrent.futures``).

For the models' own batches of runs (a reproduce target's points, a ledger row's replicas); the
sweep front end (:mod:`dynamics.sweep`) is the tool for user grids, resumable and on Dask.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor


def pmap(fn, items, workers: int | None = None, processes: bool = False) -> list:
    """``[fn(x) for x in items]``, in ``workers`` threads or processes (results in order).

    Parameters
    ----------
    fn : callable
        A module-level function when ``processes`` (it is pickled).
    items : iterable
    workers : int, optional
        Default: the number of cores; 1 runs in this thread.
    processes : bool
        Worker processes instead of threads (numba kernels release the GIL, so threads already
        run compiled work in parallel).

    Returns
    -------
    list
        ``fn(x)`` for each item, in the order of ``items``.
    """
    items = list(items)
    n = min(len(items), int(workers or os.cpu_count() or 1))
    if n <= 1:
        return [fn(x) for x in items]
    pool = ProcessPoolExecutor if processes else ThreadPoolExecutor
    with pool(max_workers=n) as ex:
        return list(ex.map(fn, items))
