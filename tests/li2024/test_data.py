"""The data model's statistics against its definitions (MODEL.md section 8; slides p. 17).

Each frequency test draws from a fixed seed and uses a chi-square or binomial test; a test fails
when the p-value is below 1e-4 (a correct sampler fails one such check with probability 1e-4,
a wrong one by a few percent in any frequency fails it for certain at these sample sizes)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from dynamics.models.shared import patterns
from dynamics.models.li2024.data import all_tasks, covers, training_tasks
from dynamics.models.li2024.model import Li2024, build_data

P_MIN = 1e-4


def draws(n=4000, L=20, alpha=0.8, domain="train", **kw):
    model = Li2024.create(**kw)
    pr, info = model.data.sample(np.random.default_rng(11), n, L, alpha, domain, with_patterns=True)
    return model, pr, info


def test_example_patterns_follow_the_alpha_rule():
    # 6 patterns, pair (a, b) = (1, 4): P(a) = P(b) = alpha/2, each other pattern (1 - alpha)/4.
    rng = np.random.default_rng(0)
    alpha, n, L = 0.8, 20000, 10
    pat, roles = patterns.example_patterns(rng, np.tile([1, 4], (n, 1)), alpha, 6, L)
    counts = np.bincount(pat.ravel(), minlength=6)
    expected = n * L * np.array([0.05, 0.4, 0.05, 0.05, 0.4, 0.05])
    assert stats.chisquare(counts, expected).pvalue > P_MIN
    assert np.all((roles == 0) == (pat == 1)) and np.all((roles == 1) == (pat == 4))


def test_single_relevant_pattern_rule_of_chain_of_thought():
    # r = 1 (the query's pattern): relevant with probability alpha, others uniform.
    rng = np.random.default_rng(1)
    rel = rng.integers(0, 5, (30000, 1))
    pat, roles = patterns.example_patterns(rng, rel, 0.3, 5, 4)
    hits = int((pat == rel).sum())
    assert stats.binomtest(hits, pat.size, 0.3).pvalue > P_MIN
    offset = (pat - rel) % 5  # the 4 others are equally likely
    assert stats.chisquare(np.bincount(offset[roles < 0], minlength=5)[1:]).pvalue > P_MIN


def test_prompt_frequencies_of_tasks_patterns_labels_and_kappa():
    model, pr, info = draws()
    data = model.data
    # tasks uniform over T_tr
    idx = [int(np.flatnonzero((data.train_tasks == t).all(axis=1))[0]) for t in info["task"]]
    assert stats.chisquare(np.bincount(idx, minlength=len(data.train_tasks))).pvalue > P_MIN
    a, b = info["task"][:, 0], info["task"][:, 1]
    ctx, query = info["rel"][:, :-1], info["rel"][:, -1]
    # alpha: fraction of examples with the task's patterns
    relevant = (ctx == a[:, None]) | (ctx == b[:, None])
    assert stats.binomtest(int(relevant.sum()), relevant.size, 0.8).pvalue > P_MIN
    assert stats.binomtest(int((ctx == a[:, None]).sum()), int(relevant.sum()), 0.5).pvalue > P_MIN
    # the query is mu_a or mu_b with probability 1/2, and z = f(x_q)
    assert np.all((query == a) | (query == b))
    assert stats.binomtest(int((query == a).sum()), len(query), 0.5).pvalue > P_MIN
    assert np.array_equal(pr.z, np.where(query == a, 1.0, -1.0))
    # labels: +1 on mu_a, -1 on mu_b, a fair sign elsewhere; y = label * q
    lab = info["label"][:, :-1]
    assert np.all(lab[ctx == a[:, None]] == 1) and np.all(lab[ctx == b[:, None]] == -1)
    other = lab[~relevant]
    assert stats.binomtest(int((other == 1).sum()), other.size, 0.5).pvalue > P_MIN
    assert np.allclose(pr.P[:, :-1, data.d_x:], lab[..., None] * data.q)
    assert np.all(pr.P[:, -1, data.d_x:] == 0)
    # IDI patterns uniform, kappa uniform on [-0.4, 0.4]
    assert stats.chisquare(np.bincount(info["irr"].ravel(), minlength=24)).pvalue > P_MIN
    assert stats.kstest(info["kappa"].ravel(), stats.uniform(-0.4, 0.8).cdf).pvalue > P_MIN
    # the columns are x = mu_j + kappa nu_k exactly, and `same` flags the query's pattern
    x = data.mu[info["rel"]] + info["kappa"][..., None] * data.nu[info["irr"]]
    assert np.allclose(pr.P[..., :data.d_x], x, atol=1e-15)
    assert np.array_equal(pr.same, ctx == query[:, None])


def test_per_prompt_other_labels_are_constant_within_a_prompt():
    model, pr, info = draws(n=2000, other_label="prompt")
    ctx, lab = info["rel"][:, :-1], info["label"][:, :-1]
    a, b = info["task"][:, 0], info["task"][:, 1]
    for n in range(200):
        for j in set(ctx[n].tolist()) - {a[n], b[n]}:
            assert len(set(lab[n][ctx[n] == j].tolist())) == 1
    other = lab[(ctx != a[:, None]) & (ctx != b[:, None])]
    assert stats.binomtest(int((other == 1).sum()), other.size, 0.5).pvalue > P_MIN


def test_out_of_domain_prompts_use_odr_patterns_and_tasks():
    model, pr, info = draws(n=3000, alpha=0.6, domain="ood")
    data = model.data
    assert len(data.ood_tasks) == 3 * 2
    ctx, a, b = info["rel"][:, :-1], info["task"][:, 0], info["task"][:, 1]
    relevant = (ctx == a[:, None]) | (ctx == b[:, None])
    assert stats.binomtest(int(relevant.sum()), relevant.size, 0.6).pvalue > P_MIN
    x = data.odr[info["rel"]] + info["kappa"][..., None] * data.odi[info["irr"]]
    assert np.allclose(pr.P[..., :data.d_x], x, atol=1e-15)


def test_unseen_in_domain_tasks_are_outside_the_training_set():
    model, pr, info = draws(n=500, domain="id")
    tr = {tuple(t) for t in model.data.train_tasks.tolist()}
    assert all(tuple(t) not in tr for t in info["task"].tolist())
    assert len(model.data.unseen_tasks) + len(model.data.train_tasks) == 30


@given(M=st.integers(2, 9), frac=st.floats(0.01, 1.0), seed=st.integers(0, 1000))
def test_training_tasks_are_the_smallest_covering_subset(M, frac, seed):
    T = training_tasks(M, frac, np.random.default_rng(seed))
    n_all = M * (M - 1)
    assert len({tuple(t) for t in T.tolist()}) == len(T)
    assert covers(T, M)
    assert len(T) == min(n_all, max(M, int(np.ceil(frac * n_all - 1e-12))))
    assert len(T) / n_all >= frac - 1e-12


def test_random_cover_meets_theorem_1_with_the_smallest_size():
    model = Li2024.create(task_set="cover")
    n = len(model.data.train_tasks)
    assert n == 14 and n / 30 >= 5 ** -0.5 and (n - 1) / 30 < 5 ** -0.5
    assert len(all_tasks(6)) == 30


@given(S1=st.floats(-3, 3), spread=st.sampled_from(["tied", "dirichlet"]), M1t=st.integers(2, 6),
       seed=st.integers(0, 100))
def test_odr_patterns_have_the_requested_coefficient_sum(S1, spread, M1t, seed):
    model = Li2024.create(S1=S1, odr_construction=spread, M1_test=M1t, seed=seed, alpha_test=1.0)
    data = model.data
    # mu orthonormal: the coefficients are recovered as c_{j,i} = mu_i^T mu'_j
    c = data.odr @ data.mu.T
    assert np.allclose(c.sum(axis=1), S1, atol=1e-12)
    assert np.allclose(data.odr, c @ data.mu, atol=1e-12)
    if spread == "tied" and S1 != 0:
        gram = data.odr @ data.odr.T
        assert np.allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-12)  # orthogonal ODR patterns
    if spread == "dirichlet":
        assert np.all(c >= -1e-15 * abs(S1)) if S1 >= 0 else np.all(c <= 1e-15 * abs(S1))


@pytest.mark.parametrize("basis", ["standard", "random"])
def test_pattern_sets_are_orthonormal_and_odi_lie_in_the_idi_span(basis):
    model = Li2024.create(pattern_basis=basis, d_x=40, M2_test=10)
    data = model.data
    allp = np.vstack([data.mu, data.nu])
    assert np.allclose(allp @ allp.T, np.eye(30), atol=1e-12)
    assert np.allclose(data.odi @ data.odi.T, np.eye(10), atol=1e-12)
    proj = data.odi @ data.nu.T @ data.nu  # projection onto span(nu)
    assert np.allclose(proj, data.odi, atol=1e-12)


def test_seed_fixes_draws_and_s1_does_not_move_the_training_tasks():
    base = build_data({**Li2024.create().config})
    other = build_data({**Li2024.create(S1=0.3, odr_construction="dirichlet").config})
    assert np.array_equal(base.train_tasks, other.train_tasks)
    moved = build_data({**Li2024.create(seed=5).config})
    assert not np.array_equal(base.train_tasks, moved.train_tasks)
