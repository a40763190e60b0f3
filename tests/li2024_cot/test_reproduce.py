"""The reproduce targets' claims, checked on the CSV tables they write, at the reduced size
(``quick=True``: 4 replicas of 400 SGD steps shared by cot-length, cot-vs-icl and cot-mechanism,
400 test prompts per replica and grid point; cot-training: 3 replicas per setting).

A claim "A above B" is decided when the difference exceeds 5 standard errors of the difference
(the tables' replica standard errors combined in quadrature; paired differences where the table
gives them)."""
import os

import numpy as np

from dynamics.models.li2024_cot import reproduce
from tests.tables import apart, lookup, read


def test_cot_vs_icl(tmp_path):
    reproduce.cot_vs_icl(str(tmp_path), quick=True)
    header, rows = read(tmp_path / "cot-vs-icl.csv")
    assert header == ["method", "condition1", "l_test", "error", "stderr"]
    assert os.path.getsize(tmp_path / "cot-vs-icl.png") > 10_000
    L = sorted({int(r[2]) for r in rows})
    lo, hi = L[0], L[-1]
    # Theorem 6 / the claim: without Condition 1, ICL at the longest length stays above 0.3
    # while CoT is below 0.1, both beyond 5 SE
    assert apart(lookup(rows, "icl", "false", hi), (0.3, 0.0))
    assert apart((0.1, 0.0), lookup(rows, "cot", "false", hi))
    # with Condition 1 both fall with the length
    for method in ("cot", "icl"):
        assert apart(lookup(rows, method, "true", lo), lookup(rows, method, "true", hi))
    _, task = read(tmp_path / "cot-vs-icl-task.csv")
    assert float(lookup(task, "false", value=4, se=4)[0]) < 0 < float(lookup(task, "true", value=4, se=4)[0])


def test_cot_length(tmp_path):
    res = reproduce.cot_length(str(tmp_path), quick=True)
    header, rows = read(tmp_path / "cot-length.csv")
    assert header == ["alpha_test", "tau_f", "l_test", "error", "stderr"]
    assert os.path.getsize(tmp_path / "cot-length.png") > 10_000
    c = res["claims"]
    # paired over replicas on common random numbers, at l = 10: smaller alpha' or tau^f, larger error
    assert apart(c["paired_alpha"], (0.0, 0.0)) and apart(c["paired_tau"], (0.0, 0.0))
    # the length at which the error reaches 0.05 does not grow with alpha' (tau^f = 0.6) or tau^f (alpha' = 0.8)
    req = c["required_length"]
    by_alpha = [req[(a, 0.6)] for a in reproduce.ALPHA_TESTS]
    by_tau = [req[(0.8, t)] for t in reproduce.TAUS]
    assert by_alpha == sorted(by_alpha, reverse=True) and by_tau == sorted(by_tau, reverse=True)
    assert np.isfinite(by_alpha[-1]) and np.isfinite(by_tau[-1])


def test_cot_mechanism(tmp_path):
    res = reproduce.cot_mechanism(str(tmp_path), quick=True)
    header, rows = read(tmp_path / "cot-mechanism.csv")
    assert header == ["t", "prompts", "column_type", "attention", "stderr"]
    t = sorted({int(r[0]) for r in rows})
    first = lookup(rows, t[0], "test", "same_pattern_same_step")
    last = lookup(rows, t[-1], "test", "same_pattern_same_step")
    # slides' Figure 20: from about 0.2 to dominant.  At initialisation W_K^T W_Q = 0.09 I: nearly
    # uniform attention, the same-pattern same-step columns being ~alpha'/K of them (0.27, less the
    # wrong steps of the test task)
    assert 0.15 < first[0] < 0.3 and last[0] - 5 * last[1] > 0.8
    c = res["claims"]
    # positions before patterns: on training prompts the mass on other steps halves before the mass
    # on other patterns (paired over replicas) ...
    assert apart(c["train"]["pattern_minus_step"], (0.0, 0.0))
    # ... and on test prompts the same-step, different-pattern mass first grows above its initial value
    ds = [lookup(rows, tt, "test", "diff_pattern_same_step") for tt in t]
    assert apart(max(ds), ds[0])


def test_cot_training(tmp_path):
    res = reproduce.cot_training(str(tmp_path), quick=True)
    header, rows = read(tmp_path / "cot-training.csv")
    assert header == ["level", "alpha", "K", "iterations", "stderr"]
    assert all(np.isfinite(float(r[3])) for r in rows)        # every run reached every level
    fits = res["claims"]["fits"]
    # at the first level (the escape from the initial plateau) the iterations fall with alpha and grow
    # with K, and overall they grow as the level eps falls (Theorem 4's alpha^-2, K^3, eps^-1 terms)
    slope, se = fits[("alpha", 0.1)][:2]
    assert slope + 5 * se < 0
    slope, se = fits[("K", 0.1)][:2]
    assert slope - 5 * se > 0
    slope, se = fits[("eps", None)][:2]
    assert slope + 5 * se < 0
    _, frow = read(tmp_path / "cot-training-fit.csv")
    assert len(frow) == 2 * len(reproduce.LOSS_LEVELS) + 1
