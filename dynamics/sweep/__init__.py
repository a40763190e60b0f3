"""Parameter sweeps on Dask: one labelled, resumable netCDF dataset per sweep, for any model.

``python -m dynamics.sweep SPEC.toml [--scheduler ADDRESS] [--workers N] [--out FILE.nc]`` runs
every point of the grid a spec describes (:mod:`dynamics.sweep.spec`) on ``dask.distributed`` (a
local cluster of single-threaded worker processes by default; ``--scheduler`` uses an existing
cluster) and writes one :class:`xarray.Dataset`: the swept parameters are its first dimensions
(then the outputs' own, e.g. ``query_class``, ``eps``, ``t_at``), derived parameters are
variables over the swept dimensions, and ``failed``/``wall_s``/``point_key`` say what happened at
each point.  ``xarray.open_dataset("sweep.nc").sel(K=1000)`` just works.

Resuming: finished points are kept in ``FILE.partial.nc`` (rewritten atomically as results arrive)
and in the final file; a re-run skips every point already there (matched by a hash of the model,
method, parameters and outputs) and computes only the missing or failed ones, so a grid can be
extended.  A point that fails (an exception, a diverging run, a worker that died) is recorded as
NaN with its error in the ``errors`` attribute; the other points still complete; the command
exits 1.  Bad specs exit 2 with one line, before anything runs; an ``--out`` file that is not a
sweep of the same model is never replaced (exit 2).  Ctrl-C exits 130 and keeps the points done.

Workers run one simulation at a time with numba limited to one thread (``NUMBA_NUM_THREADS=1`` in
local workers' environment and ``numba.set_num_threads(1)`` in every task).
"""
from __future__ import annotations

import os
import sys

from dynamics.sweep.grid import Grid, build_grid
from dynamics.sweep.runner import CRASH_ENV, CRASH_WAIT_ENV, SweepReport, run_point, run_sweep
from dynamics.core.contract import SweepOutput
from dynamics.sweep.spec import SpecError, SweepSpec, load_spec, parse_spec
from dynamics.sweep.store import FORMAT, load_sweep

__all__ = ["run_sweep", "load_sweep", "load_spec", "parse_spec", "build_grid", "run_point", "main", "SpecError",
           "SweepSpec", "SweepOutput", "SweepReport", "Grid", "FORMAT", "CRASH_ENV", "CRASH_WAIT_ENV"]


def main(argv=None) -> int:
    """``python -m dynamics.sweep SPEC.toml``: 0 all points done, 1 some failed, 2 bad input, 130 Ctrl-C."""
    from dynamics.core.cli import guarded

    return guarded(_main, argv, "the points done so far are kept in OUT.partial.nc; run the same command again "
                                "to compute only the rest")


def _main(argv):
    from dynamics.core.cli import ArgParser
    from dynamics.core.params import Param
    from dynamics.core.progress import enabled

    ap = ArgParser(prog="python -m dynamics.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", help="sweep spec (TOML)")
    ap.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a local cluster)")
    ap.add_argument("--workers", help="local worker processes, one thread each (default: all cores)")
    ap.add_argument("--out", help="dataset file (default: SPEC with suffix .nc)")
    ap.add_argument("--threads", action="store_true", help="local workers as threads of this process")
    ap.add_argument("--retries", help="times a point may lose its worker before it fails (default 3)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar and no line per finished point")
    ap.add_argument("--check", action="store_true", help="check the spec and every point's parameters, print the "
                    "grid size and exit (nothing runs)")
    args = ap.parse_args(argv)
    workers = None if args.workers is None else Param("workers", "int", 1, "", low=1).coerce(args.workers)
    retries = None if args.retries is None else Param("retries", "int", 0, "", low=0).coerce(args.retries)
    spec = load_spec(args.spec)
    grid = build_grid(spec)
    if args.out:
        from dynamics.core.rundir import check_writable_file

        check_writable_file(args.out)
    if args.check:
        print(f"spec ok: model {spec.model}, {len(grid.keys)} points over {', '.join(spec.sweep)}")
        return 0
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    show = enabled(args.quiet)
    def stop_threads():  # thread workers cannot be stopped: leave now that the finished points are stored
        print("error: interrupted; the points done so far are kept in OUT.partial.nc; run the same command again "
              "to compute only the rest", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)

    rep = run_sweep(spec, args.out, scheduler=args.scheduler, workers=workers, processes=not args.threads,
                    retries=retries, log=None if show else say, show_progress=show,
                    on_interrupt=stop_threads if args.threads else None)
    print(f"{rep.path}: {rep.n_points} points, {rep.n_computed} run now, {rep.n_skipped} already done, "
          f"{len(rep.errors)} failed ({rep.wall_s:.1f} s)")
    for e in rep.errors:
        print(f"failed: {e}", file=sys.stderr)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
