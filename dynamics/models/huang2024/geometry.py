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

from dynamics.core.jit import jit

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


def load_geometry(path: str):
    """``(V, Sigma or None)`` from an ``.npz`` with arrays ``V`` (d, K) and optionally ``Sigma`` (d, d).

    Raises :class:`~dynamics.core.params.ParamError` naming ``data`` and the rule broken.
    """
    import os

    from dynamics.core.params import ParamError

    if not os.path.isfile(path):
        raise ParamError("data", f"data must be an existing .npz file, got {path!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "V" not in z.files:
                raise ParamError("data", f"data: {path} must hold an array V (d, K); it holds {sorted(z.files)}")
            V = np.array(z["V"], dtype=np.float64)
            Sigma = np.array(z["Sigma"], dtype=np.float64) if "Sigma" in z.files else None
    except ParamError:
        raise
    except Exception as exc:
        raise ParamError("data", f"data: cannot read {path} as .npz ({exc})") from None
    try:
        V = features(V, name="V")
        if Sigma is not None:
            Sigma = psd_matrix(Sigma, (V.shape[0], V.shape[0]), "Sigma")
    except ValueError as exc:
        raise ParamError("data", f"data: {exc}") from None
    return V, Sigma


class Geometry:
    """The features and task covariance of one run (issue 20): ``G = V^T V``, ``M``, and ``V`` for Monte Carlo.

    Attributes
    ----------
    G : array (K, K)
        Feature Gram matrix; the exact GD update is ``theta <- theta - eta G g G``.
    M : array (K, K)
        Label covariance ``V^T Sigma V`` (or :func:`scaled_label_covariance` with ``task_cov``).
    V : array (d, K) or None
        The features when a data file gives them (else built by :meth:`features`).
    label_root : array (K, K)
        ``R`` with ``R R^T = M``: the Monte Carlo labels ``z = V^T w`` are drawn as ``R xi``,
        ``xi ~ N(0, I_K)`` (equal in law for Gaussian ``w``).
    """

    def __init__(self, G, M, V=None, rho=None):
        self.G = np.ascontiguousarray(G, dtype=np.float64)
        self.M = np.ascontiguousarray(M, dtype=np.float64)
        self.V = V
        self.rho = rho
        self.label_root = gram_sqrt(self.M)
        self.identity_gram = bool(np.array_equal(self.G, np.eye(self.G.shape[0])))

    @classmethod
    def from_config(cls, c, structure) -> "Geometry":
        """From the model's resolved parameters ``feature_corr``, ``task_cov``, ``data`` and its classes."""
        K = structure.K
        V = Sigma = None
        rho = c.get("feature_corr")
        if c.get("data") is not None:
            V, Sigma = load_geometry(c["data"])
            G = V.T @ V
        elif rho is not None:
            G = equicorrelated_gram(K, rho)
        else:
            G = np.eye(K)
        if Sigma is not None:
            M = label_covariance(V, Sigma)
        elif c.get("task_cov") is not None:
            M = scaled_label_covariance(G, np.repeat(np.asarray(c["task_cov"], dtype=np.float64), structure.sizes))
        else:
            M = G.copy()
        return cls(G, M, V, rho)

    def features(self, d: int, kind: str, rng) -> np.ndarray:
        """``V`` (d x K) with Gram matrix ``G``: the data file's, or ``R G^(1/2)`` with a Haar frame ``R``
        from ``rng`` (``kind = "random"``) or the standard frame."""
        if self.V is not None:
            return self.V
        K = self.G.shape[0]
        if self.rho is not None and self.identity_gram is False:
            return equicorrelated_features(K, self.rho, d, rng if kind == "random" else None)
        from scipy.stats import ortho_group
        R = ortho_group.rvs(d, random_state=rng)[:, :K] if kind == "random" else np.eye(d, K)
        return np.ascontiguousarray(R @ gram_sqrt(self.G))

    def direction(self, g) -> np.ndarray:
        """``G g G``: the change of ``theta = V^T Q V`` under a GD step ``-V g V^T`` on ``Q`` (per unit step)."""
        if self.identity_gram:
            return g
        return self.G @ g @ self.G

    def project(self, theta) -> np.ndarray:
        """``P theta P`` with ``P = G G^+``: the part of ``theta`` that ``V^T Q V`` can take (all of it when
        ``G`` is invertible)."""
        if self.identity_gram:
            return np.array(theta, dtype=np.float64)
        P = self.G @ np.linalg.pinv(self.G, hermitian=True)
        return P @ theta @ P


def equicorrelated_reduced_step(coords, structure, N, rho, sigma2=0.0, *, h=None):
    """Class-reduced exact loss and GD direction for equicorrelated unit features and ``Sigma = I``.

    Since ``r = Attn - e_k`` sums to 0, ``r^T G r = (1 - rho) |r|^2`` for ``G = (1 - rho) I + rho 1 1^T``:
    ``ell_k(rho, sigma2) = (1 - rho) ell_k^orth(sigma2 / (1 - rho))``, so the orthonormal class-reduced
    engine gives ``L``, ``g = dL/dtheta`` and ``L_k`` at the cost of the paper's setting (independent of
    K and N).  The GD direction on ``theta = V^T Q V`` is ``G g G = (1 - rho)^2 g + rho (1 - rho) (g 1) 1^T``
    (columns of ``g`` sum to 0): entry ``(n, k)`` also moves by the row sum ``(g 1)_n``, which depends
    only on the class of ``n`` and is a sum over query classes of the reduced gradient.

    Parameters
    ----------
    coords : array (F, F + 1)
        Reduced coordinates (:mod:`.classes`).
    structure : ClassStructure
    N : int
        Prompt length.
    rho : float
        Feature correlation, ``-1/(K - 1) <= rho < 1``.
    sigma2 : float
        Label-noise variance.

    Returns
    -------
    L : float
    grad : array (F, F + 1)
        ``dL/dtheta`` of one member of each column class.
    L_f : array (F,)
    direction : array (F, F + 1)
        ``(G g G)`` of one member of each column class: GD is ``coords <- coords - eta direction``.
    """
    from dynamics.models.huang2024.engine import reduced_loss_grad
    from dynamics.models.huang2024.quadrature import DEFAULT_H

    rho = float(rho)
    if not (-1.0 / (structure.K - 1) - 1e-15 <= rho < 1.0):
        raise ValueError(f"rho must lie in [-1/(K - 1), 1) = [{-1.0 / (structure.K - 1):.6g}, 1) for the class-reduced "
                         f"path (at rho = 1 every feature is the same), got {rho!r}")
    s = 1.0 - rho
    ev = reduced_loss_grad(coords, structure, N, sigma2 / s, h=DEFAULT_H if h is None else h)
    _, m_col = structure.column_tables()
    grad = np.empty_like(ev.grad)
    direction = np.empty_like(ev.grad)
    _equicorrelated_direction(ev.grad, structure.sizes, m_col, rho, grad, direction)
    return s * ev.L, grad, s * ev.L_f, direction


def _equicorrelated_direction_py(g_orth, sizes, m_col, rho, grad, direction):
    """``grad = (1 - rho) g_orth`` and ``direction = G grad G`` on reduced coordinates (row sums by class)."""
    F = g_orth.shape[0]
    s = 1.0 - rho
    for f in range(F):
        for j in range(F + 1):
            grad[f, j] = s * g_orth[f, j]
    for c in range(F):
        # row sum (g 1)_n for n of class c: its own query (A of class c) plus every other query k != n
        r = grad[c, 0]
        for f in range(F):
            r += (sizes[f] - (1.0 if f == c else 0.0)) * grad[f, 1 + c]
        for f in range(F):
            direction[f, 1 + c] = s * s * grad[f, 1 + c] + rho * s * r if m_col[f, 1 + c] > 0 else 0.0
        direction[c, 0] = s * s * grad[c, 0] + rho * s * r  # the own entry n = k of a query of class c


_equicorrelated_direction = jit(_equicorrelated_direction_py)
