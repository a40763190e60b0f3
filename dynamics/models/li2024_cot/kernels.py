"""Numba kernels of the attention-only chain-of-thought model (MODEL.md section 9) on a batch.

The model of the slides' eq. (11),

    F(P) = sum_{i < n} W_V p~_i softmax_i((W_K p~_i)^T W_Q p~_query) = W_V pbar,

over the ``n`` columns before the query (column ``n``), and the squared loss
``l = 1/2 |z - F|^2``.  Per prompt, with ``g = dl/dF = F - z``:

    dl/dW_V = g pbar^T,      gp = W_V^T g = dl/dpbar,
    dl/dW_Q, dl/dW_K         from the shared :func:`~dynamics.models.li2024.attention.attention_backward`
                             given ``gp`` (``e_i = attn_i (p~_i - pbar)^T gp``,
                             ``dl/dW_K = (W_Q p~_q)(sum_i e_i p~_i)^T``, ``dl/dW_Q = W_K (sum_i e_i p~_i) p~_q^T``).

A batch is ``P`` ``(B, C, d)`` (columns already carrying their positional encodings) with
``n[b] < C`` attended columns and the query at ``P[b, n[b]]``; prompts may differ in ``n``.
"""
from __future__ import annotations

import numpy as np

from dynamics.core.jit import jit
from dynamics.models.li2024.attention import attention_backward, attention_forward


@jit
def _value(W_V, pbar, F):
    """``F = W_V pbar``."""
    dv, d = W_V.shape
    for k in range(dv):
        acc = 0.0
        for j in range(d):
            acc += W_V[k, j] * pbar[j]
        F[k] = acc


@jit
def loss_grad_batch(W_Q, W_K, W_V, P, n, target, gW_Q, gW_K, gW_V):
    """Mean squared loss ``1/2 |z - F|^2`` over the batch and its exact gradient (module doc).

    The gradient arrays are overwritten with the gradient of the *mean* loss; returns the mean.
    """
    B, C, d = P.shape
    da = W_Q.shape[0]
    dv = W_V.shape[0]
    gW_Q[:] = 0.0
    gW_K[:] = 0.0
    gW_V[:] = 0.0
    t = np.empty(da)
    u = np.empty(d)
    s = np.empty(C)
    attn = np.empty(C)
    pbar = np.empty(d)
    F = np.empty(dv)
    g = np.empty(dv)
    gp = np.empty(d)
    r = np.empty(d)
    wkr = np.empty(da)
    inv = 1.0 / B
    total = 0.0
    for b in range(B):
        cols = P[b]
        nb = n[b]
        attention_forward(W_Q, W_K, cols, nb, cols[nb], t, u, s, attn, pbar)
        _value(W_V, pbar, F)
        sq = 0.0
        for k in range(dv):
            g[k] = F[k] - target[b, k]
            sq += g[k] * g[k]
        total += 0.5 * sq
        for j in range(d):
            gp[j] = 0.0
        for k in range(dv):
            gk = g[k]
            for j in range(d):
                gW_V[k, j] += inv * gk * pbar[j]
                gp[j] += W_V[k, j] * gk
        attention_backward(W_K, cols, nb, cols[nb], t, attn, pbar, gp, inv, gW_Q, gW_K, r, wkr)
    return total * inv


@jit
def forward_batch(W_Q, W_K, W_V, P, n, F, attn):
    """Outputs ``F[b] = W_V pbar`` and attention weights ``attn[b, :n[b]]`` (zero after) of every
    prompt."""
    B, C, d = P.shape
    da = W_Q.shape[0]
    t = np.empty(da)
    u = np.empty(d)
    s = np.empty(C)
    a = np.empty(C)
    pbar = np.empty(d)
    for b in range(B):
        cols = P[b]
        nb = n[b]
        attention_forward(W_Q, W_K, cols, nb, cols[nb], t, u, s, a, pbar)
        _value(W_V, pbar, F[b])
        for i in range(C):
            attn[b, i] = a[i] if i < nb else 0.0
