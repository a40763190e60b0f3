"""Compiled element-wise passes of the closed form over the (H, N, K) attention array.

The exact gradient needs, per head h and token k, the softmax over the N prompt tokens, the mix
``a_k = sum_h w_{h,k} s_k^h`` and the softmax Jacobian applied to ``r_k``.  In numpy these are
about ten passes over the (H, N, K) array; here they are three fused loops (the innermost index
k is contiguous, so the loops vectorise), with the exponential left to numpy's SIMD ``exp``
between the first and the second (numba's scalar ``exp`` measured 3x slower here).
"""
from __future__ import annotations

import numpy as np

from dynamics.core.jit import jit


@jit
def shift_by_max(theta, out):
    """``out[h, n, k] = theta[h, n, k] - max_n theta[h, n, k]`` (the softmax's subtracted maximum)."""
    H, N, K = theta.shape
    mx = np.empty(K)
    for h in range(H):
        for k in range(K):
            mx[k] = theta[h, 0, k]
        for n in range(1, N):
            for k in range(K):
                if theta[h, n, k] > mx[k]:
                    mx[k] = theta[h, n, k]
        for n in range(N):
            for k in range(K):
                out[h, n, k] = theta[h, n, k] - mx[k]


@jit
def normalize_and_mix(E, w, a):
    """``E`` (exponentials, in place) becomes the softmax ``S`` over n; ``a[n, k] = sum_h w[h, k] S[h, n, k]``."""
    H, N, K = E.shape
    tot = np.empty(K)
    a[:, :] = 0.0
    for h in range(H):
        for k in range(K):
            tot[k] = 0.0
        for n in range(N):
            for k in range(K):
                tot[k] += E[h, n, k]
        for k in range(K):
            tot[k] = 1.0 / tot[k]
        for n in range(N):
            for k in range(K):
                s = E[h, n, k] * tot[k]
                E[h, n, k] = s
                a[n, k] += w[h, k] * s


@jit
def softmax_chain(S, w, r, gw, gt):
    """``gw[h, k] = s_k^h . r_k`` and ``gt[h, :, k] = w[h, k] s_k^h * (r_k - gw[h, k])``: the
    gradients with respect to ``w`` and ``theta`` given ``r = dL/da`` (N x K)."""
    H, N, K = S.shape
    for h in range(H):
        for k in range(K):
            gw[h, k] = 0.0
        for n in range(N):
            for k in range(K):
                gw[h, k] += S[h, n, k] * r[n, k]
        for n in range(N):
            for k in range(K):
                gt[h, n, k] = w[h, k] * S[h, n, k] * (r[n, k] - gw[h, k])
