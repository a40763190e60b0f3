"""The Yang2024 model through the generic front ends: parameters and bad input, the stability
limit, both parameterisations, the flow, Monte Carlo, the cross-check and the run directory."""
import json
import os

import numpy as np
import pytest

from dynamics.core.errors import SimulationDiverged
from dynamics.core.params import ParamError
from dynamics.crosscheck import crosscheck
from dynamics.models.yang2024 import Problem, population_loss_grad
from dynamics.models.yang2024 import closed_form as cf
from dynamics.models.yang2024.data import draw_dictionary
from dynamics.models.yang2024.model import Yang2024
from dynamics.models.yang2024.stability import smoothness
from dynamics.simulate import simulate

SMALL = dict(N=5, K=16, d=8, m=4, H=10, tau=0.5)


def create(**kw):
    return Yang2024.create("gd", **{**SMALL, **kw})


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, name, rule", [
    (dict(H=0), "H", "H must be an integer >= 1"),
    (dict(N=17), "N", "N must be <= K = 16"),
    (dict(m=0), "m", "m must be an integer >= 1"),
    (dict(tau=-0.1), "tau", "tau must be a finite number >= 0"),
    (dict(d=0), "d", "d must be an integer >= 1"),
    (dict(eta_Q=0.0), "eta_Q", "eta_Q must be a finite number > 0"),
    (dict(eta_Q=-1e-3), "eta_Q", "eta_Q must be a finite number > 0"),
    (dict(gamma=0.0), "gamma", "gamma must be a finite number > 0"),
    (dict(tau=float("nan")), "tau", "tau must be a finite number"),
    (dict(beta=float("inf")), "beta", "beta must be a finite number"),
    (dict(tau=0.0), "tau", "tau = 0 needs N <= m"),
    (dict(normalize_tokens=False), "normalize_tokens", "used only with data"),
    (dict(ood_tasks=[1.0, -4.0]), "ood_tasks", "var >= 0"),
    (dict(optimizer="adam", parameterisation="reduced"), "parameterisation", "Adam acts entry-wise"),
    (dict(optimizer="adam", check_step=True), "check_step", "applies to plain steps"),
    (dict(eta_fraction=1.0), "eta_fraction", "eta_fraction must be a finite number > 0 and < 1"),
    (dict(eta_fraction=0.2, eta_Q=0.01), "eta_fraction", "give one of eta_Q and eta_fraction"),
    (dict(optimizer="adam", eta_fraction=0.2), "eta_fraction", "Adam's default learning rate"),
])
def test_bad_parameters_name_the_parameter_and_rule(kw, name, rule):
    with pytest.raises(ParamError, match=rule) as err:
        create(**kw)
    assert err.value.name == name


def test_eta_fraction_sets_the_default_step():
    """The default plain step is eta_fraction x 2/ell_0 (0.5 x: 1/ell_0)."""
    m = create()
    assert m.learning_rates("gd")["theta"] == pytest.approx(1.0 / m.ell0, rel=1e-15)
    m = create(eta_fraction=0.1, gamma=2.0)
    lr = m.learning_rates("gd")
    assert lr["theta"] == pytest.approx(0.2 / m.ell0, rel=1e-15) and lr["w"] == pytest.approx(4 * lr["theta"])


