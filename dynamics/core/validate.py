"""Argument checks shared by every public entry point: errors name the argument and the rule.

The project's one validation module (declared parameters are checked by
:mod:`dynamics.core.params`; these helpers check arrays and Python-API arguments).  One
tolerance for probability vectors: :func:`p_sum_tol`.
"""
from __future__ import annotations

import numbers
import operator

import numpy as np

P_SUM_TOL = 1e-12
"""|sum(p) - 1| allowed, per sqrt(K) (rounding of a sum of K terms grows like sqrt(K))."""


def p_sum_tol(K: int) -> float:
    """The tolerance on ``|sum(p) - 1|`` for K probabilities: ``1e-12 max(1, sqrt(K))``."""
    return P_SUM_TOL * max(1.0, float(np.sqrt(K)))


def probabilities(p, name: str = "p", K: int | None = None, min_len: int = 2) -> np.ndarray:
    """A probability vector: 1-D, finite, entries >= 0, summing to 1 within :func:`p_sum_tol`."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D probability vector, got shape {arr.shape}")
    if K is not None and arr.shape[0] != K:
        raise ValueError(f"{name} must be a probability vector of length K = {K}, got length {arr.shape[0]}")
    if arr.shape[0] < min_len:
        raise ValueError(f"{name} must be a probability vector with K >= {min_len} entries (K features), "
                         f"got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a probability vector with finite entries (no NaN or inf)")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be a probability vector with entries >= 0, got min {float(arr.min()):g}")
    tol = p_sum_tol(arr.shape[0])
    if abs(arr.sum() - 1.0) > tol:
        raise ValueError(f"{name} must be a probability vector summing to 1 within {tol:g}, "
                         f"got sum {float(arr.sum())!r}")
    return arr


def integer(value, name: str, minimum: int) -> int:
    """An integer ``>= minimum`` (bools and floats refused)."""
    try:
        iv = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}") from None
    if isinstance(value, bool) or iv < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {name}={iv}")
    return int(iv)


def real(value, name: str, *, positive: bool) -> float:
    """A finite real ``> 0`` (``positive``) or ``>= 0``."""
    rule = "> 0" if positive else ">= 0"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number {rule}; got {value!r}") from None
    if not np.isfinite(v) or (v <= 0.0 if positive else v < 0.0):
        raise ValueError(f"{name} must be a finite number {rule}; got {name}={v:g}")
    return v


def choice(value, name: str, choices) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


ORTHO_TOL = 1e-10
"""max |V^T V - I| accepted as orthonormal columns."""


def orthonormal_columns(V, K: int, d: int, name: str = "V") -> np.ndarray:
    """A finite ``d x K`` float64 matrix with orthonormal columns (within :data:`ORTHO_TOL`)."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    if V.shape != (d, K):
        raise ValueError(f"{name} must have shape (d, K) = ({d}, {K}); got {V.shape}")
    if not np.all(np.isfinite(V)):
        raise ValueError(f"{name} must be finite")
    err = np.max(np.abs(V.T @ V - np.eye(K))) if K else 0.0
    if err > ORTHO_TOL:
        raise ValueError(f"{name} must have orthonormal columns (|V^T V - I| <= {ORTHO_TOL:g}); got max error {err:.3g}")
    return V


def prompt_length(N, name: str = "N") -> float:
    """An integer prompt length N >= 1 (returned as float for the kernels)."""
    if isinstance(N, bool) or not isinstance(N, (numbers.Integral, float, np.floating)):
        raise ValueError(f"{name} must be an integer >= 1, got {N!r}")
    if not np.isfinite(N) or N != int(N) or N < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {N!r}")
    return float(int(N))


def nonnegative(x, name: str) -> float:
    """A finite real >= 0."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number >= 0, got {x!r}") from None
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite real number >= 0, got {x!r}")
    return v


def positive(x, name: str) -> float:
    """A finite real > 0."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number > 0, got {x!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite real number > 0, got {x!r}")
    return v


def square_theta(theta, K: int, name: str = "theta") -> np.ndarray:
    """A finite K x K float64 matrix."""
    arr = np.asarray(theta, dtype=np.float64)
    if arr.shape != (K, K):
        raise ValueError(f"{name} must have shape (K, K) = ({K}, {K}) to match p, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return np.ascontiguousarray(arr)


def finite_result(where: str, **arrays) -> None:
    """Stop with a message naming ``where`` if any result is non-finite (no silent NaN)."""
    for key, val in arrays.items():
        if not np.all(np.isfinite(val)):
            raise FloatingPointError(f"non-finite {key} in {where}")


def column_spread(theta, name: str = "theta", axis: int = 0, limit: float = 1e4) -> None:
    """Within a column of scores, ``max - min`` must stay below ``limit`` (quadrature nodes ~ spread)."""
    arr = np.asarray(theta)
    spread = np.max(np.ptp(arr, axis=axis)) if arr.size else 0.0
    if not spread <= limit:
        raise ValueError(f"{name} entries of one column must differ by at most {limit:g}, got a spread of {spread:g}")
