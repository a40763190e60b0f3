"""Zhang2024 through the front ends: bad input, the flow's conserved balance, GD against the flow,
and the cross-check (a wrong Monte Carlo step must fail it)."""
import os

import numpy as np
import pytest

from dynamics.core.params import ParamError
from dynamics.crosscheck import crosscheck
from dynamics.models.zhang2024.model import Zhang2024
from dynamics.simulate import simulate

SMALL = dict(d=3, N=6, kappa=4.0, rotate=True)


@pytest.mark.parametrize("kw, name, rule", [
    (dict(rotate=True), "rotate", "needs kappa > 1"),
    (dict(kappa=0.5), "kappa", "kappa must be a finite number >= 1"),
    (dict(d=1, kappa=2.0), "kappa", "kappa > 1 needs d >= 2"),
    (dict(d=0), "d", "d must be an integer >= 1"),
    (dict(sigma=0.0), "sigma", "sigma must be a finite number > 0"),
    (dict(theta="ones"), "theta", "theta must be one of identity, random"),
    (dict(eta=-1.0), "eta", "eta must be a finite number > 0"),
])
def test_bad_parameters_name_the_parameter_and_rule(kw, name, rule):
    with pytest.raises(ParamError, match=rule) as err:
        Zhang2024.create("gd", **kw)
    assert err.value.name == name


@pytest.mark.parametrize("theta", ["identity", "random"])
def test_flow_conserves_the_balance_and_reaches_the_limit(theta):
    """u^2 - |U|_F^2 stays 0 along the flow (to the integrator's tolerance), and the final state is
    the balanced limit point (|Gamma^{-1}|_F^{-1/2} Gamma^{-1}, |Gamma^{-1}|_F^{1/2})."""
    res = simulate("zhang2024", "flow", steps=4000, theta=theta, **SMALL)
    assert np.abs(res.ds["balance"].values).max() < 1e-6
    U_lim, u_lim = res.model.problem.limit(0.0)
    assert np.allclose(res.state["U"], U_lim, atol=1e-6) and float(res.state["u"]) == pytest.approx(u_lim, rel=1e-6)
    assert float(res.ds["gap"][-1]) < 1e-12


def test_gd_follows_the_flow_to_first_order_in_the_step():
    """At the same time t, |GD - flow| halves when eta halves (GD is the flow's Euler scheme)."""
    diffs = []
    for eta in (0.02, 0.01):
        t = int(round(6.0 / eta))  # the same flow time tau = 6
        gd = simulate("zhang2024", "gd", steps=t, eta=eta, **SMALL)
        fl = simulate("zhang2024", "flow", steps=t, eta=eta, flow_rtol=1e-11, flow_atol=1e-13, **SMALL)
        diffs.append(float(np.abs(gd.state["U"] - fl.state["U"]).max()))
    assert 1.7 < diffs[0] / diffs[1] < 2.3, diffs


@pytest.mark.slow
def test_crosscheck_passes_and_a_wrong_step_fails():
    """The default cross-check (the learning phase, 8 replicas of batch 2000) passes; a Monte Carlo
    step 10 % too large fails it (measured |z| = 84 against a threshold of 9.4)."""
    cc = crosscheck("zhang2024")
    assert cc.passed, cc.table()
    eta = Zhang2024.create("gd").learning_rates("gd")["U"]
    bad = crosscheck("zhang2024", mc_overrides={"eta": 1.1 * eta})
    assert not bad.passed


@pytest.mark.parametrize("method, kw", [("gd", {}), ("mc", dict(batch=32, replicas=2, n_eval=16))])
def test_run_directory_figure(method, kw, tmp_path):
    res = simulate("zhang2024", method, steps=20, snapshots=5, **SMALL, **kw)
    paths = res.model.figures(res, str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["convergence.png"]
    with open(paths[0], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
