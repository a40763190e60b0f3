"""What the trained model computes at inference (Theorem 2 of Yang, Huang, Liang, Chi 2024).

At the optimum ``a_k = A_{:,k}`` the model outputs ``yhat* = A^T y``: it copies the N prompt
labels and predicts every other token by ridge regression over the m basis functions,

    lambda_hat = (Z Z^T + m tau I_m)^{-1} Z y,     yhat*_k = z_k^T lambda_hat   (k > N),

(push-through: ``Z^T (Z Z^T + p I_m)^{-1} = (Z^T Z + p I_N)^{-1} Z^T``, so ``A_{:,k} = G^{-1} Z^T z_k``).
The paper's best predictor ``yhat_best`` uses the penalty ``N tau`` instead of ``m tau`` and, by
the paper's definition, copies the prompt labels too: the gap measures the penalty only and
vanishes at ``N = m`` by construction (Fig 3).

Inference losses are expectations over test tasks ``lambda ~ (mu, Sigma)`` (and the label
noise), in closed form: for predictors ``yhat = P^T y`` and ``yhat' = P'^T y``,

    (1/K) E |yhat - yhat'|^2 = (1/K) tr(D^T M D),   D = P - P',
    M = E[y y^T] = Z^T (mu mu^T + Sigma) Z + tau tr(mu mu^T + Sigma) I_N,

evaluated as a sum of squares ``|F D|^2`` with ``M = F^T F`` (never negative).
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

from dynamics.core.rng import model_rng
from dynamics.models.yang2024.data import Problem, draw_dictionary


def ridge_matrix(prob: Problem, penalty: float) -> np.ndarray:
    """``P`` (N x K) with ``yhat = P^T y``: ``P[:, :N] = I_N`` (copy the labels) and
    ``P[:, k] = (Z^T Z + penalty I_N)^{-1} Z^T z_k`` for ``k > N`` (ridge over the basis).

    ``penalty = m tau`` gives the trained model's limit ``A`` (Theorem 2); ``N tau`` gives
    ``yhat_best``.  A singular system (``penalty = 0`` with ``N > m``) raises ``ValueError``.
    """
    N, K = prob.N, prob.K
    Z = prob.Z
    P = np.zeros((N, K))
    P[:, :N] = np.eye(N)
    if K > N:
        try:
            c = linalg.cho_factor(Z.T @ Z + float(penalty) * np.eye(N))
        except linalg.LinAlgError:
            raise ValueError(f"ridge penalty {penalty:g} leaves Z^T Z + penalty I_N singular (N = {N}, "
                             f"m = {prob.m})") from None
        P[:, N:] = linalg.cho_solve(c, Z.T @ prob.Zhat[:, N:])
    return P


def ridge_coefficients(prob: Problem, y, penalty: float) -> np.ndarray:
    """``lambda_hat = (Z Z^T + penalty I_m)^{-1} Z y`` for prompts ``y`` (N,) or (B, N) (rows)."""
    y = np.asarray(y, dtype=np.float64)
    Z = prob.Z
    M = Z @ Z.T + float(penalty) * np.eye(prob.m)
    return linalg.solve(M, Z @ np.atleast_2d(y).T, assume_a="pos").T.reshape(y.shape[:-1] + (prob.m,))


def predict(prob: Problem, y, penalty: float) -> np.ndarray:
    """The ridge predictor ``yhat`` (K,) or (B, K) from prompts ``y`` (N,) or (B, N): the prompt
    labels copied, ``z_k^T lambda_hat`` for ``k > N``."""
    y = np.asarray(y, dtype=np.float64)
    lam = ridge_coefficients(prob, y, penalty)
    out = lam @ prob.Zhat
    out[..., :prob.N] = y
    return out


def moment_factor(prob: Problem, mu: float, var: float) -> np.ndarray:
    """``F`` with ``F^T F = E[y y^T]`` for tasks ``lambda ~ (mu 1_m, var I_m)`` (symmetric square
    root through ``eigh``; eigenvalues clipped at 0 against rounding)."""
    m = prob.m
    M = prob.second_moment(np.full(m, float(mu)), float(var) * np.eye(m))
    ev, U = np.linalg.eigh(0.5 * (M + M.T))
    return (U * np.sqrt(np.clip(ev, 0.0, None))).T


def expected_sq_diff(prob: Problem, D: np.ndarray, factor: np.ndarray) -> float:
    """``(1/K) E |D^T y|^2 = (1/K) |F D|^2`` for the moment factor ``F``."""
    FD = factor @ D
    return float(np.einsum("nk,nk->", FD, FD)) / prob.K


def inference_loss(prob: Problem, a: np.ndarray, mu: float = 0.0, var: float = 1.0,
                   factor: np.ndarray | None = None) -> float:
    """``(1/K) E |yhat - yhat*|^2`` for the model's ``a`` (N x K) on tasks ``lambda ~ (mu 1_m,
    var I_m)``: in-domain ``(0, 1)``, the paper's out-of-domain ``(1, 4)``."""
    F = moment_factor(prob, mu, var) if factor is None else factor
    return expected_sq_diff(prob, a - prob.A, F)


def best_gap(prob: Problem, mu: float = 0.0, var: float = 1.0) -> float:
    """The paper's Fig 3 gap ``(1/K) E |yhat* - yhat_best|^2``: penalty ``m tau`` against ``N tau``."""
    D = ridge_matrix(prob, prob.m * prob.tau) - ridge_matrix(prob, prob.N * prob.tau)
    return expected_sq_diff(prob, D, moment_factor(prob, mu, var))


def fig3_curve(quick: bool, copy_labels: bool = True) -> tuple:
    """``(Ns, gaps (seeds, N))``: the Fig 3 gap ``(1/K) E|yhat* - yhat_best|^2`` at m = 100,
    tau = 0.01, K = 200, d = 100; ``copy_labels=False`` is the negative control's wrong
    ``yhat_best``, ridge on all K tokens (the prompt's labels replaced by ridge predictions)."""
    m, tau, K, d = 100, 0.01, 200, 100
    Ns = np.arange(50, 151, 10 if quick else 5)
    seeds = range(4 if quick else 20)
    gaps = np.empty((len(seeds), Ns.size))
    for i, seed in enumerate(seeds):
        V_all, Zhat = draw_dictionary(model_rng(seed, "yang2024.dictionary"), d, K, m)
        for j, N in enumerate(Ns):
            pr = Problem(V_all, Zhat, int(N), tau)
            D = ridge_matrix(pr, pr.m * pr.tau) - best_matrix(pr, copy_labels)
            gaps[i, j] = expected_sq_diff(pr, D, moment_factor(pr, 0.0, 1.0))
    return Ns, gaps


def best_matrix(pr: Problem, copy_labels: bool = True) -> np.ndarray:
    """``yhat_best``'s matrix (N x K): ridge with penalty ``N tau`` copying the prompt labels (the
    paper's definition), or, ``copy_labels=False``, predicting every token by ridge."""
    P = ridge_matrix(pr, pr.N * pr.tau)
    if not copy_labels:  # lambda_hat = (Z Z^T + N tau I)^{-1} Z y predicts every token
        Z = pr.Z
        P = np.linalg.solve(Z.T @ Z + pr.N * pr.tau * np.eye(pr.N), Z.T @ pr.Zhat)
    return P
