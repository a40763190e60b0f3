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

from dynamics.core.jit import jit
from dynamics.models.shared.attention import attention_backward, attention_forward, workspace


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


@jit
def loss_grad_batch(W_Q, W_K, W_V, W_O, a, P, z, ncols, gW_Q, gW_K, gW_V, gW_O, ga):
    """Mean hinge loss over the batch and its exact (sub)gradient (module docstring).

    Gradient arrays are overwritten with the gradient of the *mean* loss.  Returns the mean
    loss.
    """
    B, L1, d = P.shape
    da = W_Q.shape[0]
    dv = W_V.shape[0]
    m = W_O.shape[0]
    gW_Q[:] = 0.0
    gW_K[:] = 0.0
    gW_V[:] = 0.0
    gW_O[:] = 0.0
    ga[:] = 0.0
    t, u, s, attn, pbar, r, wkr = workspace(da, d, L1)
    v = np.empty(dv)
    h = np.empty(m)
    g = np.empty(m)
    gv = np.empty(dv)
    gp = np.empty(d)
    inv = 1.0 / B
    total = 0.0
    for b in range(B):
        cols = P[b]
        pq = cols[L1 - 1]
        attention_forward(W_Q, W_K, cols, ncols, pq, t, u, s, attn, pbar)
        F = _mlp_forward(W_V, W_O, a, pbar, v, h)
        margin = 1.0 - z[b] * F
        if margin <= 0.0:
            continue
        total += margin
        delta = -z[b]
        for i in range(m):
            if h[i] >= 0.0:
                g[i] = delta * a[i]
                ga[i] += inv * delta * h[i]
            else:
                g[i] = 0.0
        for k in range(dv):
            gv[k] = 0.0
        for i in range(m):
            gi = g[i]
            if gi != 0.0:
                for k in range(dv):
                    gW_O[i, k] += inv * gi * v[k]
                    gv[k] += W_O[i, k] * gi
        for j in range(d):
            gp[j] = 0.0
        for k in range(dv):
            gk = gv[k]
            for j in range(d):
                gW_V[k, j] += inv * gk * pbar[j]
                gp[j] += W_V[k, j] * gk
        attention_backward(W_K, cols, ncols, pq, t, attn, pbar, gp, inv, gW_Q, gW_K, r, wkr)
    return total * inv


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
