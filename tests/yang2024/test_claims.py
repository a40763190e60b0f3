"""The yang2024 rows of the claims ledger: each quick decision against the verdict its numbers
give, and each negative control (the deliberately wrong variant) rejected by the same rule.

The decisions run exact GD for thousands of steps (seconds to a minute each): the slow tier."""
import math

import numpy as np
import pytest

from dynamics.core.claims import NOT_REPRODUCED, SUPPORTING, VERDICTS, load
from dynamics.models.yang2024 import claims as C
from dynamics.models.yang2024.model import Yang2024

ROWS = {c.id: c for c in load(Yang2024)}


def test_rows_are_registered_and_complete():
    assert set(ROWS) == {"yang-thm1-linear", "yang-fig4-few-heads", "yang-fig4-large-H", "yang-fig3-zero-gap",
                         "yang-thm2-ridge"}
    for c in ROWS.values():
        assert c.model == "yang2024" and all(getattr(c, f) for f in ("source", "claim", "quantity", "rule",
                                                                    "control", "negative", "decide"))


EXPECTED = {  # quick verdicts (N = 5, K = 16, d = 8, m = 4, tau = 0.5; Fig 3 at m = 100, 4 seeds)
    "yang-thm1-linear": "reproduced",
    "yang-fig4-few-heads": "not reproduced",
    "yang-fig4-large-H": "not reproduced",
    "yang-fig3-zero-gap": "reproduced by construction",
    "yang-thm2-ridge": "reproduced",
}


@pytest.mark.slow
@pytest.mark.parametrize("cid", list(EXPECTED))
def test_quick_decision_and_its_negative_control(cid):
    c = ROWS[cid]
    d = c.run(quick=True)
    assert d.verdict in VERDICTS and d.verdict == EXPECTED[cid], d.detail
    neg = c.run(quick=True, negative=True)
    assert neg.verdict not in SUPPORTING, neg.detail


@pytest.mark.slow
def test_theorem1_numbers():
    """H >= N: geometric beats a power law by the margin; H < N keeps falling (tail exponents
    well above the stall threshold), so 'H < N stalls' is not reproduced at this size."""
    d = ROWS["yang-thm1-linear"].run(quick=True)
    assert d.numbers["H10_status"] == "converged" and d.numbers["H10_final"] <= C.EPS_REL
    f = ROWS["yang-fig4-few-heads"].run(quick=True)
    assert all(f.numbers[f"H{H}_exponent_lo"] > C.STALL_EXPONENT for H in (2, 3, 4))
    assert f.numbers["H4_final"] < f.numbers["H3_final"] < f.numbers["H2_final"]


@pytest.mark.slow
def test_large_H_control_shows_the_rule_can_say_unstable():
    """Plain GD at the common step, beyond the large H's limit, diverges: the rule's 'unstable'."""
    d = ROWS["yang-fig4-large-H"].run(quick=True)
    assert d.numbers["common_eta"] > d.numbers["limit_big"] and math.isinf(d.numbers["plain_common"])
    assert d.numbers["adam_exact"] <= C.REBOUND and d.numbers["adam_mc"] <= C.REBOUND


@pytest.mark.slow
def test_fig3_shape_and_excess_risk():
    """The gap is the in-domain excess risk of yhat_best over yhat* (textbook risk, an independent
    formula) and has maxima on both sides of N = m, below and above (not monotone in |N - m|)."""
    d = ROWS["yang-fig3-zero-gap"].run(quick=True)
    n = d.numbers
    assert n["excess_risk_rel_dev"] < 1e-9 and n["gap_at_m"] == 0.0
    assert 50 < n["argmax_below_m"] < 100 < n["argmax_above_m"] < 150
    assert n["gap_at_50"] < n["gap_at_argmax_below"] and n["gap_at_150"] < n["gap_at_argmax_above"]


def test_stall_rule_on_synthetic_curves():
    """The few-heads rule's pieces on curves of known law: a plateau stalls, t^-1 falls."""
    from dynamics.core.stats import loglog_fit

    t = np.linspace(1000, 10_000, 50)
    flat = loglog_fit(t, 0.3 + 1e-6 * np.sin(t))
    power = loglog_fit(t, 5.0 / t * (1 + 1e-3 * np.sin(t)))
    assert -flat.lo < C.STALL_EXPONENT and -power.hi > C.STALL_EXPONENT
    assert NOT_REPRODUCED in VERDICTS
