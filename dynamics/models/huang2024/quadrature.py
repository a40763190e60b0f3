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
  of the integrand is the power series ``sum_i c_i t^(r+i)`` (Taylor series of
  ``E[f e^{-tZ}]``); its first ``TAIL_TERMS`` terms are fitted to the first nodes and the
  trapezoid sum over the nodes below ``x_lo`` is added in closed form (:func:`tail_weights`),
  leaving a relative error ``O(DELTA^TAIL_TERMS) = 1e-12`` of a tail that is itself ``~DELTA``.
* ``x_hi = log(LCUT / N) + (max theta - min theta)``: above it ``t Z >= t N min(a) >= LCUT``
  for every count vector, and each part is below ``(tZ)^3 e^{-tZ}``; the tail beyond is
  ``< Gamma(3, LCUT) ~ 3e-18``.  This covers both scales of MODEL.md section 3: ``1/(N max a)``
  and ``1/(N min a)`` (features absent from the prompt).  An adaptive cut stops earlier once
  ``E[e^{-tZ/2}] = phi(t/2)^N`` proves the rest negligible (see the loop).
* The integrand is analytic in the strip ``|Im x| < pi/2``, so the trapezoid error decays like
  ``exp(-2 pi d / h)``; ``h = DEFAULT_H = 0.2`` gives about 1e-13 against brute-force
  enumeration (``tests/test_exact.py``); ``h = 0.3`` about 3e-11.

``phi^(N-j)`` is computed as ``exp((N-j) log phi)`` with ``log phi = log1p(-U)``,
``U = sum_n p_n (1 - e^{-u_n})`` while ``U < 1/2`` (MODEL.md section 3), so N up to 1e9 and
beyond keeps full precision.  Cost: O(classes x nodes) per column, independent of N.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from dynamics.models.huang2024 import _kernels as kern
from dynamics.core.jit import jit

DEFAULT_H = 0.2
"""Default trapezoid step in ``x = log t``."""
DELTA = 1e-3
"""Left cut: ``N t max(a) = DELTA`` at ``x_lo``."""
LCUT = 48.0
"""Right cut: ``t N min(a) = LCUT`` at ``x_hi``."""
TAIL_TERMS = 4
"""Number of powers of ``t`` fitted to the left tail."""
CUT_BOUND = 1e3
"""Bound on sum |coef| (2r/e)^r over the terms of any integrand (about 10 x 11 here)."""
CUT_TOL = 1e-18
"""What the adaptive right cut may leave out of any integral."""
MAX_SPREAD = 1e4
"""Largest ``max theta - min theta`` within a column (the node count grows like spread / h)."""


@jit
def _phi_power(logphi, e):
    """``phi^e`` as ``exp(e log phi)``; ``phi^0 = 1`` even where ``phi`` underflows to 0."""
    if e == 0.0:
        return 1.0
    return math.exp(e * logphi)


@jit
def tail_weights(h, k=TAIL_TERMS):
    """Extra weights ``w[r-1, j]`` (j < k) that add the trapezoid sum over the nodes ``j < 0``.

    Near ``x -> -inf`` the part of order ``r`` is ``g(x_j) = sum_{i<k} c_i z_i^j`` with
    ``z_i = e^{(r+i) h}`` (powers of ``t``: the Taylor series of ``E[f e^{-tZ}]``).  Solving the
    Vandermonde system on nodes ``0..k-1`` by Lagrange polynomials and summing the geometric
    tails ``sum_{j<0} z_i^j = 1 / (z_i - 1)`` gives weights linear in ``g_0..g_{k-1}``.
    """
    w = np.zeros((3, k))
    coef = np.empty(k)
    for r in range(1, 4):
        for i in range(k):
            zi = math.exp((r + i) * h)
            # coefficients of prod_{m != i} (z - z_m) / (z_i - z_m), lowest power first
            coef[:] = 0.0
            coef[0] = 1.0
            deg = 0
            den = 1.0
            for m in range(k):
                if m == i:
                    continue
                zm = math.exp((r + m) * h)
                den *= zi - zm
                deg += 1
                for d in range(deg, 0, -1):
                    coef[d] = coef[d - 1] - zm * coef[d]
                coef[0] = -zm * coef[0]
            rho = h / (zi - 1.0)
            for j in range(k):
                w[r - 1, j] += rho * coef[j] / den
    return w


