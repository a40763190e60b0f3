"""The data model of Yang, Huang, Liang, Chi (2024), fixed for a whole run (docs/models/yang2024.md).

- A dictionary of K tokens ``v_1..v_K`` in ``R^d`` (the columns of ``V_all``, unit norm, not
  orthogonal; K > d allowed); the first N are the prompt's tokens ``V = V_all[:, :N]``.
- A fixed table of representations ``z_k = f(v_k)`` in ``R^m`` (the columns of ``Zhat``);
  ``Z = Zhat[:, :N]``.
- Per prompt: a task ``lambda`` (``E[lambda lambda^T] = I_m``) and noise ``eps_k ~ N(0, tau I_m)``;
  labels ``y_k = lambda^T (z_k + eps_k)``; the prompt shows ``y_1..y_N``.

Only second moments enter the population loss, through

    G   = E[y y^T]   = Z^T Z + m tau I_N                       (N x N)
    c_k = E[y y_k]   = Z^T z_k + m tau e_k [k <= N]            (N)
    A   = G^{-1} C   = [I_N, G^{-1} Z^T Z_Q]                   (N x K)

so the optimum copies the N prompt labels (``A_{:,k} = e_k``, exactly, since ``c_k = G e_k``)
and predicts the others by ridge regression over the m basis functions.  The optimum's loss per
token is written without cancellation (a sum of non-negative terms, valid at ``tau = 0``):

    L*_k = 0 (k <= N),   L*_k = 1/2 (m tau + |z_k - Z A_{:,k}|^2 + m tau |A_{:,k}|^2) (k > N),

which equals ``1/2 (|z_k|^2 + m tau - c_k^T G^{-1} c_k)`` (expand ``A_{:,k} = G^{-1} Z^T z_k``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from dynamics.core.params import ParamError

NORM_TOL = 1e-12
"""A token whose norm is below this (relative to the largest) counts as zero-norm."""


def draw_dictionary(rng: np.random.Generator, d: int, K: int, m: int) -> tuple:
    """``(V_all, Zhat)`` as in the paper's experiments: Gaussian tokens normalised to unit norm
    (docs/models/yang2024.md, **choice**), standard Gaussian representations.

    The draws are sequential on ``rng``: first ``V_all`` (d x K, column-major order of the
    Gaussian matrix), then ``Zhat`` (m x K).
    """
    V_all = rng.standard_normal((d, K))
    V_all /= np.linalg.norm(V_all, axis=0, keepdims=True)
    Zhat = rng.standard_normal((m, K))
    return V_all, Zhat


def check_dictionary(V_all, Zhat, where: str = "data") -> tuple:
    """``V_all`` (d x K) and ``Zhat`` (m x K) as float64 arrays, or a :class:`ParamError` naming
    ``where`` and the rule (2-D, the same K, finite, no zero-norm token)."""
    V_all = np.asarray(V_all, dtype=np.float64)
    Zhat = np.asarray(Zhat, dtype=np.float64)
    if V_all.ndim != 2 or V_all.shape[0] < 1 or V_all.shape[1] < 1:
        raise ParamError(where, f"{where}: V_all must be a 2-D array (d, K) with d, K >= 1, got shape {V_all.shape}")
    if Zhat.ndim != 2 or Zhat.shape[0] < 1:
        raise ParamError(where, f"{where}: Zhat must be a 2-D array (m, K) with m >= 1, got shape {Zhat.shape}")
    if Zhat.shape[1] != V_all.shape[1]:
        raise ParamError(where, f"{where}: V_all (d, K) and Zhat (m, K) must have the same K columns, got "
                                f"{V_all.shape} and {Zhat.shape}")
    for name, arr in (("V_all", V_all), ("Zhat", Zhat)):
        if not np.all(np.isfinite(arr)):
            raise ParamError(where, f"{where}: {name} must be finite (no NaN or inf)")
    norms = np.linalg.norm(V_all, axis=0)
    zero = np.flatnonzero(norms <= NORM_TOL * max(1.0, norms.max()))
    if zero.size:
        raise ParamError(where, f"{where}: every token v_k (column of V_all) must have non-zero norm; token(s) "
                                f"{zero[:5].tolist()} (0-based) are zero")
    return V_all, Zhat


def load_dictionary(path: str, normalize: bool = True) -> tuple:
    """``(V_all, Zhat)`` from an ``.npz`` holding arrays ``V_all`` (d, K) and ``Zhat`` (m, K).

    ``normalize``: scale every token to unit norm (the paper's ``v_k`` are unit vectors).
    Errors name the parameter ``data`` and the rule broken.
    """
    if not os.path.isfile(path):
        raise ParamError("data", f"data must be an existing .npz file, got {path!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("V_all", "Zhat") if k not in f.files]
            if missing:
                raise ParamError("data", f"data: {path} must hold arrays V_all (d, K) and Zhat (m, K); missing "
                                         f"{', '.join(missing)} (found: {', '.join(f.files) or 'none'})")
            V_all, Zhat = f["V_all"], f["Zhat"]
    except ParamError:
        raise
    except Exception as exc:  # not a readable npz
        raise ParamError("data", f"data: cannot read {path} as .npz ({exc})") from None
    for name, arr in (("V_all", V_all), ("Zhat", Zhat)):
        if arr.dtype.kind not in "fiu":
            kind = {"c": "complex", "U": "text", "S": "bytes", "b": "boolean", "O": "object", "V": "structured",
                    "M": "datetime", "m": "timedelta"}.get(arr.dtype.kind, str(arr.dtype))
            raise ParamError("data", f"data: {path} array {name} must hold real numbers, got {kind} entries "
                                     f"(dtype {arr.dtype})")
    V_all, Zhat = check_dictionary(V_all, Zhat)
    if normalize:
        V_all = V_all / np.linalg.norm(V_all, axis=0, keepdims=True)
    return V_all, Zhat


@dataclass
class Problem:
    """The fixed quantities of one instance: dictionary, representations, ``N``, ``tau`` and the
    second moments (module docstring).

    Attributes
    ----------
    V_all : array (d, K)
        Tokens ``v_k`` as columns.  ``V = V_all[:, :N]``.
    Zhat : array (m, K)
        Representations ``z_k`` as columns.  ``Z = Zhat[:, :N]``.
    N : int
        Number of labelled prompt tokens (``N <= K``).
    tau : float
        Noise level: ``eps_k ~ N(0, tau I_m)``.
    G, G_chol : arrays (N, N)
        ``G = Z^T Z + m tau I_N`` and its upper Cholesky factor ``R`` (``G = R^T R``).
    A : array (N, K)
        The target ``A = G^{-1} C`` (first N columns exactly ``I_N``).
    L_star_k : array (K,)
        Optimum per token; ``L_star = sum(L_star_k)``.
    gram_N, gram_K : arrays
        ``V^T V`` (N x N) and ``V_all^T V_all`` (K x K): the reduced step's preconditioner.
    """

    V_all: np.ndarray
    Zhat: np.ndarray
    N: int
    tau: float
    G: np.ndarray = field(init=False, repr=False)
    G_chol: np.ndarray = field(init=False, repr=False)
    A: np.ndarray = field(init=False, repr=False)
    L_star_k: np.ndarray = field(init=False, repr=False)
    gram_N: np.ndarray = field(init=False, repr=False)
    gram_K: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.V_all, self.Zhat = check_dictionary(self.V_all, self.Zhat)
        d, K = self.V_all.shape
        m = self.Zhat.shape[0]
        if isinstance(self.N, bool) or int(self.N) != self.N or not 1 <= int(self.N) <= K:
            raise ParamError("N", f"N must be an integer with 1 <= N <= K = {K}, got {self.N!r}")
        self.N = int(self.N)
        if not (np.isfinite(self.tau) and self.tau >= 0):
            raise ParamError("tau", f"tau must be a finite number >= 0, got {self.tau!r}")
        self.tau = float(self.tau)
        N = self.N
        Z = self.Zhat[:, :N]
        self.G = Z.T @ Z + m * self.tau * np.eye(N)
        try:
            self.G_chol = linalg.cholesky(self.G, lower=False)
        except linalg.LinAlgError:
            raise ParamError("tau", f"G = Z^T Z + m tau I_N must be positive definite; with tau = {self.tau:g} it is "
                                    f"singular (tau = 0 needs N <= m and Z of full column rank; N = {N}, m = {m})"
                             ) from None
        A = np.zeros((N, K))
        A[:, :N] = np.eye(N)
        if K > N:
            A[:, N:] = linalg.cho_solve((self.G_chol, False), Z.T @ self.Zhat[:, N:])
        self.A = A
        L = np.zeros(K)
        if K > N:
            resid = self.Zhat[:, N:] - Z @ A[:, N:]
            mt = m * self.tau
            L[N:] = 0.5 * (mt + np.einsum("ik,ik->k", resid, resid) + mt * np.einsum("ik,ik->k", A[:, N:], A[:, N:]))
        self.L_star_k = L
        V = self.V_all[:, :N]
        self.gram_N = V.T @ V
        self.gram_K = self.V_all.T @ self.V_all

    @property
    def d(self) -> int:
        return self.V_all.shape[0]

    @property
    def K(self) -> int:
        return self.V_all.shape[1]

    @property
    def m(self) -> int:
        return self.Zhat.shape[0]

    @property
    def V(self) -> np.ndarray:
        """The prompt tokens ``V = (v_1..v_N)`` (d x N)."""
        return self.V_all[:, :self.N]

    @property
    def Z(self) -> np.ndarray:
        """The prompt tokens' representations ``Z = (z_1..z_N)`` (m x N)."""
        return self.Zhat[:, :self.N]

    @property
    def L_star(self) -> float:
        """``L* = sum_k L*_k``."""
        return float(self.L_star_k.sum())

    @property
    def cond_G(self) -> float:
        """The 2-norm condition number of ``G`` (ratio of its extreme eigenvalues)."""
        ev = np.linalg.eigvalsh(self.G)
        return float(ev[-1] / ev[0]) if ev[0] > 0 else float("inf")

    @property
    def gap_resolution(self) -> float:
        """Estimated smallest resolvable relative gap ``(L - L*)/L*``: ``(cond(G) u)^2``.

        A backward-stable Cholesky solve gives ``A`` with relative error at most about
        ``cond(G) u`` (``u`` = 2.2e-16, the float64 unit roundoff); the gap at the true optimum,
        evaluated with this ``A``, is the quadratic form of that error, about its square, and
        the error of ``L*`` is of the same second order (``A`` minimises the loss).  Checked
        against 50-digit arithmetic (``tests/yang2024/test_closed_form.py``): the estimate is
        above the measured floor by factors 10 to 1e4 from ``tau = 1e-2`` to ``tau = 1e-15``
        (where ``cond(G) ~ 1e16`` and ``L*`` is wrong by 1e-2).
        """
        return float((self.cond_G * np.finfo(np.float64).eps) ** 2)

    def second_moment(self, mu, Sigma) -> np.ndarray:
        """``E[y y^T] = Z^T (mu mu^T + Sigma) Z + tau tr(mu mu^T + Sigma) I_N`` for tasks
        ``lambda ~ (mu, Sigma)`` (docs/models/yang2024.md); ``G`` for ``mu = 0, Sigma = I``."""
        M2 = np.outer(mu, mu) + Sigma
        Z = self.Z
        return Z.T @ M2 @ Z + self.tau * np.trace(M2) * np.eye(self.N)
