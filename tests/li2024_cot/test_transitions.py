"""Exact task statistics of the test transition matrices (MODEL.md section 9) against their
definitions by brute-force path enumeration, the slides' worked example, the generator's
requested statistics, and refusals in one line."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamics.core.params import ParamError
from dynamics.models.li2024_cot import transitions as T

WORKED = [[[0.6, 0.4], [0.4, 0.6]], [[0.4, 0.6], [0.8, 0.2]]]


def brute_force(A):
    """Every statistic by enumerating all M'^K paths (independent of the recursions)."""
    A = np.asarray(A)
    K, Mt = A.shape[0], A.shape[1]
    B = np.zeros((Mt, Mt))
    best = np.zeros(Mt)
    for i in range(Mt):
        for path in itertools.product(range(Mt), repeat=K):
            prob = np.prod([A[k, ([i] + list(path))[k], path[k]] for k in range(K)])
            B[i, path[-1]] += prob
            best[i] = max(best[i], prob)
    correct = np.empty((Mt, K + 1), dtype=int)
    for i in range(Mt):
        correct[i, 0] = i
        for k in range(K):
            correct[i, k + 1] = int(np.argmax(A[k, correct[i, k]]))
    margins = [A[k, correct[i, k], correct[i, k + 1]] - np.max(np.delete(A[k, correct[i, k]], correct[i, k + 1]))
               for i in range(Mt) for k in range(K)]
    final = [B[i, correct[i, K]] - np.max(np.delete(B[i], correct[i, K])) for i in range(Mt)]
    return B, best, correct, min(margins), min(final)


def test_the_slides_worked_example():
    s = T.statistics(WORKED)
    # slides p. 30: B^f = [[0.56, 0.44], [0.64, 0.36]], tau^f = 0.36, tau_o^f = 0.56, Condition 1 fails
    assert np.allclose(s.B, [[0.56, 0.44], [0.64, 0.36]], atol=1e-15, rtol=0)
    assert abs(s.tau - 0.36) < 1e-15 and abs(s.tau_o - 0.56) < 1e-15
    assert not s.condition1
    # start mu'_1: correct path 1 -> 1 -> 2 ends where B gives 0.44 < 0.56 (fails); start mu'_2: 2 -> 2 -> 1
    # (the most probable step of A_2's second row is mu'_1) ends where B gives 0.64 (holds)
    assert s.paths.tolist() == [[0, 0, 1], [1, 1, 0]] and s.failing.tolist() == [True, False]
    assert abs(s.rho - 0.2) < 1e-15 and abs(s.rho_o - (0.44 - 0.56)) < 1e-15


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), Mt=st.integers(2, 4), K=st.integers(1, 4))
def test_statistics_match_path_enumeration(seed, Mt, K):
    A = np.random.default_rng(seed).dirichlet(np.ones(Mt), size=(K, Mt))
    s = T.statistics(A)
    B, best, correct, rho, rho_o = brute_force(A)
    # sums of at most M'^K products of K factors in another order: rounding only
    assert np.allclose(s.B, B, rtol=1e-12, atol=1e-15)
    assert np.allclose(s.path_tau, best, rtol=1e-12, atol=0) and abs(s.tau - best.min()) < 1e-14
    assert abs(s.tau_o - B.max(axis=1).min()) < 1e-14
    assert np.array_equal(s.paths, correct)
    assert abs(s.rho - rho) < 1e-14 and abs(s.rho_o - rho_o) < 1e-12
    assert s.condition1 == all(np.argmax(B[i]) == correct[i, -1] for i in range(Mt))


def test_condition1_fails_only_below_one_half():
    # tau_bounds' proof: a failing start has every path below probability 1/2.  Concentrated random
    # matrices (Dirichlet 0.3) fail Condition 1 in about a third of the draws, at tau up to ~0.5.
    rng = np.random.default_rng(7)
    taus = []
    for _ in range(2000):
        Mt, K = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        s = T.statistics(rng.dirichlet(0.3 * np.ones(Mt), size=(K, Mt)))
        if not s.condition1:
            taus.append(s.tau)
    assert len(taus) > 200 and max(taus) < 0.5 and max(taus) > 0.4