@jit
def column_expectations(theta, p, mult, own, N, sigma2, h, wt, grad_out, attn_out):
    """Exact expectations for one query feature ``k`` (MODEL.md sections 2-3).

    Parameters
    ----------
    theta, p, mult : float64 arrays (G,)
        Class coordinates ``theta[n, k]`` (``A_k`` for ``own``, ``B_{k,n}`` otherwise),
        per-feature probabilities ``p_n`` and class sizes ``m_g``.
    own : int
        Index of the query's own class (``mult[own]`` must be 1).
    N : float
        Prompt length; ``sigma2`` label-noise variance; ``h`` trapezoid step;
        ``wt = tail_weights(h)`` the closed-form left-tail weights.
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
    hist = np.empty(64)
    lag = int(math.ceil(math.log(2.0) / h))
    u = np.empty(G)
    q = np.empty(G)
    acc_grad = np.zeros(G)
    acc_attn = np.zeros(G)
    acc_loss = 0.0
    # Node weights: h everywhere, plus, on the first TAIL_TERMS nodes, the closed-form sum of the
    # left tail (nodes j < 0): there the part of order r is sum_i c_i e^{(r+i) x} + O(DELTA^TAIL_TERMS)
    # relative, and the c_i are fitted to the first TAIL_TERMS nodes (see tail_weights(h), computed once by the caller: ``wt``).
    for j in range(nodes):
        if j < TAIL_TERMS:
            wa, wb, wc = h + wt[0, j], h + wt[1, j], h + wt[2, j]
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
            if ug < 1e-3:  # Taylor: the omitted u^5/120 is below 1e-17 relative, no libm call
                em = -ug * (1.0 - ug * (0.5 - ug * (1.0 / 6.0 - ug * (1.0 / 24.0))))
            else:
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
        if U < 1e-3:  # log1p(-U) by its series; the omitted U^6/6 is below 1e-18 relative
            logphi = -U * (1.0 + U * (0.5 + U * (1.0 / 3.0 + U * (0.25 + U * 0.2))))
        elif U < 0.5:
            logphi = math.log1p(-U)
        else:
            logphi = math.log(phi)
        # P_j = N_(j) phi^(N-j) from the one power phi^(N-3) (or the exact low-N forms).
        if N >= 3.0:
            b = math.exp((N - 3.0) * logphi)
            P3 = N * (N - 1.0) * (N - 2.0) * b
            P2 = N * (N - 1.0) * b * phi
            P1 = N * b * phi * phi
            phiN = b * phi * phi * phi
        elif N == 2.0:
            P3 = 0.0
            P2 = 2.0
            P1 = 2.0 * phi
            phiN = phi * phi
        else:
            P3 = 0.0
            P2 = 0.0
            P1 = 1.0
            phiN = phi
        # Adaptive right cut.  Every part is a sum of terms coef * t^r E[f(c) e^{-tZ}] with
        # |f| <= Z^r, and (tZ)^r e^{-tZ} <= (2r/e)^r e^{-tZ/2}, so the integrand at x and beyond
        # is below BOUND * E[e^{-tZ/2}] = BOUND * phi(t/2)^N <= BOUND * phiN at the node `lag`
        # steps back (x - lag h <= x - log 2); phi^N decreases in t, so once BOUND * phiN_lag
        # times the remaining length is negligible, so is the rest of the integral.
        hist[j % 64] = phiN
        if lag <= 63 and j >= lag:
            if CUT_BOUND * (1.0 + sigma2) * hist[(j - lag) % 64] * (x_hi - x_lo - (j - 1) * h) < CUT_TOL:
                break
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
    wt = tail_weights(h)
    for k in prange(K):
        col = np.ascontiguousarray(theta[:, k])
        g = np.empty(K)
        a = np.empty(K)
        ell = column_expectations(col, p, mult, k, N, sigma2, h, wt, g, a)
        L_k[k] = 0.5 * ell
        for n in range(K):
            grad[n, k] = 0.5 * p[k] * g[n]
            attn[n, k] = a[n]


@jit
def reduced_kernel(coords, p_col, m_col, N, sigma2, h, wt, grad, L_f, attn):
    """Symmetry classes: one column per query class ``f`` (``coords[f, 0] = A``, ``coords[f, 1+g] = B``).

    Writes ``grad[f, j] = dL/dtheta`` for one member of column class ``j``, ``L_f`` the
    per-feature prediction error of a query of class ``f`` and ``attn[f, j] = E[Attn]`` of one
    member; returns nothing.  ``wt = tail_weights(h)``.  ``p_col[f, j]`` and ``m_col[f, j]`` are the column classes'
    per-feature probabilities and sizes (see :class:`dynamics.classes.ClassStructure`).
    """
    F = coords.shape[0]
    for f in range(F):
        ell = column_expectations(coords[f], p_col[f], m_col[f], 0, N, sigma2, h, wt, grad[f], attn[f])
        L_f[f] = 0.5 * ell
        for j in range(coords.shape[1]):
            grad[f, j] *= 0.5 * p_col[f, 0]
