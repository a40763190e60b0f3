"""The stability limit of exact GD with two step sizes: the smoothness of the exact loss.

GD moves ``theta_h`` by ``-eta_Q P(dL/dtheta_h)`` with ``P(X) = (V^T V) X (V_all^T V_all)`` and
``w`` by ``-eta_w dL/dw`` with ``eta_w = gamma^2 eta_Q`` (the paper's eq. 16).  In the variables
``theta = theta0 + P^{1/2} xi`` and ``w = w0 + gamma u`` this is plain GD with one step ``eta_Q`` on
``f(xi, u) = L(theta0 + P^{1/2} xi, w0 + gamma u)``, whose Hessian at 0 is

    [[P^{1/2} H_tt P^{1/2},  gamma P^{1/2} H_tw],
     [gamma H_wt P^{1/2},    gamma^2 H_ww      ]]

(``P^{1/2} = (V^T V)^{1/2} (x) (V_all^T V_all)^{1/2}``).  Its largest eigenvalue ``ell`` is the local
smoothness; GD on the local quadratic model is stable iff ``eta_Q < 2 / ell``.  The same number
governs GD on the full ``Q_h`` (the map ``Q_h -> V^T Q_h V_all`` carries one GD onto the other).

``ell`` is found by Lanczos (:func:`scipy.sparse.linalg.eigsh`, largest algebraic) on
Hessian-vector products from central differences of the exact gradient (small problems: the
dense Hessian from the same products and :func:`numpy.linalg.eigvalsh`).
"""
from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from dynamics.models.yang2024.closed_form import evaluate, softmax_columns
from dynamics.models.yang2024.data import Problem

FD_STEP = 1e-4
"""Central-difference step along a unit direction (relative error ~ step^2 from the third
derivative, rounding ~ 1e-16 |grad| / step: both far below the 1e-4 Lanczos tolerance)."""
NCV = 8
"""Lanczos basis size: small, since the start vector is already close to the top eigenvector."""
DENSE_MAX = 400
"""Up to this many coordinates the Hessian is formed densely (exact eigenvalue, no Lanczos)."""


def sqrt_psd(M: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix (eigenvalues clipped at 0)."""
    ev, U = np.linalg.eigh(0.5 * (M + M.T))
    return (U * np.sqrt(np.clip(ev, 0.0, None))) @ U.T


def smoothness(prob: Problem, theta: np.ndarray, w: np.ndarray, gamma: float = 1.0, tol: float = 1e-4) -> float:
    """``ell``: the largest eigenvalue of the Hessian of ``f`` (module docstring) at ``(theta, w)``.

    GD with ``eta_Q < 2 / ell`` is stable near this state.
    """
    H, N, K = theta.shape
    sN, sK = sqrt_psd(prob.gram_N), sqrt_psd(prob.gram_K)
    n_t = H * N * K
    gamma = float(gamma)

    def half(X):  # P^{1/2} on an (H, N, K) array
        return np.matmul(sN, (X.reshape(H * N, K) @ sK).reshape(H, N, K))

    def grad_f(xi, u):
        ev = evaluate(prob, theta + half(xi), w + gamma * u)
        return np.concatenate([half(ev.grad_theta).ravel(), gamma * ev.grad_w.ravel()])

    def hvp(v):
        v = np.asarray(v, dtype=np.float64).ravel()
        nv = np.linalg.norm(v)
        if nv == 0:
            return np.zeros_like(v)
        h = FD_STEP / nv
        xi, u = v[:n_t].reshape(H, N, K), v[n_t:].reshape(H, K)
        return (grad_f(h * xi, h * u) - grad_f(-h * xi, -h * u)) / (2 * h)

    n = n_t + H * K
    if n <= DENSE_MAX:  # small: the whole Hessian, column by column, symmetrised
        M = np.stack([hvp(e) for e in np.eye(n)], axis=1)
        return float(np.linalg.eigvalsh(0.5 * (M + M.T))[-1])
    op = LinearOperator((n, n), matvec=hvp, dtype=np.float64)
    val = eigsh(op, k=1, which="LA", tol=tol, ncv=NCV, v0=start_vector(prob, theta, gamma), return_eigenvectors=False)
    return float(val[0])


def start_vector(prob: Problem, theta: np.ndarray, gamma: float) -> np.ndarray:
    """Lanczos' start: the top eigenvector of the exact w-w block ``gamma^2 S_k^T G S_k`` (the
    loss is quadratic in ``w``; at ``w = 0`` the theta-theta block vanishes and this block
    carries the top of the spectrum), padded with zeros on ``theta``, plus a small random part
    so that no eigenvector is missed by symmetry.  The block's top eigenvalue per token is that
    of ``B_k B_k^T`` (N x N, ``B_k = R S_k``); its eigenvector is the top right singular vector
    of ``B_k`` for the largest."""
    H, N, K = theta.shape
    B = np.matmul(prob.G_chol, softmax_columns(theta).transpose(2, 1, 0))  # (K, N, H)
    top = np.linalg.eigvalsh(np.matmul(B, B.transpose(0, 2, 1)))[:, -1]
    k = int(np.argmax(top))
    v = np.zeros(H * N * K + H * K)
    w = np.zeros((H, K))
    w[:, k] = np.linalg.svd(B[k])[2][0]
    v[H * N * K:] = w.ravel()
    v += 1e-3 * np.random.default_rng(0).standard_normal(v.size) / np.sqrt(v.size)
    return v


def pilot_sharpness(prob: Problem, theta: np.ndarray, w: np.ndarray, gamma: float, eta: float, steps: int,
                    ell0: float | None = None) -> float:
    """The largest sharpness along a short pilot run: ``max(ell_0, ell_T)``.

    Runs ``steps`` exact GD steps in the reduced coordinates (the trajectory of GD on ``Q_h``,
    the paper's eq. 16 with ``eta_w = gamma^2 eta``) from ``(theta, w)`` and returns the larger
    of the sharpness at the start (``ell0`` if given) and at the last state whose loss is finite
    and below ten times the initial one (:func:`smoothness`).

    Parameters
    ----------
    theta : array (H, N, K)
    w : array (H, K)
    gamma, eta : float
        Step-size ratio and the pilot's step ``eta_Q``.
    steps : int
        Pilot length (>= 1).

    Returns
    -------
    float
        ``ell_pilot``: the default plain step is a fraction of ``2 / ell_pilot``.  The sharpness
        can keep growing after the pilot (progressive sharpening); GD then runs at the edge of
        stability, where the sharpness settles near ``2/eta_Q``, and a run counts as diverged only
        by the ``diverge_factor`` rule.
    """
    from dynamics.models.yang2024.closed_form import precondition

    theta, w = np.array(theta, dtype=np.float64), np.array(w, dtype=np.float64)
    ell_start = smoothness(prob, theta, w, gamma) if ell0 is None else float(ell0)
    last = (theta.copy(), w.copy())
    L0 = None
    for _ in range(int(steps)):
        ev = evaluate(prob, theta, w)
        if L0 is None:
            L0 = ev.loss
        if not (np.isfinite(ev.loss) and ev.loss <= 10 * L0):
            break
        last = (theta.copy(), w.copy())
        theta -= eta * precondition(prob, ev.grad_theta)
        w -= gamma ** 2 * eta * ev.grad_w
    else:
        ev = evaluate(prob, theta, w, grad=False)
        if np.isfinite(ev.loss) and ev.loss <= 10 * L0:
            last = (theta, w)
    return max(ell_start, smoothness(prob, last[0], last[1], gamma))
