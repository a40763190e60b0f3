"""The numba (sub)gradients of the hinge loss through ReLU and softmax (MODEL.md section 8)
against central finite differences, a plain-numpy implementation written from the slides'
gradient formulas, and PyTorch autograd when it is installed."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dynamics.models.li2024.kernels import forward_batch, loss_grad_batch

BLOCKS = ("W_Q", "W_K", "W_V", "W_O", "a")


def instance(seed, d, m, L, B, scale=0.7):
    """Random weights (not the structured initialisation: every entry generic) and prompts."""
    rng = np.random.default_rng(seed)
    state = {"W_Q": scale * rng.standard_normal((d, d)), "W_K": scale * rng.standard_normal((d, d)),
             "W_V": scale * rng.standard_normal((d, d)), "W_O": scale * rng.standard_normal((m, d)),
             "a": rng.standard_normal(m) / m}
    P = rng.standard_normal((B, L + 1, d))
    z = rng.choice([-1.0, 1.0], B)
    return state, P, z


@st.composite
def instances(draw, max_d=6, ms=(2, 4, 6), max_L=5, max_B=3, scale=0.7):
    """``(state, P, z, ncols)`` drawn entry by entry (so a failure shrinks to a small, simple one):
    weights in ``[-2 scale, 2 scale]`` (``a`` divided by ``m``), prompt columns in ``[-2, 2]``."""
    d = draw(st.integers(2, max_d))
    m = draw(st.sampled_from(ms))
    L, B = draw(st.integers(1, max_L)), draw(st.integers(1, max_B))
    w = st.floats(-2 * scale, 2 * scale)
    state = {"W_Q": draw(hnp.arrays(np.float64, (d, d), elements=w)),
             "W_K": draw(hnp.arrays(np.float64, (d, d), elements=w)),
             "W_V": draw(hnp.arrays(np.float64, (d, d), elements=w)),
             "W_O": draw(hnp.arrays(np.float64, (m, d), elements=w)),
             "a": draw(hnp.arrays(np.float64, m, elements=st.floats(-2.0, 2.0))) / m}
    P = draw(hnp.arrays(np.float64, (B, L + 1, d), elements=st.floats(-2.0, 2.0)))
    z = np.array(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=B, max_size=B)))
    return state, P, z, L + draw(st.booleans())


def kernel(state, P, z, ncols):
    g = {k: np.empty_like(v) for k, v in state.items()}
    loss = loss_grad_batch(state["W_Q"], state["W_K"], state["W_V"], state["W_O"], state["a"], P, z, ncols,
                           g["W_Q"], g["W_K"], g["W_V"], g["W_O"], g["a"])
    return loss, g


def numpy_reference(state, P, z, ncols):
    """Mean hinge loss and gradients from the slides' backup formulas, term by term:
    dl/dW_Q = sum_i e_i (W_K p_i) p_q^T,  dl/dW_K = sum_i e_i (W_Q p_q) p_i^T,
    e_i = attn_i (p_i - pbar)^T W_V^T W_O^T g,  g_j = -z a_j 1[h_j >= 0] 1[1 - z F > 0],
    dl/dW_V = W_O^T g pbar^T,  dl/dW_O = g (W_V pbar)^T,  dl/da = -z ReLU(h) 1[1 - z F > 0]."""
    WQ, WK, WV, WO, a = (state[k] for k in BLOCKS)
    grads = {k: np.zeros_like(v) for k, v in state.items()}
    total = 0.0
    B = P.shape[0]
    for b in range(B):
        cols, pq = P[b, :ncols], P[b, -1]
        keys = cols @ WK.T                       # rows W_K p_i
        query = WQ @ pq
        s = keys @ query
        w = np.exp(s - s.max())
        attn = w / w.sum()
        pbar = attn @ cols
        h = WO @ (WV @ pbar)
        F = a @ np.maximum(h, 0.0)
        if 1.0 - z[b] * F <= 0.0:
            continue
        total += 1.0 - z[b] * F
        g = -z[b] * a * (h >= 0)
        grads["a"] += -z[b] * np.maximum(h, 0.0)
        grads["W_O"] += np.outer(g, WV @ pbar)
        grads["W_V"] += np.outer(WO.T @ g, pbar)
        back = WV.T @ (WO.T @ g)
        for i in range(ncols):
            e_i = attn[i] * (cols[i] - pbar) @ back
            grads["W_Q"] += e_i * np.outer(keys[i], pq)
            grads["W_K"] += e_i * np.outer(query, cols[i])
    return total / B, {k: v / B for k, v in grads.items()}


def kink_distance(state, P, z, ncols):
    """Smallest |1 - z F| and |h_j| over the batch (distance to the hinge and ReLU kinks)."""
    WQ, WK, WV, WO, a = (state[k] for k in BLOCKS)
    out = np.inf
    for b in range(P.shape[0]):
        cols, pq = P[b, :ncols], P[b, -1]
        s = cols @ WK.T @ WQ @ pq
        w = np.exp(s - s.max())
        h = WO @ WV @ (w / w.sum() @ cols)
        F = a @ np.maximum(h, 0.0)
        out = min(out, abs(1.0 - z[b] * F), np.min(np.abs(h)))
    return out


def rel(x, y):
    return np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-300)


@settings(max_examples=25)
@given(instances())
def test_gradient_matches_central_differences(inst):
    state, P, z, ncols = inst
    # Central differences with step 1e-5 have truncation error ~1e-10 |f'''| and rounding error
    # ~1e-16 / 1e-5; both are far below 1e-6 relative as long as no kink lies within a step
    # (|grad| * 1e-5 << distance), hence the 1e-3 margin.
    assume(kink_distance(state, P, z, ncols) > 1e-3)
    loss, g = kernel(state, P, z, ncols)
    h = 1e-5
    for name in BLOCKS:
        fd = np.zeros_like(state[name])
        for idx in np.ndindex(state[name].shape):
            orig = state[name][idx]
            state[name][idx] = orig + h
            up = kernel(state, P, z, ncols)[0]
            state[name][idx] = orig - h
            down = kernel(state, P, z, ncols)[0]
            state[name][idx] = orig
            fd[idx] = (up - down) / (2 * h)
        if np.linalg.norm(g[name]) < 1e-8:  # every prompt beyond the margin: the gradient is exactly 0
            assert np.linalg.norm(fd) < 1e-8
        else:
            # floor: a central difference carries ~1e-16 |loss| / h of rounding per entry, so an
            # entry that cancels to near zero is compared at that floor, not relative to itself
            floor = 1e-9 * max(1.0, abs(loss)) * fd.size ** 0.5
            assert np.linalg.norm(g[name] - fd) <= 1e-6 * np.linalg.norm(fd) + floor, name


@settings(max_examples=25)
@given(instances(max_d=7, ms=(2, 4, 8), max_L=8, max_B=5))
def test_gradient_matches_numpy_formulas(inst):
    state, P, z, ncols = inst
    loss, g = kernel(state, P, z, ncols)
    ref_loss, ref = numpy_reference(state, P, z, ncols)
    # Same formulas summed in a different order: agreement to rounding (1e-12 relative).
    assert abs(loss - ref_loss) <= 1e-12 * max(1.0, abs(ref_loss))
    for name in BLOCKS:
        assert np.allclose(g[name], ref[name], rtol=1e-10, atol=1e-13), name


def test_forward_matches_numpy_and_counts_same_pattern_mass():
    state, P, z = instance(3, 5, 4, 6, 7)
    same = np.random.default_rng(0).random((7, 6)) < 0.5
    F, mass = np.empty(7), np.empty(7)
    forward_batch(*(state[k] for k in BLOCKS), P, 6, same, F, mass)
    for b in range(7):
        s = P[b, :6] @ state["W_K"].T @ state["W_Q"] @ P[b, -1]
        attn = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        h = state["W_O"] @ state["W_V"] @ (attn @ P[b, :6])
        assert F[b] == pytest.approx(state["a"] @ np.maximum(h, 0), rel=1e-12, abs=1e-14)
        assert mass[b] == pytest.approx(attn[same[b]].sum(), rel=1e-12, abs=1e-15)


def test_softmax_is_stable_for_huge_scores():
    state, P, z = instance(5, 4, 2, 5, 2, scale=30.0)  # scores ~ 1e5: exp would overflow unshifted
    loss, g = kernel(state, P, z, 5)
    assert np.isfinite(loss) and all(np.all(np.isfinite(v)) for v in g.values())


def test_gradient_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    for seed in range(5):
        state, P, z = instance(seed, 6, 4, 5, 4)
        ncols = 5
        loss, g = kernel(state, P, z, ncols)
        T = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in state.items()}
        Pt, zt = torch.tensor(P), torch.tensor(z)
        cols, pq = Pt[:, :ncols], Pt[:, -1]
        scores = torch.einsum("bid,ed,ef,bf->bi", cols, T["W_K"], T["W_Q"], pq)
        pbar = torch.einsum("bi,bid->bd", torch.softmax(scores, dim=1), cols)
        h = pbar @ T["W_V"].T @ T["W_O"].T
        F = torch.relu(h) @ T["a"]
        tl = torch.clamp(1.0 - zt * F, min=0.0).mean()
        tl.backward()
        assert abs(loss - tl.item()) <= 1e-12 * max(1.0, tl.item())
        for name in BLOCKS:
            # torch's relu has derivative 0 at 0 and ours 1: identical away from h = 0 (generic here).
            assert np.allclose(g[name], T[name].grad.numpy(), rtol=1e-10, atol=1e-13), name
