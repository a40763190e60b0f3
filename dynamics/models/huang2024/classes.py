"""Symmetry classes of features (MODEL.md section 2) and the reduced coordinates on them.

Features with the same probability and the same initial coordinates stay equal for ever
under gradient descent.  A :class:`ClassStructure` groups the K features into F *feature
classes* (class ``f``: ``sizes[f]`` features of probability ``probs[f]`` each).  The column
``theta[:, k]`` of a query ``k`` in class ``f`` is then described by ``F + 1`` numbers,
the *reduced coordinates* ``coords[f]``:

- ``coords[f, 0] = A_k = theta[k, k]``, the paper's attention weight on the query's own feature;
- ``coords[f, 1 + g] = B_{k,n} = theta[n, k]`` for the features ``n != k`` of class ``g``
  (``sizes[g] - [g == f]`` of them; an empty one is kept at its value and never moves).

The paper's settings: *balanced* (F = 1: ``[A, B]``) and *imbalanced* (F = 2, class 0 the
dominant feature ``v_1``, class 1 the rest: columns ``[A_1, -, B_{1,n}]`` and
``[A_k, B_{k,1}, B_{k,n}]``).  *General*: every feature its own class (F = K).
Nothing here is K x K: K may be 10^6 or more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynamics.core import validate


@dataclass(frozen=True)
class ClassStructure:
    """Feature classes: ``sizes[f]`` features of probability ``probs[f]`` each.

    Attributes
    ----------
    sizes : int64 array (F,)
        Number of features in each class; ``K = sizes.sum()``.
    probs : float64 array (F,)
        Per-feature probability ``p_k`` in each class; ``sum(sizes * probs) = 1``.
    names : tuple of str
        Labels of the classes (for figures and tables).
    """

    sizes: np.ndarray
    probs: np.ndarray
    names: tuple

    def __post_init__(self):
        sizes = np.asarray(self.sizes, dtype=np.int64)
        probs = np.asarray(self.probs, dtype=np.float64)
        if sizes.ndim != 1 or sizes.shape != probs.shape or sizes.size < 1:
            raise ValueError("sizes and probs must be 1-D arrays of the same length F >= 1")
        if np.any(sizes < 1):
            raise ValueError("sizes must be >= 1 (every class holds at least one feature)")
        if sizes.sum() < 2:
            raise ValueError("sizes must add up to K >= 2 features")
        if not np.all(np.isfinite(probs)) or np.any(probs < 0):
            raise ValueError("probs must be finite and non-negative")
        total = float(np.sum(sizes * probs))
        if abs(total - 1.0) > validate.p_sum_tol(int(sizes.sum())):
            raise ValueError(f"p must sum to 1 within 1e-12: sizes * probs sums to {total!r}")
        if len(self.names) != sizes.size:
            raise ValueError("names must give one label per class")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "probs", probs)

    # ---- constructors for the paper's settings -------------------------------------------
    @classmethod
    def balanced(cls, K: int) -> "ClassStructure":
        """The paper's balanced setting: ``p_k = 1/K`` for all K features."""
        K = _check_K(K)
        return cls(np.array([K]), np.array([1.0 / K]), ("feature",))

    @classmethod
    def imbalanced(cls, K: int, p1: float) -> "ClassStructure":
        """The paper's imbalanced setting: dominant ``v_1`` with ``p_1``, the rest ``(1 - p_1)/(K - 1)``."""
        K = _check_K(K)
        p1 = float(p1)
        if not (0.0 < p1 < 1.0):
            raise ValueError(f"p1 must lie in (0, 1), got {p1!r}")
        return cls(np.array([1, K - 1]), np.array([p1, (1.0 - p1) / (K - 1)]), ("dominant", "rest"))

    @classmethod
    def general(cls, p) -> "ClassStructure":
        """Every feature its own class (no symmetry assumed): F = K."""
        p = validate.probabilities(p)
        return cls(np.ones(p.size, dtype=np.int64), p, tuple(f"v{n + 1}" for n in range(p.size)))

    # ---- derived quantities ----------------------------------------------------------------
    @property
    def F(self) -> int:
        """Number of feature classes."""
        return int(self.sizes.size)

    @property
    def K(self) -> int:
        """Number of features."""
        return int(self.sizes.sum())

    @property
    def p(self) -> np.ndarray:
        """The full probability vector ``p`` (length K; only for modest K)."""
        return np.repeat(self.probs, self.sizes)

    def column_tables(self):
        """``(p_col, m_col)``, each (F, F + 1): per-feature probability and size of each column class."""
        F = self.F
        p_col = np.empty((F, F + 1))
        m_col = np.empty((F, F + 1))
        for f in range(F):
            p_col[f, 0] = self.probs[f]
            m_col[f, 0] = 1.0
            p_col[f, 1:] = self.probs
            m_col[f, 1:] = self.sizes
            m_col[f, 1 + f] -= 1
        return p_col, m_col

    def zeros(self) -> np.ndarray:
        """Reduced coordinates of ``Q = 0`` (the paper's initialisation)."""
        return np.zeros((self.F, self.F + 1))

    def owner(self) -> np.ndarray:
        """Class index of each feature (length K)."""
        return np.repeat(np.arange(self.F), self.sizes)

    def expand(self, coords) -> np.ndarray:
        """The full ``K x K`` matrix ``theta[n, k]`` of reduced coordinates (modest K only)."""
        coords = self.check_coords(coords)
        own = self.owner()
        theta = coords[own[None, :], 1 + own[:, None]]  # theta[n, k] = coords[f(k), 1 + f(n)]
        theta[np.arange(self.K), np.arange(self.K)] = coords[own, 0]
        return theta

    def check_coords(self, coords, name: str = "coords") -> np.ndarray:
        """Reduced coordinates: finite float64 array of shape (F, F + 1)."""
        arr = np.asarray(coords, dtype=np.float64)
        if arr.shape != (self.F, self.F + 1):
            raise ValueError(f"{name} must have shape (F, F + 1) = ({self.F}, {self.F + 1}), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
        return np.ascontiguousarray(arr)


def _check_K(K) -> int:
    if isinstance(K, bool) or int(K) != K or K < 2:
        raise ValueError(f"K must be an integer >= 2, got {K!r}")
    return int(K)
