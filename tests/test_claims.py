"""The claims ledger: every registered claim of every model (generic, so new rows are covered
automatically), the decision rules of dynamics.core.claims on inputs whose verdict is known
independently, and the front end python -m dynamics.claims (files, bad input, no overwrite)."""
import math
import os

import numpy as np
import pandas as pd
import pytest

from dynamics import claims as front
from dynamics import models
from dynamics.core import claims as ledger
from dynamics.core.claims import (BY_CONSTRUCTION, CONSISTENT, INCONCLUSIVE, INCONSISTENT, NOT_REPRODUCED, REPRODUCED,
                                  SUPPORTING, VERDICTS, Claim, Decision, gap_exceeds, geometric_or_power,
                                  slope_within, upper_bound_exponent)
from dynamics.core.stats import Fit, linear_fit

ALL = front.gather()
IDS = [c.id for c in ALL]


# ---------------------------------------------------------------- every registered claim
def test_some_claims_are_registered_and_ids_unique():
    assert any(c.model == "huang2024" for c in ALL)
    assert len(IDS) == len(set(IDS)), sorted(i for i in IDS if IDS.count(i) > 1)


@pytest.mark.parametrize("claim", ALL, ids=IDS)
def test_claim_is_well_formed(claim):
    assert claim.model in models.names()
    assert claim in ledger.load(models.get(claim.model)), "registered by its own model"
    prefix, _, rest = claim.id.partition("-")
    # the prefix starts the model's name, underscores left out (huang-..., li2024cot-...)
    assert rest and claim.model.replace("_", "").startswith(prefix), f"id {claim.id!r} must be '<model prefix>-<name>'"
    for name in ("source", "claim", "quantity", "rule", "control", "negative", "decide"):
        assert isinstance(getattr(claim, name), str) and getattr(claim, name).strip(), name
    module, _, fn = claim.decide.partition(":")
    import importlib

    assert callable(getattr(importlib.import_module(module), fn))


@pytest.mark.slow
@pytest.mark.parametrize("claim", ALL, ids=IDS)
def test_claim_decides_at_quick_size(claim, tmp_path):
    d = claim.run(quick=True, out=str(tmp_path))
    assert isinstance(d, Decision) and d.verdict in VERDICTS and d.detail.strip()
    assert isinstance(d.value, float) and isinstance(d.se, float)
    if claim.bound:  # an upper bound is consistent or inconsistent, never reproduced
        assert d.verdict not in (REPRODUCED, NOT_REPRODUCED)
    if d.figure:
        assert os.path.getsize(d.figure) > 0


@pytest.mark.slow
@pytest.mark.parametrize("claim", ALL, ids=IDS)
def test_claim_rejects_its_negative_control(claim):
    d = claim.run(quick=True, negative=True)
    assert isinstance(d, Decision)
    assert d.verdict not in SUPPORTING, f"{claim.id}: the negative control ({claim.negative}) got {d.verdict}"


# ---------------------------------------------------------------- the rules
def fit(lo, hi):
    return Fit(0.5 * (lo + hi), 0.0, 0.0, lo, hi, 1.0, 10, 0.0, 0.95)


@pytest.mark.parametrize("lo, hi, verdict", [
    (1.2, 1.8, REPRODUCED), (1.0, 2.0, REPRODUCED),          # inside; both ends on the boundary (closed)
    (0.5, 0.99, NOT_REPRODUCED), (2.01, 3.0, NOT_REPRODUCED),  # disjoint below / above
    (0.5, 1.0, INCONCLUSIVE), (0.5, 1.5, INCONCLUSIVE), (1.5, 2.5, INCONCLUSIVE), (0.0, 3.0, INCONCLUSIVE),
    (math.nan, 1.5, INCONCLUSIVE), (1.2, math.inf, INCONCLUSIVE)])
def test_slope_within(lo, hi, verdict):
    assert slope_within(fit(lo, hi), 1.0, 2.0) == verdict


def test_slope_within_on_a_fitted_line():
    # y = 2 x + a deterministic wiggle of size 1e-3: the CI is about 2 +- 1e-3, inside [1.9, 2.1].
    x = np.linspace(0, 1, 20)
    y = 2 * x + 1e-3 * np.sin(7 * x)
    f = linear_fit(x, y)
    assert abs(f.slope - 2) < 1e-2 and f.lo < 2.01 and f.hi > 1.99
    assert slope_within(f, 1.9, 2.1) == REPRODUCED
    assert slope_within(f, 0.9, 1.1) == NOT_REPRODUCED
    assert slope_within(linear_fit([1, 2], [1, 2]), 0, 5) == INCONCLUSIVE  # two points: no interval


