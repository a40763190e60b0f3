"""Argument checks shared by every public entry point: errors name the argument and the rule."""
from __future__ import annotations

import numbers

import numpy as np

P_SUM_TOL = 1e-12


def probabilities(p, name: str = "p") -> np.ndarray:
    """A probability vector: 1-D, finite, entries >= 0, summing to 1 within 1e-12, length >= 2."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of feature probabilities, got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} must have K >= 2 entries (K features), got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative, got min {arr.min()!r}")
    if abs(arr.sum() - 1.0) > P_SUM_TOL:
        raise ValueError(f"{name} must sum to 1 within {P_SUM_TOL:g}, got sum {arr.sum()!r}")
    return arr


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
