"""Reading a trajectory: the geometric rate of ``L - L*`` (Theorem 1's linear convergence).

Linear convergence means ``L - L* ~ C rho^t``: a straight line on a log axis against iterations.
:func:`fit_rate` fits ``log(L - L*) = log C + t log rho`` by least squares over the tail of the
run (the snapshots with ``t >= tail x t_final``), leaving out gaps below ``floor`` (where float64
rounding of the state, not the dynamics, sets the value), and reports the coefficient of
determination ``R^2`` of the fit: ``R^2`` near 1 is a straight line.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dynamics.core.stats import replica_series


class Rate(NamedTuple):
    """``rho``: fitted factor per GD step (< 1: decay); ``log_c``: intercept of ``log(gap)``;
    ``r2``: coefficient of determination; ``points``: snapshots used; ``t0``, ``t1``: their range."""

    rho: float
    log_c: float
    r2: float
    points: int
    t0: float
    t1: float

    def line(self, t):
        """The fitted ``C rho^t`` at ``t``."""
        return np.exp(self.log_c + np.asarray(t, dtype=np.float64) * np.log(self.rho))


def fit_rate(t, gap, tail: float = 0.5, floor: float = 0.0) -> Rate:
    """Least-squares geometric rate of ``gap`` over the snapshots with ``t >= tail * max(t)`` and
    ``gap > floor`` (NaN fields when fewer than 3 such snapshots)."""
    t = np.asarray(t, dtype=np.float64)
    g = np.asarray(gap, dtype=np.float64)
    ok = np.isfinite(g) & (g > max(floor, 0.0))
    if ok.any():
        ok &= t >= tail * t[ok].max()
    if ok.sum() < 3:
        return Rate(np.nan, np.nan, np.nan, int(ok.sum()), np.nan, np.nan)
    x, y = t[ok], np.log(g[ok])
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    ss = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(resid ** 2) / ss if ss > 0 else np.nan
    return Rate(float(np.exp(slope)), float(intercept), float(r2), int(ok.sum()), float(x.min()), float(x.max()))


series = replica_series
"""``(mean, se)`` of a variable over replicas (:func:`dynamics.core.stats.replica_series`)."""
