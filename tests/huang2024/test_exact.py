"""The exact engine against independent routes (MODEL.md section 3) and the paper's invariants."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import gammaln
from scipy.stats import binom

import dynamics
from dynamics.models.huang2024.bruteforce import per_prompt, population_loss_grad_bruteforce
from dynamics.models.huang2024.classes import ClassStructure
from tests.strategies import prob_vectors, problems

# Brute-force enumeration sums at most C(16, 4) = 1820 exact terms in float64: its own rounding
# is ~1e-15, and the quadrature at the default step measured ~3e-14 (tests print nothing);
# the bar is 1e-12 absolute.
TOL = 1e-12


@given(problems())
def test_matches_bruteforce_enumeration(prob):
    theta, p, N, sigma2 = prob
    L, grad, L_k, attn = dynamics.population_loss_grad(theta, p, N, sigma2=sigma2, return_attention=True)
    L_b, grad_b, L_k_b, attn_b = population_loss_grad_bruteforce(theta, p, N, sigma2)
    assert abs(L - L_b) <= TOL
    np.testing.assert_allclose(L_k, L_k_b, rtol=0, atol=TOL)
    np.testing.assert_allclose(grad, grad_b, rtol=0, atol=TOL)
    np.testing.assert_allclose(attn, attn_b, rtol=0, atol=TOL)


def test_bruteforce_gradient_is_the_derivative_of_its_loss():
    """The oracle's per-prompt gradient formula (MODEL.md section 2) against central differences."""
    rng = np.random.default_rng(3)
    K, N, sigma2 = 4, 6, 0.4
    p = rng.dirichlet(np.ones(K))
    theta = rng.normal(size=(K, K))
    _, grad, _, _ = population_loss_grad_bruteforce(theta, p, N, sigma2)
    eps = 1e-5
    for n in range(K):
        for k in range(K):
            tp, tm = theta.copy(), theta.copy()
            tp[n, k] += eps
            tm[n, k] -= eps
            fd = (population_loss_grad_bruteforce(tp, p, N, sigma2)[0] - population_loss_grad_bruteforce(tm, p, N, sigma2)[0]) / (2 * eps)
            assert abs(fd - grad[n, k]) < 1e-9  # O(eps^2) truncation + 1e-16/eps rounding


@given(problems(bound=300.0))
def test_columns_sum_to_zero_and_large_spreads_stay_finite(prob):
    """Shift invariance of the softmax: every column of grad sums to 0; spreads of hundreds are fine."""
    theta, p, N, sigma2 = prob
    L, grad, L_k = dynamics.population_loss_grad(theta, p, N, sigma2=sigma2)
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(L_k))
    assert np.all(np.abs(grad.sum(axis=0)) <= 1e-12)
    assert np.all(L_k >= -1e-15)


@given(problems(noise=False))
def test_gradient_on_A_k_is_nonpositive(prob):
    """Per prompt d ell_k / d A_k = 2 Attn_k (2 Attn_k - S - 1) <= -2 Attn_k (1 - Attn_k)^2 <= 0."""
    theta, p, N, _ = prob
    _, grad, _ = dynamics.population_loss_grad(theta, p, N)
    assert np.all(np.diag(grad) <= TOL)  # up to the quadrature error (exactly 0 at N = 1)


@given(problems(), st.randoms(use_true_random=False))
def test_relabelling_features_permutes_the_result(prob, rnd):
    theta, p, N, sigma2 = prob
    K = p.size
    perm = np.array(rnd.sample(range(K), K))
    L, grad, L_k = dynamics.population_loss_grad(theta, p, N, sigma2=sigma2)
    L2, grad2, L_k2 = dynamics.population_loss_grad(theta[np.ix_(perm, perm)], p[perm], N, sigma2=sigma2)
    assert abs(L - L2) <= 1e-13
    np.testing.assert_allclose(L_k2, L_k[perm], rtol=0, atol=1e-13)
    np.testing.assert_allclose(grad2, grad[np.ix_(perm, perm)], rtol=0, atol=1e-13)


