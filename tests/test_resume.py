"""A killed Monte Carlo run resumes to bit-identical numbers, from a checkpoint taken in its first
replica (when no replica has finished: the checkpoint's ``finals`` is empty) or a later one.

Fast: every checkpoint of a small run goes through ``checkpoint.npz`` on disk and back, and the run
resumed from it equals the uninterrupted one byte for byte.  Slow: the real command is killed
with SIGKILL at random moments (a fixed seed) and ``--resume`` continues it until it finishes.
"""
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from dynamics.core import rundir
from dynamics.simulate import simulate

SMALL = dict(K=3, N=8, steps=40, snapshots=6, replicas=2, batch=20, n_eval=20, checkpoint_every=10)


def _same(a: xr.Dataset, b: xr.Dataset):
    assert set(a.data_vars) == set(b.data_vars)
    for v in a.data_vars:
        assert a[v].values.tobytes() == b[v].values.tobytes(), v


def test_checkpoints_of_every_replica_resume_bit_identically(tmp_path):
    cks = []
    full = simulate("huang2024", "mc", on_checkpoint=cks.append, **SMALL)
    first = [c for c in cks if int(c["replica"]) == 0 and "state" in c]
    assert first and all(len(c["finals"]) == 0 for c in first)  # the case that used to be refused
    chosen = [first[0], cks[len(cks) // 2], cks[-1]]
    for i, ck in enumerate(chosen):
        folder = tmp_path / f"ck{i}"
        folder.mkdir()
        rundir.save_checkpoint(str(folder), ck)
        back = rundir.load_checkpoint(str(folder))
        assert "finals" in back and set(back) == set(ck)
        res = simulate("huang2024", "mc", resume=back, **SMALL)
        _same(full.ds, res.ds)
        for b in full.state:
            assert full.state[b].tobytes() == res.state[b].tobytes()


ARGS = ["--method", "mc", "--K", "3", "--N", "8", "--steps", "400", "--snapshots", "8", "--replicas", "3",
        "--batch", "20", "--n-eval", "20", "--checkpoint-every", "5", "--figures", "false", "--quiet"]


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "dynamics.simulate", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_kill_minus_9_at_random_moments_then_resume(tmp_path):
    r = _run(ARGS + ["--out", "full"], tmp_path)
    assert r.returncode == 0, r.stderr
    rng = random.Random(19)
    replicas_hit = set()
    proc = subprocess.Popen([sys.executable, "-m", "dynamics.simulate", *ARGS, "--out", "cut"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ck = tmp_path / "cut" / "checkpoint.npz"
    for attempt in range(30):
        t0 = time.time()
        while not ck.exists() and proc.poll() is None and time.time() - t0 < 300:
            time.sleep(0.02)
        # The first kill follows the first checkpoint at once, so it lands in the first replica
        # however fast the machine; later ones at random moments.
        time.sleep(rng.uniform(0.0, 0.6) if attempt else 0.0)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if ck.exists():
            try:
                replicas_hit.add(int(np.load(ck)["replica"]))
            except Exception:  # a checkpoint is written atomically: this should not happen
                raise
        proc = subprocess.Popen([sys.executable, "-m", "dynamics.simulate", "--resume", "cut", "--quiet"],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    assert 0 in replicas_hit, replicas_hit  # killed in the first replica at least once
    a = xr.open_dataset(tmp_path / "full" / "results.nc")
    b = xr.open_dataset(tmp_path / "cut" / "results.nc")
    _same(a, b)
    assert not ck.exists()
    r = _run(["--resume", "cut"], tmp_path)  # a finished run is not rerun
    assert r.returncode == 2 and "has finished" in r.stderr, r.stderr


def test_resume_refuses_another_models_checkpoint_before_rewriting(tmp_path, capsys):
    from dynamics.simulate import simulate_main

    cks = []
    simulate("huang2024", "mc", on_checkpoint=cks.append, **SMALL)
    folder = tmp_path / "run"
    folder.mkdir()
    cfg = '{"model": "li2024", "method": "mc", "given": {"steps": 20, "checkpoint_every": 5}}'
    (folder / "config.json").write_text(cfg)
    rundir.save_checkpoint(str(folder), cks[0])
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert simulate_main(["--resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another run's checkpoint" in err[0], err
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    bad = dict(cks[0])
    bad["state"] = {k: np.full_like(v, np.nan) for k, v in cks[0]["state"].items()}
    (folder / "config.json").write_text('{"model": "huang2024", "method": "mc", "given": %s}'
                                        % str(SMALL).replace("'", '"'))
    rundir.save_checkpoint(str(folder), bad)
    assert simulate_main(["--resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite" in err[0], err
