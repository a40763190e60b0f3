"""Relative accuracy of the exact engine at every magnitude (issue 13, part 1).

Every quantity of fixed sign (``L_k`` and its parts with the query's feature present and
absent, ``1 - E[Attn_k]``, ``E[Attn_n]``, ``(1 - p_k)^N``, the positive and negative parts of
each gradient entry, the own-feature gradient without noise) must come out with a relative
error of at most 1e-12, and every gradient entry to 1e-12 of the sum of the magnitudes of its
parts, down to the float64 underflow.  The references are independent of the engine: a
50-digit brute force over count vectors (:mod:`tests.huang2024.mp_oracle`) at small K and N, a
binomial sum at K = 2 and N up to ~1000, and closed forms at large N.

Tolerance: the engine's own error is rounding (~1e-15 per operation) amplified at most by
``|N log phi| <= 745`` in ``phi^N = exp(N log phi)`` near the underflow, i.e. <= ~1e-13, plus a
trapezoid error below 4e-16 relative (quadrature.py); 1e-12 is the issue's bar.  Below the
smallest normal float64 (2.2e-308) relative accuracy is impossible: ``FLOOR`` lets a value
that small be off by that much absolutely.
"""
import math

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import dynamics
from dynamics.models.huang2024 import quadrature as quad
from dynamics.models.huang2024.classes import ClassStructure
from dynamics.models.huang2024.engine import population_terms
from tests.huang2024 import mp_oracle
from tests.strategies import prob_vectors

REL = 1e-12
FLOOR = 1e-300  # values below ~1e-300 (subnormal range: intermediate products underflow) compare absolutely


def close(got, ref, scale=None, rel=REL):
    """``|got - ref| <= rel * scale + FLOOR`` with ``scale = |ref|`` unless given (mpf arithmetic)."""
    ref = mp.mpf(ref)
    scale = abs(ref) if scale is None else mp.mpf(scale)
    return abs(mp.mpf(float(got)) - ref) <= rel * scale + FLOOR


def assert_column_matches(T, k, o, p, where):
    """Every output of column k of ``T = population_terms(...)`` against the oracle ``o``."""
    half_p = mp.mpf(float(p[k])) / 2
    checks = [("L_present", T.L_present[k], o["ell_present"] / 2), ("L_absent", T.L_absent[k], o["ell_absent"] / 2),
              ("L_k", T.L_k[k], o["ell"] / 2), ("1 - E[Attn_k]", T.attn_rest[k], o["rest"]),
              ("(1 - p_k)^N", T.absent[k], o["absent"])]
    for n in range(len(p)):
        checks += [(f"attn[{n}]", T.attn[n, k], o["attn"][n]),
                   (f"grad_pos[{n}]", T.grad_pos[n, k], half_p * o["grad_pos"][n]),
                   (f"grad_neg[{n}]", T.grad_neg[n, k], half_p * o["grad_neg"][n])]
    for name, got, ref in checks:
        assert close(got, ref), f"{where}, column {k}: {name} = {got!r}, exact {mp.nstr(ref, 17)}"
    for n in range(len(p)):
        pos, neg = half_p * o["grad_pos"][n], half_p * o["grad_neg"][n]
        assert close(T.grad[n, k], pos - neg, scale=pos + neg), f"{where}, column {k}: grad[{n}]"


# ---------------------------------------------------------------------------------------
# Small K, N: 50-digit brute force.
@st.composite
def small_problems(draw):
    K = draw(st.integers(2, 4))
    N = draw(st.integers(1, 9 if K < 4 else 6))
    p = draw(prob_vectors(K))
    theta = draw(hnp.arrays(np.float64, (K, K), elements=st.floats(-60, 60)))
    sigma2 = draw(st.sampled_from([0.0, 0.0, 0.25, 1.0]))
    return theta, p, N, sigma2


@settings(max_examples=30)
@given(small_problems())
def test_every_part_matches_50_digit_bruteforce(prob):
    theta, p, N, sigma2 = prob
    T = population_terms(theta, p, N, sigma2)
    for k in range(p.size):
        o = mp_oracle.column(theta[:, k], p, k, N, sigma2)
        assert_column_matches(T, k, o, p, f"K={p.size} N={N} sigma2={sigma2}")


