"""Exact expectation over the multinomial counts by a 1-D quadrature (MODEL.md section 3).

For one query feature ``k`` (one column ``theta[:, k]`` of the paper's bilinear attention
weights, ``A_k = theta[k, k]``, ``B_{k,n} = theta[n, k]``) the column is given on *symmetry
classes*: class ``g`` holds ``mult[g]`` features, each with probability ``p[g]`` and
coordinate ``theta[g]``; the query's own feature is the class ``own`` (``mult[own] = 1``).
Every-feature-its-own-class (``mult = 1``) is the general case.

The integrals ``int dx f(x)`` over ``x = log t`` of the generated integrands
(:mod:`dynamics._kernels`) are taken by the trapezoid rule with step ``h`` on
``[x_lo, x_hi]``:

* ``x_lo = log(DELTA / N)``: below it ``N t max(a) <= DELTA`` and the part of order ``r``
  of the integrand is ``A e^{r x} + B e^{(r+1) x} + O(DELTA^2)`` relative; ``A`` and ``B`` are
  fitted to the first two nodes and the tail is summed in closed form (modified weights of
  nodes 0 and 1), leaving an error ``O(DELTA^(r+2)) = 1e-15`` at ``DELTA = 1e-5``.
* ``x_hi = log(LCUT / N) + (max theta - min theta)``: above it ``t Z >= t N min(a) >= LCUT``
  for every count vector, and each part is below ``(tZ)^3 e^{-tZ}``; the tail beyond is
  ``< Gamma(3, LCUT) ~ 3e-18``.  This covers both scales of MODEL.md section 3: ``1/(N max a)``
  and ``1/(N min a)`` (features absent from the prompt).
* The integrand is analytic in the strip ``|Im x| < pi/2``, so the trapezoid error decays like
  ``exp(-2 pi d / h)``; ``h = DEFAULT_H`` gives about 1e-14 against brute-force enumeration
  (see ``tests/test_exact.py`` and ``benchmarks/bench_quadrature.py``).

``phi^(N-j)`` is computed as ``exp((N-j) log phi)`` with ``log phi = log1p(-U)``,
``U = sum_n p_n (1 - e^{-u_n})`` while ``U < 1/2`` (MODEL.md section 3), so N up to 1e9 and
beyond keeps full precision.  Cost: O(classes x nodes) per column, independent of N.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from dynamics import _kernels as kern
from dynamics._numba import jit

DEFAULT_H = 0.2
"""Default trapezoid step in ``x = log t``."""
DELTA = 1e-5
"""Left cut: ``N t max(a) = DELTA`` at ``x_lo``."""
LCUT = 48.0
"""Right cut: ``t N min(a) = LCUT`` at ``x_hi``."""
MAX_SPREAD = 1e4
"""Largest ``max theta - min theta`` within a column (the node count grows like spread / h)."""


@jit
def _phi_power(logphi, e):
    """``phi^e`` as ``exp(e log phi)``; ``phi^0 = 1`` even where ``phi`` underflows to 0."""
    if e == 0.0:
        return 1.0
    return math.exp(e * logphi)


@jit
def column_expectations(theta, p, mult, own, N, sigma2, h, grad_out, attn_out):
    """Exact expectations for one query feature ``k`` (MODEL.md sections 2-3).

    Parameters
    ----------
    theta, p, mult : float64 arrays (G,)
        Class coordinates ``theta[n, k]`` (``A_k`` for ``own``, ``B_{k,n}`` otherwise),
        per-feature probabilities ``p_n`` and class sizes ``m_g``.
    own : int
        Index of the query's own class (``mult[own]`` must be 1).
    N : float
        Prompt length; ``sigma2`` label-noise variance; ``h`` trapezoid step.
    grad_out, attn_out : float64 arrays (G,), written
        ``E[d ell_k / d theta[n, k]]`` and ``E[Attn_n]`` for one member ``n`` of each class
        (0 for empty classes).

    Returns
    -------
    float
        ``E[ell_k] = 2 L_k`` (the paper's per-feature prediction error, times two).
    """
    G = theta.shape[0]
    thmax = -np.inf
    thmin = np.inf
    for g in range(G):
        if mult[g] > 0:
            if theta[g] > thmax:
                thmax = theta[g]
            if p[g] > 0 and theta[g] < thmin:
                thmin = theta[g]
    if not (thmax - thmin <= MAX_SPREAD):
        for g in range(G):
            grad_out[g] = np.nan
            attn_out[g] = np.nan
        return np.nan  # reported by the callers as a non-finite result
    x_lo = math.log(DELTA / N)
    x_hi = math.log(LCUT / N) + (thmax - thmin)
    nodes = int(math.ceil((x_hi - x_lo) / h)) + 1
    # u_g at node j is exp(lo[g] + j h) = exp(lo[g]) * e^{j h}: no exp per class and node, except
    # where exp(lo[g]) would underflow (spreads of more than ~700).
    lo = np.empty(G)
    u0 = np.empty(G)
    for g in range(G):
        lo[g] = x_lo + theta[g] - thmax
        u0[g] = math.exp(lo[g]) if lo[g] > -700.0 else 0.0
    eh = math.exp(h)
    ej = 1.0
    u = np.empty(G)
    q = np.empty(G)
    acc_grad = np.zeros(G)
    acc_attn = np.zeros(G)
    acc_loss = 0.0
    # Node weights: h everywhere, except the first two nodes, which also carry the closed-form
    # sum of the left tail (nodes j < 0).  There the part of order r is
    # g(x) = A e^{r x} + B e^{(r+1) x} + O(e^{(r+2) x}); A and B are fitted to nodes 0 and 1.
    w0 = np.empty(3)
    w1 = np.empty(3)
    for r in range(1, 4):
        al = 1.0 / (1.0 - math.exp(-r * h))
        be = 1.0 / (1.0 - math.exp(-(r + 1) * h))
        er, er1 = math.exp(r * h), math.exp((r + 1) * h)
        w0[r - 1] = h * (al - (be - al) * er / (er1 - er))
        w1[r - 1] = h + h * (be - al) / (er1 - er)
    for j in range(nodes):
        if j == 0:
            wa, wb, wc = w0[0], w0[1], w0[2]
        elif j == 1:
            wa, wb, wc = w1[0], w1[1], w1[2]
        else:
            wa = wb = wc = h
        if j % 32 == 0:
            ej = math.exp(j * h)  # refreshed exactly: the products below drift by < 32 ulp
        else:
            ej *= eh
        U = 0.0
        phi = 0.0
        T21 = 0.0
        T22 = 0.0
        for g in range(G):
            if mult[g] <= 0:
                u[g] = 0.0
                q[g] = 0.0
                continue
            # Beyond u = 800, q = p e^{-u} underflows to exactly 0 and every term carrying u_g
            # also carries q_g: clamping keeps u^3 finite (no inf * 0) and changes no value.
            ug = u0[g] * ej if u0[g] > 0.0 else math.exp(min(lo[g] + j * h, 6.7))
            if not ug < 800.0:
                ug = 800.0
            em = math.expm1(-ug)
            qg = p[g] * (1.0 + em)
            u[g] = ug
            q[g] = qg
            U -= mult[g] * p[g] * em
            phi += mult[g] * qg
            uuq = mult[g] * ug * ug * qg
            T21 += uuq
            T22 += uuq * qg
        if phi <= 0.0:
            break  # phi only decreases with x: every later node is exactly zero
        logphi = math.log1p(-U) if U < 0.5 else math.log(phi)
        # P_j = N_(j) phi^(N-j) from the one power phi^(N-3) (or the exact low-N forms).
        if N >= 3.0:
            b = math.exp((N - 3.0) * logphi)
            P3 = N * (N - 1.0) * (N - 2.0) * b
            P2 = N * (N - 1.0) * b * phi
            P1 = N * b * phi * phi
        elif N == 2.0:
            P3 = 0.0
            P2 = 2.0
            P1 = 2.0 * phi
        else:
            P3 = 0.0
            P2 = 0.0
            P1 = 1.0
        uk = u[own]
        qk = q[own]
        a1, a2, a3 = kern.loss(uk, qk, 0.0, 0.0, P1, P2, P3, T21, T22, sigma2)
        acc_loss += wa * a1 + wb * a2 + wc * a3
        for g in range(G):
            if mult[g] <= 0:
                continue
            if g == own:
                b1, b2, b3 = kern.grad_own(uk, qk, 0.0, 0.0, P1, P2, P3, T21, T22, sigma2)
                c1, c2, c3 = kern.attn(uk, qk, 0.0, 0.0, P1, P2, P3, T21, T22, sigma2)
            else:
                b1, b2, b3 = kern.grad_other(uk, qk, u[g], q[g], P1, P2, P3, T21, T22, sigma2)
                c1, c2, c3 = kern.attn_other(uk, qk, u[g], q[g], P1, P2, P3, T21, T22, sigma2)
            acc_grad[g] += wa * b1 + wb * b2 + wc * b3
            acc_attn[g] += wa * c1 + wb * c2 + wc * c3
    for g in range(G):
        grad_out[g] = acc_grad[g]
        attn_out[g] = acc_attn[g]
    return kern.LOSS_CONSTANT + acc_loss


@jit(parallel=True)
def general_kernel(theta, p, N, sigma2, h, grad, L_k, attn):
    """Every feature its own class: fill ``grad = dL/dtheta``, ``L_k`` and ``attn[n, k] = E[Attn_n | x_q = v_k]``.

    Columns (query features) are independent (MODEL.md section 2) and run in parallel.
    """
    K = theta.shape[0]
    mult = np.ones(K)
    for k in prange(K):
        col = np.ascontiguousarray(theta[:, k])
        g = np.empty(K)
        a = np.empty(K)
        ell = column_expectations(col, p, mult, k, N, sigma2, h, g, a)
        L_k[k] = 0.5 * ell
        for n in range(K):
            grad[n, k] = 0.5 * p[k] * g[n]
            attn[n, k] = a[n]


@jit
def reduced_kernel(coords, p_col, m_col, N, sigma2, h, grad, L_f, attn):
    """Symmetry classes: one column per query class ``f`` (``coords[f, 0] = A``, ``coords[f, 1+g] = B``).

    Writes ``grad[f, j] = dL/dtheta`` for one member of column class ``j``, ``L_f`` the
    per-feature prediction error of a query of class ``f`` and ``attn[f, j] = E[Attn]`` of one
    member; returns nothing.  ``p_col[f, j]`` and ``m_col[f, j]`` are the column classes'
    per-feature probabilities and sizes (see :class:`dynamics.classes.ClassStructure`).
    """
    F = coords.shape[0]
    for f in range(F):
        ell = column_expectations(coords[f], p_col[f], m_col[f], 0, N, sigma2, h, grad[f], attn[f])
        L_f[f] = 0.5 * ell
        for j in range(coords.shape[1]):
            grad[f, j] *= 0.5 * p_col[f, 0]
