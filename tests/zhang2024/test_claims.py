"""The ledger rows of Theorem 4.1 at quick size: each supports the paper, and its negative control
(the 1/t-step clock; the infinite-N limit) is rejected by the same rule."""
import pytest

from dynamics.core.claims import SUPPORTING, load
from dynamics.models.zhang2024.claims import limit_rule
from dynamics.models.zhang2024.model import Zhang2024

CLAIMS = {c.id: c for c in load(Zhang2024)}


@pytest.mark.parametrize("cid, expect", [("zhang-rate", "reproduced"), ("zhang-limit", "reproduced")])
def test_claim_and_its_negative_control(cid, expect):
    claim = CLAIMS[cid]
    assert claim.run(quick=True).verdict == expect
    assert claim.run(quick=True, negative=True).verdict not in SUPPORTING


@pytest.mark.parametrize("err, gap, verdict", [(1e-6, 1e-20, "reproduced"), (0.1, 1e-20, "not reproduced"),
                                               (1e-3, 1e-20, "inconclusive"), (1e-6, 1e-3, "inconclusive")])
def test_limit_rule(err, gap, verdict):
    assert limit_rule(err, gap) == verdict
