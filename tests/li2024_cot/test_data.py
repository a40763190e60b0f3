"""The data generator's statistics against their definitions (MODEL.md section 9): the
alpha-fraction rule, the training tasks and labels, the test chains' transition frequencies
against A_k^f, the bounded noise, the prompt columns and positional encodings.

Frequencies are compared with their binomial standard errors: a deviation beyond 5 SE (two-sided
probability 6e-7 per comparison under the definition) fails."""
import numpy as np
import pytest

from dynamics.models.li2024_cot.model import Li2024CoT

Z = 5.0


def within(count, total, p):
    """``count / total`` is within ``Z`` binomial standard errors of ``p``."""
    se = np.sqrt(p * (1 - p) / total)
    return abs(count / total - p) <= Z * se + 1e-12


@pytest.fixture(scope="module")
def model():
    return Li2024CoT.create(method="mc", noise=0.2, alpha=0.6, alpha_test=0.7)


def test_training_chains_follow_the_alpha_rule_and_the_tasks(model):
    data, K, M = model.data, model.config["K"], model.config["M"]
    ch = data.train_chains(np.random.default_rng(1), 4000, 10, 0.6)
    same = ch.s[:, :, 0] == ch.z[:, [0]]
    assert within(same.sum(), same.size, 0.6)
    # the other examples' inputs are uniform over the M - 1 other patterns
    other = (ch.s[:, :, 0] - ch.z[:, [0]]) % M
    for j in range(1, M):
        assert within(np.sum(other == j), np.sum(~same), 1 / (M - 1))
    # tasks are permutations: an example is at the query's state at step k iff it started there
    for k in range(K + 1):
        assert np.array_equal(ch.s[:, :, k] == ch.z[:, [k]], same)


def test_training_batch_labels_and_columns(model):
    data, K = model.data, model.config["K"]
    length = model.config["l_train"]
    rng = np.random.default_rng(2)
    batch = model.sample(rng, 3000)
    k = batch.n - length * K + 1
    for j in range(1, K + 1):
        assert within(np.sum(k == j), k.size, 1 / K)
    # the label is the pattern after step k: the y half of every example's step-k column whose
    # input matches the query's current pattern, and the query column (its x half) is z_{k-1}
    dx = data.d_x
    for b in range(50):
        nb = batch.n[b]
        q = batch.P[b, nb, :dx] - data.pe[nb % K]
        cols = batch.P[b, k[b] - 1:length * K:K]            # every example's step-k column
        match = np.isclose(cols[:, :dx] - data.pe[k[b] - 1], q).all(axis=1)
        assert match.any() and np.allclose(cols[match, dx:], batch.target[b])
        rest = batch.P[b, nb + 1:]   # unused columns after the query: positional encoding only
        assert not batch.P[b, nb, dx:].any()
        assert np.allclose(rest[:, :dx], data.pe[np.arange(nb + 1, nb + 1 + rest.shape[0]) % K])
        assert not rest[:, dx:].any()


def test_patterns_and_positional_encodings(model):
    data = model.data
    G = np.concatenate([data.mu, data.pe]) @ np.concatenate([data.mu, data.pe]).T
    assert np.allclose(G, np.eye(G.shape[0]), atol=1e-14)
    assert np.allclose(data.tsr_coeffs.sum(axis=1), model.config["S1"], atol=1e-14)
    assert np.allclose(data.tsr, data.tsr_coeffs @ data.mu, atol=1e-14)


def test_test_chains_follow_the_transition_matrices(model):
    data, K = model.data, model.config["K"]
    A = data.A
    ch = data.test_chains(np.random.default_rng(3), 3000, 12, 0.7)
    assert within(np.sum(ch.s[:, :, 0] == ch.z[:, [0]]), ch.s[:, :, 0].size, 0.7)
    assert np.array_equal(ch.z, data.stats.paths[ch.z[:, 0]])
    for k in range(K):
        prev, nxt = ch.s[:, :, k].ravel(), ch.s[:, :, k + 1].ravel()
        for j in range(A.shape[1]):
            rows = prev == j
            for u in range(A.shape[2]):
                assert within(np.sum(nxt[rows] == u), rows.sum(), A[k, j, u]), (k, j, u)


def test_noise_is_uniform_in_the_ball(model):
    data = model.data
    ch = data.test_chains(np.random.default_rng(4), 2000, 5, 0.7)
    r = np.linalg.norm(ch.noise, axis=-1).ravel()
    d = data.d_x
    assert r.max() <= 0.2
    # |x| of a uniform point of the d-ball of radius R has mean R d/(d+1), variance R^2 d/((d+1)^2 (d+2))
    mean, var = 0.2 * d / (d + 1), 0.04 * d / ((d + 1) ** 2 * (d + 2))
    assert abs(r.mean() - mean) < Z * np.sqrt(var / r.size)
    # directions isotropic: the mean noise vector vanishes within its standard error
    v = ch.noise.reshape(-1, d)
    assert np.all(np.abs(v.mean(0)) < Z * v.std(0) / np.sqrt(v.shape[0]))
    # only the query's input is noisy; the decoded steps are clean
    assert np.all(np.linalg.norm(ch.qnoise[:, 0], axis=-1) > 0) and not ch.qnoise[:, 1:].any()


def test_icl_columns_keep_input_and_final_output(model):
    data, K = model.data, model.config["K"]
    ch = data.test_chains(np.random.default_rng(5), 20, 4, 0.7)._replace(noise=None, qnoise=None)
    P = data.icl_columns(ch, data.tsr)
    dx = data.d_x
    for b in range(20):
        for i in range(4):
            first = P[b, i * K]
            assert np.allclose(first[:dx], data.tsr[ch.s[b, i, 0]] + data.pe[0])
            assert np.allclose(first[dx:], data.tsr[ch.s[b, i, K]])
            for j in range(1, K):  # zero padding keeps only the positional encoding
                assert np.allclose(P[b, i * K + j], np.r_[data.pe[j], np.zeros(dx)])
        assert np.allclose(P[b, 4 * K], np.r_[data.tsr[ch.z[b, 0]] + data.pe[0], np.zeros(dx)])
