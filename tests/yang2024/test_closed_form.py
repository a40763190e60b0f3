"""The closed form of Yang et al.'s population loss (MODEL.md section 7) against independent routes:
brute-force Monte Carlo over (lambda, eps), central finite differences, the optimum's algebra,
and the two parameterisations of GD (full Q_h and reduced theta_h) against each other."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import linalg
from scipy.special import softmax

from dynamics.core.params import ParamError
from dynamics.models.yang2024 import Problem, population_loss_grad
from dynamics.models.yang2024 import closed_form as cf
from dynamics.models.yang2024.data import draw_dictionary
from dynamics.models.yang2024.stability import smoothness


def instance(seed, d=5, K=8, N=4, m=3, H=3, tau=0.3, qscale=1.0, wscale=0.5):
    rng = np.random.default_rng(seed)
    V_all, Zhat = draw_dictionary(rng, d, K, m)
    Q = qscale * rng.standard_normal((H, d, d))
    w = wscale * rng.standard_normal((H, K))
    return Q, w, V_all, Zhat, N, tau


def brute_attention(Q, V_all, N):
    """s_k^h = softmax(V^T Q_h v_k), one token and one head at a time (scipy's softmax)."""
    H, K = Q.shape[0], V_all.shape[1]
    V = V_all[:, :N]
    S = np.empty((H, N, K))
    for h in range(H):
        for k in range(K):
            S[h, :, k] = softmax(V.T @ Q[h] @ V_all[:, k])
    return S


def brute_prompts(rng, n, Zhat, tau, kind):
    """Labels y_k = lambda^T (z_k + eps_k) with the m-vectors eps_k drawn literally."""
    m, K = Zhat.shape
    lam = rng.standard_normal((n, m)) if kind == "gaussian" else rng.choice([-1.0, 1.0], size=(n, m))
    eps = np.sqrt(tau) * rng.standard_normal((n, K, m))
    return lam @ Zhat + np.einsum("bm,bkm->bk", lam, eps)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_loss_and_w_gradient_match_monte_carlo(seed, kind):
    """Per-prompt loss 1/2 sum_k (yhat_k - y_k)^2 and its w-gradient averaged over 2e5 prompts:
    the closed form must lie within 4 standard errors (Rademacher tasks too: only E[lambda
    lambda^T] = I enters).  4 SE per entry: a correct closed form fails one of the 1 + 24 entries
    with probability ~ 25 x 6e-5; the seeds are fixed."""
    Q, w, V_all, Zhat, N, tau = instance(seed)
    L, _, _, gw = population_loss_grad(Q, w, V_all, Zhat, N, tau)
    rng = np.random.default_rng(100 + seed)
    n = 200_000
    y = brute_prompts(rng, n, Zhat, tau, kind)
    S = brute_attention(Q, V_all, N)
    proj = np.einsum("bn,hnk->bhk", y[:, :N], S)            # y^T s_k^h per prompt
    yhat = np.einsum("bhk,hk->bk", proj, w)
    err = yhat - y
    ell = 0.5 * (err ** 2).sum(axis=1)
    assert abs(ell.mean() - L) <= 4 * ell.std(ddof=1) / np.sqrt(n)
    gsample = err[:, None, :] * proj                         # d ell / d w_{h,k}
    se = gsample.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(gsample.mean(axis=0) - gw) <= 4 * se)


def test_monte_carlo_detects_a_wrong_noise_scale():
    """The Monte Carlo route has power: the noise entering as tau (not m tau) is rejected."""
    Q, w, V_all, Zhat, N, tau = instance(0)
    L_wrong = population_loss_grad(Q, w, V_all, Zhat, N, tau / Zhat.shape[0])[0]
    y = brute_prompts(np.random.default_rng(7), 200_000, Zhat, tau, "gaussian")
    S = brute_attention(Q, V_all, N)
    yhat = np.einsum("bn,hnk,hk->bk", y[:, :N], S, w)
    ell = 0.5 * ((yhat - y) ** 2).sum(axis=1)
    assert abs(ell.mean() - L_wrong) > 4 * ell.std(ddof=1) / np.sqrt(ell.size)


@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_central_differences(seed):
    """Every entry of dL/dQ and dL/dw against central differences with step 1e-5: truncation
    ~1e-10 x L''' and rounding ~1e-16 x L / 1e-5 ~ 1e-10, far inside 1e-7 of max |grad|."""
    Q, w, V_all, Zhat, N, tau = instance(seed, d=3, K=5, N=3, m=2, H=2, tau=0.2, qscale=1.5)
    _, _, gQ, gw = population_loss_grad(Q, w, V_all, Zhat, N, tau)
    h = 1e-5

    def L(Qx, wx):
        return population_loss_grad(Qx, wx, V_all, Zhat, N, tau)[0]

    fdQ = np.zeros_like(Q)
    for idx in np.ndindex(Q.shape):
        E = np.zeros_like(Q)
        E[idx] = h
        fdQ[idx] = (L(Q + E, w) - L(Q - E, w)) / (2 * h)
    fdw = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        E = np.zeros_like(w)
        E[idx] = h
        fdw[idx] = (L(Q, w + E) - L(Q, w - E)) / (2 * h)
    scale = max(np.abs(gQ).max(), np.abs(gw).max())
    assert np.abs(fdQ - gQ).max() <= 1e-7 * scale
    assert np.abs(fdw - gw).max() <= 1e-7 * scale


