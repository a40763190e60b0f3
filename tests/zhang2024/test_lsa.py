"""The real linear self-attention network: its prediction against the literal matrix product
f(E) = E + W^{PV} E (E^T W^{KQ} E) / N, the reduction to u h^T U x_q on the invariant blocks, and
the batch gradient against central differences of the batch loss."""
import numpy as np

from dynamics.models.zhang2024 import lsa

d, N = 3, 5


def batch(seed=0, size=7):
    rng = np.random.default_rng(seed)
    return lsa.sample(rng, size, N, np.linalg.cholesky(np.diag([1.0, 0.5, 0.25])))


def test_prediction_is_the_entry_of_the_literal_network():
    rng = np.random.default_rng(1)
    W_PV, W_KQ = rng.standard_normal((d + 1, d + 1)), rng.standard_normal((d + 1, d + 1))
    X, y, xq, _ = batch()
    for b in range(X.shape[0]):
        E = np.zeros((d + 1, N + 1))
        E[:d, :N], E[d, :N], E[:d, N] = X[b].T, y[b], xq[b]
        f = E + W_PV @ E @ (E.T @ W_KQ @ E) / N
        assert np.isclose(lsa.predict(W_PV, W_KQ, X, y, xq)[b], f[d, N], rtol=1e-12, atol=1e-12)


def test_invariant_blocks_give_the_reduced_prediction():
    rng = np.random.default_rng(2)
    U, u = rng.standard_normal((d, d)), 0.8
    W_PV, W_KQ = np.zeros((d + 1, d + 1)), np.zeros((d + 1, d + 1))
    W_PV[d, d], W_KQ[:d, :d] = u, U
    X, y, xq, _ = batch()
    h = np.einsum("bn,bnd->bd", y, X) / N
    assert np.allclose(lsa.predict(W_PV, W_KQ, X, y, xq), u * np.einsum("bi,ij,bj->b", h, U, xq), rtol=1e-12)


def test_batch_gradient_matches_central_differences():
    rng = np.random.default_rng(3)
    W = {"W_PV": rng.standard_normal((d + 1, d + 1)), "W_KQ": rng.standard_normal((d + 1, d + 1))}
    bt = batch(4)
    _, g = lsa.batch_loss_grad(W["W_PV"], W["W_KQ"], bt)
    h = 1e-6
    for name in W:
        for idx in np.ndindex(W[name].shape):
            plus = {k: v.copy() for k, v in W.items()}
            minus = {k: v.copy() for k, v in W.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            fd = (lsa.batch_loss_grad(plus["W_PV"], plus["W_KQ"], bt)[0]
                  - lsa.batch_loss_grad(minus["W_PV"], minus["W_KQ"], bt)[0]) / (2 * h)
            assert np.isclose(g[name][idx], fd, rtol=1e-6, atol=1e-7), (name, idx, g[name][idx], fd)
