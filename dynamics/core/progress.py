"""Progress a person sees on every long loop: a tqdm bar on a terminal, a line every few seconds
in a pipe or a log file, nothing with ``--quiet``.

:func:`progress` returns a tqdm bar (steps, rate and ETA) on standard error when it is a terminal;
when it is not, a :class:`Lines` reporter that writes one line (done/total, percent, rate, ETA)
every :func:`interval` seconds (``ICL_DYNAMICS_PROGRESS_EVERY``, default 10; ``0`` turns the
lines off; ``simulate --progress-every S`` sets it for one command); ``show=False`` gives a
:class:`Silent` object.  All three have the same small interface (``update``,
``set_postfix_str``, ``close``, context manager), so the loops never test for them.  Progress
goes only to standard error and is closed before any error line is printed.
"""
from __future__ import annotations

import os
import sys
import time

ENV = "ICL_DYNAMICS_PROGRESS_EVERY"
DEFAULT_EVERY = 10.0
_every: float | None = None


def set_interval(seconds) -> None:
    """Seconds between progress lines off a terminal for this process (None: the environment's)."""
    global _every
    _every = None if seconds is None else float(seconds)


def interval() -> float:
    """Seconds between progress lines when standard error is not a terminal (0: none)."""
    if _every is not None:
        return _every
    try:
        v = float(os.environ.get(ENV, DEFAULT_EVERY))
    except ValueError:
        return DEFAULT_EVERY
    return v if v >= 0 else DEFAULT_EVERY


def _eta(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


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


class Lines(Silent):
    """Progress as a line every ``every`` seconds on standard error (for pipes and log files)."""

    def __init__(self, total, desc: str, unit: str = "step", every: float = DEFAULT_EVERY):
        self.total, self.desc, self.unit, self.every = total, desc, unit, float(every)
        self.n, self.t0 = 0, time.monotonic()
        self.last = self.t0
        self.postfix = ""

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.n / max(now - self.t0, 1e-9)
            pct = f" ({100.0 * self.n / self.total:.1f}%)" if self.total else ""
            eta = f", ETA {_eta((self.total - self.n) / rate)}" if self.total and rate > 0 else ""
            post = f", {self.postfix}" if self.postfix else ""
            print(f"{self.desc}: {self.n}/{self.total} {self.unit}s{pct}, {rate:.3g} {self.unit}s/s{eta}{post}",
                  file=sys.stderr, flush=True)

    def set_postfix_str(self, s=""):
        self.postfix = s


def enabled(quiet: bool = False) -> bool:
    """Bars are drawn when not quiet and standard error is a terminal (never in pipes or files)."""
    return not quiet and sys.stderr.isatty()


def progress(total, desc: str, unit: str = "step", show: bool = True):
    """A bar over ``total`` units (``show=False``: :class:`Silent`)."""
    if not show:
        return Silent()
    if not sys.stderr.isatty():
        every = interval()
        return Lines(total, desc, unit, every) if every > 0 else Silent()
    from tqdm.auto import tqdm

    # whole units ("400/100000 step"), not tqdm's scaled "1.00/400"; rate and ETA as tqdm shows them
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False,
                unit_scale=total is not None and total >= 10**6, mininterval=0.2)
