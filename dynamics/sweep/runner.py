"""Running a sweep's points on Dask: a local cluster of single-threaded worker processes, or an
existing scheduler; failures recorded per point; the progress store flushed as points arrive."""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from dynamics.sweep.grid import build_grid
from dynamics.sweep.spec import SweepSpec, extract, load_spec, parse_spec
from dynamics.sweep.store import consolidate, load_done, partial_path, write_store

CRASH_ENV = "ICL_SWEEP_CRASH_ONCE"
"""Fault injection for tests: ``MARKER:INDEX`` makes the task of point INDEX exit its process
(``os._exit``) the first time, creating the file MARKER so that it happens only once.  With
``ICL_SWEEP_CRASH_WAIT_FOR=FILE`` it first waits (at most 60 s) until FILE exists."""
CRASH_WAIT_ENV = "ICL_SWEEP_CRASH_WAIT_FOR"
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _crash_hook(index):
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    marker, _, idx = spec.rpartition(":")
    if idx.strip() != str(index):
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    wait_for, t0 = os.environ.get(CRASH_WAIT_ENV), time.monotonic()
    while wait_for and not os.path.exists(wait_for) and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    os._exit(70)


def run_point(model, method, params, outputs, index=0):
    """Task of one grid point, run on a worker: never raises for a failing simulation."""
    import numba

    from dynamics.core.trajectory import snapshot_steps
    from dynamics.simulate import build, simulate

    _crash_hook(index)
    if numba.get_num_threads() > 1:
        numba.set_num_threads(1)  # one simulation per worker thread: no oversubscription of cores
    t0 = time.perf_counter()
    try:
        m = build(model, method, **params)
        steps = int(m.config["steps"])
        save_at = snapshot_steps(steps, m.config["snapshots"])
        if "at" in outputs:
            extra = [s for s in outputs["at"]["t"] if s <= steps]
            save_at = np.unique(np.concatenate([save_at, np.asarray(extra, dtype=np.int64)]))
        res = simulate(m, method, save_at=save_at)
        data = extract(res, outputs)
    except Exception as exc:  # noqa: BLE001 -- recorded with the point, the sweep goes on
        return {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
    return {"ok": True, "data": data, "wall_s": time.perf_counter() - t0}


@contextmanager
def client(scheduler, workers, processes, retries):
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    cfg = {} if retries is None else {"distributed.scheduler.allowed-failures": int(retries)}
    kw = dict(n_workers=int(workers or os.cpu_count() or 1), threads_per_worker=1, processes=processes,
              dashboard_address=None, silence_logs=logging.CRITICAL)
    if processes:
        kw["env"] = WORKER_ENV
    with dask.config.set(cfg), LocalCluster(**kw) as cluster, Client(cluster) as client:
        yield client


@dataclass
class SweepReport:
    """What a run did: ``path`` written, points in the grid, computed now, taken from the store,
    and ``errors`` (one line per failed point)."""

    path: str
    n_points: int
    n_computed: int
    n_skipped: int
    errors: list
    wall_s: float

    @property
    def ok(self) -> bool:
        return not self.errors


def run_sweep(spec, out=None, *, scheduler=None, workers=None, processes=True, retries=None,
              flush_interval=1.0, log=None, show_progress=False) -> SweepReport:
    """Run every point of ``spec`` (a path, a dict or a :class:`SweepSpec`) and write one dataset.

    ``scheduler``: address of an existing Dask scheduler; otherwise a local cluster of
    ``workers`` single-threaded workers (processes, or threads with ``processes=False``).
    ``retries``: how often a task may lose its worker before the point fails (local cluster;
    Dask's default 3 when None).  ``flush_interval``: seconds between rewrites of the progress
    store.  ``log``: a callable receiving one line per finished point.
    """
    from dynamics.core.progress import progress
    from dynamics.core.rundir import check_writable_file

    t0 = time.perf_counter()
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec) if isinstance(spec, (str, os.PathLike)) else parse_spec(spec)
    grid = build_grid(spec)
    out = os.path.abspath(out or os.path.splitext(spec.source)[0] + ".nc")
    check_writable_file(out)
    done = load_done(out, grid)
    todo = [i for i, k in enumerate(grid.keys) if k not in done]
    n_skipped = len(grid.keys) - len(todo)
    errors = {}
    if todo:
        last = time.monotonic()
        bar = progress(len(todo), f"sweep {spec.name or spec.model}", unit="point", show=show_progress)
        try:
            with bar, client(scheduler, workers, processes, retries) as cl:
                from distributed import as_completed

                futs = {cl.submit(run_point, spec.model, grid.methods[i], grid.points[i], spec.outputs, i,
                                      pure=False): i for i in todo}
                for fut in as_completed(futs):
                    i = futs[fut]
                    try:
                        r = fut.result()
                    except Exception as exc:  # noqa: BLE001 -- e.g. KilledWorker: the point failed
                        why = str(exc).split(". ")[0]  # Dask's KilledWorker text goes on for lines
                        r = {"ok": False, "error": f"worker lost while computing it: {type(exc).__name__}: {why}"}
                    if r["ok"]:
                        done[grid.keys[i]] = (r["data"], r["wall_s"])
                        line = f"point {i} ({grid.labels[i]}): done in {r['wall_s']:.2f} s"
                    else:
                        errors[i] = f"point {i} ({grid.labels[i]}): {r['error']}"
                        line = errors[i]
                    bar.update(1)
                    if log:
                        log(line)
                    if time.monotonic() - last >= flush_interval:
                        write_store(partial_path(out), done)
                        last = time.monotonic()
        finally:
            if done:
                write_store(partial_path(out), done)
    consolidate(out, grid, done, [errors[i] for i in sorted(errors)])
    if os.path.exists(partial_path(out)):
        os.unlink(partial_path(out))
    return SweepReport(out, len(grid.keys), len(todo), n_skipped, [errors[i] for i in sorted(errors)],
                       time.perf_counter() - t0)
