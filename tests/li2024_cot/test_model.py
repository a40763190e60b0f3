"""li2024_cot through the model contract and the generic front ends: refusals in one line naming
the parameter, a Monte Carlo run into a run directory, the recorded observables and references."""
import json
import os

import numpy as np
import pytest

from dynamics.simulate import simulate_main
from dynamics.core.params import ParamError
from dynamics.models.li2024_cot.model import Li2024CoT
from dynamics.reproduce import targets
from dynamics.simulate import simulate

WORKED = [0.6, 0.4, 0.4, 0.6, 0.4, 0.6, 0.8, 0.2]


@pytest.mark.parametrize("given, name, needle", [
    (dict(K=0), "K", "K must be an integer >= 1"),
    (dict(noise=-0.1), "noise", "noise must be a finite number >= 0"),
    (dict(noise_train=-1.0), "noise_train", ">= 0"),
    (dict(M_test=7), "M_test", "M_test must be <= M = 6"),
    (dict(tau_f=0.02), "tau_f", "tau_f must be in (0.03704, 1]"),
    (dict(tau_f=0.6, condition1=False), "tau_f", "< 1/2 without Condition 1"),
    (dict(rho_f=0.99), "rho_f", "rho_f must be in"),
    (dict(K=2, M_test=2, A_f=[0.6, 0.3, 0.4, 0.6, 0.4, 0.6, 0.8, 0.2]), "A_f", "row-stochastic"),
    (dict(K=2, M_test=2, A_f=[0.6, 0.4, 0.4, 0.6]), "A_f", "K * M_test^2 = 8 numbers"),
    (dict(K=2, M_test=2, A_f=WORKED, tau_f=0.5), "tau_f", "not used when A_f"),
    (dict(d_x=8), "d_x", "d_x must be >= M + K = 9"),
    (dict(alpha=0.0), "alpha", "alpha must be"),
    (dict(S1=0.0), "S1", "nonzero"),
])
def test_bad_input_is_one_line_naming_the_parameter(given, name, needle):
    with pytest.raises(ParamError) as err:
        Li2024CoT.create(method="mc", **given)
    msg = str(err.value)
    assert err.value.name == name and needle in msg and "\n" not in msg, msg


def test_bad_matrices_on_the_command_line(tmp_path, capsys):
    code = simulate_main(["--model", "li2024_cot", "--method", "mc", "--K", "2", "--M-test", "2", "--A-f",
                          "0.6,0.4,0.4,0.6,0.5,0.6,0.8,0.2", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "A_f" in err[0] and "row-stochastic" in err[0], err
    assert not (tmp_path / "run").exists()


def test_explicit_matrices_give_the_slides_statistics():
    m = Li2024CoT.create(method="mc", K=2, M_test=2, A_f=WORKED)
    refs = m.references()
    assert abs(refs["tau_f"][0] - 0.36) < 1e-15 and abs(refs["tau_o_f"][0] - 0.56) < 1e-15
    assert refs["condition1"][0] == 0.0 and refs["icl_limit"][0] == 0.5


RUN = dict(steps=30, snapshots=3, replicas=2, n_eval=40, batch=16)
"""A small run, through the command line and through simulate."""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cot") / "run")
    flags = [x for k, v in RUN.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    assert simulate_main(["--model", "li2024_cot", "--method", "mc", "--out", out, "--quiet"] + flags) == 0
    return out


def test_run_directory(run_dir):
    import xarray as xr

    for name in ("results.nc", "state.nc", "config.json", "manifest.json", "errors.png", "attention.png"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    with xr.open_dataset(os.path.join(run_dir, "results.nc"), engine="scipy") as ds:
        assert ds["error_cot"].dims == ("replica", "t") and ds.sizes["replica"] == 2
        assert ds["attn"].dims == ("replica", "t", "column_type") and "error_icl_se" in ds and "train_loss" in ds
        # the four masses of a prompt sum to 1
        assert np.allclose(ds["attn"].sum("column_type"), 1.0, atol=1e-12)
        assert float(ds["tau_f"]) == pytest.approx(0.6, abs=1e-12) and float(ds["condition1"]) == 1.0
    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    assert cfg["model"] == "li2024_cot"


def test_simulate_matches_the_run_directory_and_training_lowers_the_loss(run_dir):
    import xarray as xr

    res = simulate("li2024_cot", method="mc", **RUN)
    with xr.open_dataset(os.path.join(run_dir, "state.nc"), engine="scipy") as st:
        assert np.array_equal(st["W_Q"].values, res.state["W_Q"])   # same seed: bit-identical weights
    assert np.array_equal(res.state["W_V"][0], res.model.initial_state("mc", None)["W_V"])  # W_V fixed
    loss = res.ds["loss"].values
    se = res.ds["loss_se"].values
    # 30 SGD steps at eta = 1 take the held-out loss from ~0.28 well down (beyond 5 SE)
    assert np.all(loss[:, 0] - loss[:, -1] > 5 * np.hypot(se[:, 0], se[:, -1]))


def test_loss_only_recording_and_trained_value():
    res = simulate("li2024_cot", method="mc", steps=5, snapshots=2, n_eval=20, batch=8, record="loss",
                   train_value=True)
    assert set(v for v in res.ds.data_vars if "t" in res.ds[v].dims) == {"loss", "loss_se", "train_loss"}
    assert not np.array_equal(res.state["W_V"][0], res.model.initial_state("mc", None)["W_V"])


def test_reproduce_targets_are_registered():
    names = {t for t, (model, _) in targets("li2024_cot").items()}
    assert names == {"cot-length", "cot-vs-icl", "cot-mechanism", "cot-training"}
