"""Print every derived kernel module: ``python -m derivations.build [--check] [--stdout]``.

Each model whose kernels are derived symbolically has a module here (``DERIVATIONS``) with a
``TARGET`` path and a ``render()`` function (:mod:`derivations.printer`).  Without options every
target is rewritten (atomically); ``--check`` exits 1 if a committed file differs from what the
derivation produces now (the test suite runs the same comparison); ``--stdout`` prints instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from derivations import printer

DERIVATIONS = ("derivations.huang2024",)
"""Modules with ``TARGET`` and ``render()``; one per model with generated kernels."""


def targets():
    """``[(module, target path, rendered text)]`` for every derivation."""
    out = []
    for name in DERIVATIONS:
        mod = importlib.import_module(name)
        out.append((mod, mod.TARGET, mod.render()))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m derivations.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed kernel module differs")
    ap.add_argument("--stdout", action="store_true", help="print the modules instead of writing them")
    args = ap.parse_args(argv)
    stale = 0
    for mod, target, text in targets():
        if args.stdout:
            sys.stdout.write(text)
        elif args.check:
            ok = printer.is_current(target, text)
            stale += not ok
            print(f"{target}: {'up to date' if ok else 'differs from ' + mod.__name__ + ': run python -m derivations.build'}")
        else:
            printer.write(target, text)
            print(f"wrote {target}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