@given(st.integers(2, 50).flatmap(prob_vectors), st.integers(1, 10**9))
def test_loss_at_zero_has_the_closed_form(p, N):
    """L_k(0) = 1/2 [1 - 2 p_k + sum p^2 + (1 - sum p^2)/N]  (uniform attention over the prompt)."""
    K = p.size
    _, _, L_k = dynamics.population_loss_grad(np.zeros((K, K)), p, N)
    sp2 = np.sum(p**2)
    np.testing.assert_allclose(L_k, 0.5 * (1 - 2 * p + sp2 + (1 - sp2) / N), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------
# Symmetry classes against the general path.
@st.composite
def class_problems(draw):
    F = draw(st.integers(1, 3))
    sizes = np.array(draw(st.lists(st.integers(1, 3), min_size=F, max_size=F)))
    if sizes.sum() < 2:
        sizes[0] = 2
    w = draw(prob_vectors(F)) if F > 1 else np.ones(1)
    probs = w / sizes
    coords = draw(hnp.arrays(np.float64, (F, F + 1), elements=st.floats(-30, 30)))
    N = draw(st.integers(1, 40))
    sigma2 = draw(st.floats(0, 1))
    return ClassStructure(sizes, probs, tuple(f"c{i}" for i in range(F))), coords, N, sigma2


@given(class_problems())
def test_reduced_equals_general(cp):
    s, coords, N, sigma2 = cp
    ev = dynamics.reduced_loss_grad(coords, s, N, sigma2)
    theta = s.expand(coords)
    L, grad, L_k, attn = dynamics.population_loss_grad(theta, s.p, N, sigma2=sigma2, return_attention=True)
    assert abs(ev.L - L) <= TOL
    own = s.owner()
    np.testing.assert_allclose(ev.L_f[own], L_k, rtol=0, atol=TOL)
    # grad[n, k] = ev.grad[f(k), 1 + f(n)] off the diagonal, ev.grad[f(k), 0] on it.
    red = ev.grad[own[None, :], 1 + own[:, None]]
    red[np.arange(s.K), np.arange(s.K)] = ev.grad[own, 0]
    np.testing.assert_allclose(red, grad, rtol=0, atol=TOL)
    red_attn = ev.attn[own[None, :], 1 + own[:, None]]
    red_attn[np.arange(s.K), np.arange(s.K)] = ev.attn[own, 0]
    np.testing.assert_allclose(red_attn, attn, rtol=0, atol=TOL)


# ---------------------------------------------------------------------------------------
# Large N: class-total sums (MODEL.md section 3) and the large-N limit.
def _class_total_loss(coords_col, probs, sizes, N, sigma2, width=14.0):
    """E[ell_k] for a rare-feature query of the imbalanced setting by summing over class totals.

    Classes: own (1 feature), dominant (1), rest (m = K - 2); a_g = exp(theta_g). Given the
    totals C, E[sum_{n in rest} c_n^2 | C_rest] = C (1 - 1/m) + C^2 / m. Totals with
    probability below ~e^-100 are skipped (beyond `width` standard deviations).
    """
    p_own, p_dom, p_rest = probs
    m = sizes[2]
    a = np.exp(np.asarray(coords_col) - np.max(coords_col))

    def rng_of(pp):
        mu, sd = N * pp, np.sqrt(N * pp * (1 - pp))
        return np.arange(max(0, int(mu - width * sd - 20)), min(N, int(mu + width * sd + 20)) + 1)

    co, cd = np.meshgrid(rng_of(p_own), rng_of(p_dom), indexing="ij")
    co, cd = co.ravel().astype(float), cd.ravel().astype(float)
    cr = N - co - cd
    ok = cr >= 0
    co, cd, cr = co[ok], cd[ok], cr[ok]
    # Multinomial = Binomial(N, p_own) x Binomial(N - C_own, p_dom / (1 - p_own)); scipy's binomial
    # pmf is accurate to ~1e-15 relative, where gammaln differences lose ~1e-16 * N log N.
    w = binom.pmf(co, N, p_own) * binom.pmf(cd, N - co, p_dom / (1 - p_own))
    Z = a[0] * co + a[1] * cd + a[2] * cr
    sum_c2_rest = cr * (1 - 1 / m) + cr**2 / m
    S = ((a[0] * co) ** 2 + (a[1] * cd) ** 2 + a[2] ** 2 * sum_c2_rest) / Z**2
    noise = (a[0] ** 2 * co + a[1] ** 2 * cd + a[2] ** 2 * cr) / Z**2
    ell = 1 - 2 * a[0] * co / Z + S + sigma2 * noise
    return float(w @ ell), float(w.sum())


@pytest.mark.parametrize("N", [1000, 100_000])
def test_large_N_against_class_total_sums(N):
    K, p1, sigma2 = 1000, 0.5, 0.3
    s = ClassStructure.imbalanced(K, p1)
    coords = np.array([[2.0, 0.0, -0.5], [1.5, 0.7, -0.3]])
    ev = dynamics.reduced_loss_grad(coords, s, N, sigma2)
    probs = (s.probs[1], s.probs[0], s.probs[1])
    sizes = (1, 1, K - 2)
    ell, mass = _class_total_loss(coords[1], probs, sizes, N, sigma2)
    assert abs(mass - 1) < 1e-13  # the truncation kept all the probability
    assert abs(0.5 * ell - ev.L_f[1]) < 1e-12
    # Gradient: d E[ell] / d(class coordinate) = (class size) * per-member gradient.
    eps = 1e-5
    for j, size in enumerate(sizes):
        cp, cm = coords[1].copy(), coords[1].copy()
        cp[j] += eps
        cm[j] -= eps
        fd = (_class_total_loss(cp, probs, sizes, N, sigma2)[0] - _class_total_loss(cm, probs, sizes, N, sigma2)[0]) / (2 * eps)
        per_member = ev.grad[1, j] / (0.5 * s.probs[1])
        assert abs(fd - size * per_member) < 1e-8  # central differences: O(eps^2) + 1e-16/eps


def _limit(coords_col, probs, sizes):
    """Large-N limit c/N -> p: Attn_n = p_n a_n / sum p a (MODEL.md section 3), per member."""
    a = np.exp(np.asarray(coords_col) - np.max(coords_col))
    pa = np.asarray(probs) * a
    att = pa / np.sum(np.asarray(sizes) * pa)
    S = np.sum(np.asarray(sizes) * att**2)
    ell = 1 - 2 * att[0] + S
    grad = 2 * att * (att[0] + att - S)
    grad[0] -= 2 * att[0]
    return ell, grad, att


def test_large_N_limit_up_to_a_billion():
    """Up to N = 1e9 the exact quantities approach the c/N -> p limit like 1/(N p_min), and
    N (ell_N - ell_inf) converges to a constant: at N = 1e9 the engine still resolves the 1/N
    term to ~1e-5 relative (any loss of precision of order N * 1e-16 would show here)."""
    s = ClassStructure.imbalanced(10, 0.3)
    coords = np.array([[3.0, 0.0, 0.2], [2.0, 1.0, -0.4]])
    cols = [(s.probs[0], 0.0, s.probs[1]), (s.probs[1], s.probs[0], s.probs[1])]
    sizes = [(1, 0, s.K - 1), (1, 1, s.K - 2)]
    pmin = s.probs.min()
    coef = {}
    for N in (10**6, 10**7, 10**8, 10**9):
        ev = dynamics.reduced_loss_grad(coords, s, N)
        for f in range(2):
            ell, grad, att = _limit(coords[f], cols[f], sizes[f])
            tol = 10.0 / (N * pmin)
            assert abs(2 * ev.L_f[f] - ell) < tol
            occupied = np.array(sizes[f]) > 0
            np.testing.assert_allclose(ev.attn[f][occupied], att[occupied], rtol=0, atol=tol)
            np.testing.assert_allclose((ev.grad[f] / (0.5 * cols[f][0]))[occupied], grad[occupied], rtol=0, atol=tol)
            coef[N, f] = N * (2 * ev.L_f[f] - ell)
    for f in range(2):
        c9 = coef[10**9, f]
        assert abs(c9) > 1e-3  # a real 1/N correction, not rounding noise
        for N in (10**7, 10**8):
            # second-order terms are O(1/(N p_min)) relative; rounding adds ~1e-16 N / |c|
            assert abs(coef[N, f] - c9) < (20.0 / (N * pmin) + 1e-6) * abs(c9)


def test_large_N_against_enumeration_of_three_features():
    """N = 600, K = 3: the 180901 count vectors enumerated directly."""
    N = 600
    c1, c2 = np.meshgrid(np.arange(N + 1), np.arange(N + 1), indexing="ij")
    ok = c1 + c2 <= N
    counts = np.stack([c1[ok], c2[ok], N - c1[ok] - c2[ok]], axis=1)
    p = np.array([0.6, 0.3, 0.1])
    theta = np.array([[4.0, -1.0, 0.5], [0.0, 3.0, -2.0], [-3.0, 1.0, 6.0]])
    logw = gammaln(N + 1) - gammaln(counts + 1).sum(1) + (counts * np.log(p)).sum(1)
    w = np.exp(logw)
    _, grad, L_k = dynamics.population_loss_grad(theta, p, N, sigma2=0.2)
    for k in range(3):
        ell, g, _ = per_prompt(theta[:, k], k, counts, 0.2)
        assert abs(0.5 * (w @ ell) - L_k[k]) < 1e-12
        np.testing.assert_allclose(0.5 * p[k] * (w @ g), grad[:, k], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(p=[0.5, 0.6]), "p must be a probability vector summing to 1"),
        (dict(p=[1.2, -0.2]), "p must be a probability vector with entries >= 0"),
        (dict(p=[np.nan, 1.0]), "p must be a probability vector with finite entries"),
        (dict(p=[1.0]), "K >= 2"),
        (dict(N=0), "N must be an integer >= 1"),
        (dict(N=2.5), "N must be an integer >= 1"),
        (dict(theta=np.zeros((3, 3))), r"theta must have shape \(K, K\)"),
        (dict(theta=np.array([[0, np.inf], [0, 0]])), "theta must be finite"),
        (dict(sigma2=-1), "sigma2 must be"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(theta=np.zeros((2, 2)), p=[0.5, 0.5], N=3, sigma2=0.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dynamics.population_loss_grad(**args)


def test_generated_kernels_are_up_to_date():
    """Regenerate every generated kernel module from its sympy derivation; any difference fails."""
    from derivations.build import targets

    for mod, target, text in targets():
        with open(target) as fh:
            committed = fh.read()
        assert committed == text, f"run `python -m derivations.build` and commit {target}"
