"""The batched matrix-form training kernels of H. Li et al.'s two systems (issue 21) against the
per-prompt kernels they replaced (``tests/kernels_v0.py``), on the models' own prompts and at
generic random weights, at batch sizes 1, 64 and 256.

Same arithmetic except the summation order of the BLAS matrix products and of the batch sum of
each gradient entry (now ``inv * sum_b`` instead of ``sum_b inv * ...``): relative 1e-11 of the
gradient's largest entry covers that rounding (a few ulps times sums of ~300 terms) and nothing
else; a wrong index or a dropped term moves entries by O(1) of that scale."""
import numpy as np
import pytest

from dynamics.models.li2024.kernels import loss_grad_batch as li_new
from dynamics.models.li2024.model import Li2024
from dynamics.models.li2024_cot.kernels import loss_grad_batch as cot_new
from dynamics.models.li2024_cot.model import Li2024CoT
from tests.kernels_v0 import cot_loss_grad_batch_v0, li_loss_grad_batch_v0

RTOL = 1e-11


def close(new, old):
    for k in old:
        scale = max(np.abs(old[k]).max(), 1e-300)
        assert np.abs(new[k] - old[k]).max() <= RTOL * scale, k


def li_grads(fn, st, P, z, ncols):
    g = {k: np.full_like(v, np.nan) for k, v in st.items()}
    loss = fn(st["W_Q"], st["W_K"], st["W_V"], st["W_O"], st["a"], P, z, ncols, g["W_Q"], g["W_K"], g["W_V"],
              g["W_O"], g["a"])
    return loss, g


def cot_grads(fn, st, P, n, target):
    g = {k: np.full_like(v, np.nan) for k, v in st.items()}
    loss = fn(st["W_Q"], st["W_K"], st["W_V"], P, n, target, g["W_Q"], g["W_K"], g["W_V"])
    return loss, g


@pytest.mark.parametrize("B", [1, 64, 256])
@pytest.mark.parametrize("attend_query", [False, True])
def test_li2024_batched_kernel_equals_the_per_prompt_kernel(B, attend_query):
    model = Li2024.create(attend_query=attend_query)
    rng = np.random.default_rng(B)
    st = model.initial_state("mc", rng)
    st = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in st.items()}   # generic weights
    P, z = model.sample(rng, B)[:2]
    ncols = model.ncols(P.shape[1] - 1)
    lo, go = li_grads(li_loss_grad_batch_v0, st, P, z, ncols)
    ln, gn = li_grads(li_new, st, P, z, ncols)
    if B > 1:
        assert lo > 0 and np.any(go["W_Q"] != 0)      # prompts inside the margin: the backward pass runs
    assert ln == pytest.approx(lo, rel=RTOL)
    close(gn, go)


@pytest.mark.parametrize("B", [1, 64, 256])
def test_li2024_cot_batched_kernel_equals_the_per_prompt_kernel(B):
    model = Li2024CoT.create(train_value=True)
    rng = np.random.default_rng(B)
    st = model.initial_state("mc", rng)
    st = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in st.items()}
    P, n, target = model.sample(rng, B)
    n = np.ascontiguousarray(n, dtype=np.int64)
    lo, go = cot_grads(cot_loss_grad_batch_v0, st, P, n, target)
    ln, gn = cot_grads(cot_new, st, P, n, target)
    assert ln == pytest.approx(lo, rel=RTOL)
    close(gn, go)


def test_li2024_prompts_outside_the_margin_contribute_exact_zeros():
    """A batch whose every prompt is outside the margin has loss 0 and gradient exactly 0."""
    model = Li2024.create()
    rng = np.random.default_rng(3)
    st = model.initial_state("mc", rng)
    P, z = model.sample(rng, 16)[:2]
    st["a"] = st["a"] * 0.0
    st["a"][0] = 1.0
    st["W_O"][:] = 0.0
    st["W_O"][0, 30] = 1e6 * 1.0      # F = 1e6 (a feature coordinate seen by every prompt) ...
    z = np.ones(16)                    # ... times z = +1: margin 1 - z F < 0 for every prompt
    P[:, :, 30] = 1.0
    loss, g = li_grads(li_new, st, P, z, model.ncols(P.shape[1] - 1))
    assert loss == 0.0
    assert all(np.all(v == 0.0) for v in g.values())


