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
  of the integrand is ``C e^{r x} (1 + O(N t max a))``; its tail is summed in closed form
  (the node weight ``h / (1 - e^{-r h})`` at ``x_lo``), leaving an error ``O(DELTA^(r+1))``.
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
DELTA = 1e-8
"""Left cut: ``N t max(a) = DELTA`` at ``x_lo``."""
LCUT = 48.0
"""Right cut: ``t N min(a) = LCUT`` at ``x_hi``."""


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
    x_lo = math.log(DELTA / N)
    x_hi = math.log(LCUT / N) + (thmax - thmin)
    nodes = int(math.ceil((x_hi - x_lo) / h)) + 1
    u = np.empty(G)
    q = np.empty(G)
    acc_grad = np.zeros(G)
    acc_attn = np.zeros(G)
    acc_loss = 0.0
    w_first = np.empty(3)
    for r in range(3):
        w_first[r] = h / (1.0 - math.exp(-(r + 1) * h))
    for j in range(nodes):
        x = x_lo + j * h
        if j == 0:
            w1, w2, w3 = w_first[0], w_first[1], w_first[2]
        else:
            w1 = w2 = w3 = h
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
            ug = math.exp(min(x + theta[g] - thmax, 6.7))
            em = math.expm1(-ug)
            qg = p[g] * (1.0 + em)
            u[g] = ug
            q[g] = qg
            U -= mult[g] * p[g] * em
            phi += mult[g] * qg
            T21 += mult[g] * ug * ug * qg
            T22 += mult[g] * ug * ug * qg * qg
        if phi <= 0.0:
            break  # phi only decreases with x: every later node is exactly zero
        logphi = math.log1p(-U) if U < 0.5 else math.log(phi)
        P1 = N * _phi_power(logphi, N - 1.0)
        P2 = N * (N - 1.0) * _phi_power(logphi, N - 2.0) if N >= 2.0 else 0.0
        P3 = N * (N - 1.0) * (N - 2.0) * _phi_power(logphi, N - 3.0) if N >= 3.0 else 0.0
        uk = u[own]
        qk = q[own]
        a1, a2, a3 = kern.loss(uk, qk, 0.0, 0.0, P1, P2, P3, T21, T22, sigma2)
        acc_loss += w1 * a1 + w2 * a2 + w3 * a3
        for g in range(G):
            if mult[g] <= 0:
                continue
            if g == own:
                b1, b2, b3 = kern.grad_own(uk, qk, 0.0, 0.0, P1, P2, P3, T21, T22, sigma2)
                c1, c2, c3 = kern.attn(uk, qk, 0.0, 0.0, P1, P2, P3, T21, T22, sigma2)
            else:
                b1, b2, b3 = kern.grad_other(uk, qk, u[g], q[g], P1, P2, P3, T21, T22, sigma2)
                c1, c2, c3 = kern.attn_other(uk, qk, u[g], q[g], P1, P2, P3, T21, T22, sigma2)
            acc_grad[g] += w1 * b1 + w2 * b2 + w3 * b3
            acc_attn[g] += w1 * c1 + w2 * c2 + w3 * c3
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
