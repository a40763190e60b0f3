"""The li2024 rows of the claims ledger: registration, the pure rules they use, the measurement
helpers against independent routes, and (slow tier) every row's quick decision and its negative
control, which the rule must reject."""
import math

import numpy as np
import pytest

from dynamics.core.claims import SUPPORTING, VERDICTS, load
from dynamics.models.li2024 import claims
from dynamics.models.li2024.evaluation import forward
from dynamics.models.li2024.model import Li2024
from dynamics.models.li2024.pruning import prune, sign_balance

IDS = [c.id for c in claims.CLAIMS]


def test_rows_are_registered_on_the_model_with_every_field():
    rows = load(Li2024)
    assert [c.id for c in rows] == IDS and len(set(IDS)) == len(IDS)
    for c in rows:
        assert c.model == "li2024" and c.id.startswith("li-")
        assert all(getattr(c, f) for f in ("source", "claim", "quantity", "rule", "control", "negative"))
        mod, fn = c.decide.split(":")
        assert callable(getattr(claims, fn)) and mod == claims.__name__
    assert {c.id for c in rows if c.bound} == {"li-thm1-iterations", "li-thm1-length"}


@pytest.mark.parametrize("gap, se, want", [
    (0.05, 0.01, "reproduced"), (0.005, 0.0001, "not reproduced"), (-0.02, 0.001, "not reproduced"),
    (0.02, 0.01, "inconclusive"), (0.009, 0.001, "inconclusive"), (0.05, float("nan"), "inconclusive"),
])
def test_margin_rule(gap, se, want):
    # reproduced needs gap > margin and > 3 SE; not reproduced needs gap + 3 SE < margin
    assert claims.margin_rule(gap, se, 0.01) == want


@pytest.mark.parametrize("v, se, want", [(0.97, 0.005, "reproduced"), (0.93, 0.005, "not reproduced"),
                                         (0.95, 0.01, "inconclusive"), (0.99, float("nan"), "inconclusive")])
def test_level_rule(v, se, want):
    assert claims.level_rule(v, se, 0.95) == want


def _state(seed=0, scale=1.0, **kw):
    m = Li2024.create(method="mc", label_dim=2, **kw)
    rng = np.random.default_rng(seed)
    st = m.initial_state("mc", rng)
    st["W_O"] = scale * rng.standard_normal(st["W_O"].shape)
    for b in ("W_Q", "W_K", "W_V"):
        st[b] = st[b] + 0.3 * rng.standard_normal(st[b].shape)
    return m, st


def test_sign_balance_output_equals_the_kernels_forward_pass():
    m, st = _state()
    pr = m.data.sample(np.random.default_rng(1), 200, 12, 0.8, "ood")
    sb = sign_balance(m, st, pr)
    F, _ = forward(st, pr, m.ncols(12))
    assert np.allclose(sb["F"], F, rtol=1e-12, atol=1e-14)
    assert np.all(sb["correct"] + sb["wrong"] <= m.config["mlp_width"])
    # pruning every wrong-sign neuron of a prompt leaves only same-sign terms: z F >= 0
    none = prune(st, 0.0)
    assert np.array_equal(sign_balance(m, none, pr)["wrong"], sb["wrong"])


def test_qk_couplings_give_the_attention_score_of_two_idr_columns():
    m, st = _state(3)
    G = claims.qk_couplings(m, st)
    d_x = m.data.d_x
    E = np.zeros((6, m.d))
    E[:, :d_x] = m.data.mu
    # score of key column p_i = (mu_a; 0) for query (mu_b; 0): p_i^T W_K^T W_Q p_q
    full = np.array([[E[a] @ st["W_K"].T @ st["W_Q"] @ E[b] for b in range(6)] for a in range(6)])
    assert math.isclose(G["diag"], np.mean(np.diag(full)), rel_tol=1e-12)
    tr = {tuple(t) for t in m.data.train_tasks.tolist()}
    pairs = [full[a, b] for a in range(6) for b in range(6) if (a, b) in tr or (b, a) in tr]
    assert math.isclose(G["train_pair"], np.mean(pairs), rel_tol=1e-12)


def test_largest_first_pruning_is_the_reverse_of_magnitude_pruning():
    m, st = _state(4)
    norms = np.linalg.norm(st["W_O"], axis=1)
    big = prune(st, 0.25, "largest")
    gone = np.flatnonzero(~big["W_O"].any(axis=1))
    assert set(gone) == set(np.argsort(-norms)[:10])


@pytest.mark.slow
@pytest.mark.parametrize("cid", IDS)
def test_quick_decision_and_its_negative_control(cid):
    row = {c.id: c for c in claims.CLAIMS}[cid]
    d = row.run(quick=True)
    assert d.verdict in VERDICTS and d.detail
    if row.bound:
        assert d.verdict not in ("reproduced", "not reproduced")
    neg = row.run(quick=True, negative=True)
    assert neg.verdict not in SUPPORTING, (cid, neg.verdict, neg.detail)
