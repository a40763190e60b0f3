"""Correlated features and anisotropic tasks in the simulator (issue 20): the Gram-preconditioned exact
GD against GD on the full ``Q``, Monte Carlo training of the real model, the optimum, bad input."""
import subprocess
import sys

import numpy as np
import pytest

import dynamics
from dynamics.crosscheck import crosscheck
from dynamics.models.huang2024.bruteforce import population_loss_grad_bruteforce
from dynamics.models.huang2024.geometry import equicorrelated_features, rho_range
from dynamics.models.huang2024.model import Huang2024

SMALL = dict(K=3, N=8, preset="imbalanced", p1=0.5, eta=1.0, steps=60, replicas=6, batch=1000, seed=1, n_eval=200)


@pytest.fixture
def aniso_file(tmp_path):
    """Random features (d = 4, K = 3, any norms and angles) and an anisotropic task covariance."""
    rng = np.random.default_rng(7)
    V = rng.normal(size=(4, 3)) * np.array([1.0, 0.7, 1.3])
    A = rng.normal(size=(4, 4)) * np.array([2.0, 1.0, 0.5, 0.2])
    path = tmp_path / "geom.npz"
    np.savez(path, V=V, Sigma=A @ A.T)
    return str(path), V, A @ A.T


def _full_Q_loss(Q, V, p, N, M=None, sigma2=0.0):
    """The population loss as a function of the full d x d matrix Q (brute force over count vectors)."""
    return population_loss_grad_bruteforce(V.T @ Q @ V, p, N, sigma2, M)[0]


@pytest.mark.parametrize("K,d", [(3, 3), (4, 2)])
def test_one_reduced_step_is_one_step_on_the_full_Q(K, d):
    """``theta <- theta - eta G g G`` (the model's direction) equals ``V^T Q' V`` after one GD step on ``Q``
    with ``dL/dQ = V g V^T``, to rounding; and that chain rule matches central differences of the loss as a
    function of ``Q`` (brute force), including ``K > d`` (dependent features)."""
    rng = np.random.default_rng(K * 10 + d)
    V = rng.normal(size=(d, K))
    Sigma = np.diag(rng.uniform(0.2, 2.0, size=d))
    M = V.T @ Sigma @ V
    p = rng.dirichlet(np.ones(K))
    N, eta = 5, 0.7
    Q = rng.normal(size=(d, d))
    theta = V.T @ Q @ V
    _, g, _ = dynamics.population_loss_grad(theta, p, N, M)
    dQ = V @ g @ V.T
    eps = 1e-6
    for i in range(d):
        for j in range(d):
            Qp, Qm = Q.copy(), Q.copy()
            Qp[i, j] += eps
            Qm[i, j] -= eps
            fd = (_full_Q_loss(Qp, V, p, N, M) - _full_Q_loss(Qm, V, p, N, M)) / (2 * eps)
            assert abs(fd - dQ[i, j]) <= 1e-7 * (1 + np.abs(dQ).max())
    stepped = V.T @ (Q - eta * dQ) @ V
    from dynamics.models.huang2024.geometry import Geometry
    geo = Geometry(V.T @ V, M, V)
    reduced = theta - eta * geo.direction(g)
    assert np.max(np.abs(reduced - stepped)) <= 1e-13 * (1 + np.abs(stepped).max())


def test_equicorrelated_isotropic_loss_is_the_orthonormal_one_scaled():
    """With unit features at correlation rho and Sigma = I, r^T G r = (1 - rho) |r|^2 because r = Attn - e_k
    sums to 0: L, L_k and dL/dtheta are (1 - rho) times the orthonormal ones (noise-free), and so is L_k^*."""
    rho, K, N = 0.3, 4, 12
    rng = np.random.default_rng(1)
    theta = rng.normal(size=(K, K))
    m = Huang2024.create("gd", K=K, N=N, feature_corr=rho)
    m0 = Huang2024.create("gd", K=K, N=N)
    p = m.structure.p
    L, g, Lk = dynamics.population_loss_grad(theta, p, N, m.geometry.M)
    L0, g0, Lk0 = dynamics.population_loss_grad(theta, p, N)
    np.testing.assert_allclose(Lk, (1 - rho) * Lk0, rtol=1e-13)
    assert np.max(np.abs(g - (1 - rho) * g0)) <= 1e-13 * np.abs(g0).max()
    np.testing.assert_allclose(m.L_star, (1 - rho) * m0.L_star, rtol=1e-9)


