"""The reproduce targets' claims, checked on the CSV tables they write, at the reduced size
(``quick=True``: 5 replicas of 600 SGD steps, each with its own seed and training tasks; 600 test
prompts per replica and grid point).

A claim "A below B" is decided when the difference exceeds 5 standard errors of the difference
(the tables' replica standard errors combined in quadrature)."""
import os

import numpy as np
import pytest

from dynamics.models.li2024 import baselines, reproduce
from tests.tables import apart, lookup, read

pytestmark = pytest.mark.slow  # each target trains 5 replicas (tens of seconds)


def test_li_ood_norm_tied_patterns_show_the_norm_effect(tmp_path):
    reproduce.li_ood(str(tmp_path), quick=True)
    header, rows = read(tmp_path / "li-ood.csv")
    assert header == ["construction", "S1", "l_test", "error", "stderr", "seed_min", "seed_median", "seed_max"]
    assert os.path.getsize(tmp_path / "li-ood.png") > 10_000
    lmax = max(int(r[2]) for r in rows)
    # Norm-tied patterns (norm S1 / sqrt(2)): S1 = 0.5 is far worse than S1 = 1.3 at the longest length
    # (the signal-to-noise effect of the norm the ledger row li-thm2-s1 separates from the sum)
    assert apart(lookup(rows, "tied", 0.5, lmax, value=3, se=4), lookup(rows, "tied", 1.3, lmax, value=3, se=4))
    # and the error at S1 = 1.3 keeps falling with the test length
    assert apart(lookup(rows, "tied", 1.3, 5, value=3, se=4), lookup(rows, "tied", 1.3, lmax, value=3, se=4))
    for r in rows:  # the replicas' spread brackets their median
        assert float(r[5]) <= float(r[6]) <= float(r[7])


def test_li_alpha_required_length_falls_as_alpha_test_grows(tmp_path):
    reproduce.li_alpha(str(tmp_path), quick=True)
    header, rows = read(tmp_path / "li-alpha.csv")
    assert header == ["alpha_test", "domain", "l_test", "error", "stderr"]
    _, paired = read(tmp_path / "li-alpha-paired.csv")
    # Paired over replicas (same weights, same training tasks): at l = 5, where every error is
    # still well above 0 (by l = 20 the in-domain ones are ~0), the error at alpha' = 0.8 exceeds
    # that at alpha' = 1 by more than 5 standard errors of the paired difference, in both domains.
    for dom in ("id", "ood"):
        assert apart(lookup(paired, 0.8, dom, 5), (0.0, 0.0))
    _, req = read(tmp_path / "li-alpha-required.csv")
    for dom in ("id", "ood"):  # every replica reaches the level at alpha' = 1 by l = 20
        assert lookup(req, 1.0, dom, value=4, se=4)[0] == 0


def test_li_mechanism_induction_head_and_embeddings(tmp_path):
    reproduce.li_mechanism(str(tmp_path), quick=True)
    header, rows = read(tmp_path / "li-mechanism.csv")
    assert header == ["t", "domain", "attn_same", "stderr"]
    t = sorted({int(r[0]) for r in rows})
    first, last = lookup(rows, t[0], "id"), lookup(rows, t[-1], "id")
    # Initial same-pattern mass: alpha/2 = 0.4 of the contexts with score c^2 = 0.09 above the
    # rest, 0.4 e^0.09 / (0.4 e^0.09 + 0.6) = 0.422 (the slides' ~0.42), up to IDI overlaps.
    assert abs(first[0] - 0.422) < 0.01 + 5 * first[1]
    assert last[0] - 5 * last[1] > 0.8  # Proposition 1: attention concentrates
    _, prow = read(tmp_path / "li-mechanism-projections.csv")
    assert apart(lookup(prow, t[-1], "W_K", "along_pattern"), lookup(prow, t[-1], "W_K", "orthogonal"))
    assert apart(lookup(prow, t[-1], "W_Q", "along_pattern"), lookup(prow, t[-1], "W_Q", "orthogonal"))
    _, erow = read(tmp_path / "li-mechanism-embedding.csv")
    for part in ("feature", "label"):  # Proposition 2: rows of W_O W_V -> (mu_bar; +-q)
        for sign in ("+", "-"):
            assert apart(lookup(erow, t[-1], part, sign), (0.0, 0.0))


def test_li_pruning_magnitude_beats_random(tmp_path):
    reproduce.li_pruning(str(tmp_path), quick=True)
    header, rows = read(tmp_path / "li-pruning.csv")
    assert header == ["prune_rate", "method", "error", "stderr", "change", "change_stderr"]
    _, hinge = read(tmp_path / "li-pruning-hinge.csv")
    # Theorem 3 on the slides' generalization error (the hinge loss, eq. 10): pruning the
    # smallest 10% changes it less than pruning 10% at random, by > 3 paired standard errors (the
    # ledger row li-thm3-hinge's k; since issue 17's balanced T_tr and unit-norm ODR patterns the
    # OOD hinge loss is smaller and the quick size gives ~3.3 SE, where it gave > 5 before).
    assert apart(lookup(hinge, 0.1, "random"), lookup(hinge, 0.1, "magnitude"), k=3.0)
    # The classification error: magnitude pruning changes it by no more than random pruning
    # (in this network both changes are within noise of 0; docs/models/li2024.md).
    mag, rnd = lookup(rows, 0.1, "magnitude"), lookup(rows, 0.1, "random")
    assert abs(mag[0]) <= abs(rnd[0]) + 3 * np.hypot(mag[1], rnd[1])
    _, norms = read(tmp_path / "li-pruning-magnitudes.csv")
    assert len(norms) == 5 * 40
    header, per = read(tmp_path / "li-pruning-replicas.csv")  # the replicas behind the mean
    assert header == ["replica", "metric", "prune_rate", "method", "value", "change"] and len(per) == 5 * 2 * 9 * 2
    for how in ("magnitude", "random"):
        vals = [float(r[5]) for r in per if r[1] == "hinge" and r[2] == "0.1" and r[3] == how]
        assert np.isclose(np.mean(vals), lookup(hinge, 0.1, how)[0], rtol=1e-12, atol=1e-15)


def test_li_baselines_table_or_clean_skip(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    reproduce.li_baselines(str(tmp_path), quick=True)
    header, rows = read(tmp_path / "li-baselines.csv")
    assert header == ["alpha_test", "domain", "l_test", "method", "error", "stderr"]
    assert {r[3] for r in rows} == {"transformer", *baselines.METHODS}
    assert all(0.0 <= float(r[4]) <= 1.0 for r in rows)
    monkeypatch.setattr(baselines, "available", lambda: False)
    skipped = reproduce.li_baselines(str(tmp_path / "none"), quick=True)
    assert "scikit-learn is not installed" in skipped["skipped"]
    assert capsys.readouterr().out.strip().count("\n") == 0 and not (tmp_path / "none").exists()
