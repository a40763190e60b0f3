"""Feature geometry and task covariance beyond the paper (issue 20): ``V``, ``G = V^T V``, ``M = V^T Sigma V``.

Huang, Cheng, Liang assume orthonormal features and isotropic tasks (``G = M = I``).  Here the
features ``v_1..v_K`` are the columns of any ``V`` (d x K, no zero column) and the task has any
covariance ``Sigma`` (d x d, symmetric positive semi-definite).  The loss depends on the
geometry only through the label covariance ``M = V^T Sigma V`` (:mod:`.general_m`), and GD on
``Q`` moves ``theta = V^T Q V`` by ``-eta G g G`` with ``g = dL/dtheta`` and the Gram matrix
``G = V^T V`` (independent of ``Sigma``).

Two structured families (the simulator's ``--feature-corr`` and ``--task-cov``):

- *equicorrelated unit features* ``G = (1 - rho) I + rho 1 1^T``: positive semi-definite exactly
  for ``-1/(K - 1) <= rho <= 1`` (eigenvalues ``1 - rho`` and ``1 + (K - 1) rho``);
  :func:`equicorrelated_features` realises it as ``V = R G^(1/2)`` with a Haar frame ``R``;
- *per-feature task variance* ``tau_n``: **choice** ``M = T^(1/2) G T^(1/2)`` with
  ``T = diag(tau)``, i.e. the label ``<w, v_n>`` has variance ``tau_n |v_n|^2`` and the labels
  keep the features' correlations.  It is the covariance ``Sigma = U G^(-1/2) T^(1/2) G T^(1/2)
  G^(-1/2) U^T + (I - U U^T)`` (``V = U G^(1/2)``, ``U`` orthonormal columns) when ``G`` is
  invertible, and ``Sigma = I`` when every ``tau_n = 1``.
"""
from __future__ import annotations

import numpy as np

SYM_TOL = 1e-12
"""Relative asymmetry ``max |S - S^T| / max |S|`` accepted (the matrix is then symmetrised)."""
PSD_TOL = 1e-12
"""Relative negative eigenvalue ``-lambda_min / lambda_max`` accepted as rounding."""


def psd_matrix(S, shape, name: str) -> np.ndarray:
    """A finite symmetric positive semi-definite float64 matrix of the given shape (symmetrised).

    Raises ``ValueError`` naming ``name`` and the rule broken.
    """
    S = np.asarray(S, dtype=np.float64)
    if S.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {S.shape}")
    if not np.all(np.isfinite(S)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    scale = float(np.max(np.abs(S))) if S.size else 0.0
    if np.max(np.abs(S - S.T), initial=0.0) > SYM_TOL * scale:
        raise ValueError(f"{name} must be symmetric (|S - S^T| <= {SYM_TOL:g} max|S|)")
    S = 0.5 * (S + S.T)
    if scale > 0:
        ev = np.linalg.eigvalsh(S)
        if ev[0] < -PSD_TOL * max(ev[-1], 0.0) or ev[-1] <= 0:
            raise ValueError(f"{name} must be positive semi-definite (smallest eigenvalue {ev[0]:.3g})")
    return np.ascontiguousarray(S)


def features(V, K: int | None = None, name: str = "V") -> np.ndarray:
    """A finite ``d x K`` float64 feature matrix without zero columns (``K`` checked if given)."""
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2 or V.shape[0] < 1 or V.shape[1] < 2:
        raise ValueError(f"{name} must be a 2-D array of shape (d, K) with d >= 1, K >= 2; got shape {V.shape}")
    if K is not None and V.shape[1] != K:
        raise ValueError(f"{name} must have K = {K} columns, got {V.shape[1]}")
    if not np.all(np.isfinite(V)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if np.any(np.all(V == 0.0, axis=0)):
        raise ValueError(f"{name} must have no zero column (column {int(np.argmax(np.all(V == 0.0, axis=0)))} is 0)")
    return np.ascontiguousarray(V)


def rho_range(K: int) -> tuple[float, float]:
    """``(-1/(K - 1), 1)``: the equicorrelations ``rho`` for which ``G`` is positive semi-definite."""
    return -1.0 / (K - 1), 1.0


def check_rho(rho, K: int, name: str = "feature_corr") -> float:
    """``rho`` within :func:`rho_range` (a ``ValueError`` that says the range otherwise)."""
    rho = float(rho)
    lo, hi = rho_range(K)
    if not (np.isfinite(rho) and lo - 1e-15 <= rho <= hi):
        raise ValueError(f"{name} must lie in [-1/(K - 1), 1] = [{lo:.6g}, 1] (G = (1 - rho) I + rho 1 1^T "
                         f"positive semi-definite), got {rho!r}")
    return rho


def equicorrelated_gram(K: int, rho: float) -> np.ndarray:
    """``G = (1 - rho) I + rho 1 1^T`` (K x K): unit features with pairwise inner products ``rho``."""
    return (1.0 - rho) * np.eye(K) + rho * np.ones((K, K))


def gram_sqrt(G) -> np.ndarray:
    """The symmetric square root ``G^(1/2)`` of a positive semi-definite ``G`` (eigenvalues clipped at 0)."""
    ev, U = np.linalg.eigh(G)
    return (U * np.sqrt(np.clip(ev, 0.0, None))) @ U.T


def equicorrelated_features(K: int, rho: float, d: int | None = None, rng=None) -> np.ndarray:
    """``V = R G^(1/2)`` (d x K, ``d >= K``): unit features with ``v_n^T v_m = rho``; ``R`` is a Haar
    random ``d x K`` orthonormal frame from ``rng`` (the identity frame if ``rng`` is None)."""
    d = K if d is None else int(d)
    if d < K:
        raise ValueError(f"d must be >= K = {K} for equicorrelated features, got {d}")
    root = gram_sqrt(equicorrelated_gram(K, check_rho(rho, K)))
    if rng is None:
        R = np.eye(d, K)
    else:
        from scipy.stats import ortho_group
        R = ortho_group.rvs(d, random_state=rng)[:, :K] if d > 1 else np.ones((1, 1))
    return np.ascontiguousarray(R @ root)


def scaled_label_covariance(G, tau) -> np.ndarray:
    """**choice** ``M = T^(1/2) G T^(1/2)``, ``T = diag(tau)``: per-feature task variance ``tau_n``
    with the features' correlations kept (``tau = 1`` gives ``M = G``, i.e. ``Sigma = I``)."""
    s = np.sqrt(np.asarray(tau, dtype=np.float64))
    return s[:, None] * np.asarray(G, dtype=np.float64) * s[None, :]


def label_covariance(V, Sigma=None) -> np.ndarray:
    """``M = V^T Sigma V`` (K x K); ``Sigma = None`` is the identity (``M = G``)."""
    V = features(V)
    if Sigma is None:
        return V.T @ V
    Sigma = psd_matrix(Sigma, (V.shape[0], V.shape[0]), "Sigma")
    M = V.T @ Sigma @ V
    return 0.5 * (M + M.T)
