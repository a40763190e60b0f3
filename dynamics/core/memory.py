"""Sizes that cannot fit are refused before anything is allocated or written.

A model estimates, from its resolved parameters alone, the bytes of the largest arrays a method
allocates (:meth:`dynamics.core.contract.Model.memory_estimate`: ``{parameter: (bytes, what)}``,
each entry charged to the parameter that drives it).  :func:`check_memory` compares their sum with
the limit and refuses in one line naming the parameter with the largest share and the estimate::

    H = 100000 needs about 1.4 TiB (H x N x K = 1e+05 x 30 x 200 attention scores theta_h, ~12
    arrays); the limit is 62.8 GiB (half of this machine's memory); reduce H, or raise the limit
    with --max-memory or ICL_DYNAMICS_MAX_MEMORY

The limit, in this order: :func:`set_limit` (the commands' ``--max-memory``), the environment
variable ``ICL_DYNAMICS_MAX_MEMORY``, else :data:`DEFAULT_FRACTION` of this machine's physical
memory, read at run time.  Sizes are bytes or numbers with a binary suffix (``512M``, ``8G``,
``1.5T``), or a percentage of the machine's memory (``90%``); ``inf`` turns the check off.
The estimates are of the dominant arrays only (a factor of two either way is expected); they
exist to refuse the configurations that would need tens of GiB to TiB, not to budget a run.
"""
from __future__ import annotations

import math
import os

from dynamics.core.params import ParamError

ENV = "ICL_DYNAMICS_MAX_MEMORY"
DEFAULT_FRACTION = 0.5
"""Without a limit given, a run may use half of the machine's physical memory."""
_SUFFIX = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_limit: tuple | None = None


def machine_memory() -> int:
    """Physical memory of this machine in bytes (``sysconf``; 16 GiB where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def parse_size(text, what: str = "--max-memory") -> float:
    """Bytes from ``"8G"``, ``"512M"``, ``"1.5e9"``, ``"90%"`` (of the machine) or ``"inf"``."""
    rule = (f"{what} must be a size such as 8G, 512M, 2e9 (bytes) or 90% (of this machine's memory), "
            f"or inf; got {text!r}")
    if isinstance(text, bool):
        raise ParamError("max_memory", rule)
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip().upper().removesuffix("IB").removesuffix("B") if isinstance(text, str) else ""
        try:
            if s.endswith("%"):
                value = float(s[:-1]) / 100.0 * machine_memory()
            elif s in ("INF", "INFINITY", "NONE", "OFF"):
                value = math.inf
            else:
                unit = s[-1] if s and s[-1] in _SUFFIX else ""
                value = float(s[: len(s) - len(unit)]) * _SUFFIX[unit]
        except ValueError:
            raise ParamError("max_memory", rule) from None
    if math.isnan(value) or value <= 0:
        raise ParamError("max_memory", rule)
    return value


def set_limit(text) -> None:
    """The limit for this process (``--max-memory``); ``None`` returns to the environment/default."""
    global _limit
    _limit = None if text is None else (parse_size(text), "--max-memory")


def limit() -> tuple:
    """``(bytes, where it comes from)`` of the memory limit now in force."""
    if _limit is not None:
        return _limit
    env = os.environ.get(ENV)
    if env:
        return parse_size(env, ENV), ENV
    return DEFAULT_FRACTION * machine_memory(), "half of this machine's memory"


def human(nbytes: float) -> str:
    """``1.4 TiB``, ``512 MiB``: a size for a person."""
    if not math.isfinite(nbytes):
        return "unlimited"
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} B"


def driver(values: dict, defaults: dict, *names: str) -> str:
    """The parameter among ``names`` furthest above its default (the one a user changed to make a
    product of them large); ties go to the first."""
    def ratio(n):
        d = defaults.get(n)
        v = values.get(n)
        if not isinstance(v, (int, float)) or v is None:
            return 0.0
        return float(v) / float(d) if isinstance(d, (int, float)) and d else float(v)
    return max(names, key=ratio)


def add(estimate: dict, name: str, nbytes: float, what: str) -> None:
    """Charge ``nbytes`` (``what``: the arrays, in words) to parameter ``name`` of ``estimate``."""
    old, why = estimate.get(name, (0.0, ""))
    estimate[name] = (old + float(nbytes), f"{why}; {what}" if why else what)


def records(values: dict, method: str, per_snapshot: float) -> float:
    """Bytes of the recorded trajectory: ``snapshots`` x replicas x ``per_snapshot`` float64 numbers
    (Monte Carlo records a standard error beside each mean)."""
    reps = int(values.get("replicas") or 1) if method == "mc" else 1
    return 8.0 * float(values.get("snapshots") or 1) * reps * float(per_snapshot) * (2 if method == "mc" else 1)


def check_memory(cls, values: dict, method: str) -> None:
    """Refuse, in one line naming the parameter and the estimate, a configuration whose estimated
    memory (:meth:`Model.memory_estimate`) exceeds :func:`limit`."""
    est = cls.memory_estimate(values, method) or {}
    if not est:
        return
    total = sum(b for b, _ in est.values())
    cap, where = limit()
    if total <= cap:
        return
    name = max(est, key=lambda n: est[n][0])
    nbytes, what = est[name]
    shown = values.get(name)
    head = f"{name} = {shown:g}" if isinstance(shown, float) else f"{name} = {shown}"
    rest = "" if nbytes >= 0.999 * total else f" (all arrays: about {human(total)})"
    raise ParamError(name, f"{head} needs about {human(nbytes)} of memory ({what}){rest}; the limit is "
                           f"{human(cap)} ({where}); reduce {name}, or raise the limit with --max-memory or {ENV}")