def test_options_of_other_methods_are_refused():
    with pytest.raises(ParamError, match="tasks is used only by method mc"):
        Yang2024.create("gd", tasks="rademacher")
    with pytest.raises(ParamError, match="parameterisation is used only by method gd or flow"):
        Yang2024.create("mc", parameterisation="full")


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_user_dictionary(tmp_path):
    """A user's .npz: tokens normalised to unit norm, K, d, m taken from it, the loss that of
    population_loss_grad on the normalised tokens; bad files refused naming data."""
    rng = np.random.default_rng(0)
    V_all, Zhat = 3.0 * rng.standard_normal((6, 9)), rng.standard_normal((3, 9))
    path = write_npz(tmp_path / "ok.npz", V_all=V_all, Zhat=Zhat)
    model = Yang2024.create("gd", data=path, N=4, H=5, tau=0.2)
    assert (model.config["K"], model.config["d"], model.config["m"]) == (9, 6, 3)
    np.testing.assert_allclose(np.linalg.norm(model.problem.V_all, axis=0), 1.0, rtol=0, atol=1e-15)
    st = model.initial_state("gd")
    L = model.loss_grad(st).loss
    Vn = V_all / np.linalg.norm(V_all, axis=0)
    assert L == pytest.approx(population_loss_grad(model.Q0, st["w"], Vn, Zhat, 4, 0.2)[0], rel=1e-13)
    with pytest.raises(ParamError, match="d = 5 contradicts the data file"):
        Yang2024.create("gd", data=path, d=5)
    with pytest.raises(ParamError, match="N must be <= K = 9"):
        Yang2024.create("gd", data=path, N=10)
    with pytest.raises(ParamError, match="give one of data and data_seed"):
        Yang2024.create("gd", data=path, data_seed=3)
    bad = V_all.copy()
    bad[:, 3] = 0
    for arrays, rule in [(dict(V_all=bad, Zhat=Zhat), "non-zero norm"),
                         (dict(V_all=V_all, Zhat=Zhat[:, :5]), "same K columns"),
                         (dict(V_all=V_all[0], Zhat=Zhat), r"2-D array \(d, K\)"),
                         (dict(V_all=V_all), "missing Zhat"),
                         (dict(V_all=np.where(V_all > 1, np.inf, V_all), Zhat=Zhat), "V_all must be finite")]:
        p = write_npz(tmp_path / "bad.npz", **arrays)
        with pytest.raises(ParamError, match=rule) as err:
            Yang2024.create("gd", data=p)
        assert err.value.name == "data"
    with pytest.raises(ParamError, match="existing .npz"):
        Yang2024.create("gd", data=str(tmp_path / "none.npz"))


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    from dynamics.simulate import simulate_main

    rc = simulate_main(["--model", "yang2024", "--H", "0", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "H must be an integer >= 1" in err[0]
    assert not os.path.exists(tmp_path / "r" / "results.nc")


# ---------------------------------------------------------------- stability
def test_smoothness_is_the_top_eigenvalue_of_the_step_scaled_hessian():
    """Independent route: the dense Hessian of f(Q, u) = L(Q, gamma u) in the full Q-space from
    central differences of population_loss_grad (eigenvalue error ~1e-10 from step 1e-5)."""
    rng = np.random.default_rng(3)
    d, K, N, m, H, tau, gamma = 3, 5, 3, 2, 2, 0.3, 1.5
    V, Z = draw_dictionary(rng, d, K, m)
    prob = Problem(V, Z, N, tau)
    Q, w = rng.standard_normal((H, d, d)), 0.3 * rng.standard_normal((H, K))

    def grad(x):
        _, _, gQ, gw = population_loss_grad(x[:H * d * d].reshape(H, d, d), gamma * x[H * d * d:].reshape(H, K),
                                            V, Z, N, tau)
        return np.concatenate([gQ.ravel(), gamma * gw.ravel()])

    x0 = np.concatenate([Q.ravel(), (w / gamma).ravel()])
    h = 1e-5
    M = np.stack([(grad(x0 + h * e) - grad(x0 - h * e)) / (2 * h) for e in np.eye(x0.size)], axis=1)
    top = np.linalg.eigvalsh(0.5 * (M + M.T))[-1]
    assert smoothness(prob, cf.theta_of_Q(prob, Q), w, gamma) == pytest.approx(top, rel=1e-8)


@pytest.mark.parametrize("seed", range(6))
def test_stability_limit_separates_monotone_descent_from_rises(seed):
    """Near the initial state (first 50 steps), GD at 0.9 x 2/ell_0 never raises the loss and at
    1.2 x it does (later the sharpness grows: the limit is local, hence the run's monitor)."""
    rng = np.random.default_rng(seed)
    prob = Problem(*draw_dictionary(rng, 3, 5, 2), 3, 0.3)
    th0 = cf.theta_of_Q(prob, rng.standard_normal((4, 3, 3)))
    lim = 2.0 / smoothness(prob, th0, np.zeros((4, 5)), 1.5)
    rises = []
    for frac in (0.9, 1.2):
        th, w, L = th0.copy(), np.zeros((4, 5)), []
        for _ in range(50):
            ev = cf.evaluate(prob, th, w)
            L.append(ev.loss)
            th -= frac * lim * cf.precondition(prob, ev.grad_theta)
            w -= 1.5 ** 2 * frac * lim * ev.grad_w
        rises.append(int(np.sum(np.diff(L) > 0)))
    assert rises[0] == 0 and rises[1] >= 1


def test_step_beyond_the_limit_is_refused_naming_the_limit():
    lim = 2.0 / create().ell0
    with pytest.raises(ParamError, match=r"stability limit 2/ell_0 = [0-9.e-]+") as err:
        simulate("yang2024", "gd", eta_Q=1.05 * lim, steps=10, **SMALL)
    assert err.value.name == "eta_Q"
    # run anyway: the loss rises and the run stops, the message naming the limit
    with pytest.raises(SimulationDiverged, match="stability limit 2/ell_0 was"):
        simulate("yang2024", "gd", eta_Q=3 * lim, check_step=False, steps=500, **SMALL)


# ---------------------------------------------------------------- exact methods
def test_parameterisations_give_the_same_run():
    """reduced theta_h with the preconditioned step and full Q_h: the same observables."""
    a = simulate("yang2024", "gd", parameterisation="reduced", steps=300, snapshots=8, **SMALL)
    b = simulate("yang2024", "gd", parameterisation="full", steps=300, snapshots=8, **SMALL)
    assert set(a.state) == {"theta", "w"} and set(b.state) == {"Q", "w"}
    for name in ("loss", "gap", "a_dist", "sigma_min_B", "inference_id", "inference_ood"):
        np.testing.assert_allclose(a.ds[name].values, b.ds[name].values, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(a.state["theta"], cf.theta_of_Q(b.model.problem, b.state["Q"]), atol=1e-11)
    # GD with a stable step never raises the exact loss
    assert np.all(np.diff(a.ds["loss"].values) <= 0)


def test_eps_rule_and_first_crossings():
    L_star = create().problem.L_star
    r = simulate("yang2024", "gd", steps=20_000, eps=1e-12 * L_star, levels=[1e-4 * L_star, 1e-8 * L_star], **SMALL)
    assert r.status == "converged" and r.ds["gap"].values[-1] <= 1e-12 * L_star
    t4, t8 = r.ds["first_below"].values[0]
    assert 0 < t4 < t8 < r.t[-1]


def test_flow_is_the_small_step_limit_of_gd():
    """Gradient flow to t = 400 (GD units of eta_Q) against GD with a 20x smaller step for 20x
    the steps: GD is a first-order integrator, so the two gaps agree to O(eta) ~ 1e-2."""
    kw = dict(SMALL, H=6, K=8, N=4)
    eta = 1.0 / Yang2024.create("gd", **kw).ell0
    f = simulate("yang2024", "flow", eta_Q=eta, steps=400, snapshots=5, **kw)
    g = simulate("yang2024", "gd", eta_Q=eta / 20, steps=8000, save_at=[8000], **kw)
    assert f.ds["gap"].values[-1] == pytest.approx(g.ds["gap"].values[-1], rel=2e-2)
    assert f.ds["gap"].values[-1] < 0.5 * f.ds["gap"].values[0]
    with pytest.raises(ParamError, match="gradient flow integrates .* coordinates"):
        simulate("yang2024", "flow", steps=10)


def test_adam_on_the_exact_gradient_trains_the_full_Q():
    r = simulate("yang2024", "gd", optimizer="adam", steps=200, snapshots=4, **SMALL)
    assert set(r.state) == {"Q", "w"} and float(r.ds["eta_Q"]) == 1e-4
    assert r.ds["loss"].values[-1] < r.ds["loss"].values[0]


# ---------------------------------------------------------------- Monte Carlo
@pytest.mark.parametrize("tasks", ["gaussian", "rademacher"])
def test_monte_carlo_records_the_exact_observables_and_a_heldout_estimate(tasks):
    """The held-out Monte Carlo loss (n_eval prompts) is an independent estimate of the closed
    form at the replica's state: within 4 standard errors at every snapshot."""
    r = simulate("yang2024", "mc", tasks=tasks, steps=200, snapshots=5, replicas=2, batch=64, n_eval=4000, **SMALL)
    exact = set(Yang2024.create("gd", **SMALL).observables("gd"))
    assert exact <= set(r.ds.data_vars)
    diff = np.abs(r.ds["loss_heldout"].values - r.ds["loss"].values)
    assert np.all(diff <= 4 * r.ds["loss_heldout_se"].values)
    assert np.all(r.ds["loss"].values[:, -1] < r.ds["loss"].values[:, 0])
    # every replica starts from the seed's Q_h^(0): the exact run's initial state
    np.testing.assert_array_equal(r.ds["loss"].values[:, 0], r.ds["loss"].values[0, 0])


def test_crosscheck_passes_and_fails_for_a_wrong_step():
    """Exact GD against 8 SGD replicas (batch 2000, fresh prompts) at the default step; the
    same check with the Monte Carlo step 1.5x too large must fail.  At tau = 0.01 the default
    step 1/ell_0 puts the loss 12 SE above (SGD's second-order bias): the cross-check's own
    default, a tenth of the stability limit, passes there."""
    ok = crosscheck("yang2024", **SMALL)
    assert ok.passed and ok.max_abs_z < ok.threshold
    small_noise = crosscheck("yang2024", **{**SMALL, "tau": 0.01})
    assert small_noise.passed, small_noise.max_abs_z
    eta = 1.0 / create().ell0
    bad = crosscheck("yang2024", eta_Q=eta, mc_overrides={"eta_Q": 1.5 * eta}, **SMALL)
    assert not bad.passed


# ---------------------------------------------------------------- run directory
def test_run_directory_figures_and_manifest(tmp_path):
    from dynamics.simulate import simulate_main

    out = tmp_path / "run"
    cfg = tmp_path / "c.toml"
    cfg.write_text("N = 5\nK = 16\nd = 8\nm = 4\ntau = 0.5\nH = 10\nsteps = 500\n")
    assert simulate_main(["--model", "yang2024", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    for f in ("loss_gap.png", "inference.png", "sigma_min.png", "results.nc", "state.nc"):
        assert os.path.getsize(out / f) > 0
    resolved = json.loads((out / "config.json").read_text())
    assert "yang2024" in json.dumps(resolved)


def test_seeds_of_data_and_initial_state():
    """seed draws the dictionary and Q_h^(0); data_seed pins the dictionary while seed varies Q_h^(0)."""
    a, b = create(seed=1), create(seed=2)
    assert not np.array_equal(a.problem.V_all, b.problem.V_all) and not np.array_equal(a.Q0, b.Q0)
    c, e = create(seed=1, data_seed=7), create(seed=2, data_seed=7)
    np.testing.assert_array_equal(c.problem.V_all, e.problem.V_all)
    np.testing.assert_array_equal(c.problem.Zhat, e.problem.Zhat)
    assert not np.array_equal(c.Q0, e.Q0)
    np.testing.assert_array_equal(create(seed=1).Q0, a.Q0)


# ---------------------------------------------------------------- sweep
def test_sweep_over_heads_gives_the_numbers_of_single_runs(tmp_path):
    """A sweep over H (threads) records, per point, the final gap and a_dist of the same run made
    directly, bit for bit."""
    import xarray as xr

    pytest.importorskip("distributed", reason="the sweep runner needs the sweep extra (Dask distributed)")
    from dynamics.sweep import run_sweep

    fixed = {**{k: v for k, v in SMALL.items() if k != "H"}, "steps": 300}
    out = str(tmp_path / "y.nc")
    rep = run_sweep(dict(model="yang2024", fixed=fixed, sweep=dict(H=[2, 8]),
                         outputs=dict(final=["gap", "a_dist_max"])), out, workers=1, processes=False)
    assert rep.ok
    ds = xr.open_dataset(out)
    for H in (2, 8):
        r = simulate("yang2024", **{**fixed, "H": H})
        assert float(ds["final_gap"].sel(H=H)) == float(r.ds["gap"].values[-1])
        assert float(ds["final_a_dist_max"].sel(H=H)) == float(r.ds["a_dist_max"].values[-1])
