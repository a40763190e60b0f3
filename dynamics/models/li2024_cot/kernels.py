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

from dynamics.core.jit import jit
from dynamics.models.shared.attention import attention_backward, attention_forward, workspace


@jit
def loss_grad_batch(W_Q, W_K, W_V, P, n, target, gW_Q, gW_K, gW_V):
    """Mean squared loss ``1/2 |z - F|^2`` over the batch and its exact gradient (module doc).

    The gradient arrays are overwritten with the gradient of the *mean* loss; returns the mean.
    """
    B, C, d = P.shape
    t, u, s, attn, pbar, r, wkr = workspace(W_Q.shape[0], d, C)
    gp = np.empty(d)
    for G in (gW_Q, gW_K, gW_V):
        G[:] = 0.0
    inv = 1.0 / B
    total = 0.0
    for b in range(B):
        cols = P[b]
        nb = n[b]
        attention_forward(W_Q, W_K, cols, nb, cols[nb], t, u, s, attn, pbar)
        g = np.dot(W_V, pbar) - target[b]          # dl/dF = F - z
        total += 0.5 * np.dot(g, g)
        gp[:] = 0.0
        for k in range(g.size):                     # dl/dW_V = g pbar^T and gp = W_V^T g in one pass
            for j in range(d):
                gW_V[k, j] += inv * g[k] * pbar[j]
                gp[j] += W_V[k, j] * g[k]
        attention_backward(W_K, cols, nb, cols[nb], t, attn, pbar, gp, inv, gW_Q, gW_K, r, wkr)
    return total * inv


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