def li_sample_v0(data, rng, size, length, alpha, domain):
    """DataModel.sample as it was before issue 21: numpy's example_patterns, mix and columns."""
    from dynamics.models.shared import patterns

    rel_vecs, irr_vecs, tasks = data.domain(domain)
    task = tasks[rng.integers(0, len(tasks), size)]
    pat, roles = patterns.example_patterns(rng, task, alpha, rel_vecs.shape[0], length)
    qrole = rng.integers(0, 2, size)
    qpat = task[np.arange(size), qrole]
    rel = np.concatenate([pat, qpat[:, None]], axis=1)
    irr = rng.integers(0, irr_vecs.shape[0], (size, length + 1))
    kappa = patterns.uniform_kappa(rng, (size, length + 1), data.kappa_low, data.kappa_high)
    if data.other_label == "example":
        rand = rng.integers(0, 2, (size, length)) * 2 - 1
    else:
        table = rng.integers(0, 2, (size, rel_vecs.shape[0])) * 2 - 1
        rand = np.take_along_axis(table, pat, axis=1)
    label = np.zeros((size, length + 1))
    label[:, :length] = np.where(roles == 0, 1, np.where(roles == 1, -1, rand))
    z = np.where(qrole == 0, 1.0, -1.0)
    P = patterns.columns(patterns.mix(rel_vecs, rel, irr_vecs, irr, kappa), label[..., None] * data.q)
    label[:, length] = z
    return P, z, pat == qpat[:, None], dict(task=task, rel=rel, irr=irr, kappa=kappa, label=label)


@pytest.mark.parametrize("other_label", ["example", "prompt"])
@pytest.mark.parametrize("alpha", [0.8, 1.0, 0.05])
@pytest.mark.parametrize("domain", ["train", "id", "ood"])
def test_li2024_sampler_draws_the_same_prompts_as_the_numpy_sampler(other_label, alpha, domain):
    """The compiled assembly consumes the same draws in the same order: bitwise the same prompts,
    and the generator ends in the same state (later draws unchanged)."""
    model = Li2024.create(other_label=other_label)
    r1, r2 = np.random.default_rng(7), np.random.default_rng(7)
    new, info = model.data.sample(r1, 50, 20, alpha, domain, with_patterns=True)
    P, z, same, ref = li_sample_v0(model.data, r2, 50, 20, alpha, domain)
    np.testing.assert_array_equal(new.P, P)
    np.testing.assert_array_equal(new.z, z)
    np.testing.assert_array_equal(new.same, same)
    for k in ref:
        np.testing.assert_array_equal(info[k], ref[k], err_msg=k)
    assert r1.random() == r2.random()


