"""Jacobian of the exact class-reduced gradient with respect to the reduced coordinates.

For the gradient flow ``d coords / dt = -grad(coords)`` on reduced coordinates (MODEL.md
section 2) an implicit integrator wants ``d grad[f, j] / d coords[f', i]``.  Columns are
independent (``grad[f]`` depends on ``coords[f]`` only), so the Jacobian is block diagonal: one
``(F + 1) x (F + 1)`` block per query class ``f``.  With ``g_n = d ell_k / d theta[n, k]`` and a
coordinate ``i`` that moves every member of column class ``i`` together,

    d E[g_m] / d coords_i = sum_{n in class i} E[d^2 ell_k / d theta[m, k] d theta[n, k]],

whose per-prompt second derivatives (``kk``, ``km``, ``mm``, ``ml`` for two distinct features
``m, l != k``) the sympy derivation (:mod:`derivations.huang2024`, ``jacobian_quantities``) turns
into positive and negative integrands of order 4, integrated like the gradient
(:mod:`dynamics.models.huang2024.quadrature`): each part to ~1e-13 relative, so each entry to
~1e-13 of the sum of its parts' magnitudes.  The sums over the features outside ``{k, m, l}`` are
formed class by class (no subtraction), at a cost of O(classes^3) per node: meant for the
class-reduced problem (a handful of classes), not for K x K.

The integration runs over the whole range ``[x_lo, x_hi]`` of the quadrature module (no adaptive
cut; its bound is relative, see there), stopping only where every moment underflows.
"""
from __future__ import annotations

import math

import numpy as np

from dynamics.core.jit import jit
from dynamics.models.huang2024 import _kernels as kern
from dynamics.models.huang2024.quadrature import (ANCHOR, DELTA, LCUT, MAX_SPREAD, TAIL_TERMS, U_FLUSH, log_phi,
                                                  occurring_range, scaled_power, snap_step)

assert kern.JAC_ORDER == 4 and kern.JAC_SUMS == ((1, 1), (2, 1), (2, 2), (3, 1), (3, 2))
_LOG2 = math.log(2.0)


@jit
def _excluded_sums(T, mult, own, g1, g2, out):
    """``out[s] = sum over the classes g != own of (m_g - [g == g1] - [g == g2]) T[s, g]`` (pass -1
    for no exclusion): the power sums over the features outside ``{k, m, l}``, each a sum of
    non-negative terms."""
    for s in range(out.shape[0]):
        out[s] = 0.0
    for g in range(T.shape[1]):
        if g == own:
            continue
        cnt = mult[g] - (1.0 if g == g1 else 0.0) - (1.0 if g == g2 else 0.0)
        if cnt > 0.0:
            for s in range(out.shape[0]):
                out[s] += cnt * T[s, g]


