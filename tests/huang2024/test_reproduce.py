"""Reproduction targets (dynamics.reproduce) and phase detection (dynamics.models.huang2024.phases): the numbers
behind each figure are checked against the paper's claims, not only that files exist."""
import os

import numpy as np
import pytest
import xarray as xr

from dynamics import reproduce as front
from dynamics.models.huang2024 import reproduce
from dynamics.models.huang2024.phases import detect_phases, phase_setting
from dynamics.simulate import simulate


def files(folder, *names):
    return all(os.path.getsize(os.path.join(folder, n)) > 0 for n in names)


# ---------------------------------------------------------------- stagewise
def test_stagewise_dominant_converges_first(tmp_path):
    r = reproduce.stagewise(str(tmp_path), quick=True)
    assert files(tmp_path, "stagewise.png", "stagewise.md", "stagewise.csv")
    bal, imb, big = r["runs"]
    for run in (imb, big):
        T = run["T"]  # (eps, class): class 0 dominant, class 1 rest
        assert np.all(np.isfinite(T))
        # Stage-wise convergence: the dominant query reaches every eps before the rare one.
        assert np.all(T[:, 0] < T[:, 1])
    # K = 100 with N = K^2: the rare feature's plateau is decades longer (T_k ~ K^2, T_1 ~ K^0).
    assert np.all(big["T"][:, 1] > 30 * big["T"][:, 0])
    # Each column of theta follows its own GD (MODEL.md section 2), so every L_k is
    # non-increasing for a stable step; 1e-12 relative slack for rounding in the quadrature.
    for run in r["runs"]:
        L = run["L_f"]
        assert np.all(np.diff(L, axis=0) <= 1e-12 * L[:-1])
    assert np.all(np.isfinite(bal["T"]))


# ---------------------------------------------------------------- attention
def test_attention_map_starts_at_frequencies_and_concentrates(tmp_path):
    r = reproduce.attention(str(tmp_path), quick=True)
    assert files(tmp_path, "attention.png", "attention.md", "attention.csv")
    K = 10
    p = {"balanced": np.full(K, 0.1), "imbalanced": np.r_[0.5, np.full(K - 1, 0.5 / (K - 1))]}
    for preset, maps in r["maps"].items():
        # Q = 0: every score is equal, Attn_n = c_n / N, so E[Attn_n] = p_n exactly.
        np.testing.assert_allclose(maps[0], np.tile(p[preset], (K, 1)), rtol=1e-12, atol=1e-14)
        # Attention concentration at the end (quick horizon 2e4 steps: E[Attn_k] ~ 0.97-0.99).
        assert np.all(np.diag(maps[-1]) > 0.95)
        res = r["runs"][preset]
        # (1 - E Attn_k)^2 <= E[(1 - Attn_k)^2] <= E[ell_k] = 2 L_k (Jensen; MODEL.md section 2).
        assert np.all((1 - res.attn[:, :, 0]) ** 2 <= 2 * res.L_f * (1 + 1e-12))
    # Stage-wise in attention: at t = 100 the dominant query already attends to its own
    # feature (> 0.8), the rare ones barely moved from p_k (< 0.2).
    m100 = r["maps"]["imbalanced"][r["iters"].index(100)]
    assert m100[0, 0] > 0.8 and np.all(np.diag(m100)[1:] < 0.2)


# ---------------------------------------------------------------- phases
def test_phase_detection_definitions():
    res = simulate(K=10, N=100, preset="imbalanced", p1=0.5, steps=8000, snapshots=800)
    assert res.method == "gd"
    rare = detect_phases(res, 1, eps=1e-3)
    assert rare.setting == "under-represented" and rare.names == ("I", "II", "III", "IV")
    i1 = np.searchsorted(res.t, rare.times[0])
    # tau_1 is where B_{k,n} stops growing: its maximum over the run lies within one snapshot of it.
    assert abs(int(np.argmax(res.coords[:, 1, 2])) - i1) <= 1
    i2 = np.searchsorted(res.t, rare.brackets[1, 1])
    assert res.attn[i2, 1, 0] >= res.attn[i2, 1, 1] and res.attn[i2 - 1, 1, 0] < res.attn[i2 - 1, 1, 1]
    # The times are exact GD steps inside their snapshot brackets: replaying GD confirms tau_2.
    m, c = res.model, res.state_at(i2 - 1)
    for _ in range(int(res.t[i2 - 1]), int(rare.times[1]) - 1):
        c = c - m.config["eta"] * m.loss_grad({"coords": c}).grads["coords"]
    before = m.observe({"coords": c}, "gd")
    c = c - m.config["eta"] * m.loss_grad({"coords": c}).grads["coords"]
    at = m.observe({"coords": c}, "gd")
    assert before["attn_own"][1] < before["attn"][1, 0] and at["attn_own"][1] >= at["attn"][1, 0]
    assert np.all(rare.brackets[:, 0] <= rare.times) and rare.ordered()
    assert detect_phases(res, 0).setting == "dominant"
    general = simulate(N=10, preset="general", p=[0.5, 0.3, 0.2], steps=10)
    with pytest.raises(ValueError, match="phases are defined for the paper's balanced"):
        phase_setting(general.structure, 0)
    with pytest.raises(ValueError, match="attn_fraction must lie in"):
        detect_phases(res, 1, attn_fraction=1.5)


