"""Progress bars a person sees (tqdm) on every long loop, silent where nobody watches.

:func:`progress` returns a tqdm bar on standard error when it is a terminal and the caller did
not ask for quiet, otherwise a :class:`Silent` object with the same small interface
(``update``, ``set_postfix_str``, ``close``, context manager), so the loops never test for it.
Bars write only to standard error and are closed before any error line is printed.
"""
from __future__ import annotations

import sys


class Silent:
    """The no-op progress bar."""

    def update(self, n=1):
        pass

    def set_postfix_str(self, s=""):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def enabled(quiet: bool = False) -> bool:
    """Bars are drawn when not quiet and standard error is a terminal (never in pipes or files)."""
    return not quiet and sys.stderr.isatty()


def progress(total, desc: str, unit: str = "step", show: bool = True):
    """A bar over ``total`` units (``show=False``: :class:`Silent`)."""
    if not show:
        return Silent()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False,
                unit_scale=True, mininterval=0.2)
