"""Numba kernels of H. Li et al.'s network (ICML 2024; MODEL.md section 8) on a batch of prompts.

The network of the slides' eq. (7):

    F(P) = a^T ReLU(W_O W_V pbar),   pbar = sum_i p_i attn_i,
    attn_i = softmax_i((W_K p_i)^T W_Q p_query),

and the hinge loss ``l = max(0, 1 - z F)`` (slides eq. 8).  Per prompt, with ``v = W_V pbar``,
``h = W_O v``, ``delta = dl/dF = -z 1[1 - z F > 0]`` and ``g_j = delta a_j 1[h_j >= 0]``
(the indicator of the slides' gradients, "1[W_O(i,.) sum_s W_V p_s softmax(.) >= 0]"):

    dl/dW_O = g v^T,          gv = W_O^T g,
    dl/dW_V = gv pbar^T,      gp = W_V^T gv = dl/dpbar,
    dl/dW_Q, dl/dW_K          from :func:`attention_backward` with ``gp``,
    dl/da_j = delta ReLU(h_j).

These are the slides' backup-slide gradients written with the chain rule; at the kinks
(``1 - z F = 0`` exactly, ``h_j = 0`` exactly) the subgradient chosen is 0 for the hinge and 1
for the ReLU (the slides' ``>= 0``).

Prompts are stored as ``P[b]``, an ``(L + 1, d)`` array of columns ``p_i = (x_i; y_i)`` with the
query ``(x_q; 0)`` last; ``ncols`` (``L`` or ``L + 1``) columns are attended (the query itself
when the model's ``attend_query`` is true).
"""
from __future__ import annotations

import numpy as np

from dynamics.core.jit import call_parallel, jit
from dynamics.models.shared.attention import (attend_backward_batch, attend_batch, attention_forward, gather_rows,
                                              scale_into, workspace)


@jit
def _mlp_forward(W_V, W_O, a, pbar, v, h):
    """``v = W_V pbar``, ``h = W_O v``; returns ``F = a^T ReLU(h)``."""
    dv, d = W_V.shape
    m = W_O.shape[0]
    for k in range(dv):
        acc = 0.0
        for j in range(d):
            acc += W_V[k, j] * pbar[j]
        v[k] = acc
    F = 0.0
    for i in range(m):
        acc = 0.0
        for k in range(dv):
            acc += W_O[i, k] * v[k]
        h[i] = acc
        if acc > 0.0:
            F += a[i] * acc
    return F


@jit(parallel=True)
def _loss_grad_batch(W_Q, W_K, W_V, W_O, a, P, z, ncols, gW_Q, gW_K, gW_V, gW_O, ga):
    """Mean hinge loss over the batch and its exact (sub)gradient (module docstring).

    Parameters
    ----------
    W_Q, W_K : (d_a, d); W_V : (d_v, d); W_O : (m, d_v); a : (m,)   the network.
    P : (B, L + 1, d) prompts, the query last; z : (B,) labels +-1; ncols : attended columns.
    gW_Q, gW_K, gW_V, gW_O, ga : outputs, overwritten with the gradient of the *mean* loss.

    Returns the mean loss.  The batch is processed in matrix form (issue 21), with rows
    ``h_b = W_O W_V pbar_b`` and ``g_b = dl_b/dh_b``:

        H = Pbar (W_O W_V)^T,   D = G^T Pbar,   dl/dW_O = D W_V^T,   dl/dW_V = W_O^T D,
        GP = G (W_O W_V)  (rows dl_b/dpbar_b),

    then the attention's backward pass of :mod:`dynamics.models.shared.attention`.  Seven matrix
    products run over the batch (BLAS) and four ``d x d`` ones; the softmax and its backward pass
    are loops over the prompts (``prange``).  Prompts outside the margin (``1 - z F <= 0``) have
    zero rows of ``G`` and contribute exact zeros, as the skipped prompts of a per-prompt loop.
    """
    B, L1, d = P.shape
    m = W_O.shape[0]
    inv = 1.0 / B
    n = np.empty(B, dtype=np.int64)
    qi = np.empty(B, dtype=np.int64)
    for b in range(B):
        n[b] = ncols
        qi[b] = L1 - 1
    Pq = gather_rows(P, qi)
    T = Pq @ W_Q.T                         # rows t_b = W_Q p_q
    U = T @ W_K                            # rows u_b = W_K^T t_b
    A = np.empty((B, L1))
    Pbar = np.empty((B, d))
    attend_batch(P, n, U, A, Pbar)
    Wov = W_O @ W_V
    H = Pbar @ Wov.T                       # rows h_b = W_O W_V pbar_b
    G = np.empty((B, m))                   # rows g_b = dl_b/dh_b
    for i in range(m):
        ga[i] = 0.0
    total = 0.0
    for b in range(B):
        F = 0.0
        for i in range(m):
            G[b, i] = 0.0
            if H[b, i] > 0.0:
                F += a[i] * H[b, i]
        margin = 1.0 - z[b] * F
        if margin <= 0.0:
            continue
        total += margin
        delta = -z[b]
        for i in range(m):
            if H[b, i] >= 0.0:
                G[b, i] = delta * a[i]
                ga[i] += inv * delta * H[b, i]
    D = G.T @ Pbar                         # sum_b g_b pbar_b^T
    scale_into(gW_O, D @ W_V.T, inv)
    scale_into(gW_V, W_O.T @ D, inv)
    GP = G @ Wov                           # rows gp_b = W_V^T W_O^T g_b = dl_b/dpbar_b
    R = np.empty((B, d))
    attend_backward_batch(P, n, A, Pbar, GP, R, np.empty((B, L1)))
    scale_into(gW_K, T.T @ R, inv)         # sum_b t_b r_b^T
    scale_into(gW_Q, (R @ W_K.T).T @ Pq, inv)   # sum_b (W_K r_b) p_q^T
    return total * inv


def loss_grad_batch(W_Q, W_K, W_V, W_O, a, P, z, ncols, gW_Q, gW_K, gW_V, gW_O, ga):
    """:func:`_loss_grad_batch` (the mean loss and its gradient, same arguments), its loops over
    the prompts on every numba thread only for batches of at least
    :data:`dynamics.core.jit.PARALLEL_MIN_WORK` column entries (``B x columns x d``); smaller
    batches run on one thread (the thread count does not change the result)."""
    return call_parallel(_loss_grad_batch, P.size, W_Q, W_K, W_V, W_O, a, P, z, ncols, gW_Q, gW_K, gW_V, gW_O, ga)


@jit
def forward_batch(W_Q, W_K, W_V, W_O, a, P, ncols, same, F, mass):
    """Outputs ``F[b]`` of every prompt and the attention mass ``mass[b]`` on the context
    columns flagged in ``same[b]`` (shape ``(B, L)``; the query column is never flagged)."""
    B, L1, d = P.shape
    da = W_Q.shape[0]
    dv = W_V.shape[0]
    m = W_O.shape[0]
    nsame = same.shape[1]
    t, u, s, attn, pbar, _, _ = workspace(da, d, L1)
    v = np.empty(dv)
    h = np.empty(m)
    for b in range(B):
        cols = P[b]
        attention_forward(W_Q, W_K, cols, ncols, cols[L1 - 1], t, u, s, attn, pbar)
        F[b] = _mlp_forward(W_V, W_O, a, pbar, v, h)
        acc = 0.0
        for i in range(min(ncols, nsame)):
            if same[b, i]:
                acc += attn[i]
        mass[b] = acc
