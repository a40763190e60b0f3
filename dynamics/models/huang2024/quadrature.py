"""Exact expectation over the multinomial counts by a 1-D quadrature (MODEL.md section 3),
with every integrand a sum of same-signed pieces (relative accuracy at every magnitude).

For one query feature ``k`` (one column ``theta[:, k]`` of the paper's bilinear attention
weights, ``A_k = theta[k, k]``, ``B_{k,n} = theta[n, k]``) the column is given on *symmetry
classes*: class ``g`` holds ``mult[g]`` features, each with probability ``p[g]`` and
coordinate ``theta[g]``; the query's own feature is the class ``own`` (``mult[own] = 1``).
Every-feature-its-own-class (``mult = 1``) is the general case.

The integrands are generated from the sympy derivation :mod:`derivations.huang2024`
(:mod:`dynamics.models.huang2024._kernels`): each is a polynomial with positive coefficients in
non-negative node quantities, so nothing cancels.  Fixed-sign quantities (``L_k``, its parts
with the query feature present and absent, ``1 - E[Attn_k]``, ``E[Attn_n]``, the own-feature
gradient without noise) come out with a *relative* error of about 1e-13; a gradient entry of
mixed sign is returned as its positive and negative parts, each to that relative accuracy, so
its error is about 1e-13 of the sum of their magnitudes.  The probability ``(1 - p_k)^N`` that
the query's feature is absent enters as an exact term (``exp(N log1p(-p_k))``).

The integrals ``int dx f(x)`` over ``x = log t`` are taken by the trapezoid rule with step ``h``
on ``[x_lo, x_hi]``:

* ``x_lo = log(DELTA / N)``: below it ``t Z <= DELTA`` for every count vector, the part of order
  ``r`` of the integrand is the power series ``sum_i c_i t^(r+i)`` and is at most ``DELTA^r / r!``
  of its integral; its first ``TAIL_TERMS`` terms are fitted to the first nodes and the
  trapezoid sum over the nodes below ``x_lo`` is added in closed form (:func:`tail_weights`).
* ``x_hi = log(LCUT / N) + (max theta - min theta)``: beyond it ``t Z >= LCUT`` for every count
  vector, so the rest of each integral is below ``Gamma(3, LCUT) / 2 ~ 2e-18`` *of itself*.
  An adaptive cut stops earlier: the rest of every integral beyond ``t`` is below
  ``CUT_BOUND (1 + sigma2)`` times a tilted probability at ``t / 2`` (``E[1{support} e^{-tZ/2}]``,
  known in closed form), and the loop stops once that is below ``CUT_REL`` times the integral
  accumulated so far, for every quantity.  This covers every scale of MODEL.md section 3,
  including the event "a feature is absent from the prompt".  Beyond ``u_g = U_FLUSH`` a class's
  prompts (``c_g >= 1``) are dropped from the rest of the integrals (at most 2.5e-19 of each).
* Each integrand is a positive mixture, over count vectors, of ``(tZ)^r e^{-tZ}`` (``t = e^x``),
  whose Fourier transform is ``Gamma(r - i w) e^{i w log Z}``: by Poisson summation the trapezoid
  error relative to the integral is at most ``2 |Gamma(r + 2 pi i / h)| / Gamma(r)`` (plus
  smaller aliases), whatever the distribution of Z.  For the orders r = 1, 2, 3 used here that
  is 7e-19, 2e-17, 3e-16 at ``h = DEFAULT_H = 7/32`` (3e-15 for the Jacobian's r = 4); 5e-18 for r = 3 at h = 0.2, 6e-14 at
  h = 0.25, 3e-11 at h = 0.3.  The nodes are uniformly spaced to the last bit (``ANCHOR``).

``phi^(N-J)`` is ``exp((N-J) log phi)`` with ``log phi = log1p(-U)``, ``U = sum_n p_n (1 - e^{-u_n})``
(a sum of positive terms) while ``U < 1/2`` (MODEL.md section 3), so its relative error is about
``|N log phi| * 1e-16 <= 745 * 1e-16`` wherever it does not underflow, at any N.  ``p`` is
renormalised to sum to 1 (the validated input may be off by 1e-12).  Cost: O(classes x nodes)
per column, independent of N.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from dynamics.models.huang2024 import _kernels as kern
from dynamics.core.jit import jit

DEFAULT_H = 0.21875
"""Default trapezoid step in ``x = log t``, 7/32 (quadrature error below 3e-16 relative, see above)."""
STEP_BITS = 33
"""Significant bits of the step actually used (:func:`snap_step`)."""
ANCHOR = 32
"""Every ``ANCHOR`` nodes ``t = exp(x_lo) exp(j h)`` is recomputed exactly (``j h`` exact), in
between it is the anchor times the tabulated ``exp(i h)``: every node within ~2 ulp of the uniform
grid.  (Sums like ``x_lo + j h`` would misplace nodes by up to ulp(x) ~ 1e-13 at large spreads,
and the trapezoid weights would then be off by that over h.)"""
DELTA = 1e-3
"""Left cut: ``N t max(a) = DELTA`` at ``x_lo``."""
LCUT = 48.0
"""Right cut: ``t N min(a) = LCUT`` at ``x_hi``."""
TAIL_TERMS = 4
"""Number of powers of ``t`` fitted to the left tail."""
CUT_BOUND = 1e3
"""Bound on ``(per-prompt value) x max_y Gamma(r, y) e^{y/2} / (r-1)!`` for every quantity (< 20 here)."""
CUT_REL = 1e-17
"""What the adaptive right cut may leave out of any integral, relative to that integral."""
U_FLUSH = 50.0
"""Beyond ``u_g = t a_g = U_FLUSH`` the class's ``q_g = p_g e^{-u_g}`` is set to 0 (and
``1 - e^{-u_g}`` to 1): consistently in every moment, this drops the prompts with ``c_g >= 1``
from the rest of the integrals.  For those ``tZ >= t a_g >= U_FLUSH``, so what is dropped is at
most ``Gamma(3, U_FLUSH) / 2 = 2.5e-19`` of each (positive) quantity.  It spares the tiny and
subnormal products of ``q_g`` (slow on most CPUs) and the ``exp`` calls."""
MAX_SPREAD = 1e7
"""Largest ``max theta - min theta`` within a column (the node count grows like spread / h)."""
N_PARTS = 4
"""Entries of ``parts`` (:func:`column_terms`): ``E[ell_k; c_k >= 1]``, ``E[ell_k; c_k = 0]``,
``1 - E[Attn_k]``, ``(1 - p_k)^N``."""
PARALLEL_MIN_WORK = 2e7
"""Estimated columns x classes x nodes (:func:`general_work`; about 5 ns each on one core) below
which :func:`general_kernel` runs on one thread: K of about 400 at spreads of 10.  Measured
(benchmarks/RESULTS_numerics.md, 2 cores shared with other jobs): below this a parallel region
saves little or nothing and costs up to tens of ms when the other core is busy."""

# The order r of each generated integrand fixes its left-tail weights; the loop below is
# written for these orders (checked here so that a change in the derivation cannot go unseen).
assert kern.OWN_NAMES == ("loss_present", "loss_absent", "rest", "attn_own", "grad_own_pos", "grad_own_neg")
assert kern.OWN_ORDERS == (2, 2, 1, 1, 3, 3) and kern.OTHER_ORDERS == (1, 3, 3)
assert kern.OWN_ABSENT_CONSTANTS == (0.0, 1.0, 1.0, 0.0, 0.0, 0.0)
_LOG2 = math.log(2.0)


@jit
def snap_step(h):
    """``h`` rounded to ``STEP_BITS`` significant bits: ``j * snap_step(h)`` is exact for every node
    index ``j < 2^20``, so the nodes are uniformly spaced to the last bit (the kernels integrate
    with this step; it differs from ``h`` by less than 2^-33 relative)."""
    m, e = math.frexp(h)
    return math.ldexp(np.floor(m * 2.0**STEP_BITS + 0.5), e - STEP_BITS)


@jit
def tail_weights(h, k=TAIL_TERMS):
    """Node data every kernel needs for the step ``h`` (compute once, pass as ``wt``).

    Rows 0-3: extra weights ``w[r-1, j]`` (j < k, r = 1..4) that add the trapezoid sum over the
    nodes ``j < 0``.  Near ``x -> -inf`` the part of order ``r`` is ``g(x_j) = sum_{i<k} c_i z_i^j``
    with ``z_i = e^{(r+i) h}`` (powers of ``t``: the Taylor series of ``E[f e^{-tZ}]``).  Solving
    the Vandermonde system on nodes ``0..k-1`` by Lagrange polynomials and summing the geometric
    tails ``sum_{j<0} z_i^j = 1 / (z_i - 1)`` gives weights linear in ``g_0..g_{k-1}``.
    Row 4: ``exp(i h)`` for ``i < ANCHOR`` (the node ``t`` between exact anchors).  ``h`` is
    :func:`snap_step`'s.
    """
    h = snap_step(h)
    w = np.zeros((5, ANCHOR))
    for i in range(ANCHOR):
        w[4, i] = math.exp(i * h)
    coef = np.empty(k)
    for r in range(1, 5):
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
def log_phi(U, phi):
    """``log(phi)`` for ``phi = 1 - U`` given both (``U`` a sum of positive terms)."""
    if U < 1e-3:  # log1p(-U) by its series; the omitted U^6/6 is below 1e-18 relative
        return -U * (1.0 + U * (0.5 + U * (1.0 / 3.0 + U * (0.25 + U * 0.2))))
    if U < 0.5:
        return math.log1p(-U)
    if phi > 0.0:
        return math.log(phi)
    return -np.inf


@jit
def scaled_power(e, scale):
    """``scale * exp(e)`` (``scale >= 1``) without underflow of ``exp(e)`` alone."""
    if e > -700.0:
        return scale * math.exp(e)
    return math.exp(e + math.log(scale))


WORK_ROWS = 19
"""Rows of the scratch array of :func:`column_core` (each of length ``max(G, 64)``)."""


@jit
def workspace(G):
    """Scratch memory for :func:`column_core` on columns of ``G`` classes (allocate once, reuse)."""
    return np.empty((WORK_ROWS, max(G, 64)))


@jit
def column_terms(theta, p, mult, own, N, sigma2, h, wt, grad_pos, grad_neg, attn_out, parts):
    """Exact expectations for one query feature ``k``, each a sum of same-signed pieces.

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
    grad_pos, grad_neg : float64 arrays (G,), written
        Positive and negative parts of ``E[d ell_k / d theta[n, k]]`` for one member ``n`` of
        each class (both >= 0; the derivative is ``grad_pos - grad_neg``; 0 for empty classes).
        Without label noise ``grad_pos[own] = 0``.
    attn_out : float64 array (G,), written
        ``E[Attn_n]`` for one member of each class.
    parts : float64 array (N_PARTS,), written
        ``E[ell_k 1{c_k >= 1}]``, ``E[ell_k 1{c_k = 0}]``, ``1 - E[Attn_k]`` and ``(1 - p_k)^N``.

    Returns
    -------
    float
        ``E[ell_k] = 2 L_k`` (the paper's per-feature prediction error, times two).
    """
    return column_core(theta, p, mult, own, N, sigma2, h, wt, grad_pos, grad_neg, attn_out, parts,
                       workspace(theta.shape[0]), True)



@jit
def occurring_range(theta, p, mult):
    """``(sum_g mult_g p_g, max theta_g, min theta_g)`` over the classes whose features occur
    (``mult_g > 0`` and ``p_g > 0``): features that never occur take no part, not even in the spread."""
    total = 0.0
    thmax = -np.inf
    thmin = np.inf
    for g in range(theta.shape[0]):
        if mult[g] > 0 and p[g] > 0:
            total += mult[g] * p[g]
            thmax = max(thmax, theta[g])
            thmin = min(thmin, theta[g])
    return total, thmax, thmin

@jit
def column_core(theta, p, mult, own, N, sigma2, h, wt, grad_pos, grad_neg, attn_out, parts, work, split):
    """:func:`column_terms` on the scratch array ``work = workspace(G)`` (no allocation).

    With ``split = False`` the query feature's presence is not split off: ``parts[0]`` holds the
    whole ``E[ell_k]``, ``parts[1] = 0``, ``parts[2] = 1 - E[Attn_k]`` (each still a single
    positive integral, to the same relative accuracy) and ``parts[3]`` is not computed (NaN),
    at about the cost of the unsplit engine; the gradient and attention outputs are the same
    in both modes.
    """
    G = theta.shape[0]
    pn = work[0]
    dlt = work[1]
    av = work[2]
    u = work[3]
    q = work[4]
    pre11 = work[5]
    pre21 = work[6]
    pre22 = work[7]
    acc_attn = work[8]
    acc_pos = work[9]
    acc_neg = work[10]
    hist_P1 = work[11]
    hist_Pp0 = work[12]
    hist_Pa0 = work[13]
    suf11 = work[14]
    suf21 = work[15]
    suf22 = work[16]
    wv = work[17]
    dlo = work[18]
    total, thmax, thmin = occurring_range(theta, p, mult)
    if not (thmax - thmin <= MAX_SPREAD) or not (total > 0.0):
        for g in range(G):
            grad_pos[g] = np.nan
            grad_neg[g] = np.nan
            attn_out[g] = np.nan
        parts[:] = np.nan
        return np.nan  # reported by the callers as a non-finite result
    h = snap_step(h)  # the step of wt = tail_weights(h)
    x_lo = math.log(DELTA / N)
    t_lo = math.exp(x_lo)
    # Per class: renormalised probability, shift d = theta - max and a = exp(d).  Where a would
    # underflow the class gets u = exp(d + x_lo + j h) directly, with d + x_lo kept exactly as a
    # double-double (dlt, dlo) so that its nodes are as uniform as everyone else's.
    for g in range(G):
        pn[g] = p[g] / total if mult[g] > 0 else 0.0
        d = theta[g] - thmax
        av[g] = math.exp(d) if d > -700.0 else 0.0
        sd = d + x_lo  # TwoSum(d, x_lo) and the rounding error of d itself (TwoSum(theta, -thmax))
        bb = sd - d
        err_sum = (d - (sd - bb)) + (x_lo - bb)
        bd = d - theta[g]
        err_d = (theta[g] - (d - bd)) + (-thmax - bd)
        dlt[g] = sd
        dlo[g] = err_sum + err_d
        acc_attn[g] = 0.0
        acc_pos[g] = 0.0
        acc_neg[g] = 0.0
    pk = pn[own]
    # (1 - p_k)^N, the query feature absent (only needed when split off)
    A0 = (math.exp(N * math.log1p(-pk)) if pk < 1.0 else 0.0) if split else np.nan
    M = N - 3.0
    N3 = N * (N - 1.0) * (N - 2.0)
    r1 = 1.0 / N
    r2 = 1.0 / (N - 1.0) if N >= 2.0 else 0.0
    r3 = 1.0 / (N - 2.0) if N >= 3.0 else 0.0
    # The absent-feature moments Pa_J <= N_(J) (1 - p_k)^(N-J) are computed only where they can be
    # non-zero in float64 (and, below, until they underflow).
    absent_on = split and pk < 1.0 and (N <= 3.0 or M * math.log1p(-pk) + math.log(N3) > -745.0)
    A_split = A0 if split else 0.0  # the exact absent constants enter only when split off
    x_hi = math.log(LCUT / N) + (thmax - thmin)
    nodes = int(math.ceil((x_hi - x_lo) / h)) + 1
    lag = int(math.ceil(_LOG2 / h))
    cut_on = lag <= 63
    bound = CUT_BOUND * (1.0 + sigma2)
    grads_vanish = N < 2.0  # one token: every gradient is exactly 0 (the integrands vanish)
    g_fail = 0
    few = G <= 8
    a0 = 0.0  # the own quantities, in the order of kern.OWN_NAMES
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    a4 = 0.0
    a5 = 0.0
    t_anchor = 1.0
    anchor = 0.0
    for j in range(nodes):
        i_in = j % ANCHOR
        if i_in == 0:  # exact anchor: j h has no rounding error (snap_step)
            anchor = j * h
            t_anchor = t_lo * math.exp(anchor) if anchor < 700.0 else math.exp(min(x_lo + anchor, 709.0))
        t = t_anchor * wt[4, i_in]
        if j < TAIL_TERMS:
            w1, w2, w3 = h + wt[0, j], h + wt[1, j], h + wt[2, j]
        else:
            w1 = w2 = w3 = h
        # Per-class node quantities; sums over the classes other than `own`, all of positive
        # terms: U_o = sum p (1 - e^{-u}) (compensated: its relative error is amplified by up to
        # |N log phi| <= 745 in phi^N) and prefix sums (for the sums that exclude one class).
        # (1) u, q and w = 1 - e^{-u} per class (the loop with the libm calls), then (2) the sums
        # in a loop without calls, whose accumulators the compiler can keep in registers.
        for g in range(G):
            if mult[g] <= 0 or pn[g] == 0.0:
                u[g] = 0.0
                q[g] = 0.0
                wv[g] = 0.0
                continue
            ug = av[g] * t if av[g] > 0.0 else math.exp(min((dlt[g] + anchor) + (dlo[g] + i_in * h), 6.7))
            # Beyond u = 800, q = p e^{-u} underflows to exactly 0 and every term carrying u_g
            # also carries q_g: clamping keeps u^3 finite (no inf * 0) and changes no value.
            if not ug < 800.0:
                ug = 800.0
            if ug > U_FLUSH:  # see U_FLUSH: prompts with c_g >= 1 are done from here on
                eg = 0.0
                wg = 1.0
            elif ug < _LOG2:  # 1 - e^{-u} from expm1 (no cancellation), e^{-u} >= 1/2 from it
                if ug < 1e-3:  # Taylor: the omitted u^5/120 is below 1e-17 relative, no libm call
                    em = -ug * (1.0 - ug * (0.5 - ug * (1.0 / 6.0 - ug * (1.0 / 24.0))))
                else:
                    em = math.expm1(-ug)
                eg = 1.0 + em
                wg = -em
            else:  # e^{-u} directly (relative accuracy however small), 1 - e^{-u} >= 1/2
                eg = math.exp(-ug)
                wg = 1.0 - eg
            u[g] = ug
            q[g] = pn[g] * eg
            wv[g] = wg
        wk = wv[own]
        Uo = 0.0
        Uc = 0.0
        Ub = 0.0
        nb = 0
        phio = 0.0
        s11 = 0.0
        s21 = 0.0
        s22 = 0.0
        for g in range(G):
            pre11[g] = s11
            pre21[g] = s21
            pre22[g] = s22
            if g == own:
                continue
            m = mult[g]
            ug = u[g]
            qg = q[g]
            Ub += m * pn[g] * wv[g]
            nb += 1
            if nb == 8:  # blocked compensated sum: error <= ~9 ulp of U at any G, short latency
                y = Ub - Uc
                tt = Uo + y
                Uc = (tt - Uo) - y
                Uo = tt
                Ub = 0.0
                nb = 0
            phio += m * qg
            uq = ug * qg
            s11 += m * uq
            s21 += m * ug * uq
            s22 += m * ug * uq * qg
        Uo += Ub - Uc
        uk = u[own]
        qk = q[own]
        phi = phio + qk
        if not phi > 0.0:
            break  # phi only decreases with x: every later node is exactly zero
        # Tilted moments: P_J = N_(J) phi^(N-J); absent Pa_J = N_(J) phi_{-k}^(N-J); present
        # Pp_J = P_J - Pa_J.  Pp_3 = P_3 - Pa_3 where Pa_3 / P_3 = rho = (phi_{-k} / phi)^(N-3) is
        # below e^{-0.75}, else -P_3 expm1(log rho) (log rho = (N-3) log1p(-q_k / phi)); then
        # Pp_J = (phi Pp_{J+1} + q_k Pa_{J+1}) / (N - J), sums of positive terms.
        P3 = 0.0
        Pa3 = 0.0
        Pa2 = 0.0
        Pa1 = 0.0
        Pa0 = 0.0
        if N >= 3.0:
            e3 = M * log_phi(Uo + pk * wk, phi)  # 1 - phi = U_o + p_k (1 - e^{-u_k})
            P3 = scaled_power(e3, N3)
            if P3 == 0.0:
                break  # every P_J, Pp_J, Pa_J is below P3 and decreases with x
            P2 = P3 * phi * r3
            P1 = P2 * phi * r2
            P0 = P1 * phi * r1
            Pp3 = P3
            Pp2 = P2
            Pp1 = P1
            Pp0 = P0
            if absent_on:
                if M == 0.0:
                    Pa3 = 6.0
                    Pp3 = 0.0
                else:
                    e3k = M * log_phi(pk + Uo, phio)  # 1 - phi_{-k} = p_k + U_o
                    if e3k - e3 < -0.75:  # rho = Pa3 / P3 < e^{-0.75}: the difference loses < 2 ulp
                        Pa3 = scaled_power(e3k, N3)
                        Pp3 = P3 - Pa3
                    else:  # rho close to 1: 1 - rho from expm1 of log rho, itself from log1p
                        em = math.expm1(M * math.log1p(-qk / phi))
                        Pa3 = P3 * (1.0 + em)
                        Pp3 = -P3 * em
                Pa2 = Pa3 * phio * r3
                Pa1 = Pa2 * phio * r2
                Pa0 = Pa1 * phio * r1
                Pp2 = (phi * Pp3 + qk * Pa3) * r3
                Pp1 = (phi * Pp2 + qk * Pa2) * r2
                Pp0 = (phi * Pp1 + qk * Pa1) * r1
                if Pa3 == 0.0:
                    absent_on = False  # phi_{-k} / phi decreases with x: zero from here on
        elif N == 2.0:
            P2 = 2.0
            P1 = 2.0 * phi
            P0 = phi * phi
            Pp2 = P2
            Pp1 = P1
            Pp0 = P0
            if split:
                Pa2 = 2.0
                Pa1 = 2.0 * phio
                Pa0 = phio * phio
                Pp2 = 0.0
                Pp1 = 2.0 * qk
                Pp0 = qk * (phi + phio)
        else:
            P2 = 0.0
            P1 = 1.0
            P0 = phi
            Pp2 = 0.0
            Pp1 = P1
            Pp0 = P0
            if split:
                Pa1 = 1.0
                Pa0 = phio
                Pp1 = 0.0
                Pp0 = qk
        o0, o1, o2, o3, o4, o5 = kern.own_terms(uk, qk, s11, s21, s22, P1, P2, P3, Pp1, Pp2, Pa1, Pa2, sigma2)
        a0 += w2 * o0
        a1 += w2 * o1
        a2 += w1 * o2
        a3 += w1 * o3
        a4 += w3 * o4
        a5 += w3 * o5
        # Other classes, with sums over n not in {k, m} from prefix and suffix sums (no
        # subtraction).  Many classes: the suffix sums first, then one branch-free loop over every
        # class (the compiler vectorises it; classes without features have q = 0 and get 0, the
        # own class's entries are overwritten at the end).  Few classes: one loop, skipping those.
        t11 = 0.0
        t21 = 0.0
        t22 = 0.0
        if not few:
            for g in range(G - 1, -1, -1):
                suf11[g] = t11
                suf21[g] = t21
                suf22[g] = t22
                if g != own:
                    ug = u[g]
                    muq = mult[g] * ug * q[g]
                    t11 += muq
                    t21 += ug * muq
                    t22 += ug * muq * q[g]
            for g in range(G):
                ug = u[g]
                qg = q[g]
                uq = ug * qg
                m1 = mult[g] - 1.0
                b0, b1, b2 = kern.other_terms(uk, qk, ug, qg,
                                              pre11[g] + suf11[g] + m1 * uq,
                                              pre21[g] + suf21[g] + m1 * ug * uq,
                                              pre22[g] + suf22[g] + m1 * ug * uq * qg,
                                              P1, P2, P3, sigma2)
                acc_attn[g] += w1 * b0
                acc_pos[g] += w3 * b1
                acc_neg[g] += w3 * b2
        else:
            for g in range(G - 1, -1, -1):
                if g == own or mult[g] <= 0 or pn[g] == 0.0:
                    continue
                ug = u[g]
                qg = q[g]
                m = mult[g]
                uq = ug * qg
                b0, b1, b2 = kern.other_terms(uk, qk, ug, qg,
                                              pre11[g] + t11 + (m - 1.0) * uq,
                                              pre21[g] + t21 + (m - 1.0) * ug * uq,
                                              pre22[g] + t22 + (m - 1.0) * ug * uq * qg,
                                              P1, P2, P3, sigma2)
                acc_attn[g] += w1 * b0
                acc_pos[g] += w3 * b1
                acc_neg[g] += w3 * b2
                t11 += m * uq
                t21 += m * ug * uq
                t22 += m * ug * uq * qg
        # Adaptive right cut, relative to every accumulated quantity.  Each quantity is
        # E[f(c) (tZ)^r e^{-tZ}] / (r-1)! per node with 0 <= f <= F (F < 20 (1 + sigma2)) on a
        # support (all prompts; c_k >= 1; c_k = 0; c_n >= 1), and its integral beyond t is
        # E[f Gamma(r, tZ)] / (r-1)! <= 2 F E[1{support} e^{-tZ/2}], bounded by the tilted
        # probability at the node `lag` steps back (t_lag <= t/2): Pp0, Pa0, or
        # E[c_n e^{-tZ}] <= p_n P1.
        hist_P1[j % 64] = P1
        hist_Pp0[j % 64] = Pp0
        hist_Pa0[j % 64] = Pa0
        if cut_on and j >= lag:
            jl = (j - lag) % 64
            bpp = bound * hist_Pp0[jl]
            if (bpp <= CUT_REL * a0 and bpp <= CUT_REL * (A_split + a2)
                    and bound * hist_Pa0[jl] <= CUT_REL * (A_split + a1)):
                bp1 = bound * hist_P1[jl]
                stop = bp1 * pk <= CUT_REL * (a3 if grads_vanish else min(a3, a4 + a5))
                if stop:  # every other class, from the one that failed last time (it usually fails again)
                    for i in range(G):
                        g = g_fail + i
                        if g >= G:
                            g -= G
                        if g == own or mult[g] <= 0 or pn[g] == 0.0:
                            continue
                        lim = acc_attn[g] if grads_vanish else min(acc_attn[g], acc_pos[g] + acc_neg[g])
                        if not bp1 * pn[g] <= CUT_REL * lim:
                            stop = False
                            g_fail = g
                            break
                if stop:
                    break
    for g in range(G):
        grad_pos[g] = acc_pos[g]
        grad_neg[g] = acc_neg[g]
        attn_out[g] = acc_attn[g]
    grad_pos[own] = a4
    grad_neg[own] = a5
    attn_out[own] = a3
    parts[0] = a0
    parts[1] = A_split + a1
    parts[2] = A_split + a2
    parts[3] = A0
    return parts[0] + parts[1]


@jit
def column_expectations(theta, p, mult, own, N, sigma2, h, wt, grad_out, attn_out):
    """Exact expectations for one query feature ``k`` (MODEL.md sections 2-3).

    The interface of :func:`column_terms` without the parts: ``grad_out[g] = E[d ell_k /
    d theta[n, k]]`` (positive minus negative part) and ``attn_out[g] = E[Attn_n]`` for one
    member ``n`` of each class; returns ``E[ell_k] = 2 L_k``.
    """
    G = theta.shape[0]
    pos = np.empty(G)
    neg = np.empty(G)
    parts = np.empty(N_PARTS)
    ell = column_core(theta, p, mult, own, N, sigma2, h, wt, pos, neg, attn_out, parts, workspace(G), False)
    for g in range(G):
        grad_out[g] = pos[g] - neg[g]
    return ell


@jit
def _general_column(theta, p, N, sigma2, h, wt, k, split, grad_pos, grad_neg, attn, parts):
    """Column ``k`` of the general kernel: ``dL/dtheta[:, k]`` parts (times ``p_k / 2``), ``E[Attn]``, parts."""
    K = theta.shape[0]
    mult = np.ones(K)
    col = np.ascontiguousarray(theta[:, k])
    gp = np.empty(K)
    gn = np.empty(K)
    a = np.empty(K)
    pr = np.empty(N_PARTS)
    column_core(col, p, mult, k, N, sigma2, h, wt, gp, gn, a, pr, workspace(K), split)
    for n in range(K):
        grad_pos[n, k] = 0.5 * p[k] * gp[n]
        grad_neg[n, k] = 0.5 * p[k] * gn[n]
        attn[n, k] = a[n]
    for i in range(N_PARTS):
        parts[k, i] = pr[i]


@jit
def general_work(theta):
    """Columns x classes x estimated nodes of the general kernel (decides serial or parallel)."""
    K = theta.shape[0]
    spread = 0.0
    for k in range(K):
        lo = np.inf
        hi = -np.inf
        for n in range(K):
            lo = min(lo, theta[n, k])
            hi = max(hi, theta[n, k])
        spread = max(spread, hi - lo)
    return float(K) * K * (math.log(LCUT / DELTA) + spread) / DEFAULT_H


@jit
def _general_serial(theta, p, N, sigma2, h, split, grad_pos, grad_neg, attn, parts):
    wt = tail_weights(h)
    for k in range(theta.shape[0]):
        _general_column(theta, p, N, sigma2, h, wt, k, split, grad_pos, grad_neg, attn, parts)


@jit(parallel=True)
def _general_parallel(theta, p, N, sigma2, h, split, grad_pos, grad_neg, attn, parts):
    wt = tail_weights(h)
    for k in prange(theta.shape[0]):
        _general_column(theta, p, N, sigma2, h, wt, k, split, grad_pos, grad_neg, attn, parts)


@jit
def general_terms(theta, p, N, sigma2, h, grad_pos, grad_neg, attn, parts, mode, split):
    """Every feature its own class, in parts: ``dL/dtheta = grad_pos - grad_neg`` (both >= 0),
    ``attn[n, k] = E[Attn_n | x_q = v_k]`` and ``parts[k]`` as in :func:`column_core`
    (``split``: query feature present / absent).

    Columns (query features) are independent (MODEL.md section 2).  ``mode``: 1 runs them on
    all threads, 0 on one, -1 decides: threads only from ``PARALLEL_MIN_WORK`` on
    (:func:`general_work`).
    """
    if mode == 1 or (mode < 0 and general_work(theta) >= PARALLEL_MIN_WORK):
        _general_parallel(theta, p, N, sigma2, h, split, grad_pos, grad_neg, attn, parts)
    else:
        _general_serial(theta, p, N, sigma2, h, split, grad_pos, grad_neg, attn, parts)


@jit
def general_kernel(theta, p, N, sigma2, h, grad, L_k, attn):
    """Every feature its own class: fill ``grad = dL/dtheta``, ``L_k`` and ``attn[n, k] = E[Attn_n | x_q = v_k]``.

    Threads only where they pay (:func:`general_terms`).
    """
    K = theta.shape[0]
    gp = np.empty((K, K))
    gn = np.empty((K, K))
    parts = np.empty((K, N_PARTS))
    general_terms(theta, p, N, sigma2, h, gp, gn, attn, parts, -1, False)
    for k in range(K):
        L_k[k] = 0.5 * parts[k, 0]
        for n in range(K):
            grad[n, k] = gp[n, k] - gn[n, k]


@jit
def reduced_terms(coords, p_col, m_col, N, sigma2, h, wt, grad_pos, grad_neg, attn, parts):
    """Symmetry classes, in parts: one column per query class ``f``.

    Writes ``grad_pos[f, j] - grad_neg[f, j] = dL/dtheta`` for one member of column class ``j``
    (both parts >= 0, scaled like the gradient by ``p_f / 2``), ``attn[f, j] = E[Attn]`` and
    ``parts[f] = (L_k present, L_k absent, 1 - E[Attn_k], (1 - p_k)^N)`` with the two ``L_k``
    parts halved like ``L_k = 1/2 E[ell_k]``.
    """
    F, J = coords.shape
    pr = np.empty(N_PARTS)
    work = workspace(J)
    for f in range(F):
        column_core(coords[f], p_col[f], m_col[f], 0, N, sigma2, h, wt, grad_pos[f], grad_neg[f], attn[f], pr, work, True)
        for j in range(J):
            grad_pos[f, j] *= 0.5 * p_col[f, 0]
            grad_neg[f, j] *= 0.5 * p_col[f, 0]
        parts[f, 0] = 0.5 * pr[0]
        parts[f, 1] = 0.5 * pr[1]
        parts[f, 2] = pr[2]
        parts[f, 3] = pr[3]


@jit
def reduced_kernel(coords, p_col, m_col, N, sigma2, h, wt, grad, L_f, attn):
    """Symmetry classes: one column per query class ``f`` (``coords[f, 0] = A``, ``coords[f, 1+g] = B``).

    Writes ``grad[f, j] = dL/dtheta`` for one member of column class ``j``, ``L_f`` the
    per-feature prediction error of a query of class ``f`` and ``attn[f, j] = E[Attn]`` of one
    member; returns nothing.  ``wt = tail_weights(h)``.  ``p_col[f, j]`` and ``m_col[f, j]`` are the column classes'
    per-feature probabilities and sizes (see :class:`dynamics.classes.ClassStructure`).
    """
    F, J = coords.shape
    pos = np.empty(J)
    neg = np.empty(J)
    pr = np.empty(N_PARTS)
    work = workspace(J)
    for f in range(F):
        ell = column_core(coords[f], p_col[f], m_col[f], 0, N, sigma2, h, wt, pos, neg, attn[f], pr, work, False)
        L_f[f] = 0.5 * ell
        for j in range(J):
            grad[f, j] = 0.5 * p_col[f, 0] * (pos[j] - neg[j])