@settings(max_examples=10)
@given(small_problems())
def test_oracle_parts_are_the_model_formulas(prob):
    """The oracle's same-signed parts add up to MODEL.md section 2's per-prompt formulas
    (``1 - 2 Attn_k + S``; ``2 Attn_m (Attn_k + Attn_m - S) - 2 Attn_k [m == k]`` and the noise
    terms), and its absent probability is ``(1 - p_k)^N``.  At 80 digits the plain formulas'
    cancellation (at most ~e^-360 here) leaves 20 digits."""
    theta, p, N, sigma2 = prob
    theta = np.clip(theta, -30, 30)
    k = 0
    with mp.workdps(80):
        o = mp_oracle.column(theta[:, k], p, k, N, sigma2, dps=80)
        pk = mp.mpf(float(p[k])) / mp.fsum(mp.mpf(float(x)) for x in p)
        assert abs(o["absent"] - (1 - pk) ** N) <= mp.mpf(10) ** -60 * o["absent"]
        assert abs(o["ell"] - o["ell_plain"]) <= mp.mpf(10) ** -20 * o["ell"]
        for n in range(p.size):
            pos, neg = o["grad_pos"][n], o["grad_neg"][n]
            assert abs(pos - neg - o["grad_plain"][n]) <= mp.mpf(10) ** -20 * (pos + neg) + mp.mpf(10) ** -75