def test_optimum_general_is_an_infimum():
    """L_k^* for an anisotropic M: below L_k at random columns and at the column with A_k = 30 and the
    minimising B (which approaches it within (1 - p_k)^N-weighted rounding plus the e^{-30} tail)."""
    rng = np.random.default_rng(3)
    V = rng.normal(size=(3, 3))
    M = V.T @ np.diag([2.0, 0.5, 0.1]) @ V
    from dynamics.models.huang2024.classes import ClassStructure
    from dynamics.models.huang2024.theory import optimum_general
    s = ClassStructure.general(np.array([0.5, 0.3, 0.2]))
    Ls = optimum_general(s, 6, M, 0.0, 7 / 32)
    for _ in range(20):
        _, _, Lk = dynamics.population_loss_grad(rng.normal(size=(3, 3)) * 3, s.p, 6, M)
        assert np.all(Lk >= Ls)
    assert np.all(Ls > 0)


def test_gd_is_exactly_gd_on_Q_over_many_steps():
    """200 steps of the model's exact GD (equicorrelated rho = -0.2, task_cov) against GD on the full Q
    with dL/dQ = V g V^T: the same theta to rounding."""
    from dynamics.simulate import simulate
    kw = dict(K=3, N=6, preset="imbalanced", feature_corr=-0.2, task_cov=[1.5, 0.5], eta=2.0)
    m = Huang2024.create("gd", **kw)
    r = simulate("huang2024", "gd", steps=200, snapshots=3, **kw)
    V = equicorrelated_features(3, -0.2)
    Q = np.zeros((3, 3))
    for _ in range(200):
        _, g, _ = dynamics.population_loss_grad(V.T @ Q @ V, m.structure.p, 6, m.geometry.M)
        Q -= 2.0 * V @ g @ V.T
    red = m.reduce_full(V.T @ Q @ V)
    np.testing.assert_allclose(r.ds["A"].values[-1], red[:, 0], rtol=1e-12)
    np.testing.assert_allclose(r.ds["B"].values[-1][~np.isnan(red[:, 1:])], red[:, 1:][~np.isnan(red[:, 1:])],
                               rtol=1e-12)


def test_crosscheck_passes_for_correlated_features():
    cc = crosscheck("huang2024", save_at=[0, 10, 30, 60], feature_corr=0.3, **SMALL)
    assert cc.passed, cc.table()
    assert np.all(np.abs(cc.exact[-1, :2]) > 0.05)


def test_crosscheck_passes_for_an_anisotropic_task(aniso_file):
    path, _, _ = aniso_file
    kw = {k: v for k, v in SMALL.items() if k != "K"}
    cc = crosscheck("huang2024", save_at=[0, 10, 30, 60], data=path, **kw)
    assert cc.passed, cc.table()


