"""The exact population loss of the multi-head model and its gradients (docs/models/yang2024.md).

Model (Yang, Huang, Liang, Chi 2024): H heads with ``Q_h`` (d x d) and ``w_h`` in ``R^K``;
``yhat_k = sum_h w_{h,k} y^T softmax(V^T Q_h v_k) = a_k^T y`` with
``a_k = sum_h w_{h,k} s_k^h``, ``s_k^h = softmax(theta_h[:, k])`` and ``theta_h = V^T Q_h V_all``
(N x K): the loss depends on ``Q_h`` only through ``theta_h``.  With the second moments of
:mod:`~dynamics.models.yang2024.data`,

    L - L* = 1/2 sum_k (a_k - A_{:,k})^T G (a_k - A_{:,k})                    (computed directly)
    dL/dw_{h,k}          = (s_k^h)^T r_k,                  r_k = G (a_k - A_{:,k})
    dL/dtheta_h[:, k]    = w_{h,k} (diag(s_k^h) - s_k^h s_k^h^T) r_k
    dL/dQ_h              = V (dL/dtheta_h) V_all^T

and GD on ``Q_h`` moves ``theta_h`` by ``-eta_Q (V^T V) (dL/dtheta_h) (V_all^T V_all)``
(:func:`precondition`).  The gap ``L - L*`` is never formed as a difference of two large numbers:
it is the squared norm of ``R (a_k - A_{:,k})`` with the Cholesky factor ``G = R^T R``.

Layout: ``theta`` is (H, N, K), ``w`` (H, K), ``Q`` (H, d, d).  Stacked products are reshaped to
single 2-D GEMMs where the layout allows it (a (H*N, K) block times a K x K matrix); the
element-wise passes (softmax, mix, softmax Jacobian) are fused loops (:mod:`.kernels`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynamics.core.validate import finite_result
from dynamics.models.yang2024 import kernels
from dynamics.models.yang2024.data import Problem


@dataclass
class Evaluation:
    """The closed form at one state (reduced coordinates).

    Attributes
    ----------
    gap : float
        ``L - L*``.  ``loss = gap + L*``.
    S : array (H, N, K)
        Attention ``S[h, :, k] = s_k^h``.
    a : array (N, K)
        ``a_k`` as columns; ``D = a - A``; ``r = G D``.
    grad_w : array (H, K) or None
    grad_theta : array (H, N, K) or None
    """

    gap: float
    loss: float
    S: np.ndarray
    a: np.ndarray
    D: np.ndarray
    r: np.ndarray
    grad_w: np.ndarray | None = None
    grad_theta: np.ndarray | None = None


def softmax_columns(theta: np.ndarray) -> np.ndarray:
    """``softmax`` over axis 1 (the N prompt tokens) of a (H, N, K) array, maximum subtracted."""
    return softmax_mix(theta, np.zeros((theta.shape[0], theta.shape[2])))[0]


def softmax_mix(theta: np.ndarray, w: np.ndarray) -> tuple:
    """``(S, a)``: the attention ``S[h, :, k] = s_k^h`` (maximum subtracted) and
    ``a_k = sum_h w_{h,k} s_k^h`` as an (N, K) array (:mod:`.kernels`)."""
    theta = np.ascontiguousarray(theta, dtype=np.float64)
    S = np.empty_like(theta)
    kernels.shift_by_max(theta, S)
    np.exp(S, out=S)
    a = np.empty((theta.shape[1], theta.shape[2]))
    kernels.normalize_and_mix(S, np.ascontiguousarray(w, dtype=np.float64), a)
    return S, a


def evaluate(prob: Problem, theta: np.ndarray, w: np.ndarray, grad: bool = True) -> Evaluation:
    """Exact ``L``, ``L - L*`` and (``grad``) ``dL/dw``, ``dL/dtheta`` at ``(theta, w)``."""
    S, a = softmax_mix(theta, w)
    D = a - prob.A
    RD = prob.G_chol @ D
    gap = 0.5 * float(np.einsum("nk,nk->", RD, RD))
    r = prob.G_chol.T @ RD
    ev = Evaluation(gap=gap, loss=gap + prob.L_star, S=S, a=a, D=D, r=r)
    if grad:
        ev.grad_w, ev.grad_theta = chain(S, w, r)
    return ev


def chain(S: np.ndarray, w: np.ndarray, r: np.ndarray) -> tuple:
    """``(dL/dw, dL/dtheta)`` from ``r = dL/da`` (N x K): ``dL/dw_{h,k} = s_k^h . r_k`` and
    ``dL/dtheta_h[:, k] = w_{h,k} s_k^h * (r_k - s_k^h . r_k)`` (the softmax Jacobian)."""
    gw = np.empty((S.shape[0], S.shape[2]))
    gt = np.empty_like(S)
    kernels.softmax_chain(S, np.ascontiguousarray(w, dtype=np.float64), np.ascontiguousarray(r), gw, gt)
    return gw, gt


def right_gram(prob: Problem, X: np.ndarray) -> np.ndarray:
    """``X_h (V_all^T V_all)`` for every head of a (H, N, K) array, as one 2-D GEMM (through
    ``V_all`` when ``2 d < K`` makes that cheaper)."""
    H, N, K = X.shape
    flat = X.reshape(H * N, K)
    if 2 * prob.d < K:
        out = (flat @ prob.V_all.T) @ prob.V_all
    else:
        out = flat @ prob.gram_K
    return out.reshape(H, N, K)


def precondition(prob: Problem, grad_theta: np.ndarray) -> np.ndarray:
    """The reduced GD direction ``(V^T V) dL/dtheta_h (V_all^T V_all)`` (docs/models/yang2024.md):
    ``theta_h - eta_Q`` times it is exactly ``V^T (Q_h - eta_Q dL/dQ_h) V_all``."""
    X = right_gram(prob, grad_theta)
    return np.matmul(prob.gram_N, X)


def theta_of_Q(prob: Problem, Q: np.ndarray) -> np.ndarray:
    """``theta_h = V^T Q_h V_all`` for every head (H, N, K)."""
    H, d, _ = Q.shape
    # (Q_h^T V)^T = V^T Q_h: one GEMM on the transposed stack, then one on (H*N, d).
    QtV = np.ascontiguousarray(Q.transpose(0, 2, 1)).reshape(H * d, d) @ prob.V
    VtQ = np.ascontiguousarray(QtV.reshape(H, d, prob.N).transpose(0, 2, 1))
    return (VtQ.reshape(H * prob.N, d) @ prob.V_all).reshape(H, prob.N, prob.K)


def grad_Q(prob: Problem, grad_theta: np.ndarray) -> np.ndarray:
    """``dL/dQ_h = V (dL/dtheta_h) V_all^T`` for every head (H, d, d)."""
    H, N, K = grad_theta.shape
    U = (grad_theta.reshape(H * N, K) @ prob.V_all.T).reshape(H, N, prob.d)
    return np.matmul(prob.V, U)


def check_arrays(Q, w, V_all, Zhat, N, tau) -> tuple:
    """Validate the arguments of :func:`population_loss_grad`; errors name the argument."""
    prob = Problem(V_all, Zhat, N, tau)
    Q = np.asarray(Q, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    d, K = prob.V_all.shape
    if Q.ndim != 3 or Q.shape[1:] != (d, d) or Q.shape[0] < 1:
        raise ValueError(f"Q must have shape (H, d, d) = (H, {d}, {d}) with H >= 1, got {Q.shape}")
    if w.shape != (Q.shape[0], K):
        raise ValueError(f"w must have shape (H, K) = ({Q.shape[0]}, {K}), got {w.shape}")
    for name, arr in (("Q", Q), ("w", w)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
    return prob, Q, w


def population_loss_grad(Q, w, V_all, Zhat, N, tau):
    """Exact population loss of the multi-head model and its gradients (docs/models/yang2024.md).

    Yang, Huang, Liang, Chi (2024): ``yhat_k = sum_h w_{h,k} y^T softmax(V^T Q_h v_k)``, loss
    ``L = 1/2 sum_{k=1..K} E (yhat_k - y_k)^2`` over tasks ``lambda`` (``E lambda lambda^T = I_m``)
    and noise ``eps_k ~ N(0, tau I_m)``, with ``y_k = lambda^T (z_k + eps_k)``.

    Parameters
    ----------
    Q : array (H, d, d)
        The heads' merged key-query matrices ``Q_h``.
    w : array (H, K)
        The heads' output weights ``w_h``.
    V_all : array (d, K)
        The dictionary ``v_1..v_K`` as columns (the first N are the prompt's tokens).
    Zhat : array (m, K)
        The representations ``z_1..z_K`` as columns.
    N : int
        Number of labelled tokens in the prompt, ``1 <= N <= K``.
    tau : float
        Noise level ``tau >= 0`` (``G`` must be positive definite: ``tau = 0`` needs ``N <= m``).

    Returns
    -------
    L : float
        The population loss.
    L_star : float
        Its minimum over all ``a_k``, attained at ``a_k = A_{:,k} = G^{-1} c_k``.
    dL_dQ : array (H, d, d)
    dL_dw : array (H, K)

    Notes
    -----
    ``L - L*`` is computed directly as ``1/2 sum_k (a_k - A_{:,k})^T G (a_k - A_{:,k})``; use
    ``L - L_star`` from the returned values only when ``L*`` is small.
    """
    prob, Q, w = check_arrays(Q, w, V_all, Zhat, N, tau)
    ev = evaluate(prob, theta_of_Q(prob, Q), w)
    gQ = grad_Q(prob, ev.grad_theta)
    finite_result("population_loss_grad", L=ev.loss, dL_dQ=gQ, dL_dw=ev.grad_w)
    return ev.loss, prob.L_star, gQ, ev.grad_w
