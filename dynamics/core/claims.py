"""The claims ledger's vocabulary: a paper's claim as data, decided by a rule stated before the run.

A model lists its claims in ``Model.claims`` (``"module:NAME"`` of a tuple of :class:`Claim`), as it
lists its reproduce targets.  Each :class:`Claim` states, before anything runs, the source, the
claim in one sentence, the quantity measured, the decision rule, the controls for the confounders
we know of and the negative control that the same rule must reject.  Its ``decide`` function
(``"module:function"``, called as ``decide(quick=..., out=..., negative=...)``) measures and returns
a :class:`Decision`; with ``negative=True`` it measures the deliberately wrong variant (a wrong
model, step or quantity), which the tests require the rule to reject.

The rules themselves are the small pure functions below (:func:`slope_within`,
:func:`upper_bound_exponent`, :func:`gap_exceeds`, :func:`geometric_or_power`): a claim's decide
function measures, then hands its numbers to one of them, so the same code decides the real run and
the negative control.

Verdicts (:data:`VERDICTS`):

``reproduced``
    the rule, which could have failed, came out as the paper says;
``reproduced by construction``
    true by algebra or by a choice we made, not by the dynamics (the rule was never at risk);
``consistent`` / ``inconsistent``
    for a theorem's upper bound (or a sufficient condition): a measurement at or below the bound
    is ``consistent``, never ``reproduced``; one provably above it is ``inconsistent``;
``not reproduced``
    the rule came out against the paper;
``inconclusive``
    the rule could not separate the outcomes at this size or horizon.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field

import numpy as np

from dynamics.core.stats import linear_fit

__all__ = ["VERDICTS", "SUPPORTING", "Claim", "Decision", "load", "slope_within", "upper_bound_exponent",
           "gap_exceeds", "geometric_or_power"]

REPRODUCED = "reproduced"
BY_CONSTRUCTION = "reproduced by construction"
CONSISTENT = "consistent"
INCONSISTENT = "inconsistent"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, BY_CONSTRUCTION, CONSISTENT, INCONSISTENT, NOT_REPRODUCED, INCONCLUSIVE)
"""The fixed vocabulary of verdicts."""
SUPPORTING = (REPRODUCED, BY_CONSTRUCTION, CONSISTENT)
"""Verdicts that side with the paper; a negative control must get none of them."""


@dataclass(frozen=True)
class Claim:
    """One row of the ledger, stated before the run.

    Attributes
    ----------
    id : str
        Unique over all models, prefixed by the model (``huang-stagewise``).
    model : str
        Registry name of the model that decides it.
    source : str
        Paper and theorem / figure / equation number.
    claim : str
        The claim in one sentence, in the paper's terms.
    quantity : str
        What is measured, with its symbol.
    rule : str
        The decision rule, with its numbers (``fitted log-log slope CI within [a, b]``).
    control : str
        The controls that rule out the confounders we know of.
    negative : str
        The deliberately wrong variant the same rule must reject.
    decide : str
        ``"module:function"``; ``function(quick: bool, out: str | None, negative: bool) -> Decision``.
    bound : bool
        True when the claim is an upper bound or a sufficient condition (verdicts ``consistent`` /
        ``inconsistent`` instead of ``reproduced`` / ``not reproduced``).
    """

    id: str
    model: str
    source: str
    claim: str
    quantity: str
    rule: str
    control: str
    negative: str
    decide: str
    bound: bool = False

    def run(self, quick: bool = False, out: str | None = None, negative: bool = False) -> "Decision":
        """Import and call :attr:`decide`; check the verdict is in the vocabulary."""
        module, fn = self.decide.split(":")
        d = getattr(importlib.import_module(module), fn)(quick=quick, out=out, negative=negative)
        if not isinstance(d, Decision):
            raise TypeError(f"{self.decide} must return a Decision, got {type(d).__name__}")
        return d


@dataclass
class Decision:
    """What a claim's decide function measured and what its rule concluded.

    Attributes
    ----------
    value : float
        The decisive number (a slope, a gap, a ratio of fits).
    se : float
        Its standard error (``nan`` where the number is exact, e.g. from exact dynamics).
    verdict : str
        One of :data:`VERDICTS`.
    detail : str
        One or two sentences: the numbers behind the verdict (CI, range of sizes, horizon).
    figure : str or None
        Path of the figure that shows the decision, if one was drawn.
    numbers : dict
        Every number the detail quotes, for tests and the CSV.
    """

    value: float
    se: float
    verdict: str
    detail: str
    figure: str | None = None
    numbers: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def load(model_cls) -> tuple:
    """The claims a model class registers (``model_cls.claims``: ``"module:NAME"`` or None)."""
    where = getattr(model_cls, "claims", None)
    if not where:
        return ()
    module, name = where.split(":")
    return tuple(getattr(importlib.import_module(module), name))


# --------------------------------------------------------------------------- rules
def slope_within(fit, lo: float, hi: float) -> str:
    """A fitted slope against an expected interval ``[lo, hi]``.

    ``reproduced`` if the fit's confidence interval lies inside ``[lo, hi]``; ``not reproduced``
    if it is disjoint from it; ``inconclusive`` otherwise (or when the fit is undefined).
    ``fit``: a :class:`dynamics.core.stats.Fit`.
    """
    if not (math.isfinite(fit.lo) and math.isfinite(fit.hi)):
        return INCONCLUSIVE
    if lo <= fit.lo and fit.hi <= hi:
        return REPRODUCED
    if fit.hi < lo or fit.lo > hi:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def upper_bound_exponent(fit, bound: float) -> str:
    """A measured scaling exponent against a theorem's upper-bound exponent.

    ``consistent`` if the confidence interval's upper end is at most ``bound``; ``inconsistent``
    if its lower end exceeds ``bound``; ``inconclusive`` if the interval straddles it.
    """
    if not (math.isfinite(fit.lo) and math.isfinite(fit.hi)):
        return INCONCLUSIVE
    if fit.hi <= bound:
        return CONSISTENT
    if fit.lo > bound:
        return INCONSISTENT
    return INCONCLUSIVE


def gap_exceeds(gap: float, se: float, k: float = 5.0, sign: int = +1) -> str:
    """A paired difference in the paper's direction (``sign``), measured in standard errors.

    ``reproduced`` if ``sign * gap > k se``; ``not reproduced`` if ``sign * gap < -k se`` (the
    opposite ordering, decided); ``inconclusive`` otherwise, and whenever ``se`` is not finite.
    Calling a small gap "no effect" (an equivalence margin) is the caller's rule to state.
    """
    if not (math.isfinite(gap) and math.isfinite(se)) or se < 0:
        return INCONCLUSIVE
    if sign * gap > k * se:
        return REPRODUCED
    if sign * gap < -k * se:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def geometric_or_power(t, y, expect: str, margin: float = 10.0):
    """Which law a decaying curve follows: geometric ``y ~ r^t`` or power ``y ~ t^-a``.

    Both are fitted by least squares on ``log y`` (against ``t`` and against ``log t``, the same
    points); the better law is the one with the smaller residual sum of squares, and it *wins*
    when its RSS is at least ``margin`` times smaller.

    Parameters
    ----------
    t, y : array_like, shape (n,)
        Times (> 0) and the positive decaying quantity (points with ``y <= 0`` are dropped).
    expect : {"geometric", "power"}
        The law the paper predicts.
    margin : float
        The RSS ratio a law needs to win.

    Returns
    -------
    verdict, ratio, geometric, power
        ``reproduced`` if ``expect`` wins, ``not reproduced`` if the other law wins,
        ``inconclusive`` otherwise; ``ratio = RSS(other) / RSS(expected)``; the two
        :class:`dynamics.core.stats.Fit` objects.
    """
    if expect not in ("geometric", "power"):
        raise ValueError(f"expect must be 'geometric' or 'power', got {expect!r}")
    t, y = np.asarray(t, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(y) & (t > 0) & (y > 0)
    t, ly = t[ok], np.log(y[ok])
    geo, pw = linear_fit(t, ly), linear_fit(np.log(t), ly)
    if not (math.isfinite(geo.rss) and math.isfinite(pw.rss)):
        return INCONCLUSIVE, float("nan"), geo, pw
    tiny = 1e-300
    exp_rss, other_rss = (geo.rss, pw.rss) if expect == "geometric" else (pw.rss, geo.rss)
    ratio = (other_rss + tiny) / (exp_rss + tiny)
    if ratio >= margin:
        return REPRODUCED, ratio, geo, pw
    if ratio <= 1 / margin:
        return NOT_REPRODUCED, ratio, geo, pw
    return INCONCLUSIVE, ratio, geo, pw