@pytest.mark.parametrize("lo, hi, verdict", [
    (0.8, 0.9, CONSISTENT), (0.8, 1.0, CONSISTENT),           # the bound itself is allowed
    (0.9, 1.1, INCONCLUSIVE), (1.0, 1.1, INCONCLUSIVE),       # straddles; lower end on the bound
    (1.01, 1.2, INCONSISTENT), (math.nan, math.nan, INCONCLUSIVE), (-math.inf, 0.5, INCONCLUSIVE)])
def test_upper_bound_exponent(lo, hi, verdict):
    assert upper_bound_exponent(fit(lo, hi), 1.0) == verdict


@pytest.mark.parametrize("gap, se, k, sign, verdict", [
    (5.01, 1.0, 5.0, 1, REPRODUCED), (5.0, 1.0, 5.0, 1, INCONCLUSIVE), (-5.01, 1.0, 5.0, 1, NOT_REPRODUCED),
    (-5.01, 1.0, 5.0, -1, REPRODUCED), (5.01, 1.0, 5.0, -1, NOT_REPRODUCED), (0.3, 0.1, 2.0, 1, REPRODUCED),
    (1e-300, 0.0, 5.0, 1, REPRODUCED), (0.0, 0.0, 5.0, 1, INCONCLUSIVE),   # exact numbers: se = 0
    (1.0, math.nan, 5.0, 1, INCONCLUSIVE), (math.nan, 1.0, 5.0, 1, INCONCLUSIVE), (1.0, -1.0, 5.0, 1, INCONCLUSIVE),
    (math.inf, 1.0, 5.0, 1, INCONCLUSIVE)])
def test_gap_exceeds(gap, se, k, sign, verdict):
    assert gap_exceeds(gap, se, k=k, sign=sign) == verdict


def test_geometric_or_power():
    t = np.arange(1.0, 60.0)
    geo = 0.8 ** t
    pw = t ** -2.0
    v, ratio, g, p = geometric_or_power(t, geo, "geometric")
    assert v == REPRODUCED and ratio >= 10 and abs(math.exp(g.slope) - 0.8) < 1e-12
    assert geometric_or_power(t, geo, "power")[0] == NOT_REPRODUCED
    v, ratio, g, p = geometric_or_power(t, pw, "power")
    assert v == REPRODUCED and abs(p.slope + 2) < 1e-12
    assert geometric_or_power(t, pw, "geometric")[0] == NOT_REPRODUCED
    # A mixture on a short range separates neither law by a factor 10: inconclusive.
    short = np.arange(1.0, 4.0)
    assert geometric_or_power(short, short ** -1.0 * 0.9 ** short, "power", margin=1e6)[0] == INCONCLUSIVE
    # Non-positive and NaN values are dropped; fewer than 3 points left is inconclusive.
    v, ratio, _, _ = geometric_or_power([1, 2, 3, 4], [1.0, -1.0, math.nan, 0.0], "power")
    assert v == INCONCLUSIVE and math.isnan(ratio)
    with pytest.raises(ValueError, match="expect"):
        geometric_or_power(t, geo, "exponential")


def test_decision_and_claim_contracts():
    with pytest.raises(ValueError, match="verdict must be one of"):
        Decision(1.0, math.nan, "confirmed", "")
    bad = Claim("x-bad", "huang2024", "s", "c", "q", "r", "c", "n", "tests.test_claims:not_a_decision")
    with pytest.raises(TypeError, match="must return a Decision"):
        bad.run(quick=True)


def not_a_decision(quick, out, negative):
    return 1.0


# ---------------------------------------------------------------- huang2024's phase rule
def test_huang_phase_rule():
    from dynamics.models.huang2024.claims import phase_rule

    nan = math.nan
    assert phase_rule(True, [1, 2, 2, 5], "four") == REPRODUCED
    assert phase_rule(True, [0, 2, 3, 5], "four") == NOT_REPRODUCED      # phase I empty
    assert phase_rule(True, [3, 2, 3, 5], "four") == NOT_REPRODUCED      # tau_1 after tau_2
    assert phase_rule(True, [1, 2, 3, nan], "four") == INCONCLUSIVE      # not reached in the horizon
    assert phase_rule(False, [1, 2, 3, 5], "four") == NOT_REPRODUCED     # B_kn never rises
    assert phase_rule(False, [1, 5], "two") == REPRODUCED
    assert phase_rule(True, [1, 5], "two") == NOT_REPRODUCED
    assert phase_rule(False, [5, 5], "two") == NOT_REPRODUCED
    assert phase_rule(False, [1, nan], "two") == INCONCLUSIVE
    with pytest.raises(ValueError, match="expect"):
        phase_rule(True, [1, 2], "three")


