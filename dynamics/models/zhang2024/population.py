"""The closed-form population loss of Zhang, Frei, Bartlett's linear self-attention and its optimum.

On the paper's invariant set (Section 5.1) the prediction is ``yhat = x_q^T G h`` with
``G = u U^T`` and ``h = (1/N) sum_i y_i x_i``; with ``x ~ N(0, Lambda)`` and ``w ~ N(0, I_d)`` the
loss ``L = 1/2 E (yhat - w^T x_q)^2`` is a polynomial in ``(U, u)``.  Derivation, moments and the
limit point: ``docs/models/zhang2024.md``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.stats import ortho_group


def covariance(d: int, kappa: float, rotate: bool, rng: np.random.Generator | None = None) -> np.ndarray:
    """The covariance ``Lambda`` of the inputs ``x_i, x_q ~ N(0, Lambda)``.

    Parameters
    ----------
    d : int
        Dimension.
    kappa : float
        Condition number ``lambda_1 / lambda_d >= 1``; eigenvalues ``lambda_j = kappa^{-(j-1)/(d-1)}``
        (geometric from 1 down to ``1/kappa``).
    rotate : bool
        Eigenbasis drawn Haar-uniformly (``scipy.stats.ortho_group`` from ``rng``); else diagonal.

    Returns
    -------
    ndarray, shape (d, d)
        Symmetric positive definite ``Lambda``.
    """
    lam = kappa ** (-np.arange(d) / max(d - 1, 1))
    if not rotate:
        return np.diag(lam)
    O = ortho_group.rvs(d, random_state=rng) if d > 1 else np.ones((1, 1))
    return (O * lam) @ O.T


def gamma_matrix(Lam: np.ndarray, N: int) -> np.ndarray:
    """The paper's ``Gamma = (1 + 1/N) Lambda + tr(Lambda)/N I_d`` (Theorem 4.1), shape (d, d).

    ``E[h h^T] = Lambda Gamma`` (``docs/models/zhang2024.md``, eq. (Z3)), so ``Gamma^{-1}`` is the
    optimal ``G``."""
    d = Lam.shape[0]
    return (1.0 + 1.0 / N) * Lam + np.trace(Lam) / N * np.eye(d)


class Population(NamedTuple):
    """Loss, gap and gradients of the population loss at ``(U, u)`` (eq. (Z4) of the docs).

    ``loss``: ``L``; ``gap``: ``L - L* = 1/2 tr(D^T Lambda D Lambda Gamma)`` with ``D = G - Gamma^{-1}``
    (computed directly, without cancellation); ``grad_U`` (d, d), ``grad_u`` (float); ``G`` (d, d).
    """

    loss: float
    gap: float
    grad_U: np.ndarray
    grad_u: float
    G: np.ndarray


class Problem:
    """The fixed data of one setting: ``Lambda``, ``Gamma``, ``Gamma^{-1}``, ``L*`` and ``Lambda Gamma``.

    Parameters
    ----------
    Lam : ndarray, shape (d, d)
        Input covariance.
    N : int
        Prompt length.
    """

    def __init__(self, Lam: np.ndarray, N: int):
        self.Lam = np.asarray(Lam, dtype=np.float64)
        self.N = int(N)
        self.d = self.Lam.shape[0]
        self.Gam = gamma_matrix(self.Lam, self.N)
        self.Gam_inv = np.linalg.inv(self.Gam)
        self.LamGam = self.Lam @ self.Gam
        self.L_star = 0.5 * (np.trace(self.Lam) - np.trace(self.Lam @ self.Lam @ self.Gam_inv))

    def evaluate(self, U: np.ndarray, u: float) -> Population:
        """The population loss and its gradient at ``(U, u)``; ``U`` (d, d), ``u`` scalar."""
        G = u * U.T
        D = G - self.Gam_inv
        dG = self.Lam @ D @ self.LamGam  # dL/dG = Lambda D Lambda Gamma
        gap = 0.5 * float(np.sum(D * dG))  # 1/2 tr(D^T Lambda D Lambda Gamma)
        return Population(self.L_star + gap, gap, u * dG.T, float(np.sum(dG * U.T)), G)

    def limit(self, balance: float = 0.0) -> tuple:
        """The global minimum that the gradient flow reaches from a state with ``u^2 - |U|_F^2 =
        balance`` (conserved by the flow, docs eq. (Z6)): ``(U*, u*)`` with ``U* = Gamma^{-1} / u*``
        and ``u*^2 = (balance + sqrt(balance^2 + 4 |Gamma^{-1}|_F^2)) / 2``; for the paper's
        initialisation (``balance = 0``) ``u* = |Gamma^{-1}|_F^{1/2}`` (Theorem 4.1)."""
        f2 = float(np.sum(self.Gam_inv ** 2))
        u = np.sqrt(0.5 * (balance + np.sqrt(balance ** 2 + 4.0 * f2)))
        return self.Gam_inv / u, float(u)

    def curvature(self) -> float:
        """The curvature scale ``ell = ell_U + ell_k`` of the real network's loss at the balanced limit
        point (docs eq. (Z7)): ``ell_U = 2 lambda_max(Lambda) lambda_max(Lambda Gamma) |Gamma^{-1}|_F``
        bounds the Hessian of ``L(U, u)``; ``ell_k = u*^2 (1 + 2/N) ((tr Lambda)^2 + 2 tr Lambda^2)
        lambda_max(Lambda)`` is the curvature along ``w^{KQ}_{21}``, an entry that only the Monte
        Carlo method moves.  The default step is ``1/ell``."""
        lam_max = np.linalg.eigvalsh(self.Lam)[-1]
        f = float(np.linalg.norm(self.Gam_inv))
        ell_U = 2.0 * lam_max * np.linalg.eigvalsh(self.LamGam)[-1] * f
        ell_k = f * (1.0 + 2.0 / self.N) * (np.trace(self.Lam) ** 2 + 2.0 * np.sum(self.Lam ** 2)) * lam_max
        return float(ell_U + ell_k)
