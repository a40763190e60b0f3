"""Greedy CoT decoding and ICL inference on hand-built models with known answers: attention that
copies the right column decodes every step exactly; uniform attention is at chance level, whose
value follows in closed form from the symmetry of the prompts."""
import numpy as np
import pytest
from scipy.stats import binom

from dynamics.core.stats import mean_se
from dynamics.models.li2024_cot.decoding import per_prompt
from dynamics.models.li2024_cot.model import Li2024CoT


def perfect(model, gain=200.0):
    """W_K^T W_Q = gain on the x half: score gain (x_i . x_q) with x = pattern + positional
    encoding, so the columns sharing the query's pattern *and* step outscore every other column by
    at least gain * min(|mu'|^2, |c|^2) = 100 (TSR patterns have |mu'|^2 = S1^2 / 2 here)."""
    st = model.initial_state("mc", None)
    dx, d = model.d_x, model.d
    half = np.zeros((d, d))
    half[:dx, :dx] = np.eye(dx)
    st["W_Q"], st["W_K"] = gain * half, half.copy()
    return st


@pytest.mark.parametrize("K", [1, 3, 4])
def test_copying_attention_decodes_every_step(K):
    # a deterministic test task (tau^f = 1: every A_k^f a permutation) and alpha' = 1: every
    # example shows the query's own path, so copying the same-pattern same-step column is exact
    model = Li2024CoT.create(method="mc", K=K, tau_f=1.0, alpha_test=1.0, alpha=1.0)
    st = perfect(model)
    res = per_prompt(model, st, np.random.default_rng(0), 300, length=6)
    assert res["cot"].max() == 0.0 and res["icl"].max() == 0.0
    assert res["attn"][:, 0].min() > 1 - 1e-12     # all the mass on same pattern, same step
    train = per_prompt(model, st, np.random.default_rng(1), 300, domain="train", icl_too=False)
    assert train["cot"].max() == 0.0


def test_copying_attention_on_the_slides_example():
    # The slides' worked example (K = 2, M' = 2), alpha' = 1.  Copying attention averages the y
    # halves of the matching columns, so ICL (examples (x_i; y_{i,K})) returns the majority final
    # output of the l examples, each drawn from row z_0 of B^f: with l = 21 (odd: no ties) the error
    # is P(Bin(21, 0.44) <= 10) from mu'_1 and P(Bin(21, 0.64) <= 10) from mu'_2, in closed form.
    A = [[[0.6, 0.4], [0.4, 0.6]], [[0.4, 0.6], [0.8, 0.2]]]
    model = Li2024CoT.create(method="mc", K=2, M_test=2, A_f=np.ravel(A).tolist(), alpha_test=1.0)
    st = perfect(model)
    res = per_prompt(model, st, np.random.default_rng(2), 4000, length=21)
    exact = 0.5 * (binom.cdf(10, 21, 0.44) + binom.cdf(10, 21, 0.64))
    icl, se = mean_se(res["icl"])
    assert abs(icl - exact) < 4 * se, (icl, se, exact)     # 4 SE: two-sided probability 6e-5
    # long prompts: CoT follows the most probable step at each step (Theorem 5), while ICL stays
    # wrong from mu'_1, whose correct final output loses to B^f's 0.56 (Condition 1 fails)
    res = per_prompt(model, st, np.random.default_rng(3), 1000, length=301)
    assert res["cot"].mean() < 0.02 and abs(res["icl"].mean() - 0.5) < 0.05


@pytest.mark.parametrize("K, Mt", [(1, 3), (3, 3), (2, 5)])
def test_uniform_attention_is_at_chance_level(K, Mt):
    # W_Q = W_K = 0: F is the plain mean of the attended y halves, a function of the examples and of
    # earlier decoded steps only.  With alpha' = 1/M' every example's start is uniform and
    # independent of the query's start z_0, and the circulant test task maps uniform to uniform, so
    # the examples are independent of z_0; z_k = Sigma_k(z_0) is uniform, hence P(v_k = z_k) = 1/M'
    # exactly: CoT and ICL errors are 1 - 1/M' (closed form), whatever the length.
    model = Li2024CoT.create(method="mc", K=K, M_test=Mt, M=6, tau_f=0.5 ** K, alpha_test=1.0 / Mt)
    st = model.initial_state("mc", None)
    st["W_Q"][:] = 0.0
    st["W_K"][:] = 0.0
    res = per_prompt(model, st, np.random.default_rng(3), 6000, length=7)
    chance = 1.0 - 1.0 / Mt
    for key in ("cot", "icl"):
        m, se = mean_se(res[key])
        assert abs(m - chance) < 4 * se, (key, m, se, chance)   # 4 SE: two-sided probability 6e-5
    # uniform attention: the same-step mass at step k is the share l / (l K + k - 1) of the attended
    # columns that carry the query's positional encoding
    share = np.mean([7 / (7 * K + k - 1) for k in range(1, K + 1)])
    assert np.allclose(res["attn"][:, :2].sum(axis=1), share, rtol=1e-12)