@jit
def column_jacobian(theta, p, mult, own, N, sigma2, h, wt, jac_pos, jac_neg):
    """``jac_pos[j, i] - jac_neg[j, i] = d E[d ell_k / d theta[m_j, k]] / d coordinate i`` for one column.

    Arguments as :func:`dynamics.models.huang2024.quadrature.column_terms` (``wt`` from
    ``tail_weights(h)``, which has the order-4 row); ``m_j`` is one member of class ``j``
    (``k`` itself for ``j = own``) and coordinate ``i`` moves every member of class ``i``.
    Both parts are >= 0; rows and columns of empty classes are 0.
    """
    G = theta.shape[0]
    jac_pos[:, :] = 0.0
    jac_neg[:, :] = 0.0
    total, thmax, thmin = occurring_range(theta, p, mult)
    if not (thmax - thmin <= MAX_SPREAD) or not (total > 0.0):
        jac_pos[:, :] = np.nan
        jac_neg[:, :] = np.nan
        return
    if N < 2.0:
        return  # one token: every gradient is 0 whatever theta
    h = snap_step(h)  # the step of wt = tail_weights(h); nodes exactly uniform as in the quadrature
    x_lo = math.log(DELTA / N)
    t_lo = math.exp(x_lo)
    pn = np.empty(G)
    dlt = np.empty(G)
    av = np.empty(G)
    live = np.empty(G, dtype=np.bool_)
    for g in range(G):
        pn[g] = p[g] / total if mult[g] > 0 else 0.0
        dlt[g] = theta[g] - thmax + x_lo  # only where exp(theta - max) underflows (spreads > 700)
        av[g] = math.exp(theta[g] - thmax) if theta[g] - thmax > -700.0 else 0.0
        live[g] = mult[g] > 0 and pn[g] > 0.0
    nsum = 5
    u = np.zeros(G)
    q = np.zeros(G)
    T = np.zeros((nsum, G))
    S = np.empty(nsum)
    acc_p = np.zeros((G, G))
    acc_n = np.zeros((G, G))
    N4 = N * (N - 1.0) * (N - 2.0) * (N - 3.0)
    x_hi = math.log(LCUT / N) + (thmax - thmin)
    nodes = int(math.ceil((x_hi - x_lo) / h)) + 1
    t_anchor = 1.0
    anchor = 0.0
    for j in range(nodes):
        i_in = j % ANCHOR
        if i_in == 0:
            anchor = j * h
            t_anchor = t_lo * math.exp(anchor) if anchor < 700.0 else math.exp(min(x_lo + anchor, 709.0))
        t = t_anchor * wt[4, i_in]
        w4 = h + wt[3, j] if j < TAIL_TERMS else h
        U = 0.0
        phi = 0.0
        for g in range(G):
            if not live[g]:
                continue
            ug = min(av[g] * t if av[g] > 0.0 else math.exp(min(dlt[g] + (anchor + i_in * h), 6.7)), 800.0)
            if ug > U_FLUSH:  # as in the quadrature: prompts with c_g >= 1 are done
                eg = 0.0
                wg = 1.0
            elif ug < _LOG2:
                em = math.expm1(-ug)
                eg = 1.0 + em
                wg = -em
            else:
                eg = math.exp(-ug)
                wg = 1.0 - eg
            u[g] = ug
            q[g] = pn[g] * eg
            U += mult[g] * pn[g] * wg
            phi += mult[g] * q[g]
            uq = ug * q[g]
            T[0, g] = uq
            T[1, g] = ug * uq
            T[2, g] = ug * uq * q[g]
            T[3, g] = ug * ug * uq
            T[4, g] = ug * ug * uq * q[g]
        if not phi > 0.0:
            break
        lphi = log_phi(U, phi)
        if N >= 4.0:
            P4 = scaled_power((N - 4.0) * lphi, N4)
            P3 = P4 * phi / (N - 3.0)
            P2 = P3 * phi / (N - 2.0)
            if P4 == 0.0:
                break  # P4 >= P3 >= P2 here, and all decrease with x
        elif N == 3.0:
            P4, P3, P2 = 0.0, 6.0, 6.0 * phi
        else:
            P4, P3, P2 = 0.0, 0.0, 2.0
        uk = u[own]
        qk = q[own]
        _excluded_sums(T, mult, own, -1, -1, S)
        a, b = kern.jac_kk(uk, qk, S[0], S[1], S[2], S[3], S[4], P2, P3, P4, sigma2)
        acc_p[own, own] += w4 * a
        acc_n[own, own] += w4 * b
        for gm in range(G):
            if gm == own or not live[gm]:
                continue
            um, qm = u[gm], q[gm]
            _excluded_sums(T, mult, own, gm, -1, S)
            a, b = kern.jac_km(uk, qk, um, qm, S[0], S[1], S[2], S[3], S[4], P2, P3, P4, sigma2)
            acc_p[own, gm] += w4 * mult[gm] * a  # d g_k / d coordinate gm: every member of gm
            acc_n[own, gm] += w4 * mult[gm] * b
            acc_p[gm, own] += w4 * a  # d g_m / d A_k
            acc_n[gm, own] += w4 * b
            a, b = kern.jac_mm(uk, qk, um, qm, S[0], S[1], S[2], S[3], S[4], P2, P3, P4, sigma2)
            acc_p[gm, gm] += w4 * a
            acc_n[gm, gm] += w4 * b
            for gl in range(G):
                cnt = mult[gl] - (1.0 if gl == gm else 0.0)  # the other members l of class gl
                if gl == own or not live[gl] or cnt <= 0.0:
                    continue
                _excluded_sums(T, mult, own, gm, gl, S)
                a, b = kern.jac_ml(uk, qk, um, qm, u[gl], q[gl], S[0], S[1], S[2], S[3], S[4], P2, P3, P4, sigma2)
                acc_p[gm, gl] += w4 * cnt * a
                acc_n[gm, gl] += w4 * cnt * b
    for r in range(G):
        for c in range(G):
            jac_pos[r, c] = acc_p[r, c]
            jac_neg[r, c] = acc_n[r, c]


@jit
def reduced_jacobian(coords, p_col, m_col, N, sigma2, h, wt, jac_pos, jac_neg):
    """Blocks ``jac[f] = d grad[f, :] / d coords[f, :]`` of the class-reduced gradient, in parts.

    ``coords``, ``p_col``, ``m_col``, ``N``, ``sigma2``, ``h``, ``wt`` as for
    :func:`dynamics.models.huang2024.quadrature.reduced_kernel`; writes ``jac_pos``, ``jac_neg``
    of shape ``(F, F + 1, F + 1)`` (both >= 0; the Jacobian is ``jac_pos - jac_neg``, scaled
    like ``grad`` by ``p_f / 2``).  ``grad[f]`` does not depend on ``coords[f']`` for ``f' != f``.
    """
    F, J = coords.shape
    for f in range(F):
        column_jacobian(coords[f], p_col[f], m_col[f], 0, N, sigma2, h, wt, jac_pos[f], jac_neg[f])
        for r in range(J):
            for c in range(J):
                jac_pos[f, r, c] *= 0.5 * p_col[f, 0]
                jac_neg[f, r, c] *= 0.5 * p_col[f, 0]