@settings(max_examples=30)
@given(Mt=st.integers(2, 6), K=st.integers(1, 5), u=st.floats(0.01, 1.0), seed=st.integers(0, 1000))
def test_generator_with_condition1_hits_tau_exactly(Mt, K, u, seed):
    low = Mt ** -K
    tau = low + u * (1 - low)
    s = T.statistics(T.generate(Mt, K, tau, None, True, np.random.default_rng(seed)))
    p = tau ** (1 / K)
    assert abs(s.tau - tau) < 1e-12 and s.condition1
    assert abs(s.rho - (p - (1 - p) / (Mt - 1))) < 1e-12      # evenly spread errors: the largest margin
    assert np.allclose(s.path_correct, tau, rtol=1e-12)        # the correct path is the most probable one


@settings(max_examples=30)
@given(Mt=st.integers(3, 6), K=st.integers(2, 4), u=st.floats(0.01, 0.99), w=st.floats(0.05, 0.95),
       seed=st.integers(0, 1000))
def test_generator_without_condition1_hits_tau_and_rho(Mt, K, u, w, seed):
    low = Mt ** -K
    tau = low + u * (0.5 - low)
    try:
        A = T.generate(Mt, K, tau, None, False, np.random.default_rng(seed))
    except ParamError as exc:   # beyond the family's reach: the message gives the limit, which must hold
        assert exc.name == "tau_f"
        assert tau >= T.failing_tau_limit(Mt, K) - 1e-9
        return
    s = T.statistics(A)
    assert abs(s.tau - tau) < 1e-12 and not s.condition1 and s.failing.all()
    # a requested rho inside the failing interval is met exactly
    lo, _ = T.rho_bounds(Mt, K, tau)
    edge = T.condition1_boundary(Mt, K, tau)
    rho = max(lo, 0.0) + w * (edge - max(lo, 0.0))
    s2 = T.statistics(T.generate(Mt, K, tau, rho, False))
    assert abs(s2.rho - rho) < 1e-12 and abs(s2.tau - tau) < 1e-12 and not s2.condition1


def test_generator_refusals_are_one_line_and_name_the_parameter():
    cases = [
        (dict(M_test=3, K=3, tau=0.03, rho=None, condition1=True), "tau_f", "(0.03704, 1]"),
        (dict(M_test=3, K=3, tau=0.6, rho=None, condition1=False), "tau_f", "< 1/2"),
        (dict(M_test=3, K=1, tau=0.4, rho=None, condition1=False), "condition1", "K >= 2"),
        (dict(M_test=2, K=2, tau=0.4, rho=None, condition1=False), "condition1", "M_test >= 3"),
        (dict(M_test=3, K=3, tau=0.45, rho=None, condition1=False), "tau_f", "< 0.4089"),
        (dict(M_test=3, K=3, tau=0.6, rho=0.95, condition1=True), "rho_f", "rho_f must be in"),
        (dict(M_test=3, K=3, tau=0.3, rho=0.45, condition1=False), "rho_f", "set condition1 = true"),
        (dict(M_test=3, K=0, tau=0.6, rho=None, condition1=True), "K", "integer >= 1"),
    ]
    for kw, name, needle in cases:
        with pytest.raises(ParamError) as err:
            T.generate(**kw)
        assert err.value.name == name and needle in str(err.value) and "\n" not in str(err.value), (kw, str(err.value))


@pytest.mark.parametrize("A, needle", [
    ([[[0.6, 0.3], [0.4, 0.6]]], "row-stochastic (every row sums to 1"),
    ([[[1.2, -0.2], [0.4, 0.6]]], "row-stochastic (entries >= 0)"),
    ([[[0.5, 0.5], [0.4, 0.6]]], "unique largest entry"),
    ([[0.2, 0.3, 0.5]], "square transition matrices"),
    ([[[np.nan, 1.0], [0.4, 0.6]]], "finite"),
])
def test_bad_matrices_are_refused(A, needle):
    with pytest.raises(ParamError) as err:
        T.statistics(A)
    assert err.value.name == "A_f" and needle in str(err.value) and "\n" not in str(err.value)
