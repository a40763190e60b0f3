"""The training kernels of H. Li et al.'s two systems as they were before issue 21 (one prompt at a
time, scalar loops, the shared per-prompt attention functions): the reference that the batched
matrix-form kernels of ``dynamics.models.li2024.kernels`` and ``dynamics.models.li2024_cot.kernels``
must equal to rounding."""
from __future__ import annotations

import numpy as np

from dynamics.core.jit import jit
from dynamics.models.li2024.kernels import _mlp_forward  # unchanged by issue 21
from dynamics.models.shared.attention import attention_backward, attention_forward, workspace


@jit
def li_loss_grad_batch_v0(W_Q, W_K, W_V, W_O, a, P, z, ncols, gW_Q, gW_K, gW_V, gW_O, ga):
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
def cot_loss_grad_batch_v0(W_Q, W_K, W_V, P, n, target, gW_Q, gW_K, gW_V):
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
