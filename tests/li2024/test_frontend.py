"""li2024 through the generic front ends: simulate (Python and command line), the run directory,
the post-training analyses on its saved state, and refusals in one line."""
import csv
import json
import os

import numpy as np
import pytest

from dynamics.simulate import simulate_main
from dynamics.core.trajectory import state_dataset, write_dataset
from dynamics.models.li2024 import analyze
from dynamics.models.li2024.state import load_state
from dynamics.reproduce import targets
from dynamics.simulate import simulate


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("li") / "run"
    code = simulate_main(["--model", "li2024", "--method", "mc", "--steps", "40", "--snapshots", "3", "--replicas",
                          "2", "--n-eval", "60", "--batch", "16", "--out", str(out), "--quiet"])
    assert code == 0
    return str(out)


def test_run_directory_holds_results_state_and_figures(run_dir):
    for name in ("results.nc", "state.nc", "config.json", "manifest.json", "errors.png", "attention.png"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    import xarray as xr

    with xr.open_dataset(os.path.join(run_dir, "results.nc"), engine="scipy") as ds:
        assert ds["error_ood"].dims == ("replica", "t") and ds.sizes["replica"] == 2
        assert "error_ood_se" in ds and "train_loss" in ds and ds["feature_cos"].dims == ("replica", "t", "neuron")


def test_simulate_matches_the_run_directory_state(run_dir):
    res = simulate("li2024", method="mc", steps=40, snapshots=3, replicas=2, n_eval=60, batch=16)
    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    states = load_state(run_dir, res.model)
    assert cfg["model"] == "li2024" and len(states) == 2
    for r in range(2):  # same seed, same parameters: bit-identical weights
        assert np.array_equal(states[r]["W_O"], res.state["W_O"][r])


def test_analyses_of_a_saved_run(run_dir, tmp_path):
    out = tmp_path / "analysis"
    tables = analyze.analyze(run_dir, str(out), n=50, rates=[0.0, 0.1], draws=2)
    with open(out / "analysis-pruning.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["replica", "prune_rate", "method", "error", "stderr", "change", "change_stderr"]
    assert len(rows) == 1 + 2 * 2 * 2
    assert all(float(r[5]) == 0.0 for r in rows[1:] if r[1] == "0.0")  # rate 0 changes nothing
    assert (out / "analysis-pruning.png").stat().st_size > 10_000
    assert "W_K" in tables["projections"] and "feature_cos" in tables["embedding"]


def test_analyses_refuse_other_runs_in_one_line(run_dir, tmp_path, capsys):
    other = tmp_path / "huang"
    other.mkdir()
    json.dump({"model": "huang2024", "method": "gd", "given": {}}, open(other / "config.json", "w"))
    assert analyze.main([str(other)]) == 2
    err = capsys.readouterr().err
    assert "run of model 'huang2024'" in err and err.count("\n") == 1
    forged = tmp_path / "forged"
    forged.mkdir()
    json.dump({"model": "li2024", "method": "mc", "given": {}}, open(forged / "config.json", "w"))
    write_dataset(str(forged / "state.nc"), state_dataset({"coords": np.zeros((2, 3))}, attrs={"model": "huang2024"}))
    assert analyze.main([str(forged)]) == 2
    assert "saved by model 'huang2024'" in capsys.readouterr().err
    assert analyze.main([run_dir, "--rates", "0.1,1.0"]) == 2
    assert "prune_rate must be a number in [0, 1)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--method", "gd"], "does not support method 'gd'"),
    (["--method", "mc", "--M1", "1"], "M1 must be an integer >= 2"),
    (["--method", "mc", "--alpha-test", "0"], "alpha_test must be"),
    (["--method", "mc", "--l-test", "0"], "l_test must be an integer >= 1"),
    (["--method", "mc", "--S1", "inf"], "S1 must be a finite number"),
    (["--method", "mc", "--d-x", "10"], "d_x must be >= M1 + M2 = 30"),
])
def test_command_line_refuses_bad_input(argv, words, tmp_path, capsys):
    assert simulate_main(["--model", "li2024", "--out", str(tmp_path / "x"), "--check"] + argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_reproduce_front_end_lists_the_targets():
    listed = {t for t, (m, _) in targets().items() if m == "li2024"}
    assert listed == {"li-ood", "li-alpha", "li-mechanism", "li-pruning", "li-baselines"}
