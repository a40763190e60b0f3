"""Numba kernels of the attention-only chain-of-thought model (MODEL.md section 9) on a batch.

The model of the slides' eq. (11),

    F(P) = sum_{i < n} W_V p~_i softmax_i((W_K p~_i)^T W_Q p~_query) = W_V pbar,

over the ``n`` columns before the query (column ``n``), and the squared loss
``l = 1/2 |z - F|^2``.  Per prompt, with ``g = dl/dF = F - z``:

    dl/dW_V = g pbar^T,      gp = W_V^T g = dl/dpbar,
    dl/dW_Q, dl/dW_K         from the shared :func:`~dynamics.models.shared.attention.attention_backward`
                             given ``gp`` (``e_i = attn_i (p~_i - pbar)^T gp``,
                             ``dl/dW_K = (W_Q p~_q)(sum_i e_i p~_i)^T``, ``dl/dW_Q = W_K (sum_i e_i p~_i) p~_q^T``).

A batch is ``P`` ``(B, C, d)`` (columns already carrying their positional encodings) with
``n[b] < C`` attended columns and the query at ``P[b, n[b]]``; prompts may differ in ``n``.
"""
from __future__ import annotations

import numpy as np

from dynamics.core.jit import call_parallel, jit
from dynamics.models.shared.attention import (attend_backward_batch, attend_batch, attention_forward, gather_rows,
                                              scale_into, workspace)


@jit(parallel=True)
def _loss_grad_batch(W_Q, W_K, W_V, P, n, target, gW_Q, gW_K, gW_V):
    """Mean squared loss ``1/2 |z - F|^2`` over the batch and its exact gradient (module doc).

    Parameters
    ----------
    W_Q, W_K : (d_a, d); W_V : (d_v, d)   the network.
    P : (B, C, d) columns; n : (B,) int attended columns, the query at ``P[b, n[b]]``;
    target : (B, d_v) the labels ``z``.
    gW_Q, gW_K, gW_V : outputs, overwritten with the gradient of the *mean* loss.

    Returns the mean loss.  Matrix form over the batch (issue 21): ``F = Pbar W_V^T``,
    ``dl/dW_V = (F - Z)^T Pbar``, ``GP = (F - Z) W_V`` (rows ``dl_b/dpbar_b``), then the
    attention's backward pass of :mod:`dynamics.models.shared.attention`.
    """
    B, C, d = P.shape
    dv = W_V.shape[0]
    inv = 1.0 / B
    Pq = gather_rows(P, n)
    T = Pq @ W_Q.T                         # rows t_b = W_Q p_q
    U = T @ W_K                            # rows u_b = W_K^T t_b
    A = np.empty((B, C))
    Pbar = np.empty((B, d))
    attend_batch(P, n, U, A, Pbar)
    Gr = Pbar @ W_V.T                      # rows F_b, then dl_b/dF_b = F_b - z_b
    total = 0.0
    for b in range(B):
        acc = 0.0
        for k in range(dv):
            g = Gr[b, k] - target[b, k]
            Gr[b, k] = g
            acc += g * g
        total += 0.5 * acc
    scale_into(gW_V, Gr.T @ Pbar, inv)
    GP = Gr @ W_V                          # rows gp_b = W_V^T g_b = dl_b/dpbar_b
    R = np.empty((B, d))
    attend_backward_batch(P, n, A, Pbar, GP, R, np.empty((B, C)))
    scale_into(gW_K, T.T @ R, inv)         # sum_b t_b r_b^T
    scale_into(gW_Q, (R @ W_K.T).T @ Pq, inv)   # sum_b (W_K r_b) p_q^T
    return total * inv


def loss_grad_batch(W_Q, W_K, W_V, P, n, target, gW_Q, gW_K, gW_V):
    """:func:`_loss_grad_batch` (the mean loss and its gradient, same arguments), its loops over
    the prompts on every numba thread only for batches of at least
    :data:`dynamics.core.jit.PARALLEL_MIN_WORK` column entries (``B x columns x d``); smaller
    batches run on one thread (the thread count does not change the result)."""
    return call_parallel(_loss_grad_batch, P.size, W_Q, W_K, W_V, P, n, target, gW_Q, gW_K, gW_V)


@jit
def forward_batch(W_Q, W_K, W_V, P, n, F, attn):
    """Outputs ``F[b] = W_V pbar`` and attention weights ``attn[b, :n[b]]`` (zero after) of every
    prompt."""
    B, C, d = P.shape
    t, u, s, a, pbar, _, _ = workspace(W_Q.shape[0], d, C)
    for b in range(B):
        cols = P[b]
        nb = n[b]
        attention_forward(W_Q, W_K, cols, nb, cols[nb], t, u, s, a, pbar)
        F[b] = np.dot(W_V, pbar)
        attn[b] = 0.0
        attn[b, :nb] = a[:nb]
