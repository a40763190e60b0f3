"""The exact population loss and gradient for correlated features and anisotropic tasks (issue 20).

Features ``v_1..v_K`` (columns of ``V``, any norms and angles), tasks ``w`` with covariance
``Sigma``: the labels of the K features have covariance ``M = V^T Sigma V`` (K x K, symmetric
positive semi-definite), and averaging over ``w`` gives, per prompt with query feature ``k``
(``x_n = c_n a_n``, ``a_n = exp(theta[n, k])``, ``Z = sum_n x_n``, ``Attn = x / Z``)::

    ell_k = (Attn - e_k)^T M (Attn - e_k) + sigma2 sum_n c_n a_n^2 / Z^2
          = sum_{n, m != k} Mt_nm x_n x_m / Z^2 + noise,     Mt_nm = M_nm - M_nk - M_km + M_kk

(``Attn - e_k = rho / Z`` with ``rho_n = x_n`` for ``n != k`` and ``rho_k = -sum_{n != k} x_n``;
``Mt = D^T M D`` with ``D = [e_n - e_k]`` is positive semi-definite, and ``M = I`` gives
``Mt = I + 1 1^T``: today's ``(R^2 + D) / Z^2``).  So the loss is a ratio of a quadratic form
without a constant term, which keeps small losses free of the cancellation ``M_kk - ...``.
Differentiating at fixed counts, ``d Attn_n / d theta_j = Attn_n (delta_nj - Attn_j)``::

    d ell_k / d theta[j, k] = 2 x_j / Z^3 [Z (Mt rho')_j - rho'^T Mt rho']      (j != k)
    d ell_k / d A_k         = -2 x_k rho'^T Mt rho' / Z^3                        (= -2 Attn_k ell_k)

(``rho'`` the ``x_n``, ``n != k``), plus the noise terms of :mod:`.quadrature`.

The expectation over counts uses the same two identities as :mod:`.quadrature` (Laplace
``1/Z^r = int t^(r-1) e^{-tZ} dt / (r-1)!`` and the multinomial generating function) with the
tilted factorial moments ``P_J = N_(J) phi^(N-J)``::

    E[c_n a_n e^{-tZ}]                 = b_n P_1
    E[c_n c_m a_n a_m e^{-tZ}]         = b_n b_m P_2 + [n = m] a_n b_n P_1
    E[c_j c_n c_m a_j a_n a_m e^{-tZ}] = b_j b_n b_m P_3 + ([j = n] a_j b_j b_m + [j = m] a_j b_j b_n
                                         + [n = m] a_n b_n b_j) P_2 + [j = n = m] a_j^2 b_j P_1

with ``b_n = p_n a_n e^{-t a_n}``.  In ``x = log t``, with ``u_n = t a_n``, ``q_n = p_n e^{-u_n}``,
``beta_n = u_n q_n`` and ``gamma_n = u_n beta_n``, the integrands are (order r = power of t)::

    E[ell_k]       : P_2 beta'^T Mt beta' + P_1 sum_{n != k} Mt_nn gamma_n  + sigma2 P_1 sum_n gamma_n    (r = 2)
    E[Attn_n]      : P_1 beta_n                                                                      (r = 1)
    grad_j, j != k : P_3 beta_j [S (Mt beta')_j - beta'^T Mt beta']
                     + P_2 [u_j beta_j (S Mt_jj - (Mt beta')_j) + beta_j ((Mt gamma')_j - T)]         (r = 3)
    grad_k         : -P_3 beta_k beta'^T Mt beta' - P_2 beta_k T                                     (r = 3)
    noise, all j   : sigma2 [2 P_1 u_j^2 q_j (r = 2) - P_2 beta_j sum_n gamma_n - P_1 u_j gamma_j (r = 3)]

(``S = sum_n beta_n``, ``T = sum_{n != k} Mt_nn gamma_n``, primes: ``n != k``).  Each is a sum
over ``K^2`` pairs per node, so a column costs O(K^2 x nodes) and the whole gradient
O(K^3 x nodes), still independent of ``N``.

Why not the sympy derivation (:mod:`derivations.huang2024`): its premise is that every
integrand is a polynomial with *positive* coefficients summed over symmetry classes by power
sums; ``Mt`` has entries of either sign and couples every pair of features, so the new terms are
quadratic forms in ``Mt`` that no class-wise power sum expresses.  They follow from the three
moment identities above in a few lines of linear algebra per node, which the brute-force and
50-digit oracles check (``tests/huang2024/test_general_m.py``).  Accuracy: each fixed-sign
quantity (``L_k``, ``E[Attn_n]``) to about 1e-14 relative; a gradient entry to about 1e-14 of the
magnitude of its terms (the bracket ``S (Mt beta')_j - beta'^T Mt beta'`` has mixed sign).

The node grid, the left-tail power series, ``log phi`` by ``log1p`` and the right cut
``x_hi = log(LCUT / N) + spread`` are those of :mod:`.quadrature` (no adaptive cut: every node up
to ``x_hi`` is summed, where ``t Z >= LCUT`` for every count vector).
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from dynamics.core.jit import jit
from dynamics.models.huang2024.quadrature import (ANCHOR, DEFAULT_H, DELTA, LCUT, TAIL_TERMS, general_work, log_phi,
                                                  scaled_power, snap_step, tail_weights)

PARALLEL_MIN_WORK = 2e7
"""Estimated K^3 x nodes below which :func:`general_m_kernel` runs its columns on one thread."""
_LOG2 = math.log(2.0)


@jit
def reduced_matrix(M, k, Mt):
    """``Mt_nm = M_nm - M_nk - M_km + M_kk`` (row and column ``k`` set to 0): the label covariance of
    ``Attn - e_k`` in the coordinates ``n != k`` (positive semi-definite when ``M`` is)."""
    K = M.shape[0]
    for n in range(K):
        for m in range(K):
            if n == k or m == k:
                Mt[n, m] = 0.0
            else:
                Mt[n, m] = (M[n, m] - M[n, k]) - (M[k, m] - M[k, k])


@jit
def m_column(col, p, Mt, k, N, sigma2, h, wt, grad, attn, work):
    """Exact ``E[ell_k]``, ``E[d ell_k / d theta[:, k]]`` and ``E[Attn_n]`` for one query feature.

    Parameters
    ----------
    col : float64 array (K,)
        ``theta[:, k]`` (``A_k = col[k]``, ``B_{k,n} = col[n]``).
    p : float64 array (K,)
        Feature probabilities (renormalised over the features with ``p > 0``).
    Mt : float64 array (K, K)
        :func:`reduced_matrix` of the label covariance ``M`` for this ``k``.
    k : int
        The query feature.
    N, sigma2, h, wt
        Prompt length, label-noise variance, trapezoid step and ``tail_weights(h)``.
    grad, attn : float64 arrays (K,), written
        ``E[d ell_k / d theta[n, k]]`` (not yet times ``p_k / 2``) and ``E[Attn_n]``.
    work : float64 array (11, K)
        Scratch.

    Returns
    -------
    float
        ``E[ell_k] = 2 L_k``.
    """
    K = col.shape[0]
    pn = work[0]
    a = work[1]
    dd = work[2]
    u = work[3]
    q = work[4]
    beta = work[5]
    gam = work[6]
    mb = work[7]
    mg = work[8]
    acc_g = work[9]
    acc_a = work[10]
    total = 0.0
    thmax = -np.inf
    thmin = np.inf
    for n in range(K):
        if p[n] > 0.0:
            total += p[n]
            thmax = max(thmax, col[n])
            thmin = min(thmin, col[n])
    for n in range(K):
        pn[n] = p[n] / total if p[n] > 0.0 else 0.0
        dd[n] = col[n] - thmax
        a[n] = math.exp(dd[n]) if dd[n] > -700.0 else 0.0
        acc_g[n] = 0.0
        acc_a[n] = 0.0
    h = snap_step(h)
    x_lo = math.log(DELTA / N)
    t_lo = math.exp(x_lo)
    x_hi = math.log(LCUT / N) + (thmax - thmin)
    nodes = int(math.ceil((x_hi - x_lo) / h)) + 1
    N2 = N * (N - 1.0)
    N3 = N2 * (N - 2.0)
    acc_l = 0.0
    acc_noise = 0.0
    t_anchor = 1.0
    anchor = 0.0
    for j in range(nodes):
        i_in = j % ANCHOR
        if i_in == 0:
            anchor = j * h
            t_anchor = t_lo * math.exp(anchor) if anchor < 700.0 else math.exp(min(x_lo + anchor, 709.0))
        t = t_anchor * wt[4, i_in]
        if j < TAIL_TERMS:
            w1, w2, w3 = h + wt[0, j], h + wt[1, j], h + wt[2, j]
        else:
            w1 = w2 = w3 = h
        U = 0.0
        phi = 0.0
        S = 0.0
        Gam = 0.0
        for n in range(K):
            if pn[n] == 0.0:
                u[n] = 0.0
                q[n] = 0.0
                beta[n] = 0.0
                gam[n] = 0.0
                continue
            un = a[n] * t if a[n] > 0.0 else math.exp(min(dd[n] + (x_lo + j * h), 6.7))
            if not un < 800.0:
                un = 800.0
            if un < _LOG2:
                em = math.expm1(-un)
                e = 1.0 + em
                wv = -em
            else:
                e = math.exp(-un)
                wv = 1.0 - e
            U += pn[n] * wv
            phi += pn[n] * e
            u[n] = un
            q[n] = pn[n] * e
            beta[n] = un * q[n]
            gam[n] = un * beta[n]
            S += beta[n]
            Gam += gam[n]
        if not phi > 0.0:
            break
        lp = log_phi(U, phi)
        P1 = scaled_power((N - 1.0) * lp, N)
        if P1 == 0.0:
            break  # every later node is smaller still
        P2 = scaled_power((N - 2.0) * lp, N2) if N >= 2.0 else 0.0
        P3 = scaled_power((N - 3.0) * lp, N3) if N >= 3.0 else 0.0
        Qt = 0.0
        Tt = 0.0
        for n in range(K):
            sb = 0.0
            sg = 0.0
            for m in range(K):
                sb += Mt[n, m] * beta[m]
                sg += Mt[n, m] * gam[m]
            mb[n] = sb
            mg[n] = sg
            Qt += beta[n] * sb
            Tt += Mt[n, n] * gam[n]
        acc_l += w2 * (P2 * Qt + P1 * Tt)
        acc_noise += w2 * (P1 * Gam)
        for n in range(K):
            acc_a[n] += w1 * (P1 * beta[n])
            if n == k:
                g3 = -(P3 * beta[n] * Qt + P2 * beta[n] * Tt)
            else:
                g3 = (P3 * beta[n] * (S * mb[n] - Qt)
                      + P2 * (u[n] * beta[n] * (S * Mt[n, n] - mb[n]) + beta[n] * (mg[n] - Tt)))
            if sigma2 > 0.0:
                acc_g[n] += w3 * (g3 - sigma2 * (P2 * beta[n] * Gam + P1 * u[n] * gam[n])) \
                    + w2 * (sigma2 * 2.0 * P1 * u[n] * u[n] * q[n])
            else:
                acc_g[n] += w3 * g3
    for n in range(K):
        grad[n] = acc_g[n] if N >= 2.0 else 0.0  # one token: Attn = e_n whatever theta, the gradient is exactly 0
        attn[n] = acc_a[n]
    return acc_l + sigma2 * acc_noise


@jit
def _m_col_full(theta, p, M, N, sigma2, h, wt, k, grad, L_k, attn):
    K = theta.shape[0]
    Mt = np.empty((K, K))
    reduced_matrix(M, k, Mt)
    col = np.ascontiguousarray(theta[:, k])
    g = np.empty(K)
    at = np.empty(K)
    work = np.empty((11, K))
    ell = m_column(col, p, Mt, k, N, sigma2, h, wt, g, at, work)
    L_k[k] = 0.5 * ell
    for n in range(K):
        grad[n, k] = 0.5 * p[k] * g[n]
        attn[n, k] = at[n]


@jit
def _m_serial(theta, p, M, N, sigma2, h, grad, L_k, attn):
    wt = tail_weights(h)
    for k in range(theta.shape[0]):
        _m_col_full(theta, p, M, N, sigma2, h, wt, k, grad, L_k, attn)


@jit(parallel=True)
def _m_parallel(theta, p, M, N, sigma2, h, grad, L_k, attn):
    wt = tail_weights(h)
    for k in prange(theta.shape[0]):
        _m_col_full(theta, p, M, N, sigma2, h, wt, k, grad, L_k, attn)


@jit
def general_m_work(theta):
    """K^3 x estimated nodes (decides serial or parallel): :func:`.quadrature.general_work` times K."""
    return general_work(theta) * theta.shape[0]


@jit
def general_m_kernel(theta, p, M, N, sigma2, h, grad, L_k, attn):
    """Fill ``grad = dL/dtheta`` (K, K), ``L_k`` (K,) and ``attn[n, k] = E[Attn_n | x_q = v_k]``
    for the label covariance ``M`` (columns on all threads from :data:`PARALLEL_MIN_WORK` on)."""
    if general_m_work(theta) >= PARALLEL_MIN_WORK:
        _m_parallel(theta, p, M, N, sigma2, h, grad, L_k, attn)
    else:
        _m_serial(theta, p, M, N, sigma2, h, grad, L_k, attn)


def column_loss_grad(col, p, M, k, N, sigma2=0.0, h=DEFAULT_H):
    """``(L_k, dL_k / dtheta[:, k])`` of one query feature ``k`` for the label covariance ``M``.

    ``col`` (K,) is ``theta[:, k]``; ``p`` may put probability 0 on features (``p_k = 0`` gives
    ``L_k`` conditioned on ``c_k = 0``, :func:`.theory.optimum_general`).  Inputs are trusted
    (the callers validated them once).
    """
    col = np.ascontiguousarray(col, dtype=np.float64)
    K = col.shape[0]
    Mt = np.empty((K, K))
    reduced_matrix(np.ascontiguousarray(M, dtype=np.float64), int(k), Mt)
    g = np.empty(K)
    at = np.empty(K)
    ell = m_column(col, np.ascontiguousarray(p, dtype=np.float64), Mt, int(k), float(N), float(sigma2), float(h),
                   tail_weights(h), g, at, np.empty((11, K)))
    return 0.5 * ell, 0.5 * g
