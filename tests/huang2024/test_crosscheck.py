"""The cross-check: exact reduced GD against Monte Carlo training of the full Q (MODEL.md s.5)."""
import subprocess
import sys

import numpy as np
import pytest

from dynamics.crosscheck import crosscheck

SMALL = dict(K=3, N=8, preset="imbalanced", p1=0.5, eta=1.0, steps=60, replicas=6, batch=1000, seed=1, n_eval=200)


def test_exact_dynamics_pass_the_monte_carlo_check():
    cc = crosscheck("huang2024", save_at=[0, 10, 30, 60], **SMALL)
    assert cc.passed, cc.table()
    assert cc.extra["max_off_span"] < 1e-10  # Q never leaves span{v_n v_k^T} when it starts at 0
    # the replicas moved: this is not a comparison of two constants
    assert np.all(np.abs(cc.exact[-1, :2]) > 0.05)


def test_the_check_detects_a_wrong_trajectory():
    """A Monte Carlo run with a 30% larger step must fail against the exact trajectory."""
    cc = crosscheck("huang2024", save_at=[0, 10, 30, 60], mc_overrides={"eta": 1.3}, **SMALL)
    assert not cc.passed, cc.table()


def test_cli_bad_input_exits_2():
    r = subprocess.run([sys.executable, "-m", "dynamics.crosscheck", "--replicas", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_models_without_an_exact_method_are_refused(monkeypatch):
    from dynamics.models.huang2024.model import Huang2024

    monkeypatch.setattr(Huang2024, "methods", ("mc",))
    with pytest.raises(ValueError, match="needs methods gd and mc"):
        crosscheck("huang2024", **SMALL)