def cot_sample_v0(data, rng, size, length, alpha):
    """DataModel.sample_train as it was before issue 21 (numpy chains and column indices)."""
    from dynamics.models.li2024_cot.data import Chains, ball, fill_columns
    from dynamics.models.shared import patterns

    M, K = data.mu.shape[0], data.K
    z0 = rng.integers(0, M, size)
    starts, _ = patterns.example_patterns(rng, z0[:, None], alpha, M, length)
    if data.train_task == "permutation":
        f = rng.permuted(np.broadcast_to(np.arange(M), (size, K, M)), axis=2)
    else:
        f = rng.integers(0, M, (size, K, M))
    s = np.empty((size, length, K + 1), dtype=np.int64)
    z = np.empty((size, K + 1), dtype=np.int64)
    s[:, :, 0], z[:, 0] = starts, z0
    rows = np.arange(size)
    for k in range(K):
        s[:, :, k + 1] = np.take_along_axis(f[:, k, :], s[:, :, k], axis=1)
        z[:, k + 1] = f[rows, k, z[:, k]]
    ch = Chains(s, z, ball(rng, (size, length, K + 1), data.d_x, data.noise_train),
                ball(rng, (size, K + 1), data.d_x, data.noise_train))
    k = rng.integers(1, K + 1, size)
    lK = length * K
    jj = np.arange(K)[None, :]
    xi = np.empty((size, lK + K), dtype=np.int64)
    yi = np.empty_like(xi)
    xi[:, :lK] = ch.s[:, :, :K].reshape(size, lK)
    yi[:, :lK] = ch.s[:, :, 1:].reshape(size, lK)
    xi[:, lK:] = np.where(jj < k[:, None], ch.z[:, :K], -1)
    yi[:, lK:] = np.where(jj < k[:, None] - 1, ch.z[:, 1:], -1)
    P = np.empty((size, lK + K, data.d))
    fill_columns(data.mu, data.pe, xi, yi, P)
    dx = data.d_x
    if ch.noise is not None:
        P[:, :lK, :dx] += ch.noise[:, :, :K].reshape(size, lK, dx)
        P[:, :lK, dx:] += ch.noise[:, :, 1:].reshape(size, lK, dx)
    if ch.qnoise is not None:
        P[:, lK:, :dx] += np.where((jj < k[:, None])[..., None], ch.qnoise[:, :K], 0.0)
        P[:, lK:, dx:] += np.where((jj < k[:, None] - 1)[..., None], ch.qnoise[:, 1:], 0.0)
    return P, lK + k - 1, data.mu[ch.z[np.arange(size), k]]


@pytest.mark.parametrize("train_task", ["permutation", "random_map"])
@pytest.mark.parametrize("alpha,noise", [(0.8, 0.0), (1.0, 0.0), (0.3, 0.2)])
def test_li2024_cot_sampler_draws_the_same_prompts_as_the_numpy_sampler(train_task, alpha, noise):
    model = Li2024CoT.create(train_task=train_task, noise_train=noise)
    r1, r2 = np.random.default_rng(11), np.random.default_rng(11)
    new = model.data.sample_train(r1, 40, 10, alpha)
    ref = cot_sample_v0(model.data, r2, 40, 10, alpha)
    for a, b in zip(new, ref):
        np.testing.assert_array_equal(a, b)
    assert r1.random() == r2.random()


def test_thread_count_does_not_change_the_batched_kernels():
    """Each prompt writes only its own rows: the kernels on every numba thread (forced by
    ``min_work=0``) and on one thread give the same bits."""
    import numba

    from dynamics.core.jit import call_parallel
    from dynamics.models.li2024 import kernels as lk
    from dynamics.models.li2024_cot import kernels as ck

    model = Li2024.create()
    rng = np.random.default_rng(5)
    st = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in model.initial_state("mc", rng).items()}
    P, z = model.sample(rng, 128)[:2]
    runs = []
    for min_work in (0, 10**12):
        g = {k: np.empty_like(v) for k, v in st.items()}
        loss = call_parallel(lk._loss_grad_batch, P.size, st["W_Q"], st["W_K"], st["W_V"], st["W_O"], st["a"], P, z,
                             20, g["W_Q"], g["W_K"], g["W_V"], g["W_O"], g["a"], min_work=min_work)
        runs.append((loss, g))
    assert runs[0][0] == runs[1][0]
    for k in st:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])
    cot = Li2024CoT.create(train_value=True)
    stc = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in cot.initial_state("mc", rng).items()}
    Pc, n, target = cot.sample(rng, 128)
    runs = []
    for min_work in (0, 10**12):
        g = {k: np.empty_like(v) for k, v in stc.items()}
        loss = call_parallel(ck._loss_grad_batch, Pc.size, stc["W_Q"], stc["W_K"], stc["W_V"], Pc, n, target,
                             g["W_Q"], g["W_K"], g["W_V"], min_work=min_work)
        runs.append((loss, g))
    assert runs[0][0] == runs[1][0]
    for k in stc:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])
    assert numba.get_num_threads() >= 1
