"""Reproduce the papers' claims, one command per figure: ``python -m dynamics.reproduce NAME``.

Every model registers its targets (``Model.reproduce_targets``: name -> ``"module:function"``);
this front end finds them, runs one (or ``all``, or ``all --model NAME``), writes the target's
PNG figures and CSV/markdown tables into ``--out`` (default ``runs/reproduce/NAME``) with a
``timing.json``, and prints the tables.  ``--quick`` uses reduced sizes (seconds each) and is
what the tests run; ``--workers`` sets the Dask workers of targets that sweep.  Bad input exits
2 with one line, before anything runs.  A target skipped for a missing optional dependency
(``li-baselines`` without scikit-learn) makes the command exit 3, so that ``all`` never silently
misses one; ``--allow-skipped`` accepts partial results (exit 0).
"""
from __future__ import annotations

import importlib
import os
import sys
import time

from dynamics import models
from dynamics.core.errors import UsageError


def targets(model: str | None = None) -> dict:
    """``{target: (model name, "module:function")}`` over the registered models (or one)."""
    out = {}
    for name in ([model] if model else models.names()):
        for target, where in models.get(name).reproduce_targets.items():
            out[target] = (name, where)
    return out


def run_target(name, out=None, quick=False, workers=None):
    """Run one target by name into ``out``; returns the numbers its tables show."""
    table = targets()
    if name not in table:
        raise UsageError(f"target must be one of {', '.join(table)} or all; got {name!r}")
    module, fn = table[name][1].split(":")
    folder = out or os.path.join("runs", "reproduce", name)
    os.makedirs(folder, exist_ok=True)
    return getattr(importlib.import_module(module), fn)(folder, quick=quick, workers=workers)


def main(argv=None) -> int:
    from dynamics.core.cli import guarded

    return guarded(_main, argv)


def _main(argv):
    from dynamics.core.atomic import atomic_write_json
    from dynamics.core.cli import ArgParser
    from dynamics.core.params import Param
    from dynamics.core.progress import enabled, progress
    from dynamics.core.rundir import check_writable_dir

    listing = "; ".join(f"{m}: {', '.join(t for t, (mm, _) in targets().items() if mm == m)}" for m in models.names())
    ap = ArgParser(prog="python -m dynamics.reproduce", description=__doc__.split("\n\n")[0],
                   epilog=f"targets -- {listing}")
    ap.add_argument("name", help="a target, or all")
    ap.add_argument("--model", choices=models.names(), help="with all: only this model's targets")
    ap.add_argument("--out", help="output folder (default runs/reproduce/NAME; with all, one subfolder per target)")
    ap.add_argument("--quick", action="store_true", help="reduced sizes: seconds per target (what the tests run)")
    ap.add_argument("--workers", help="Dask workers for targets that sweep (default: all cores)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--allow-skipped", action="store_true", help="exit 0 even when a target was skipped (an "
                    "optional dependency such as scikit-learn is missing); without it a skipped target exits 3")
    args = ap.parse_args(argv)
    from dynamics.core.cli import MAX_WORKERS

    workers = None if args.workers is None else Param("workers", "int", 1, "", low=1,
                                                      high=MAX_WORKERS).coerce(args.workers)
    table = targets(args.model)
    if args.name == "all":
        names = list(table)
    elif args.name in table:
        names = [args.name]
    else:
        raise UsageError(f"target must be one of {', '.join(table)} or all; got {args.name!r}")
    if args.model and args.name != "all":
        raise UsageError("--model selects the targets of all; give a target name or all, not both")
    folders = {n: (args.out if len(names) == 1 and args.out else os.path.join(args.out or "runs/reproduce", n))
               for n in names}
    for folder in folders.values():
        check_writable_dir(folder)
    bar = progress(len(names), "reproduce", unit="target", show=enabled(args.quiet) and len(names) > 1)
    skipped = []
    with bar:
        for name in names:
            t0 = time.perf_counter()
            res = run_target(name, folders[name], args.quick, workers)
            wall = time.perf_counter() - t0
            atomic_write_json(os.path.join(folders[name], "timing.json"),
                              {"target": name, "quick": args.quick, "wall_s": wall})
            bar.update(1)
            print(f"{name}: wrote {folders[name]} in {wall:.1f} s")
            for key in ("table", "over_K_table", "tables"):
                if key in res and res[key]:
                    print(res[key])
            if res.get("skipped"):
                skipped.append(name)
                print(f"skipped: {res['skipped']}", file=sys.stderr)
    if skipped and not args.allow_skipped:
        print(f"error: {len(skipped)} target(s) skipped ({', '.join(skipped)}); install what they need, or add "
              "--allow-skipped to accept partial results", file=sys.stderr)
        return EXIT_SKIPPED
    return 0


EXIT_SKIPPED = 3
"""Exit status when a target was skipped (a missing optional dependency) without --allow-skipped."""


if __name__ == "__main__":
    sys.exit(main())
