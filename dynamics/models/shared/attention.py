"""Numba kernels of one softmax-attention read-out and its exact backward pass, for one prompt.

Shared by both of H. Li et al.'s systems (MODEL.md sections 8 and 9): the read-out of the
slides' eq. (7) and eq. (11),

    pbar = sum_i p_i softmax_i((W_K p_i)^T W_Q p_query),

computed in ``O(d^2 + n d)`` without forming ``W_K p_i`` for every column: with
``t = W_Q p_query`` and ``u = W_K^T t`` the scores are ``s_i = p_i^T u``.  The network then reads
``W_V pbar`` (the value matrix commutes with the attention-weighted sum).  Given the gradient
``gp = dL/dpbar`` of any loss, the backward pass is

    e_i    = attn_i (p_i - pbar)^T gp              (dL/ds_i, softmax Jacobian)
    r      = sum_i e_i p_i
    dL/dW_K = t r^T,       dL/dW_Q = (W_K r) p_query^T.

Shapes: ``W_Q, W_K`` are ``(d_a, d)``; ``cols`` is ``(n_total, d)`` and the first ``n`` rows
are attended; ``p_query`` is ``(d,)``.  Work arrays are passed in so a batch loop allocates
nothing.  Every function is compiled with :func:`dynamics.core.jit.jit`.

API (stable; li2024 and li2024_cot call it)
--------------------------------------------------
``attention_forward(W_Q, W_K, cols, n, pq, t, u, s, attn, pbar)``
    Fills ``t = W_Q pq``, ``u = W_K^T t``, scores ``s[:n]``, ``attn[:n]`` (softmax with the
    maximum subtracted) and ``pbar``.
``attention_backward(W_K, cols, n, pq, t, attn, pbar, gp, scale, gW_Q, gW_K, r, wkr)``
    Adds ``scale * dL/dW_Q`` and ``scale * dL/dW_K`` into ``gW_Q``, ``gW_K`` given
    ``gp = dL/dpbar`` (``r`` and ``wkr`` are work vectors of lengths ``d`` and ``d_a``).
``workspace(da, d, n) -> (t, u, s, attn, pbar, r, wkr)``
    Fresh work arrays of both functions for prompts of up to ``n`` columns (added for the
    chain-of-thought system; allocate once per batch).
"""
from __future__ import annotations

import numpy as np

from dynamics.core.jit import jit


@jit
def _matvec(W, x, out):
    """``out = W x`` (rows of ``W`` against ``x``), a plain loop summed in index order."""
    for k in range(W.shape[0]):
        acc = 0.0
        for j in range(W.shape[1]):
            acc += W[k, j] * x[j]
        out[k] = acc


@jit
def attention_forward(W_Q, W_K, cols, n, pq, t, u, s, attn, pbar):
    """Softmax attention of the query ``pq`` over the first ``n`` rows of ``cols`` (module doc)."""
    da, d = W_Q.shape
    _matvec(W_Q, pq, t)
    for j in range(d):
        u[j] = 0.0
    for k in range(da):
        tk = t[k]
        for j in range(d):
            u[j] += W_K[k, j] * tk
    smax = -np.inf
    for i in range(n):
        acc = 0.0
        for j in range(d):
            acc += cols[i, j] * u[j]
        s[i] = acc
        if acc > smax:
            smax = acc
    tot = 0.0
    for i in range(n):
        w = np.exp(s[i] - smax)
        attn[i] = w
        tot += w
    for j in range(d):
        pbar[j] = 0.0
    for i in range(n):
        attn[i] /= tot
        w = attn[i]
        for j in range(d):
            pbar[j] += w * cols[i, j]


@jit
def workspace(da, d, n):
    """Work arrays ``(t, u, s, attn, pbar, r, wkr)`` of lengths ``(d_a, d, n, n, d, d, d_a)``."""
    return np.empty(da), np.empty(d), np.empty(n), np.empty(n), np.empty(d), np.empty(d), np.empty(da)


@jit
def attention_backward(W_K, cols, n, pq, t, attn, pbar, gp, scale, gW_Q, gW_K, r, wkr):
    """Add ``scale`` times the gradients of ``W_Q`` and ``W_K`` given ``gp = dL/dpbar``."""
    da, d = W_K.shape
    base = 0.0
    for j in range(d):
        base += pbar[j] * gp[j]
        r[j] = 0.0
    for i in range(n):
        acc = 0.0
        for j in range(d):
            acc += cols[i, j] * gp[j]
        e = attn[i] * (acc - base)
        for j in range(d):
            r[j] += e * cols[i, j]
    _matvec(W_K, r, wkr)
    for k in range(da):
        tk = scale * t[k]
        wk = scale * wkr[k]
        for j in range(d):
            gW_K[k, j] += tk * r[j]
            gW_Q[k, j] += wk * pq[j]
