"""The simulator against the brute-force oracle, the gradient flow, and the paper's invariants."""
import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from dynamics.core.errors import SimulationDiverged
from dynamics.models.huang2024.bruteforce import population_loss_grad_bruteforce
from dynamics.models.huang2024.model import Huang2024
from dynamics.simulate import simulate


def model(**kw):
    """Huang's model with the given parameters (everything else at its declared default)."""
    return Huang2024.create(**kw)


def _oracle_gd(theta, p, N, eta, steps, record):
    """Population GD driven by brute-force enumeration (independent of the derived kernels)."""
    out = {}
    for t in range(steps + 1):
        if t in record:
            out[t] = theta.copy()
        if t < steps:
            theta = theta - eta * population_loss_grad_bruteforce(theta, p, N)[1]
    return out


@pytest.mark.parametrize("preset", ["balanced", "imbalanced", "general"])
def test_gd_equals_bruteforce_gd_over_1000_steps(preset):
    K, N, eta, steps = 3, 6, 2.0, 1000
    if preset == "balanced":
        m = model(K=K, N=N, preset="balanced")
    elif preset == "imbalanced":
        m = model(K=K, N=N, p1=0.6)
    else:
        m = model(N=N, preset="general", p=np.random.default_rng(5).dirichlet(np.ones(K)).tolist())
    s = m.structure
    rec = [0, 10, 100, 1000]
    res = simulate(m, eta=eta, steps=steps, save_at=rec)
    ref = _oracle_gd(np.zeros((K, K)), s.p, N, eta, steps, rec)
    for i, t in enumerate(rec):
        # per-step error ~1e-13 accumulates over 1000 contracting steps: the bar is 1e-10
        np.testing.assert_allclose(s.expand(res.state_at(i)), ref[t], rtol=0, atol=1e-10)


def test_class_reduced_run_equals_general_run():
    kw = dict(eta=1.0, steps=500, save_at=[0, 50, 500])
    red = simulate(model(K=6, N=20, p1=0.4), **kw)
    s = red.structure
    gen = simulate(model(N=20, preset="general", p=s.p.tolist()), **kw)
    gen_s = gen.structure
    for i in range(3):
        np.testing.assert_allclose(gen_s.expand(gen.state_at(i)), s.expand(red.state_at(i)), rtol=0, atol=1e-11)
        np.testing.assert_allclose(gen.L[i], red.L[i], rtol=0, atol=1e-12)


def test_conservation_and_monotonicity():
    """Column sums of theta are conserved (columns of grad sum to 0); A_k never decreases (dL/dA_k <= 0)."""
    res = simulate(model(K=50, N=500, p1=0.3), eta=5.0, steps=5000, snapshots=300)
    s = res.structure
    coords = np.stack([res.state_at(i) for i in range(res.t.size)])
    colsum = coords[:, :, 0] + np.einsum("tfg,fg->tf", coords[:, :, 1:], s.column_tables()[1][:, 1:])
    np.testing.assert_allclose(colsum, 0.0, atol=1e-12 * 5000)
    assert np.all(np.diff(res.coords[:, :, 0], axis=0) >= -1e-15)
    assert np.all(np.diff(res.L) <= 1e-15)


def test_flow_converges_to_gd_at_first_order():
    """|gd(eta) - flow| at a fixed tau = eta t shrinks like eta^1: fitted log-log slope within 0.2 of 1."""
    m = model(K=5, N=30, p1=0.5)
    tau = 40.0
    flow = simulate(m, "flow", eta=1.0, steps=int(tau), save_at=[0, int(tau)])
    target = flow.state_at(-1)
    etas = np.array([0.4, 0.2, 0.1, 0.05])
    errs = []
    for eta in etas:
        steps = int(round(tau / eta))
        # GD with step eta for tau/eta steps reaches flow time tau = eta t: compare in tau
        gd = simulate(m, eta=eta, steps=steps, save_at=[steps])
        errs.append(np.abs(gd.state_at(-1) - target).max())
    slope = np.polyfit(np.log(etas), np.log(errs), 1)[0]
    assert abs(slope - 1.0) < 0.2, (slope, errs)


