"""Sweep runner (dynamics.sweep): spec checks, labelled dataset, failures, resume after kills."""
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

from dynamics.simulate import simulate
pytest.importorskip("distributed", reason="the sweep runner needs the sweep extra (Dask distributed)")

from dynamics.sweep import CRASH_ENV, CRASH_WAIT_ENV, SpecError, load_sweep, main, parse_spec, run_sweep

# Small, fast grid: 4 points of exact GD (milliseconds each once numba is compiled).
BASE = dict(model="huang2024", fixed=dict(preset="imbalanced", p1=0.5, steps=400, snapshots=60),
            derived=dict(N="K**2"), sweep=dict(K=[4, 6], eta=[0.5, 1.0]),
            outputs=dict(first_below=[1e-1, 1e-2], final=["gap"], at=dict(t=[0, 10, 100, 1000], observables=["A"])))


def spec(**changes):
    s = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for k, v in changes.items():
        s[k] = v
    return s


OUTPUTS = ("first_below", "final_gap", "at_A")


def same_data(a, b):
    """Every output array equal bit for bit (NaN == NaN): runs are deterministic."""
    return all(np.array_equal(a[k].values, b[k].values, equal_nan=True) for k in OUTPUTS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted sweep (threads) to compare interrupted ones against."""
    out = str(tmp_path_factory.mktemp("ref") / "ref.nc")
    rep = run_sweep(spec(), out, workers=2, processes=False)
    assert rep.ok and rep.n_computed == 4
    return load_sweep(out)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("table, key", [("sweep", "Kx"), ("fixed", "temperature"), ("derived", "NN")])
def test_unknown_parameter_is_named(table, key):
    s = spec()
    s[table] = {**s[table], key: [1, 2] if table == "sweep" else ("1" if table == "derived" else 1)}
    with pytest.raises(SpecError, match=f"unknown parameter '{key}' in \\[{table}\\]"):
        parse_spec(s)


def test_empty_grid_is_an_error():
    with pytest.raises(SpecError, match="empty grid: \\[sweep\\] K is an empty list"):
        parse_spec(spec(sweep=dict(K=[], eta=[1.0])))
    with pytest.raises(SpecError, match="empty grid"):
        parse_spec(spec(sweep={}))


def test_other_spec_errors_name_the_problem():
    with pytest.raises(SpecError, match="unknown model 'yang_multihead'"):
        parse_spec(spec(model="yang_multihead"))
    with pytest.raises(SpecError, match="unknown output 'T_star'"):
        parse_spec(spec(outputs=dict(T_star=True)))
    with pytest.raises(SpecError, match="first_below needs an exact method"):
        parse_spec(spec(fixed=dict(method="mc", steps=10), outputs=dict(first_below=[0.1])))
    with pytest.raises(SpecError, match="both \\[fixed\\] and \\[sweep\\]"):
        parse_spec(spec(fixed=dict(K=4)))
    with pytest.raises(SpecError, match="uses 'M'"):
        run_sweep(spec(derived=dict(N="M**2")), "unused.nc")
    with pytest.raises(SpecError, match="point 1 \\(K=4, eta=-1.0\\).*eta must be a finite number > 0"):
        run_sweep(spec(sweep=dict(K=[4], eta=[1.0, -1.0])), "unused.nc")
    with pytest.raises(SpecError, match="N must be an integer"):
        run_sweep(spec(derived=dict(N="K**2 / 3")), "unused.nc")
    assert not os.path.exists("unused.npz")


def test_cli_bad_spec_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('model = "huang2024"\n[sweep]\nK = [4]\nbogus = [1, 2]\n[outputs]\nfinal = ["gap"]\n')
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown parameter 'bogus' in [sweep]" in err[0]
    path.write_text('model = "huang2024"\n[sweep]\nK = []\n[outputs]\nfinal = ["gap"]\n')
    assert main([str(path)]) == 2
    assert "empty grid" in capsys.readouterr().err


# ---------------------------------------------------------------- the dataset
def test_dataset_is_labelled_and_matches_simulate(reference, tmp_path):
    ds = reference
    assert ds["first_below"].dims == ("K", "eta", "query_class", "eps")
    assert ds["at_A"].dims == ("K", "eta", "t_at", "query_class")
    assert ds["first_below"].shape == (2, 2, 2, 2)
    assert ds["K"].values.tolist() == [4, 6] and ds["eps"].values.tolist() == [0.1, 0.01]
    assert ds["query_class"].values.tolist() == ["dominant", "rest"]
    assert ds["N"].values.tolist() == [[16, 16], [36, 36]]
    assert not ds["failed"].values.any() and json.loads(ds.attrs["errors"]) == []
    # One point recomputed directly: the same numbers, bit for bit.
    res = simulate(K=6, N=36, preset="imbalanced", p1=0.5, eta=0.5, steps=400, snapshots=60, levels=[0.1, 0.01])
    np.testing.assert_array_equal(ds["first_below"].sel(K=6, eta=0.5, eps=0.01).values, res.first_time_below(0.01))
    np.testing.assert_array_equal(ds["final_gap"].sel(K=6, eta=0.5).values, res.L_f[-1] - res.L_star)
    a = ds["at_A"].sel(K=6, eta=0.5).values
    assert a[0].tolist() == [0.0, 0.0] and np.all(np.isnan(a[3]))  # Q^(0) = 0; t = 1000 is beyond the horizon
    at100 = simulate(K=6, N=36, preset="imbalanced", p1=0.5, eta=0.5, steps=400, save_at=[100, 400])
    np.testing.assert_array_equal(a[2], at100.coords[0, :, 0])  # A_k of both classes at t = 100
    with pytest.raises(KeyError):
        ds["final_gap"].sel(N=16)
    # The file itself opens with plain xarray.
    assert xr.open_dataset(run_sweep(spec(), str(tmp_path / "x.nc"), workers=1, processes=False).path)["K"].size == 2


def test_rerun_and_extended_grid_compute_only_new_points(tmp_path, reference):
    out = str(tmp_path / "s.nc")
    assert run_sweep(spec(), out, workers=1, processes=False).n_computed == 4
    again = run_sweep(spec(), out, workers=1, processes=False)
    assert (again.n_computed, again.n_skipped) == (0, 4)
    wider = run_sweep(spec(sweep=dict(K=[4, 6, 8], eta=[0.5, 1.0])), out, workers=1, processes=False)
    assert (wider.n_computed, wider.n_skipped) == (2, 4)
    ds = load_sweep(out)
    assert ds["final_gap"].shape == (3, 2, 2)
    np.testing.assert_array_equal(ds["final_gap"].values[:2], reference["final_gap"].values)


def test_failed_point_is_named_recorded_as_nan_and_exit_1(tmp_path, capsys):
    # eta = 1e12 makes the first GD step non-finite at K = 4, N = 16 (SimulationDiverged);
    # the cancellation-free engine survives 1e5 (softmax saturates, the step stays finite).
    path = tmp_path / "fail.toml"
    path.write_text(textwrap.dedent("""\
        model = "huang2024"
        [fixed]
        preset = "imbalanced"
        K = 4
        N = 16
        steps = 200
        [sweep]
        eta = [1.0, 1e12]
        [outputs]
        final = ["gap"]
        """))
    assert main([str(path), "--threads", "--workers", "1", "--quiet"]) == 1
    assert "failed: point 1 (eta=1000000000000.0): SimulationDiverged" in capsys.readouterr().err
    ds = load_sweep(str(tmp_path / "fail.nc"))
    assert ds["failed"].values.tolist() == [0, 1]
    fg = ds["final_gap"].values
    assert np.all(np.isfinite(fg[0])) and np.all(np.isnan(fg[1]))
    errors = json.loads(ds.attrs["errors"])
    assert len(errors) == 1 and errors[0].startswith("point 1 (eta=1000000000000.0)")


# ---------------------------------------------------------------- kills and resume
def test_killed_sweep_process_resumes_to_identical_dataset(tmp_path, reference):
    """Threads: a task exits the whole process (client included) at point 3; the progress store
    keeps the points finished before it; a re-run computes only the rest."""
    out = str(tmp_path / "k.nc")
    code = ("import json, sys; from dynamics.sweep import run_sweep; "
            f"run_sweep(json.loads(sys.argv[1]), {out!r}, workers=1, processes=False, flush_interval=0)")
    # The crashing task waits until the client has stored a finished point (else the kill could
    # overtake the delivery of results and leave nothing to resume from: a race, not a property).
    env = {**os.environ, CRASH_ENV: f"{tmp_path / 'marker'}:3", CRASH_WAIT_ENV: out + ".partial.nc"}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec())], env=env, capture_output=True, timeout=120)
    assert proc.returncode == 70, proc.stderr.decode()[-2000:]
    assert not os.path.exists(out) and os.path.exists(out + ".partial.nc")
    n_saved = xr.open_dataset(out + ".partial.nc").sizes["point"]
    # Points 0-2 ran before point 3 on the single worker thread; at least one was stored, point 3 not.
    assert 1 <= n_saved <= 3
    rep = run_sweep(spec(), out, workers=1, processes=False)
    assert rep.ok and (rep.n_computed, rep.n_skipped) == (4 - n_saved, n_saved)
    assert not os.path.exists(out + ".partial.nc")
    assert same_data(load_sweep(out), reference)


def test_killed_worker_process_fails_its_point_then_rerun_completes(tmp_path, monkeypatch, reference):
    """Processes: the worker running point 2 dies (os._exit); with no retries the point fails
    (named), the others are saved; a re-run recomputes only the failed ones."""
    monkeypatch.setenv(CRASH_ENV, f"{tmp_path / 'marker'}:2")
    out = str(tmp_path / "w.nc")
    rep = run_sweep(spec(), out, workers=2, processes=True, retries=0)
    assert not rep.ok and any(e.startswith("point 2 (K=6, eta=0.5): worker lost") for e in rep.errors)
    # A task queued on the dying worker may fail with it: at most one more point.
    assert len(rep.errors) <= 2
    ds = load_sweep(out)
    failed = ds["failed"].values.ravel()
    assert failed[2] and failed.sum() == len(rep.errors)
    assert np.all(np.isnan(ds["final_gap"].values.reshape(4, -1)[2]))
    rerun = run_sweep(spec(), out, workers=2, processes=True, retries=0)
    assert rerun.ok and rerun.n_computed == len(rep.errors)
    assert same_data(load_sweep(out), reference)


def test_local_workers_run_numba_single_threaded():
    import numba

    from dynamics.sweep.runner import client as _client

    with _client(None, 1, True, None) as client:
        assert client.submit(os.getenv, "NUMBA_NUM_THREADS", pure=False).result() == "1"
        assert client.submit(numba.get_num_threads, pure=False).result() == 1


def test_ctrl_c_exits_130_with_one_line_and_keeps_the_points_done(tmp_path):
    """SIGINT while a long point runs: exit 130, one error line, no traceback, finished points kept."""
    import signal

    (tmp_path / "s.toml").write_text(textwrap.dedent("""\
        model = "huang2024"
        [fixed]
        K = 20
        [sweep]
        steps = [10, 100000000]
        [outputs]
        final = ["gap"]
        """))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    # A shell without job control starts background jobs with SIGINT ignored, and a child inherits
    # that (CI may run the suite so): restore the default, as a terminal's foreground job has it.
    proc = subprocess.Popen([sys.executable, "-m", "dynamics.sweep", "s.toml", "--workers", "1", "--threads"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:  # the point with 10 steps reports before the long one ends
        line = proc.stderr.readline()
        lines.append(line)
        if line.startswith("point 0"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    errors = [x for x in (lines + err.splitlines()) if x.startswith("error:")]
    assert proc.returncode == 130, (lines, err)
    assert len(errors) == 1 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    kept = xr.open_dataset(tmp_path / "s.nc.partial.nc")
    assert kept.sizes["point"] == 1 and np.all(np.isfinite(kept["final_gap"].values))
