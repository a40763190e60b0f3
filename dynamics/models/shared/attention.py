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

Batched form (the training kernels of both systems; issue 21)
-------------------------------------------------------------
Over a batch the ``d x d`` products are matrix products with ``B`` rows, done by BLAS, and only
the ``O(n d)`` work per prompt is a loop (parallel over prompts, ``prange``):

``T = Pq W_Q^T``, ``U = T W_K`` (rows ``t_b``, ``u_b = W_K^T t_b``); :func:`attend_batch` (scores,
softmax, ``pbar_b``); given ``GP`` (rows ``gp_b = dL_b/dpbar_b``) :func:`attend_backward_batch`
gives the rows ``r_b = sum_i e_{b,i} p_{b,i}``, and with the one ``d x d`` product
``T``

    sum_b dL_b/dW_K = T^T R,        sum_b dL_b/dW_Q = (R W_K^T)^T Pq.

Each prompt's loop is the same arithmetic, in the same order, as :func:`attention_forward` and
:func:`attention_backward`; only the matrix products sum in BLAS's order (equal to rounding).
Every prompt writes only its own rows, so the result does not depend on the number of threads.
The two batch functions are inlined into their callers (``inline="always"``), which are compiled
with ``parallel=True``: their ``prange`` loops run on the caller's threads, and no cached
parallel function is called across compiled functions (that pattern crashed on loading from a
numba cache).
"""
from __future__ import annotations

import numpy as np
from numba import prange

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


@jit(inline="always")
def _dot_rows(P, b, n, x, out):
    """``out[i] = sum_j P[b, i, j] x[j]`` for ``i < n``, each sum in index order (the plain loop's
    rounding), four rows at a time: four independent sums keep the FPU busy where one sum waits
    on its own previous addition (2.2x faster at d = 34, the same bits)."""
    d = P.shape[2]
    i = 0
    while i + 4 <= n:
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        for j in range(d):
            xj = x[j]
            a0 += P[b, i, j] * xj
            a1 += P[b, i + 1, j] * xj
            a2 += P[b, i + 2, j] * xj
            a3 += P[b, i + 3, j] * xj
        out[i] = a0
        out[i + 1] = a1
        out[i + 2] = a2
        out[i + 3] = a3
        i += 4
    while i < n:
        acc = 0.0
        for j in range(d):
            acc += P[b, i, j] * x[j]
        out[i] = acc
        i += 1


@jit(inline="always")
def attend_batch(P, n, U, A, Pbar):
    """Softmax attention of a batch given the query's ``u_b = W_K^T W_Q p_{b,query}``.

    Parameters
    ----------
    P : (B, C, d) prompt columns ``p_{b,i}``.
    n : (B,) int, attended columns of each prompt (the first ``n[b]`` rows of ``P[b]``).
    U : (B, d) rows ``u_b``; the scores are ``s_{b,i} = p_{b,i}^T u_b``.
    A : (B, C) output: ``A[b, :n[b]]`` the attention weights (softmax with the maximum
        subtracted); entries after ``n[b]`` are left as they are.
    Pbar : (B, d) output: ``pbar_b = sum_i A[b, i] p_{b,i}``.
    """
    B, C, d = P.shape
    for b in prange(B):
        nb = n[b]
        s = A[b]
        _dot_rows(P, b, nb, U[b], s)
        smax = -np.inf
        for i in range(nb):
            if s[i] > smax:
                smax = s[i]
        tot = 0.0
        for i in range(nb):
            w = np.exp(s[i] - smax)
            s[i] = w
            tot += w
        for j in range(d):
            Pbar[b, j] = 0.0
        for i in range(nb):
            w = s[i] / tot
            s[i] = w
            for j in range(d):
                Pbar[b, j] += w * P[b, i, j]


@jit(inline="always")
def attend_backward_batch(P, n, A, Pbar, GP, R, work):
    """Rows ``r_b = sum_i e_{b,i} p_{b,i}``, ``e_{b,i} = A[b,i] (p_{b,i} - pbar_b)^T gp_b``.

    Parameters
    ----------
    P, n, A, Pbar : as filled by :func:`attend_batch`.
    GP : (B, d) rows ``gp_b = dL_b/dpbar_b``.
    R : (B, d) output.  Then ``sum_b dL_b/dW_K = W_Q Pq^T R`` and ``sum_b dL_b/dW_Q = W_K R^T Pq``.
    work : (B, C) scratch.
    """
    B, C, d = P.shape
    for b in prange(B):
        nb = n[b]
        base = 0.0
        for j in range(d):
            base += Pbar[b, j] * GP[b, j]
            R[b, j] = 0.0
        e = work[b]
        _dot_rows(P, b, nb, GP[b], e)
        for i in range(nb):
            w = A[b, i] * (e[i] - base)
            for j in range(d):
                R[b, j] += w * P[b, i, j]


@jit(inline="always")
def gather_rows(P, idx):
    """``Pq[b] = P[b, idx[b]]``: the query columns, shape ``(B, d)`` (a contiguous copy)."""
    B, C, d = P.shape
    out = np.empty((B, d))
    for b in range(B):
        for j in range(d):
            out[b, j] = P[b, idx[b], j]
    return out


@jit(inline="always")
def scale_into(out, X, c):
    """``out[:] = c * X`` for 2-D arrays in a plain loop (no parallel array expression)."""
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            out[i, j] = c * X[i, j]
