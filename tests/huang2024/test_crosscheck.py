"""The cross-check: exact reduced GD against Monte Carlo training of the full Q (MODEL.md s.5)."""
import subprocess
import sys

import numpy as np

from dynamics.crosscheck import crosscheck
from dynamics.simulate import make_model


def test_exact_dynamics_pass_the_monte_carlo_check():
    model = make_model(K=3, N=8, preset="imbalanced", p1=0.5)
    cc = crosscheck(model, eta=1.0, steps=60, replicas=6, batch=1000, record_at=[0, 10, 30, 60], random_state=1,
                    n_eval=200)
    assert cc.passed, cc.table()
    assert cc.off_span_max < 1e-10  # Q never leaves span{v_n v_k^T} when it starts at 0
    # the replicas moved: this is not a comparison of two constants
    assert np.all(np.abs(cc.exact[-1, :2]) > 0.05)


def test_the_check_detects_a_wrong_trajectory():
    """A Monte Carlo run with a 30% larger step must fail against the exact trajectory."""
    model = make_model(K=3, N=8, preset="imbalanced", p1=0.5)
    original = model.monte_carlo

    def wrong(replicas, eta, steps, record_at, **kw):
        return original(replicas, 1.3 * eta, steps, record_at, **kw)

    model.monte_carlo = wrong
    cc = crosscheck(model, eta=1.0, steps=60, replicas=6, batch=1000, record_at=[0, 10, 30, 60], random_state=1,
                    n_eval=200)
    assert not cc.passed, cc.table()


def test_cli_bad_input_exits_2():
    r = subprocess.run([sys.executable, "-m", "dynamics.crosscheck", "--replicas", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
