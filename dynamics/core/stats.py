"""Replica statistics and fits, one convention for the whole package.

Every standard error, log-log slope and geometric rate the package reports comes from here, and
from scipy underneath (``scipy.stats.sem``, ``scipy.stats.linregress``, Student's t quantiles):
no module computes its own.

Convention for a single replica: the standard error is ``nan`` (undefined, never 0), so a table
or a decision rule that needs it cannot mistake one sample for a certain one.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

__all__ = ["mean_se", "Fit", "linear_fit", "loglog_fit", "semilog_fit", "paired_gap"]


def mean_se(x, axis=0):
    """Mean and standard error of the mean over replicas.

    Parameters
    ----------
    x : array_like, shape (R, ...)
        Replica values along ``axis``.  A NaN replica makes its position's mean and standard error
        NaN (never silently left out).
    axis : int
        The replica axis.

    Returns
    -------
    mean, se : ndarray or float, shape (...)
        ``se = std(ddof=1) / sqrt(R)`` (``scipy.stats.sem``); ``nan`` with fewer than two replicas.
    """
    from scipy import stats as _st  # lazy: scipy.stats costs about 1 s to import (issue 21)

    a = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", getattr(_st, "SmallSampleWarning", RuntimeWarning))
        m = np.mean(a, axis=axis) if a.size else np.float64(np.nan)
        n = a.shape[axis] if a.ndim else a.size
        se = _st.sem(a, axis=axis, ddof=1) if n >= 2 else np.full(np.shape(m), np.nan)
    se = np.asarray(se, dtype=np.float64)
    if np.ndim(m) == 0:
        return float(m), float(se)
    return np.asarray(m), np.asarray(se)


class Fit(NamedTuple):
    """A least-squares line ``y = intercept + slope x`` with its uncertainty.

    ``lo``, ``hi``: the two-sided confidence interval of the slope at level ``conf`` (Student's t
    with ``n - 2`` degrees of freedom); ``r2``: the coefficient of determination; ``n``: points
    used; ``rss``: residual sum of squares (in the fitted coordinates).
    """

    slope: float
    intercept: float
    se: float
    lo: float
    hi: float
    r2: float
    n: int
    rss: float
    conf: float


def linear_fit(x, y, conf: float = 0.95) -> Fit:
    """``scipy.stats.linregress`` of ``y`` on ``x`` over the finite pairs, with a CI on the slope.

    Parameters
    ----------
    x, y : array_like, shape (n,)
    conf : float
        Confidence level of ``[lo, hi]``.

    Returns
    -------
    Fit
        NaN fields when fewer than 3 finite pairs exist (no interval can be formed).
    """
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    if n < 3 or np.ptp(x) == 0:
        nan = float("nan")
        return Fit(nan, nan, nan, nan, nan, nan, n, nan, conf)
    from scipy import stats as _st  # lazy (issue 21)

    r = _st.linregress(x, y)
    q = float(_st.t.ppf(0.5 + conf / 2, n - 2))
    resid = y - (r.intercept + r.slope * x)
    return Fit(float(r.slope), float(r.intercept), float(r.stderr), float(r.slope - q * r.stderr),
               float(r.slope + q * r.stderr), float(r.rvalue ** 2), n, float(resid @ resid), conf)


def loglog_fit(x, y, conf: float = 0.95) -> Fit:
    """The exponent of a power law ``y ~ x^slope``: :func:`linear_fit` of ``log y`` on ``log x``
    over the pairs with both positive and finite."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return linear_fit(np.log(x[ok]), np.log(y[ok]), conf)


def semilog_fit(t, y, conf: float = 0.95) -> Fit:
    """A geometric decay ``y ~ exp(slope t)``: :func:`linear_fit` of ``log y`` on ``t`` over the
    positive finite values (``exp(slope)`` is the rate per unit of ``t``)."""
    t, y = np.asarray(t, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(y) & (y > 0)
    return linear_fit(t[ok], np.log(y[ok]), conf)


def paired_gap(a, b):
    """Mean and standard error of the paired difference ``a - b`` over replicas.

    Parameters
    ----------
    a, b : array_like, shape (R,)
        Values of two conditions measured on the same replicas (same seeds).

    Returns
    -------
    gap, se : float
        ``mean(a - b)`` and its standard error (:func:`mean_se`; ``nan`` for one replica).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_gap: a and b must have the same shape, got {a.shape} and {b.shape}")
    return mean_se(a - b)


def replica_series(ds, name: str):
    """Mean and standard error over replicas of one recorded variable of a run's dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        A run's ``results`` dataset.
    name : str
        A variable, with or without a ``replica`` dimension (its first).

    Returns
    -------
    mean, se : ndarray, shape (t, ...)
        The variable itself and ``None`` for an exact run (no replica dimension); otherwise
        :func:`mean_se` over replicas (``se`` NaN with one replica).
    """
    v = np.asarray(ds[name].values, dtype=np.float64)
    if "replica" not in ds[name].dims:
        return v, None
    return mean_se(v, axis=ds[name].dims.index("replica"))