def test_crosscheck_rejects_the_wrong_preconditioner():
    """Exact GD on theta itself (precondition = none) is not GD on Q: the check must fail."""
    cc = crosscheck("huang2024", save_at=[0, 10, 30, 60], feature_corr=0.3, precondition="none", **SMALL)
    assert not cc.passed, cc.table()


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "dynamics.simulate", "--model", "huang2024", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_cli_bad_geometry_exits_2_with_one_line(tmp_path, aniso_file, capsys):
    """Each bad geometry: exit 2, one line naming the parameter (and the rule), no run directory."""
    from dynamics.simulate import simulate_main

    path, V, Sigma = aniso_file
    bad = {}
    for name, arrays in {"zero": dict(V=np.c_[V[:, :2], np.zeros(4)]), "shape": dict(V=np.ones(3)),
                         "nan": dict(V=np.where(V > 0, np.nan, V)), "asym": dict(V=V, Sigma=Sigma + np.triu(Sigma, 1)),
                         "notpsd": dict(V=V, Sigma=-Sigma), "sigshape": dict(V=V, Sigma=np.eye(3))}.items():
        bad[name] = str(tmp_path / f"{name}.npz")
        np.savez(bad[name], **arrays)
    lo = rho_range(5)[0]
    cases = [(["--data", bad["zero"]], "zero column"), (["--data", bad["shape"]], "shape"),
             (["--data", bad["nan"]], "finite"), (["--data", bad["asym"]], "symmetric"),
             (["--data", bad["notpsd"]], "positive semi-definite"), (["--data", bad["sigshape"]], "Sigma must have shape"),
             (["--K", "5", "--feature-corr", str(lo - 0.01)], "[-1/(K - 1), 1]"),
             (["--data", path, "--task-cov", "1,2"], "task_cov"), (["--data", path, "--feature-corr", "0.2"], "feature_corr"),
             (["--K", "5", "--task-cov", "1,2,3"], "task_cov"), (["--precondition", "none"], "precondition"),
             (["--data", path, "--K", "5"], "K = 5 contradicts")]
    for args, word in cases:
        out = tmp_path / "run"
        code = simulate_main(["--model", "huang2024", *args, "--steps", "3", "--out", str(out)])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, (args, err)
        assert len(lines) == 1 and word in lines[0], (args, err)
        assert not out.exists()


@pytest.mark.slow
def test_cli_runs_a_data_file(tmp_path, aniso_file):
    """The real command line: a bad Sigma exits 2 in one line; a good data file runs."""
    from dynamics.simulate import simulate_main

    path, _, Sigma = aniso_file
    np.savez(tmp_path / "bad.npz", V=np.load(path)["V"], Sigma=-Sigma)
    r = _cli("--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Sigma" in r.stderr
    assert not (tmp_path / "run").exists()
    code = simulate_main(["--model", "huang2024", "--data", path, "--N", "6", "--steps", "20", "--snapshots", "3",
                          "--out", str(tmp_path / "ok")])
    assert code == 0 and (tmp_path / "ok" / "results.nc").exists()


@pytest.mark.parametrize("K,preset", [(3, "imbalanced"), (10, "imbalanced"), (50, "imbalanced"), (12, "balanced")])
def test_class_reduced_equicorrelated_path_equals_the_K_by_K_path(K, preset):
    """The class-reduced loss and direction (orthonormal engine, (1 - rho) identity, row sums) against the
    general-M engine on the full K x K theta with G g G, for K up to 50; ten GD steps each."""
    from dynamics.models.huang2024.classes import ClassStructure
    from dynamics.models.huang2024.geometry import Geometry, equicorrelated_gram, equicorrelated_reduced_step

    s = ClassStructure.imbalanced(K, 0.4) if preset == "imbalanced" else ClassStructure.balanced(K)
    rho, N, sigma2, eta = 0.35, 30, 0.2, 1.5
    G = equicorrelated_gram(K, rho)
    geo = Geometry(G, G)
    coords = s.zeros() + np.random.default_rng(K).normal(size=(s.F, s.F + 1)) * 0.5
    coords[s.column_tables()[1] <= 0] = 0.0
    theta = s.expand(coords)
    for _ in range(10):
        L, grad, L_f, direction = equicorrelated_reduced_step(coords, s, N, rho, sigma2)
        L2, g2, Lk2 = dynamics.population_loss_grad(theta, s.p, N, G, sigma2)
        assert L == pytest.approx(L2, rel=1e-12)
        np.testing.assert_allclose(L_f[s.owner()], Lk2, rtol=1e-12)
        d2 = geo.direction(g2)
        np.testing.assert_allclose(s.expand(direction), d2, rtol=0, atol=1e-13 * np.abs(d2).max())
        coords = coords - eta * direction
        theta = theta - eta * d2
    np.testing.assert_allclose(s.expand(coords), theta, rtol=0, atol=1e-12)