def test_optimum_algebra():
    """A = G^{-1} C with c_k = E[y y_k]; L* = 1/2 sum_k (|z_k|^2 + m tau - c_k^T G^{-1} c_k) by the
    textbook formula (well conditioned here); at a_k = A_{:,k} the gap and gradients vanish."""
    rng = np.random.default_rng(4)
    d, K, N, m, H, tau = 6, 10, 4, 3, 6, 0.5
    V_all, Zhat = draw_dictionary(rng, d, K, m)
    prob = Problem(V_all, Zhat, N, tau)
    Z = Zhat[:, :N]
    G = Z.T @ Z + m * tau * np.eye(N)
    C = Z.T @ Zhat
    C[:, :N] += m * tau * np.eye(N)
    A = np.linalg.solve(G, C)
    np.testing.assert_allclose(prob.A, A, rtol=0, atol=1e-12)
    L_star = 0.5 * sum(Zhat[:, k] @ Zhat[:, k] + m * tau - C[:, k] @ A[:, k] for k in range(K))
    assert abs(prob.L_star - L_star) <= 1e-12 * L_star
    # w with sum_h w_{h,k} s_k^h = A_{:,k} exactly (H >= N: S_k has full row rank)
    Q = rng.standard_normal((H, d, d))
    S = brute_attention(Q, V_all, N)
    w = np.stack([np.linalg.lstsq(S[:, :, k].T, A[:, k], rcond=None)[0] for k in range(K)], axis=1)
    L, Ls, gQ, gw = population_loss_grad(Q, w, V_all, Zhat, N, tau)
    ev = cf.evaluate(prob, cf.theta_of_Q(prob, Q), w)
    assert ev.gap <= 1e-24
    assert np.abs(gQ).max() <= 1e-12 and np.abs(gw).max() <= 1e-12


def test_gap_is_the_direct_quadratic_form_not_a_difference():
    """Near the optimum L - L* comes out with full relative precision: it equals
    1/2 sum_k D_k^T G D_k for a perturbation of size 1e-9 (a difference L - L* of two O(10)
    numbers would carry an absolute error ~1e-15, i.e. ~100% of a 1e-17 gap)."""
    rng = np.random.default_rng(5)
    prob = Problem(*draw_dictionary(rng, 6, 10, 3), 4, 0.5)
    H = 6
    Q = rng.standard_normal((H, 6, 6))
    theta = cf.theta_of_Q(prob, Q)
    S = cf.softmax_columns(theta)
    w = np.stack([np.linalg.lstsq(S[:, :, k].T, prob.A[:, k], rcond=None)[0] for k in range(10)], axis=1)
    dw = 1e-9 * rng.standard_normal(w.shape)
    ev = cf.evaluate(prob, theta, w + dw)
    D = ev.a - prob.A
    ref = 0.5 * np.einsum("nk,nm,mk->", D, prob.G, D)
    assert ev.gap > 0 and abs(ev.gap - ref) <= 1e-8 * ref


def gd_both(prob, Q0, w0, eta, gamma2, steps):
    """GD on (Q_h, w) and on (theta_h, w) with the preconditioned step, side by side."""
    Q, wq = Q0.copy(), w0.copy()
    th, wt = cf.theta_of_Q(prob, Q0), w0.copy()
    for _ in range(steps):
        ev = cf.evaluate(prob, cf.theta_of_Q(prob, Q), wq)
        Q -= eta * cf.grad_Q(prob, ev.grad_theta)
        wq -= gamma2 * eta * ev.grad_w
        ev = cf.evaluate(prob, th, wt)
        th -= eta * cf.precondition(prob, ev.grad_theta)
        wt -= gamma2 * eta * ev.grad_w
    return Q, wq, th, wt


@settings(max_examples=25)
@given(st.integers(2, 6), st.integers(1, 5), st.integers(0, 3), st.integers(1, 5), st.integers(1, 4),
       st.floats(0.05, 1.0), st.floats(0.5, 2.0), st.integers(0, 2**32 - 1))