def test_huang_exponent_rule_on_constructed_times():
    from dynamics.models.huang2024.claims import _exponent_decision, _rises

    # T = 1/eps exactly (exponent 1, a tiny deterministic wiggle so the CI has a width) against the
    # bound log(eps^-1/2)/eps, whose least-squares slope on this grid is above 1: consistent; the
    # same times against eps^-1/2 have exponent 2: inconsistent.
    x = np.logspace(2, 8, 13)
    y = x * (1 + 1e-3 * np.sin(np.arange(13)))
    bound = np.log(np.sqrt(x)) * x
    d = _exponent_decision(x, y, x, bound, "T", False, None, "t")
    assert d.verdict == CONSISTENT and abs(d.value - 1) < 1e-3 and d.numbers["bound"] > 1.05
    assert _exponent_decision(x, y, x, bound, "T", True, None, "t").verdict == INCONSISTENT
    # A measured exponent exactly the bound's (y proportional to the bound) straddles it: inconclusive.
    assert _exponent_decision(x, bound * (1 + 1e-3 * np.sin(np.arange(13))), x, bound, "T", False, None,
                              "t").verdict == INCONCLUSIVE
    assert _rises(np.array([0.0, 1e-9, -1.0])) and not _rises(np.array([0.0, -1e-9, -1.0]))
    assert not _rises(np.array([0.0, 1e-13]))  # within rounding of the start


# ---------------------------------------------------------------- the front end
CALLS = []


def fake_ok(quick, out, negative):
    CALLS.append(("ok", quick, negative))
    if negative:
        return Decision(-1.0, 0.1, NOT_REPRODUCED, "wrong variant rejected")
    fig = None
    if out:
        fig = os.path.join(out, "fake.png")
        with open(fig, "wb") as fh:
            fh.write(b"png")
    return Decision(2.0, math.nan, REPRODUCED, "a | pipe, and a number", fig)


def fake_bound(quick, out, negative):
    CALLS.append(("bound", quick, negative))
    return Decision(0.9, 0.01, INCONSISTENT if negative else CONSISTENT, "below the bound")


def fake_raises(quick, out, negative):
    raise RuntimeError("boom")


def fake_unrejected(quick, out, negative):
    return Decision(1.0, math.nan, BY_CONSTRUCTION, "always")


def _claim(cid, model, fn, bound=False):
    return Claim(cid, model, f"paper {cid}", "a claim", "a quantity", "a rule", "a control", "a wrong variant",
                 f"tests.test_claims:{fn}", bound)


@pytest.fixture
def fake(monkeypatch):
    rows = [_claim("huang-ok", "huang2024", "fake_ok"), _claim("yang-bound", "yang2024", "fake_bound", True)]
    monkeypatch.setattr(front, "gather", lambda model=None: [c for c in rows if model in (None, c.model)])
    CALLS.clear()
    return rows


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    return err


def test_front_end_writes_the_ledger(fake, tmp_path, capsys):
    out = tmp_path / "ledger"
    assert front.main(["--quick", "--out", str(out)]) == 0
    df = pd.read_csv(out / "claims.csv")
    assert tuple(df.columns) == front.COLUMNS
    assert list(df["claim_id"]) == ["huang-ok", "yang-bound"]
    assert list(df["verdict"]) == [REPRODUCED, CONSISTENT]
    assert list(df["negative_verdict"]) == [NOT_REPRODUCED, INCONSISTENT]
    assert df["quick"].all() and (df["wall_s"] >= 0).all() and df["machine"].str.contains("cores").all()
    assert math.isnan(df["se"][0]) and df["se"][1] == 0.01
    assert df["figure"][0] == "fake.png" and (out / "fake.png").exists()
    md = (out / "claims.md").read_text()
    assert "huang-ok" in md and "a \\| pipe" in md
    assert ("ok", True, False) in CALLS and ("ok", True, True) in CALLS


def test_front_end_selects_by_model_and_claim(fake, tmp_path):
    assert front.main(["--model", "yang2024", "--out", str(tmp_path / "a")]) == 0
    assert list(pd.read_csv(tmp_path / "a" / "claims.csv")["claim_id"]) == ["yang-bound"]
    assert front.main(["--claim", "yang-bound,huang-ok", "--out", str(tmp_path / "b")]) == 0
    df = pd.read_csv(tmp_path / "b" / "claims.csv")
    assert list(df["claim_id"]) == ["yang-bound", "huang-ok"] and not df["quick"].any()