@pytest.mark.parametrize("K, N, sigma2", [(10, 3, 0.0), (11, 2, 0.6)])
def test_many_classes_match_50_digit_bruteforce(K, N, sigma2):
    """Columns of more than 8 classes take the engine's branch-free path (sums excluding one class
    from prefix and suffix arrays): short prompts keep the enumeration small."""
    rng = np.random.default_rng(K)
    p = rng.dirichlet(np.ones(K))
    theta = rng.uniform(-40, 40, size=(K, K))
    T = population_terms(theta, p, N, sigma2)
    for k in (0, K // 2, K - 1):
        assert_column_matches(T, k, mp_oracle.column(theta[:, k], p, k, N, sigma2), p, f"K={K} N={N}")


# ---------------------------------------------------------------------------------------
# Constructed states with tiny values.
BINOMIAL_CASES = [
    # (A, B, p_k, N): the example L_k ~ 8e-31 (theta = 40 I), then absent parts near
    # 1e-100, 1e-250 and 1e-302 with present parts near 1e-131 and 1e-261, gradients near 1e-250.
    (40.0, 0.0, 0.5, 100),
    (150.0, 0.0, 0.5, 333),
    (300.0, 0.0, 0.5, 830),
    (30.0, 0.0, 0.5, 1000),
    (0.0, -286.0, 0.5, 1100),
]


@pytest.mark.parametrize("A, B, pk, N", BINOMIAL_CASES)
def test_tiny_values_at_K2_against_binomial_sums(A, B, pk, N):
    theta = np.array([[A, 0.0], [B, 0.0]])
    T = population_terms(theta, [pk, 1.0 - pk], N)
    o = mp_oracle.binomial_column(A, B, pk, N)
    assert_column_matches(T, 0, o, [pk, 1.0 - pk], f"A={A} B={B} N={N}")
    assert T.L_k[0] > 0 and T.grad[0, 0] < 0  # the example gave L_k = -1.1e-16 before


GENERIC_CASES = [
    # p_k = 1 - 2^-52: (1 - p_k)^N = 2^-676 ~ 1e-203 at N = 13, with and without noise
    (np.array([[5.0, 0, 0], [0.0, 1, 0], [-3.0, 0, 2]]), np.array([1 - 2.0**-52, 2.0**-53, 2.0**-53]), 13, 0.0),
    (np.array([[5.0, 0, 0], [0.0, 1, 0], [-3.0, 0, 2]]), np.array([1 - 2.0**-52, 2.0**-53, 2.0**-53]), 13, 0.5),
    # a feature with attention ~ e^-570: gradient parts ~ 1e-252 and ~ 1e-301
    (np.array([[60.0, 0, 0], [0.0, 1, 0], [-570.0, -300, 2]]), np.array([0.5, 0.25, 0.25]), 12, 0.0),
    (np.array([[60.0, 0, 0], [0.0, 1, 0], [-570.0, -300, 2]]), np.array([0.5, 0.25, 0.25]), 12, 0.3),
    # a dominant query feature (A = 200): L_present ~ e^-460
    (np.array([[200.0, 0, 0], [-30.0, 1, 0], [-30.0, 0, 2]]), np.array([0.5, 0.25, 0.25]), 12, 0.0),
]


@pytest.mark.parametrize("case", range(len(GENERIC_CASES)))
def test_tiny_values_at_K3_against_50_digit_bruteforce(case):
    theta, p, N, sigma2 = GENERIC_CASES[case]
    T = population_terms(theta, p, N, sigma2)
    for k in range(3):
        assert_column_matches(T, k, mp_oracle.column(theta[:, k], p, k, N, sigma2), p, f"case {case}")


# ---------------------------------------------------------------------------------------
# Large N: closed forms.
@pytest.mark.parametrize("N", [10**7, 10**9, 10**12])
def test_large_N_asymptotic_expansion(N):
    """K = 2, p = (1/2, 1/2), theta = 200 I: with b = e^-200, Attn_m = (N - c) b / c to O(N b)
    (N b < 1e-74), so ``L_k = b^2 E[(N/c - 1)^2]`` and ``dL/dA_k = -dL/dB_{k,m} = -L_k`` to the
    same order; with ``c = N/2 (1 + delta)`` (``E delta^2 = 1/N``, ``E delta^3 = 0``,
    ``E delta^4 = 3/N^2 - 2/N^3``), ``E[(N/c - 1)^2] = 1 + 8/N + 48/N^2 + O(N^-3)``: relative
    1e-12 needs only N >= 1e7.  (1 - p_k)^N underflows to exactly 0.  L_k ~ 1.9e-174."""
    T = population_terms(200.0 * np.eye(2), [0.5, 0.5], N)
    with mp.workdps(40):
        ref = mp.exp(-400) * (1 + mp.mpf(8) / N + mp.mpf(48) / mp.mpf(N) ** 2)
        for k in range(2):
            assert close(T.L_k[k], ref) and close(T.L_present[k], ref)
            assert T.L_absent[k] == 0.0 and T.absent[k] == 0.0
            assert close(-T.grad[k, k], ref) and close(T.grad[1 - k, k], ref)
            assert T.grad_pos[k, k] == 0.0 and T.grad_neg[1 - k, k] == 0.0  # fixed-sign entries at K = 2


@pytest.mark.parametrize("K, p1, N, query, sigma2", [
    (10**6, 0.5, 10**9, 1, 0.0),    # rare query: (1 - p_k)^N = e^-500 ~ 7e-218
    (10**6, 0.5, 10**9, 1, 0.7),
    (10**6, 0.5, 1000, 0, 0.0),     # dominant query: 2^-1000 ~ 9e-302
    (50, 0.2, 10**5, 1, 0.0),       # rare query: (1 - 0.8/49)^(1e5) ~ 1e-715: underflows to 0
])
def test_absent_part_has_its_closed_form(K, p1, N, query, sigma2):
    """With every other feature at the same coordinate, Attn_n = c_n / N when c_k = 0, so
    ``L_absent = 1/2 (1 - p_k)^N [1 + sum p'^2 + (1 - sum p'^2)/N + sigma2 / N]`` exactly
    (``p' = p / (1 - p_k)`` over the other features), whatever ``A_k``."""
    s = ClassStructure.imbalanced(K, p1)
    coords = np.array([[25.0, 0.0, -1.5], [25.0, -1.5, -1.5]])
    ev = dynamics.reduced_loss_grad(coords, s, N, sigma2)
    with mp.workdps(50):
        probs = [mp.mpf(float(x)) for x in s.probs]
        sizes = [int(x) for x in s.sizes]
        pk = probs[query]
        others = [(probs[g], sizes[g] - (g == query)) for g in range(2)]
        sp2 = mp.fsum(m * (pg / (1 - pk)) ** 2 for pg, m in others)
        absent = (1 - pk) ** N
        ref = absent / 2 * (1 + sp2 + (1 - sp2) / N + mp.mpf(sigma2) / N)
    assert close(ev.absent[query], absent) and close(ev.L_absent[query], ref)
    assert ev.L_present[query] > 0 and close(ev.L_f[query], ev.L_present[query] + ev.L_absent[query], rel=1e-15)


# ---------------------------------------------------------------------------------------
# Invariants at any magnitude (no tolerance where the sign is exact).
@st.composite
def wide_problems(draw):
    K = draw(st.integers(2, 6))
    N = draw(st.sampled_from([1, 2, 3, 7, 50, 10**3, 10**6, 10**9]))
    p = draw(prob_vectors(K))
    theta = draw(hnp.arrays(np.float64, (K, K), elements=st.floats(-400, 400)))
    sigma2 = draw(st.sampled_from([0.0, 0.5]))
    return theta, p, N, sigma2


@given(wide_problems())
def test_signs_and_identities_hold_exactly(prob):
    theta, p, N, sigma2 = prob
    T = population_terms(theta, p, N, sigma2)
    for arr in (T.L_present, T.L_absent, T.attn_rest, T.absent, T.attn, T.grad_pos, T.grad_neg):
        assert np.all(arr >= 0)
    # L_k >= 1/2 (1 - p_k)^N (the prompts without the query's feature err by at least 1); L_k may
    # underflow to 0 only where that bound does (e.g. theta = 356 I, N = 1e9: L_k ~ e^-712)
    assert np.all(T.L_k >= 0.5 * T.absent * (1 - REL))
    if sigma2 == 0:
        assert np.all(np.diag(T.grad) <= 0) and np.all(np.diag(T.grad_pos) == 0)
    assert np.all(T.attn_rest >= T.absent)
    # E[Attn_k] + (1 - E[Attn_k]) = 1 and each column of the gradient sums to 0 (softmax shift
    # invariance), to rounding of the sum's parts.
    np.testing.assert_allclose(np.diag(T.attn) + T.attn_rest, 1.0, rtol=0, atol=1e-14)
    assert np.all(np.abs(T.grad.sum(axis=0)) <= 1e-13 * T.grad_scale.sum(axis=0) + FLOOR)
    # the split and the unsplit engine (population_loss_grad) agree relative to L_k itself, each
    # within the module's bound of the exact value (REL: up to |N log phi| ulp near the underflow)
    _, grad, L_k = dynamics.population_loss_grad(theta, p, N, sigma2=sigma2)
    assert np.all(np.abs(L_k - T.L_k) <= REL * T.L_k + FLOOR)
    assert np.all(np.abs(grad - T.grad) <= REL * T.grad_scale + FLOOR)


@st.composite
def class_problems(draw):
    """Up to 5 classes of up to 4 features: reduced columns of <= 6 classes against general
    columns of up to 20 (both code paths of the engine, few and many classes)."""
    F = draw(st.integers(1, 5))
    sizes = np.array(draw(st.lists(st.integers(1, 4), min_size=F, max_size=F)))
    if sizes.sum() < 2:
        sizes[0] = 2
    w = draw(prob_vectors(F)) if F > 1 else np.ones(1)
    coords = draw(hnp.arrays(np.float64, (F, F + 1), elements=st.floats(-200, 200)))
    N = draw(st.sampled_from([1, 2, 5, 40, 10**4, 10**8]))
    sigma2 = draw(st.sampled_from([0.0, 0.4]))
    return ClassStructure(sizes, w / sizes, tuple(f"c{i}" for i in range(F))), coords, N, sigma2


@given(class_problems())
def test_reduced_parts_equal_general_parts_relatively(cp):
    """Class multiplicities (sums over a class minus one member, from prefix/suffix sums) lose
    no relative accuracy: the reduced parts equal those of the expanded K x K problem."""
    s, coords, N, sigma2 = cp
    ev = dynamics.reduced_loss_grad(coords, s, N, sigma2)
    T = population_terms(s.expand(coords), s.p, N, sigma2)
    own = s.owner()
    for name, red in (("L_present", ev.L_present), ("L_absent", ev.L_absent), ("attn_rest", ev.attn_rest)):
        full = getattr(T, name)
        # each side within REL of the exact value; they differ in rounding (sums over classes or
        # over features, p renormalised by different sums): measured up to 1.2e-13 near 1e-223
        assert np.all(np.abs(red[own] - full) <= REL * full + FLOOR), name
    grad = ev.grad[own[None, :], 1 + own[:, None]]
    grad[np.arange(s.K), np.arange(s.K)] = ev.grad[own, 0]
    scale = T.grad_scale
    assert np.all(np.abs(grad - T.grad) <= REL * scale + FLOOR)


# ---------------------------------------------------------------------------------------
def test_serial_and_parallel_general_kernels_agree_bitwise():
    """Threads only split the columns; each column is the same code: identical results."""
    rng = np.random.default_rng(5)
    K = 12
    p = rng.dirichlet(np.ones(K))
    theta = rng.normal(scale=3.0, size=(K, K))
    outs = []
    for mode in (0, 1, -1):
        arrs = [np.empty((K, K)) for _ in range(3)] + [np.empty((K, quad.N_PARTS))]
        quad.general_terms(theta, p, 1e4, 0.1, quad.DEFAULT_H, *arrs, mode, True)
        outs.append(arrs)
    for a, b in zip(outs[0], outs[1]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(outs[0], outs[2]):
        np.testing.assert_array_equal(a, b)
    assert quad.general_work(theta) < quad.PARALLEL_MIN_WORK  # K = 12 runs serially by default
    assert math.isclose(quad.general_work(np.zeros((1000, 1000))), 1e6 * math.log(48e3) / quad.DEFAULT_H)
