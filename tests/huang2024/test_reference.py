"""Huang's results do not change when the code moves: three runs against numbers recorded from
main at commit 13c2cfb (before the multi-model restructure), compared bit for bit.

``huang_reference_v0.npz`` holds ``t``, ``coords``, ``L_f``, ``attn`` of: the default command's
run (K = 10, N = 100, imbalanced p_1 = 0.5, eta = 1, 1e5 exact GD steps, 200 snapshots), a
class-reduced run at K = 10^6, N = 10^9 (2e4 steps, 50 snapshots) and a gradient flow
(K = 20, N = 100, to t = 1e6, 60 snapshots, LSODA rtol 1e-8, atol 1e-12).
"""
import os

import numpy as np
import pytest

from dynamics.simulate import simulate

REF = os.path.join(os.path.dirname(__file__), "huang_reference_v0.npz")
RUNS = {
    "default": dict(K=10, N=100, preset="imbalanced", p1=0.5, eta=1.0, steps=100_000, snapshots=200),
    "K1e6": dict(K=10**6, N=10**9, preset="imbalanced", p1=0.5, eta=1.0, steps=20_000, snapshots=50),
    "flow": dict(K=20, N=100, preset="imbalanced", p1=0.5, eta=1.0, steps=10**6, snapshots=60, method="flow"),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_bit_identical_to_the_recorded_runs(name):
    res = simulate("huang2024", **RUNS[name])
    exists = res.model.movable("gd")["coords"]  # entries of empty classes are NaN now, were a constant 0
    with np.load(REF) as ref:
        np.testing.assert_array_equal(res.t, ref[f"{name}__t"])
        np.testing.assert_array_equal(res.L_f, ref[f"{name}__L_f"], err_msg=f"{name}: L_k")
        for key in ("coords", "attn"):
            new, old = getattr(res, key), ref[f"{name}__{key}"]
            np.testing.assert_array_equal(new[:, exists], old[:, exists], err_msg=f"{name}: {key}")
            assert np.all(np.isnan(new[:, ~exists])) and np.all(old[:, ~exists] == 0)