def test_full_and_reduced_trajectories_agree(d, N, extra, m, H, tau, gamma, seed):
    """1000 GD steps in both parameterisations at 1/8 of the initial stability limit 2/ell_0 (the
    sharpness grows along the run, ~2x in small problems; beyond the limit GD turns chaotic and
    amplifies rounding, so a stable step is part of the claim): theta_h(Q_h(t)) and
    theta_h(t), and the two w(t), agree to 1e-10 (rounding of ~1e3 steps of O(1) updates)."""
    K = N + extra
    rng = np.random.default_rng(seed)
    prob = Problem(*draw_dictionary(rng, d, K, m), N, tau)
    Q0 = rng.standard_normal((H, d, d))
    w0 = np.zeros((H, K))
    ell = smoothness(prob, cf.theta_of_Q(prob, Q0), w0, gamma)
    Q, wq, th, wt = gd_both(prob, Q0, w0, 0.25 / ell, gamma ** 2, 1000)
    scale = max(1.0, np.abs(th).max(), np.abs(wt).max())
    assert np.abs(cf.theta_of_Q(prob, Q) - th).max() <= 1e-10 * scale
    assert np.abs(wq - wt).max() <= 1e-10 * scale


def test_bad_input_names_the_argument():
    Q, w, V_all, Zhat, N, tau = instance(0)
    with pytest.raises(ParamError, match="N must be"):
        population_loss_grad(Q, w, V_all, Zhat, V_all.shape[1] + 1, tau)
    with pytest.raises(ParamError, match="tau must be"):
        population_loss_grad(Q, w, V_all, Zhat, N, -0.1)
    with pytest.raises(ParamError, match="tau = 0 needs N <= m"):
        population_loss_grad(Q, w, V_all, Zhat, N, 0.0)       # N = 4 > m = 3
    with pytest.raises(ValueError, match=r"Q must have shape \(H, d, d\)"):
        population_loss_grad(Q[:, :2], w, V_all, Zhat, N, tau)
    with pytest.raises(ValueError, match=r"w must have shape \(H, K\)"):
        population_loss_grad(Q, w[:, :3], V_all, Zhat, N, tau)
    bad = V_all.copy()
    bad[:, 2] = 0.0
    with pytest.raises(ParamError, match="non-zero norm"):
        population_loss_grad(Q, w, bad, Zhat, N, tau)
    nan = Q.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="Q must be finite"):
        population_loss_grad(nan, w, V_all, Zhat, N, tau)
    with pytest.raises(ParamError, match="same K"):
        population_loss_grad(Q, w, V_all, Zhat[:, :5], N, tau)


def test_tau_zero_with_enough_basis_functions():
    """tau = 0 and N <= m: least squares, L*_k = 1/2 |z_k - projection|^2 (exact interpolation
    of the prompt, A_{:,k} = e_k)."""
    rng = np.random.default_rng(6)
    V_all, Zhat = draw_dictionary(rng, 4, 7, 5)
    prob = Problem(V_all, Zhat, 3, 0.0)
    Z = Zhat[:, :3]
    P = Z @ linalg.pinv(Z)
    resid = Zhat[:, 3:] - P @ Zhat[:, 3:]
    assert abs(prob.L_star - 0.5 * (resid ** 2).sum()) <= 1e-12
    np.testing.assert_allclose(prob.A[:, :3], np.eye(3), atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("tau", [1e-2, 1e-10, 1e-13, 1e-15])
def test_gap_resolution_bounds_the_float64_errors_of_A_and_L_star(tau):
    """Against 50-digit arithmetic (mpmath): the gap at the true optimum evaluated with float64's
    A, and the relative error of L*, both stay below Problem.gap_resolution = (cond(G) eps)^2,
    and the estimate is not vacuous: it is below 1 for tau >= 1e-13 (N > m, cond(G) ~ 1/tau)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    V_all, Zhat = draw_dictionary(np.random.default_rng(0), 8, 16, 4)
    N, m = 5, 4
    pr = Problem(V_all, Zhat, N, tau)
    Z, Zq = mp.matrix(Zhat[:, :N].tolist()), mp.matrix(Zhat[:, N:].tolist())
    G = Z.T * Z + m * mp.mpf(tau) * mp.eye(N)
    A = mp.inverse(G) * (Z.T * Zq)
    L_star = sum(((Zq[:, k].T * Zq[:, k])[0] + m * mp.mpf(tau) - (Zq[:, k].T * Z * A[:, k])[0]) / 2
                 for k in range(Zq.cols))
    D = np.zeros_like(pr.A)
    D[:, N:] = np.array(A.tolist(), dtype=float) - pr.A[:, N:]
    RD = pr.G_chol @ D
    floor = 0.5 * float(np.sum(RD ** 2)) / pr.L_star
    err = abs(pr.L_star - float(L_star)) / float(L_star)
    assert floor <= pr.gap_resolution and err <= max(pr.gap_resolution, 4e-16)
    if tau >= 1e-13:
        assert pr.gap_resolution < 1