def test_stopping_rule_and_divergence():
    m = model(K=5, N=30, p1=0.5)
    res = simulate(m, eta=2.0, steps=10**6, eps=1e-2)
    assert res.status == "converged"
    assert np.all(res.L_f[-1] - res.L_star <= 1e-2)
    assert res.t[-1] < 10**6
    # The softmax loss is bounded, so a huge step rarely blows up; it does make L oscillate.
    with pytest.raises(SimulationDiverged, match="try a smaller eta") as exc:
        small = model(K=3, N=2, p1=0.5, A0=3.0)
        simulate(small, eta=1000.0, steps=300, snapshots=20, patience=1)
    assert exc.value.result.t.size >= 1  # snapshots before the failure are kept
    # Coordinates pushed beyond the engine's range are caught as non-finite, with the step.
    with pytest.raises(SimulationDiverged, match="non-finite"):
        simulate(m, eta=1e300, steps=50, snapshots=10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="eta must be"):
        simulate(K=5, N=10, eta=0.0)
    with pytest.raises(ValueError, match="steps must be"):
        simulate(K=5, N=10, steps=-1)
    with pytest.raises(ValueError, match="does not support method 'rk4'"):
        simulate(K=5, N=10, method="rk4")


def test_accessors_never_need_K_by_K():
    res = simulate(K=10**6, N=10**9, eta=1.0, steps=10, snapshots=5)
    assert res.coords.shape[1:] == (2, 3)
    assert res.A(0).shape == res.t.shape
    np.testing.assert_array_equal(res.B(5, 0), res.coords[:, 1, 1])
    np.testing.assert_array_equal(res.B(5, 7), res.coords[:, 1, 2])
    assert res.attention_map(-1).shape == (12, 12)


# ------------------------------------------------------------------------------------------
def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "dynamics.simulate", *args], cwd=cwd, capture_output=True, text=True)


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    (tmp_path / "bad.toml").write_text("K = 5\nnot_a_key = 3\n")
    for args in (["--preset", "nope"], ["--eta", "0"], ["--steps", "-3"], ["--frobnicate"],
                 ["--config", str(tmp_path / "bad.toml")]):
        r = _cli(*args, "--out", str(tmp_path / "x"), cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_cli_killed_run_resumes_to_identical_numbers(tmp_path):
    """SIGKILL a checkpointing run mid-way, resume it, and compare with an uninterrupted run bit for bit."""
    import signal
    import time

    common = ["--K", "8", "--N", "50", "--steps", "60000", "--snapshots", "60", "--figures", "false"]
    full = tmp_path / "full"
    assert _cli(*common, "--out", str(full), cwd=tmp_path).returncode == 0
    part = tmp_path / "part"
    proc = subprocess.Popen([sys.executable, "-m", "dynamics.simulate", *common, "--checkpoint-every", "2000",
                             "--out", str(part)], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (part / "checkpoint.npz").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed, "the run finished before it could be killed: make it longer"
    assert not (part / "results.nc").exists()
    with np.load(part / "checkpoint.npz") as z:
        assert 0 < int(z["step"]) < 60000
    r = _cli("--resume", str(part), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    a, b = xr.open_dataset(full / "results.nc").load(), xr.open_dataset(part / "results.nc").load()
    for key in ("t", "A", "B", "L_k", "attn", "attn_own", "L"):
        np.testing.assert_array_equal(a[key].values, b[key].values)
    manifest = json.loads((part / "manifest.json").read_text())
    assert manifest["status"] == "completed" and "numpy" in manifest["versions"]


def test_cli_toml_config_with_flag_override(tmp_path):
    (tmp_path / "run.toml").write_text('preset = "balanced"\nK = 6\nN = 40\nsteps = 400\nfigures = false\n')
    out = tmp_path / "r"
    r = _cli("--config", str(tmp_path / "run.toml"), "--steps", "200", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((out / "config.json").read_text())["resolved"]
    assert (cfg["preset"], cfg["K"], cfg["N"], cfg["steps"]) == ("balanced", 6, 40, 200)
    res = xr.open_dataset(out / "results.nc")
    assert res["t"].values[-1] == 200 and res["B"].shape[1:] == (1, 1)