def test_phases_target_order_and_gd_matches_flow(tmp_path):
    r = reproduce.phases(str(tmp_path), quick=True, workers=2, processes=False)
    assert files(tmp_path, "phases.png", "phases.md", "phases.csv", "phases_over_K.md")
    rare, bal, dom = r["rare"], r["balanced"], r["dominant"]
    # The paper's phase order: four strictly increasing boundaries for a rare query, two balanced.
    assert np.all(np.isfinite(rare.times)) and np.all(np.diff(rare.times) > 0)
    assert np.all(np.isfinite(bal.times)) and np.all(np.diff(bal.times) > 0)
    # Stage-wise: the dominant query converges before the rare one leaves phase III.
    assert dom.times[0] < rare.times[3]
    ok = r["over_K"]  # columns: K, bal tau1, bal tau2, dominant T_1, rare tau1..tau4
    for row in ok:
        assert np.all(np.isfinite(row)) and np.all(np.diff(row[4:]) > 0) and row[1] < row[2]
    # Exact GD and the gradient flow give the same boundaries at K = 10 within 3%: the boundaries
    # are exact for both, so what remains is the O(eta) difference of GD and its flow.
    np.testing.assert_allclose(ok[0, 4:], rare.times, rtol=0.03)
    np.testing.assert_allclose(ok[0, 1:3], bal.times, rtol=0.03)
    # From K = 10 to 30 with N = K^2 every rare boundary moves later by > 3x (the K^2 log K scale).
    assert np.all(ok[1, 4:] > 3 * ok[0, 4:])


# ---------------------------------------------------------------- scaling
def test_scaling_exponents_within_bands_of_the_theorem(tmp_path):
    r = reproduce.scaling(str(tmp_path), quick=True, workers=2, processes=False)
    assert files(tmp_path, "scaling.png", "scaling_times.md", "scaling_fits.csv", "scaling_points.nc")
    ds = xr.open_dataset(r["points_path"])  # one run per K
    assert ds["first_below"].dims == ("K", "eps", "query_class")
    assert ds["N"].values.tolist() == [K * K for K in r["Ks"]]
    assert np.all(np.isfinite(r["T1"])) and np.all(np.isfinite(r["Tk"]))
    # T_1 = O(log(eps^-1/2) / eps): leading power 1 in 1/eps.  Band +-0.15: the log factor adds at
    # most 1/ln(1/eps) ~ 0.1-0.2 to a local slope, and the fit must not exceed the bound's own slope.
    assert 0.85 <= r["b1"] <= 1.15 and r["b1"] <= r["b1_thm"] + 0.05
    # The bound on T_1 has no K: |slope in K| <= 0.1 (measured T_1 varies by < 15% over K = 10..1e4).
    assert all(abs(c) <= 0.1 for c in r["c1"])
    # T_k = O(K^2 log K + ...): for K >= 1000 the K^2 term dominates at eps >= 1e-3; leading power 2,
    # the log K factor adds ~ 1/ln K ~ 0.1; band [1.8, 2.3] also covers the 3% snapshot spacing.
    for j, e in enumerate(r["eps"]):
        if e >= 1e-3:
            assert 1.8 <= r["bK"][j] <= 2.3
    # T_k in 1/eps at K = 10 (eps <= 1e-3, the K log(K eps^-1/2)/eps term): leading power 1.
    assert 0.85 <= r["be"] <= 1.2
    # Exact GD and gradient flow agree at K = 10 within 5% (the O(eta) difference of GD and flow).
    flow = np.stack([r["T1"][0, :len(r["gd_eps"])], r["Tk"][0, :len(r["gd_eps"])]], axis=1)
    np.testing.assert_allclose(r["T_gd"], flow, rtol=0.05)


# ---------------------------------------------------------------- empirical
def test_empirical_training_follows_exact_dynamics(tmp_path):
    r = reproduce.empirical(str(tmp_path), quick=True)
    assert files(tmp_path, "empirical.png", "empirical.md", "empirical_deviation.csv")
    ex, rec = r["exact"], r["rec"]
    for M in r["Ms"]:
        L, se, A = r["classes"][M]
        # At Q = 0 the model does not depend on the training set: the fresh-prompt estimate of L_k
        # is unbiased for the exact L_k; 4 standard errors (false alarm ~ 6e-5 per check).
        assert np.all(np.abs(L[0] - ex.L_f[0]) <= 4 * se[0])
        # Stage-wise convergence on the empirical risk too: the dominant query's L_k halves at an
        # earlier recorded step than the average rare query's.
        first = [rec[np.flatnonzero(L[:, f] < L[0, f] / 2)[0]] for f in range(2)]
        assert first[0] < first[1]
    # A larger training set follows the population trajectory more closely (error ~ M^-1/2):
    # the rare features, which see ~M p_k training queries each, show it clearly.
    small, large = r["Ms"]
    assert r["dev"][large][1] < r["dev"][small][1]


def test_cli_unknown_target_exits_2(capsys):
    assert front.main(["nonsense"]) == 2
    assert "target must be one of" in capsys.readouterr().err
