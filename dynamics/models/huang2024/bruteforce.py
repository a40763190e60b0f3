"""Brute-force reference: the population loss and gradient by enumerating every count vector.

This is the test oracle of MODEL.md section 3 ("brute-force enumeration of all count
vectors").  It shares no code with the derived kernels: it evaluates the per-prompt
loss of MODEL.md section 2 directly from the softmax of ``theta`` for each count
vector ``c ~ Multinomial(N, p)`` and weights it by the exact multinomial probability.
Cost grows like ``C(N + K - 1, K - 1)``: use it for K <= 6, N <= 20 or so.
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy.special import gammaln


def count_vectors(K: int, N: int) -> np.ndarray:
    """All ``c`` in ``N^K`` with ``sum(c) = N`` (stars and bars), shape ``(C(N+K-1, K-1), K)``."""
    rows = []
    for bars in itertools.combinations(range(N + K - 1), K - 1):
        prev = -1
        c = []
        for b in bars:
            c.append(b - prev - 1)
            prev = b
        c.append(N + K - 1 - prev - 1)
        rows.append(c)
    return np.asarray(rows, dtype=np.int64)


def multinomial_pmf(counts: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Exact multinomial probabilities of each row of ``counts`` (log-space, then exp)."""
    counts = np.asarray(counts, dtype=np.float64)
    N = counts.sum(axis=1)
    with np.errstate(divide="ignore"):
        logp = np.where(counts > 0, counts * np.log(np.where(p > 0, p, 1.0)), 0.0)
    impossible = ((counts > 0) & (p <= 0)).any(axis=1)
    lw = gammaln(N + 1) - gammaln(counts + 1).sum(axis=1) + logp.sum(axis=1)
    w = np.exp(lw)
    w[impossible] = 0.0
    return w


def per_prompt(theta_col: np.ndarray, k: int, counts: np.ndarray, sigma2: float = 0.0, M=None):
    """Per-prompt loss ``ell_k`` and gradient ``d ell_k / d theta[:, k]`` (MODEL.md section 2).

    ``ell_k = (1 - Attn_k)^2 + sum_{n != k} Attn_n^2 + sigma2 * sum_n c_n a_n^2 / Z^2``,
    computed from ``Attn_n = c_n a_n / Z`` with ``a_n = exp(theta_n - max theta)``.  With a
    label covariance ``M`` (K x K, issue 20) the first two terms are ``r^T M r``, ``r = Attn - e_k``,
    and ``d r^T M r / d theta_j = 2 Attn_j [(M r)_j - Attn^T M r]`` (plain formulas, no
    rearrangement).  Returns ``(ell, grad, attn)`` with one row per count vector.
    """
    c = np.asarray(counts, dtype=np.float64)
    a = np.exp(theta_col - theta_col.max())
    ca = c * a
    Z = ca.sum(axis=1, keepdims=True)
    attn = ca / Z
    noise = (c * a * a).sum(axis=1) / Z[:, 0] ** 2
    if M is None:
        S = (attn ** 2).sum(axis=1)
        ell = (1.0 - attn[:, k]) ** 2 + S - attn[:, k] ** 2 + sigma2 * noise
        grad = 2.0 * attn * (attn[:, [k]] + attn - S[:, None])
        grad[:, k] -= 2.0 * attn[:, k]
    else:
        r = attn.copy()
        r[:, k] -= 1.0
        Mr = r @ np.asarray(M, dtype=np.float64)
        ell = (r * Mr).sum(axis=1) + sigma2 * noise
        grad = 2.0 * attn * (Mr - (attn * Mr).sum(axis=1, keepdims=True))
    grad += sigma2 * (2.0 * c * a * a / Z ** 2 - 2.0 * attn * noise[:, None])
    return ell, grad, attn


def population_loss_grad_bruteforce(theta, p, N, sigma2=0.0, M=None):
    """Exact ``(L, grad, L_k, attn)`` of the paper's population loss by full enumeration.

    ``L = sum_k p_k L_k``, ``L_k = 1/2 E[ell_k]``, ``grad[n, k] = dL/dtheta[n, k]
    = p_k / 2 E[d ell_k / d theta[n, k]]`` and ``attn[n, k] = E[Attn_n | x_q = v_k]``.
    ``M`` (K x K): the label covariance ``V^T Sigma V`` of correlated features (None: ``M = I``).
    """
    theta = np.asarray(theta, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    K = p.shape[0]
    counts = count_vectors(K, int(N))
    w = multinomial_pmf(counts, p)
    L_k = np.empty(K)
    grad = np.empty((K, K))
    attn = np.empty((K, K))
    for k in range(K):
        ell, g, at = per_prompt(theta[:, k], k, counts, sigma2, M)
        L_k[k] = 0.5 * w @ ell
        grad[:, k] = 0.5 * p[k] * (w @ g)
        attn[:, k] = w @ at
    return float(p @ L_k), grad, L_k, attn