@pytest.mark.parametrize("argv, says", [
    (["--model", "nosuch"], "--model"),
    (["--claim", "huang-nosuch"], "huang-nosuch"),
    (["--claim", "huang-ok,,yang-bound"], "comma-separated"),
    (["--claim", "huang-ok,huang-ok"], "more than once"),
    (["--model", "huang2024", "--claim", "yang-bound"], "belongs to model yang2024"),
    (["--list", "--quick"], "--quick does not apply"),
    (["--doc", "x.md"], "--from"),
    (["--from", "somewhere"], "--doc"),
    (["--doc", "x.md", "--from", "somewhere", "--quick"], "--quick does not apply"),
    (["--doc", "x.md", "--from", "nowhere"], "no readable claims.csv"),
    (["--model", "li2024"], "registers no claims"),
    (["--no-such-option"], "unrecognized"),
])
def test_front_end_bad_input_exits_2_with_one_line(fake, tmp_path, capsys, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert front.main(argv + ([] if "--doc" in argv or "--from" in argv or "--list" in argv else
                              ["--out", str(out)])) == 2
    assert says in one_line_error(capsys)
    assert not out.exists() and not (tmp_path / "x.md").exists() and not CALLS


def test_front_end_refuses_to_overwrite_unasked(fake, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert front.main(["--out", str(out)]) == 2
    assert "--overwrite" in one_line_error(capsys)
    assert sorted(os.listdir(out)) == ["keep.txt"] and not CALLS
    assert front.main(["--out", str(out), "--overwrite"]) == 0
    assert (out / "claims.csv").exists() and (out / "keep.txt").read_text() == "mine"
    # Overwriting an earlier ledger removes the figures it listed, and only those.
    assert (out / "fake.png").exists()
    assert front.main(["--out", str(out), "--overwrite", "--model", "yang2024"]) == 0
    assert sorted(os.listdir(out)) == ["claims.csv", "claims.md", "keep.txt"]


def test_front_end_refuses_an_unwritable_out(fake, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert front.main(["--out", str(blocker)]) == 2
    assert "is an existing file" in one_line_error(capsys)
    assert front.main(["--out", str(blocker / "below")]) == 2
    assert "which is a file" in one_line_error(capsys)
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            assert front.main(["--out", str(ro / "ledger")]) == 2
            assert "not writable" in one_line_error(capsys)
        finally:
            ro.chmod(0o700)
    assert not CALLS


def test_a_failing_decide_is_a_row_error_and_exit_1(monkeypatch, tmp_path, capsys):
    rows = [_claim("huang-raises", "huang2024", "fake_raises"), _claim("huang-ok", "huang2024", "fake_ok"),
            _claim("huang-weak", "huang2024", "fake_unrejected")]
    monkeypatch.setattr(front, "gather", lambda model=None: rows)
    assert front.main(["--out", str(tmp_path / "o")]) == 1
    df = pd.read_csv(tmp_path / "o" / "claims.csv")
    assert list(df["claim_id"]) == ["huang-raises", "huang-ok", "huang-weak"]   # nothing dropped
    assert df["verdict"][0] == "error" and "RuntimeError: boom" in df["detail"][0]
    assert df["verdict"][1] == REPRODUCED
    assert df["negative_detail"][2].startswith("NOT REJECTED")
    assert "2 claim(s) failed" in capsys.readouterr().err


def test_front_end_list_runs_nothing(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert front.main(["--list", "--model", "huang2024"]) == 0
    text = capsys.readouterr().out
    assert "huang-ok" in text and "yang-bound" not in text and not CALLS and not os.listdir(tmp_path)


def test_list_of_the_real_registry(capsys):
    assert front.main(["--list"]) == 0
    text = capsys.readouterr().out
    assert all(i in text for i in IDS)


def test_doc_combines_runs_of_different_models(fake, tmp_path, capsys):
    a, b, doc = tmp_path / "a", tmp_path / "b", tmp_path / "docs" / "CLAIMS.md"
    assert front.main(["--model", "huang2024", "--out", str(a)]) == 0
    assert front.main(["--model", "yang2024", "--quick", "--out", str(b)]) == 0
    assert front.main(["--doc", str(doc), "--from", str(a), str(b)]) == 0
    text = doc.read_text()
    assert "### `huang-ok`: reproduced" in text and "### `yang-bound`: consistent" in text
    assert text.count("cores") >= 2 and "full size" in text and "quick size" in text
    assert "## huang2024" in text and "## yang2024" in text
    assert front.main(["--doc", str(doc), "--from", str(a)]) == 2          # exists: no overwrite unasked
    assert "--overwrite" in one_line_error(capsys)
    assert doc.read_text() == text
    # A later folder wins for a claim id measured twice.
    assert front.main(["--model", "huang2024", "--quick", "--out", str(tmp_path / "c")]) == 0
    assert front.main(["--doc", str(doc), "--from", str(a), str(tmp_path / "c"), "--overwrite"]) == 0
    assert doc.read_text().count("### `huang-ok`") == 1 and "quick size" in doc.read_text()


def test_doc_refuses_a_csv_without_the_columns(tmp_path, capsys):
    (tmp_path / "claims.csv").write_text("a,b\n1,2\n")
    assert front.main(["--doc", str(tmp_path / "x.md"), "--from", str(tmp_path)]) == 2
    assert "lacks the columns" in one_line_error(capsys)
