"""Monte Carlo training of the full matrix Q (dynamics.models.huang2024.montecarlo) against the exact oracle.

The independent reference is :func:`dynamics.models.huang2024.bruteforce.population_loss_grad_bruteforce`
(exact population loss and gradient w.r.t. ``theta`` by enumerating count vectors).
With orthonormal features ``dL/dQ = V (dL/dtheta) V^T`` (MODEL.md section 2).

Statistical tolerances are stated next to each test.  Sample sizes were calibrated
offline: over 300 random configurations of the gradient test (about 6000 compared
entries) the largest |MC - exact| / SE seen was 3.3; over 64 replicas the trajectory
z-scores had mean 0.00 and standard deviation 0.95; over 30 repetitions of the
empirical-GD experiment the fitted slope was -0.50 +- 0.03 (range -0.55 to -0.43).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from dynamics.models.huang2024 import mc_kernels as mc
from dynamics.models.huang2024.bruteforce import population_loss_grad_bruteforce
from dynamics.models.huang2024.montecarlo import DivergenceError, make_features, mc_gradient, run_replicas, train_mc

P_IMB = np.array([0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3])  # imbalanced: p_1 = 1/2, the rest equal


def exact_gd(theta0, p, N, eta, steps, sigma2=0.0):
    """The exact population-GD trajectory ``theta <- theta - eta dL/dtheta`` (bruteforce gradient)."""
    th = np.array(theta0, dtype=np.float64)
    traj = [th.copy()]
    for _ in range(steps):
        th = th - eta * population_loss_grad_bruteforce(th, p, N, sigma2)[1]
        traj.append(th.copy())
    return np.array(traj)


# ----------------------------------------------------------------------------- gradient and loss
@st.composite
def configs(draw):
    K = draw(st.integers(1, 5))
    d = K + draw(st.integers(0, 2))
    N = draw(st.integers(1, 10))  # enumeration has at most C(14, 4) = 1001 count vectors
    # p in the open simplex, bounded away from 0 (p_k >= 0.2 / 4.2 ~ 0.05): every query
    # feature then appears in ~5000 of the 1e5 sampled prompts, enough for the CLT and for
    # the sample SE to be reliable.  A p_k -> 0 would make column k a rare-event estimate
    # whose SE is itself unreliable (zero hits: estimate 0 with SE 0).
    w = draw(hnp.arrays(np.float64, K, elements=st.floats(0.2, 1.0)))
    theta = draw(hnp.arrays(np.float64, (K, K), elements=st.floats(-3.0, 3.0)))
    sigma2 = draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0)))
    task = draw(st.sampled_from(["gaussian", "rademacher"]))
    seed = draw(st.integers(0, 2**32 - 1))
    return K, d, N, w / w.sum(), theta, sigma2, task, seed


# 1e5 prompts cost ~50 ms; with N >= 2 a batch has >= 2e5 tokens and runs in the
# parallel kernel, with N = 1 in the serial one, so both are exercised.
B_GRAD = 100_000
N_EVAL = 20_000  # evaluation prompts per query feature for L_k
Z_TOL = 5.0  # standard errors.  Per entry a Gaussian exceeds 5 SE with prob 5.7e-7; with
# <= 25 examples x <= 49 entries the run's false-alarm rate is below 1e-3 even if the
# entries were independent (they are strongly correlated, so it is smaller).
SE_FLOOR = 1e-12  # entries whose SE is ~0 (K = 1 without noise: gradient and loss are 0 up to rounding)


@settings(deadline=None, max_examples=25)
@given(configs())
def test_mc_gradient_and_loss_match_bruteforce(cfg):
    K, d, N, p, theta, sigma2, task, seed = cfg
    V = make_features(K, d, random_state=seed)
    Q = V @ theta @ V.T
    L_ex, g_ex, Lk_ex, _ = population_loss_grad_bruteforce(theta, p, N, sigma2)
    G_ex = V @ g_ex @ V.T
    L, G, G_se, L_se = mc_gradient(Q, V, p, N, B_GRAD, sigma2=sigma2, task=task, random_state=seed)

    assert G.shape == G_se.shape == (d, d)
    assert np.all(np.abs(G - G_ex) <= Z_TOL * (G_se + SE_FLOOR)), np.max(np.abs(G - G_ex) / (G_se + SE_FLOOR))
    assert abs(L - L_ex) <= Z_TOL * (L_se + SE_FLOOR)
    # The gradient lies in span{v_n v_k^T}: its component outside is rounding only.
    P = V @ V.T
    assert np.linalg.norm(G - P @ G @ P) < 1e-10

    # Per-feature errors L_k from the trainer's evaluation set (query fixed to v_k).
    res = train_mc(K, d, p, N, 1.0, 0, V=V, Q0=Q, sigma2=sigma2, task=task, n_eval=N_EVAL,
                   record_at=[0], random_state=seed)
    np.testing.assert_allclose(res.theta[0], theta, atol=1e-12)
    assert np.all(np.abs(res.L_k[0] - Lk_ex) <= Z_TOL * (res.L_k_se[0] + SE_FLOOR))
    assert abs(res.loss[0] - L_ex) <= Z_TOL * (res.loss_se[0] + SE_FLOOR)


def test_standard_errors_are_calibrated():
    # The tests above use the reported SEs as their yardstick, so check them separately:
    # over n independent estimates, the mean of ((estimate - exact) / SE)^2 must be ~1.
    # For a Gaussian estimate it is ~chi2_n / n: n = 400 (sd 0.07) for the loss and the
    # gradient entries (correlated, so at least 400 effective samples), 200 x 4 for L_k and
    # L.  The losses are heavy-tailed (squares of Gaussian mixtures), which widens this;
    # 5 x 4 repetitions with other seeds gave means in [0.92, 1.26], so [0.6, 1.6] leaves a
    # wide margin.  An SE off by a factor 1.5 (mean 0.44 or 2.25) fails.
    K, d, N, sigma2 = 3, 4, 5, 0.3
    p = np.array([0.5, 0.3, 0.2])
    theta = np.random.default_rng(0).uniform(-2, 2, (K, K))
    V = make_features(K, d, random_state=1)
    Q = V @ theta @ V.T
    L_ex, g_ex, Lk_ex, _ = population_loss_grad_bruteforce(theta, p, N, sigma2)
    G_ex = V @ g_ex @ V.T
    zg, zl, zk = [], [], []
    for child in np.random.SeedSequence(7).spawn(400):
        L, G, G_se, L_se = mc_gradient(Q, V, p, N, 1000, sigma2=sigma2, random_state=child)
        zg.append(((G - G_ex) / G_se) ** 2)
        zl.append(((L - L_ex) / L_se) ** 2)
    for child in np.random.SeedSequence(8).spawn(200):
        r = train_mc(K, d, p, N, 1.0, 0, V=V, Q0=Q, sigma2=sigma2, n_eval=2000, random_state=child)
        zk.append(((r.L_k[0] - Lk_ex) / r.L_k_se[0]) ** 2)
        zk.append([((r.loss[0] - L_ex) / r.loss_se[0]) ** 2])
    for z in (zg, zl, np.concatenate(zk)):
        assert 0.6 < np.mean(z) < 1.6, np.mean(z)


def test_serial_and_parallel_kernels_agree():
    # Same per-prompt code in both kernels, no fastmath: the results must agree to rounding.
    K, d, N, B = 5, 7, 30, 4000
    V = make_features(K, d, random_state=1)
    sampler = mc.Sampler(V, np.full(K, 1 / K), N, 0.3, "gaussian")
    feats, z, noise = sampler.draw(np.random.default_rng(2), B)
    theta_cols = np.ascontiguousarray(np.random.default_rng(3).uniform(-3, 3, (K, K)).T)
    out = []
    for parallel in (False, True):
        loss, g = np.empty(B), np.empty((B, K))
        if parallel:
            mc._loss_grad_parallel(theta_cols, feats, z, noise, 8, loss, g)
        else:
            mc._loss_grad_serial(theta_cols, feats, z, noise, loss, g)
        out.append((loss, g))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-14, atol=0)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-14, atol=1e-300)


def test_sampled_features_follow_p():
    # 2e5 x 7 draws; a frequency within 5 SE of p_k (Gaussian tail 6e-7 per feature);
    # a feature with p_k = 0 must never be drawn.
    p = np.array([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    sampler = mc.Sampler(make_features(6, 6, kind="standard"), p, 6, 0.0, "gaussian")
    feats, _, _ = sampler.draw(np.random.default_rng(0), 200_000)
    n = feats.size
    freq = np.bincount(feats.ravel(), minlength=6) / n
    assert np.all(freq[p == 0] == 0)
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n))


# ----------------------------------------------------------------------------- trajectories
def test_online_sgd_follows_exact_population_gd():
    # Imbalanced K = 4 (p_1 = 1/2), N = 8, eta = 1, 300 steps: A_1 grows 0 -> 2.6, the rare
    # features' A_k to ~2.7 and B_{k,n} to -1.5, a nonlinear trajectory.  d = 6 > K with
    # random V, so Q is a dense 6 x 6 matrix with a non-trivial complement of the span.
    K, d, N, eta, steps = 4, 6, 8, 1.0, 300
    R, B = 32, 500  # 32 x 300 x 500 prompts, about 2 s
    rec = np.array([0, 25, 50, 100, 200, 300])
    ref = exact_gd(np.zeros((K, K)), P_IMB, N, eta, steps)[rec]
    res = run_replicas(R, K, d, P_IMB, N, eta, steps, B=B, record_at=rec, n_eval=0, random_state=2024)

    assert res.theta.shape == (R, rec.size, K, K)
    np.testing.assert_array_equal(res.theta[:, 0], 0.0)  # Q0 = 0
    # Q starts in the span and every update lies in it: the complement stays at rounding level.
    assert np.max(res.off_span) < 1e-12 * max(1.0, np.max(np.abs(res.Q)))
    # Replicas are independent streams.
    assert not np.allclose(res.theta[0, -1], res.theta[1, -1])

    # z-test of the replica mean against the exact GD trajectory, per entry and recorded
    # step (t statistic, R - 1 = 31 degrees of freedom, since the SE is estimated from the
    # replicas).  m = 5 steps x 16 entries = 80 tests; Bonferroni at a family-wise level of
    # 1e-4 gives the per-test two-sided level 1e-4 / 80, i.e. |t| < 6.0.  SGD's mean
    # differs from GD by O(eta^2 Var/B) (second order), which against the SE
    # O(1/sqrt(R B)) is negligible here (measured: z std 0.95 with 64 replicas).
    # Power: the SE of the mean at step 300 is ~0.003, so a 2 % error in the gradient
    # (|theta| ~ 1-3) is a >5 sigma miss.
    m = (rec.size - 1) * K * K
    thr = stats.t.ppf(1 - 1e-4 / (2 * m), R - 1)
    mean = res.theta[:, 1:].mean(axis=0)
    se = res.theta[:, 1:].std(axis=0, ddof=1) / np.sqrt(R)
    assert np.all(se > 0)
    t = (mean - ref[1:]) / se
    assert np.max(np.abs(t)) < thr, (np.max(np.abs(t)), thr)


def test_empirical_gd_approaches_population_gd_like_inverse_sqrt_M():
    # Full-batch GD on M fixed prompts deviates from population GD through the sampling
    # error of the empirical gradient, O(M^-1/2) (plus an O(1/M) second-order term).  The
    # gap ||theta_M - theta_exact||_F after 100 steps, averaged over 6 training sets per M,
    # is fitted on a log-log scale over M = 100 ... 6400 (a factor 64).  Calibration: 30
    # repetitions gave slopes -0.50 +- 0.03, so the tolerance 0.2 is ~7 sigma.
    K, d, N, eta, steps = 4, 5, 8, 1.0, 100
    Ms = np.array([100, 400, 1600, 6400])
    ref = exact_gd(np.zeros((K, K)), P_IMB, N, eta, steps)[-1]
    seeds = np.random.SeedSequence(99).spawn(Ms.size)
    gaps = []
    for M, ss in zip(Ms, seeds):
        runs = [train_mc(K, d, P_IMB, N, eta, steps, mode="empirical", M=int(M), record_at=[steps],
                         n_eval=0, random_state=child) for child in ss.spawn(6)]
        gaps.append(np.mean([np.linalg.norm(r.theta[-1] - ref) for r in runs]))
    slope = np.polyfit(np.log(Ms), np.log(gaps), 1)[0]
    assert abs(slope + 0.5) < 0.2, (slope, gaps)
    assert gaps[-1] < 0.05 * np.linalg.norm(ref)


def test_empirical_mode_is_gradient_descent_on_a_fixed_training_set():
    # GD on a fixed smooth objective with a small step decreases it at every step (descent
    # lemma); online SGD's batch loss, on fresh batches, does not.  This is what tells the
    # two modes apart (the M^-1/2 test above would also pass for online SGD with B = M).
    kw = dict(M=50, B=50, n_eval=0, random_state=4)
    emp = train_mc(4, 5, P_IMB, 8, 0.5, 60, mode="empirical", **kw)
    onl = train_mc(4, 5, P_IMB, 8, 0.5, 60, mode="online", **kw)
    assert np.all(np.diff(emp.train_loss) <= 0)
    assert np.any(np.diff(onl.train_loss) > 0)
    assert emp.batch == 50 and emp.mode == "empirical"


# ----------------------------------------------------------------------------- invariances
def test_theta_trajectory_does_not_depend_on_V():
    # Gaussian task: the labels are drawn as z = V^T w ~ N(0, I_K) directly, so two runs with
    # the same stream but different V (standard in R^4, random in R^6) see the same prompts
    # and their theta must agree to rounding, although their Q are unrelated.
    kw = dict(B=64, record_at=[0, 10, 40], n_eval=0, random_state=5, sigma2=0.2)
    a = train_mc(4, 4, P_IMB, 6, 1.0, 40, V=make_features(4, 4, kind="standard"), **kw)
    b = train_mc(4, 6, P_IMB, 6, 1.0, 40, V=make_features(4, 6, random_state=8), **kw)
    np.testing.assert_allclose(a.theta, b.theta, atol=1e-12)
    assert np.abs(a.theta[-1]).max() > 0.1


def test_component_outside_feature_span_never_moves():
    # MODEL.md section 2: the part of Q outside span{v_n v_k^T} never moves and does not
    # change the scores.  Q0 = E = X - P X P (P = V V^T, so V^T E V = 0) must give the same
    # theta as Q0 = 0 and a constant off_span = ||E||_F.
    K, d = 3, 6
    V = make_features(K, d, random_state=0)
    X = np.random.default_rng(1).standard_normal((d, d))
    P = V @ V.T
    E = X - P @ X @ P
    kw = dict(V=V, B=32, record_at=[0, 5, 30], n_eval=50, random_state=11)
    a = train_mc(K, d, None, 5, 2.0, 30, **kw)
    b = train_mc(K, d, None, 5, 2.0, 30, Q0=E, **kw)
    np.testing.assert_allclose(a.theta, b.theta, atol=1e-12)
    np.testing.assert_allclose(b.off_span, np.linalg.norm(E), rtol=1e-12)
    assert np.max(a.off_span) < 1e-13


def test_reproducible_and_recording_does_not_change_training():
    kw = dict(B=16, n_eval=20, sigma2=0.1, task="rademacher")
    a = train_mc(3, 4, None, 5, 1.0, 25, record_at=[25], random_state=3, **kw)
    b = train_mc(3, 4, None, 5, 1.0, 25, record_at=np.arange(26), random_state=3, **kw)
    c = train_mc(3, 4, None, 5, 1.0, 25, record_at=[25], random_state=np.random.default_rng(3), **kw)
    np.testing.assert_array_equal(a.Q, b.Q)  # evaluation uses its own stream
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    np.testing.assert_array_equal(a.theta[-1], b.theta[-1])
    assert a.train_loss.shape == (25,) and np.all(np.isfinite(a.train_loss))
    assert c.Q.shape == (4, 4)
    # default record_at: log-spaced, starting at 0 and ending at steps
    d = train_mc(2, 2, None, 3, 1.0, 1000, B=4, n_eval=0, random_state=0)
    assert d.step[0] == 0 and d.step[-1] == 1000 and np.all(np.diff(d.step) > 0)


# ----------------------------------------------------------------------------- bad input
GOOD = dict(K=3, d=4, p=None, N=5, eta=1.0, steps=2)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(d=2), "d must be >= K"),
        (dict(K=0), "K must be"),
        (dict(B=0), "B must be"),
        (dict(M=0, mode="empirical"), "M must be"),
        (dict(N=0), "N must be"),
        (dict(eta=0.0), "eta must be"),
        (dict(eta=-1.0), "eta must be"),
        (dict(eta=np.nan), "eta must be"),
        (dict(steps=-1), "steps must be"),
        (dict(sigma2=-0.1), "sigma2 must be"),
        (dict(p=[0.5, 0.5, 0.5]), "p must be a probability vector"),
        (dict(p=[1.2, -0.1, -0.1]), "p must be a probability vector"),
        (dict(p=[0.5, 0.5]), "p must be a probability vector"),
        (dict(V=np.ones((4, 3))), "V must have orthonormal columns"),
        (dict(V=np.eye(3)), r"V must have shape"),
        (dict(Q0=np.full((4, 4), np.inf)), "Q0 must be"),
        (dict(mode="batch"), "mode must be"),
        (dict(task="uniform"), "task must be"),
        (dict(record_at=[3]), "record_at"),
        (dict(n_eval=1), "n_eval must be"),
        (dict(random_state="x"), "random_state"),
    ],
)
def test_train_mc_rejects_bad_input(change, match):
    kw = {**GOOD, **change}
    with pytest.raises(ValueError, match=match):
        train_mc(kw.pop("K"), kw.pop("d"), kw.pop("p"), kw.pop("N"), kw.pop("eta"), kw.pop("steps"), **kw)


def test_other_entry_points_reject_bad_input():
    V = make_features(3, 4, random_state=0)
    with pytest.raises(ValueError, match="d must be >= K"):
        make_features(3, 2)
    with pytest.raises(ValueError, match="kind"):
        make_features(3, 4, kind="haar")
    with pytest.raises(ValueError, match="V must have orthonormal"):
        mc_gradient(np.zeros((4, 4)), 2 * V, None, 5, 10)
    with pytest.raises(ValueError, match="B must be"):
        mc_gradient(np.zeros((4, 4)), V, None, 5, 1)
    with pytest.raises(ValueError, match="Q must be"):
        mc_gradient(np.zeros((3, 3)), V, None, 5, 10)
    with pytest.raises(ValueError, match="R must be"):
        run_replicas(0, 3, 4, None, 5, 1.0, 2)


# ----------------------------------------------------------------------------- divergence
def test_overflowing_Q_raises_divergence_error_at_step_0():
    # Q0 is finite but theta = V^T Q0 V overflows (1.7e308 * 2 / sqrt 2 > 1.8e308).
    V = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2.0)
    with pytest.raises(DivergenceError, match="diverged at step 0.*smaller eta") as info:
        train_mc(2, 2, None, 4, 1.0, 10, V=V, Q0=np.full((2, 2), 1.7e308), random_state=0)
    assert info.value.step == 0 and info.value.result.step.size == 0


def test_divergence_keeps_the_records_made_so_far(monkeypatch):
    # The model's gradient is bounded, so a real blow-up needs overflow; inject a
    # non-finite loss at step 3 to check the bookkeeping.
    real = mc.prompt_losses_grads
    calls = {"n": 0}

    def batch(*args, **kwargs):
        loss, g = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:
            loss[0] = np.nan
        return loss, g

    monkeypatch.setattr(mc, "prompt_losses_grads", batch)
    with pytest.raises(DivergenceError, match="diverged at step 3") as info:
        train_mc(3, 3, None, 4, 0.5, 10, B=8, record_at=np.arange(11), n_eval=0, random_state=0)
    err = info.value
    assert err.step == 3
    np.testing.assert_array_equal(err.result.step, [0, 1, 2, 3])
    assert err.result.theta.shape == (4, 3, 3) and np.all(np.isfinite(err.result.theta))
    assert err.result.train_loss.shape == (3,)
