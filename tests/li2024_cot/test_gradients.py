"""The numba squared-loss gradients of the attention-only model (MODEL.md section 9) against
central finite differences, a plain-numpy implementation written from the formulas, and PyTorch
autograd when it is installed; the forward kernel against the same numpy read-out."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dynamics.models.li2024_cot.kernels import forward_batch, loss_grad_batch

BLOCKS = ("W_Q", "W_K", "W_V")


def instance(seed, dx, C, B, scale=0.6):
    """Generic random weights and columns; prompts attend to different numbers of columns."""
    rng = np.random.default_rng(seed)
    d = 2 * dx
    state = {"W_Q": scale * rng.standard_normal((d, d)), "W_K": scale * rng.standard_normal((d, d)),
             "W_V": scale * rng.standard_normal((dx, d))}
    P = rng.standard_normal((B, C, d))
    n = rng.integers(1, C, B)
    target = rng.standard_normal((B, dx))
    return state, P, n, target


@st.composite
def instances(draw, max_dx=3, max_C=6, max_B=3, scale=0.6):
    """``(state, P, n, target)`` drawn entry by entry (a failure shrinks): weights in
    ``[-2 scale, 2 scale]``, columns and targets in ``[-2, 2]``, prompt ``b`` attending to its first
    ``n[b]`` columns (``1 <= n[b] < C``)."""
    dx, C, B = draw(st.integers(1, max_dx)), draw(st.integers(2, max_C)), draw(st.integers(1, max_B))
    d = 2 * dx
    w = st.floats(-2 * scale, 2 * scale)
    state = {"W_Q": draw(hnp.arrays(np.float64, (d, d), elements=w)),
             "W_K": draw(hnp.arrays(np.float64, (d, d), elements=w)),
             "W_V": draw(hnp.arrays(np.float64, (dx, d), elements=w))}
    P = draw(hnp.arrays(np.float64, (B, C, d), elements=st.floats(-2.0, 2.0)))
    n = np.array(draw(st.lists(st.integers(1, C - 1), min_size=B, max_size=B)), dtype=np.int64)
    target = draw(hnp.arrays(np.float64, (B, dx), elements=st.floats(-2.0, 2.0)))
    return state, P, n, target


def kernel(state, P, n, target):
    g = {k: np.empty_like(v) for k, v in state.items()}
    loss = loss_grad_batch(state["W_Q"], state["W_K"], state["W_V"], P, n, target, g["W_Q"], g["W_K"], g["W_V"])
    return loss, g


def numpy_reference(state, P, n, target):
    """Mean loss and gradients term by term from the formulas: s_i = (W_K p_i)^T (W_Q p_q),
    F = W_V sum_i attn_i p_i, l = 1/2 |F - z|^2, e_i = attn_i (W_V p_i - F)^T (F - z),
    dl/dW_Q = sum_i e_i (W_K p_i) p_q^T, dl/dW_K = sum_i e_i (W_Q p_q) p_i^T, dl/dW_V = (F - z) pbar^T."""
    WQ, WK, WV = (state[k] for k in BLOCKS)
    grads = {k: np.zeros_like(v) for k, v in state.items()}
    total = 0.0
    for b in range(P.shape[0]):
        cols, pq = P[b, :n[b]], P[b, n[b]]
        keys, query = cols @ WK.T, WQ @ pq
        s = keys @ query
        w = np.exp(s - s.max())
        attn = w / w.sum()
        pbar = attn @ cols
        F = WV @ pbar
        r = F - target[b]
        total += 0.5 * r @ r
        grads["W_V"] += np.outer(r, pbar)
        for i in range(n[b]):
            e = attn[i] * (WV @ cols[i] - F) @ r
            grads["W_Q"] += e * np.outer(keys[i], pq)
            grads["W_K"] += e * np.outer(query, cols[i])
    B = P.shape[0]
    return total / B, {k: v / B for k, v in grads.items()}


def rel(x, y):
    return np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-300)


@settings(max_examples=12)
@given(instances())
def test_gradient_matches_central_differences(inst):
    state, P, n, target = inst
    _, g = kernel(state, P, n, target)
    # every entry of every block in one vector theta, and the loss as a function of theta
    cuts = np.cumsum([0] + [state[k].size for k in BLOCKS])
    theta = np.concatenate([state[k].ravel() for k in BLOCKS])

    def loss(th):
        return kernel({k: th[a:b].reshape(state[k].shape) for k, a, b in zip(BLOCKS, cuts, cuts[1:])},
                      P, n, target)[0]

    # The loss is smooth (softmax and a square).  Central differences with h = 1e-5 have truncation
    # error h^2 |f'''| / 6 ~ 1e-11 and rounding error ~1e-16 |f| / h ~ 1e-11 at these O(1) scales,
    # far below the 1e-7 relative tolerance.
    # A gradient that cancels to rounding level (hypothesis finds them: zero weights) is compared
    # absolutely, at the differences' rounding floor 1e-16 |f| / h ~ 1e-11 (1 + |f|).
    f0 = loss(theta)
    fd = np.array([loss(theta + e) - loss(theta - e) for e in 1e-5 * np.eye(theta.size)]) / 2e-5
    for name, a, b in zip(BLOCKS, cuts, cuts[1:]):
        err = np.linalg.norm(g[name].ravel() - fd[a:b])
        assert err <= 1e-7 * np.linalg.norm(fd[a:b]) + 1e-9 * (1 + abs(f0)), name


@settings(max_examples=20)
@given(instances(max_dx=5, max_C=12, max_B=6))
def test_gradient_and_forward_match_numpy_formulas(inst):
    state, P, n, target = inst
    (B, C, _), dx = P.shape, target.shape[1]
    loss, g = kernel(state, P, n, target)
    ref_loss, ref = numpy_reference(state, P, n, target)
    # Same formulas summed in another order: rounding only (1e-12 relative).
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss) + 1e-15
    # Rounding relative to the size of the terms summed, not of their (possibly cancelling) sum:
    # each term of a gradient is at most |F - z| |W|^2 |p|^3 (attention <= 1), so entries that
    # cancel to rounding level (hypothesis finds them: saturated softmax, equal columns) are
    # compared at 1e-13 of that bound.
    W = max(np.linalg.norm(state[k]) for k in BLOCKS)
    p = np.linalg.norm(P, axis=-1).max()
    scale = (np.sqrt(2 * ref_loss) + 1.0) * max(W, 1.0) ** 2 * max(p, 1.0) ** 3
    for name in BLOCKS:
        # floor 1e-12 * scale: the batched kernel (issue 21) sums W_Q's and W_K's gradients through
        # BLAS products over d more terms than the per-prompt loop, so an entry that cancels to zero
        # carries ~d times the per-prompt loop's rounding
        assert np.linalg.norm(g[name] - ref[name]) <= 1e-12 * np.linalg.norm(ref[name]) + 1e-12 * scale, name
    F = np.empty((B, dx))
    attn = np.empty((B, C))
    forward_batch(state["W_Q"], state["W_K"], state["W_V"], P, n, F, attn)
    for b in range(B):
        s = P[b, :n[b]] @ state["W_K"].T @ state["W_Q"] @ P[b, n[b]]
        w = np.exp(s - s.max())
        assert np.allclose(attn[b, :n[b]], w / w.sum(), rtol=1e-12, atol=1e-15) and not attn[b, n[b]:].any()
        assert np.allclose(F[b], state["W_V"] @ (w / w.sum() @ P[b, :n[b]]), rtol=1e-12, atol=1e-14)


def test_gradient_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    for seed in range(5):
        state, P, n, target = instance(seed, 3, 9, 4)
        loss, g = kernel(state, P, n, target)
        W = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in state.items()}
        total = 0.0
        for b in range(P.shape[0]):
            cols = torch.tensor(P[b, :n[b]])
            pq = torch.tensor(P[b, n[b]])
            attn = torch.softmax((cols @ W["W_K"].T) @ (W["W_Q"] @ pq), dim=0)
            F = W["W_V"] @ (attn @ cols)
            total = total + 0.5 * torch.sum((F - torch.tensor(target[b])) ** 2)
        (total / P.shape[0]).backward()
        assert abs(loss - float(total.detach()) / P.shape[0]) < 1e-12 * abs(loss)
        for name in BLOCKS:  # autograd in float64: agreement to rounding
            assert rel(g[name], W[name].grad.numpy()) < 1e-12, name


def test_large_scores_stay_finite():
    # softmax with the maximum subtracted: scores of order 1e4 give a finite loss and gradient
    state, P, n, target = instance(3, 2, 5, 3, scale=60.0)
    loss, g = kernel(state, P, n, target)
    assert np.isfinite(loss) and all(np.all(np.isfinite(v)) for v in g.values())
