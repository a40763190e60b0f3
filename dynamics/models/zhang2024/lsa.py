"""The real linear self-attention network on sampled prompts (the Monte Carlo method).

A prompt is ``E = [[x_1 .. x_N, x_q], [y_1 .. y_N, 0]]`` of shape (d + 1, N + 1); the network is
``f(E) = E + W^{PV} E (E^T W^{KQ} E) / N`` and its prediction is the entry ``f(E)_{d+1, N+1}``
(Section 3.2 of the paper).  Only the last row ``p`` of ``W^{PV}`` and the first ``d`` columns ``K``
of ``W^{KQ}`` reach that entry: ``yhat = p^T S K x_q / N`` with ``S = E E^T`` (docs eq. (Z8)).
"""
from __future__ import annotations

import numpy as np


def sample(rng: np.random.Generator, size: int, N: int, Lam_sqrt: np.ndarray) -> tuple:
    """``size`` prompts: ``x ~ N(0, Lambda)``, ``w ~ N(0, I_d)``, noiseless labels ``y = w^T x``.

    Parameters
    ----------
    rng : numpy.random.Generator
    size, N : int
        Prompts and labelled examples per prompt.
    Lam_sqrt : ndarray, shape (d, d)
        A square root ``R`` of ``Lambda = R R^T``.

    Returns
    -------
    X, y, xq, yq : ndarrays, shapes (B, N, d), (B, N), (B, d), (B,)
        Examples, labels, queries and the query's label ``w^T x_q``.
    """
    d = Lam_sqrt.shape[0]
    w = rng.standard_normal((size, d))
    x = rng.standard_normal((size, N + 1, d)) @ Lam_sqrt.T
    labels = np.einsum("bnd,bd->bn", x, w)
    return x[:, :N], labels[:, :N], x[:, N], labels[:, N]


def embed(X: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """The prompts' embeddings ``E``, shape (B, d + 1, N + 1) (query column last, label 0)."""
    B, N, d = X.shape
    E = np.zeros((B, d + 1, N + 1))
    E[:, :d, :N] = X.transpose(0, 2, 1)
    E[:, d, :N] = y
    E[:, :d, N] = xq
    return E


def _forward(W_PV, W_KQ, X, y, xq):
    """``(S, S K x_q, yhat)`` for a batch: ``S = E E^T`` (B, d+1, d+1), ``S K x_q`` (B, d+1), (B,)."""
    N, d = X.shape[1], X.shape[2]
    E = embed(X, y, xq)
    S = E @ E.transpose(0, 2, 1)
    SKx = np.einsum("bij,bj->bi", S, xq @ W_KQ[:, :d].T)
    return S, SKx, SKx @ W_PV[d] / N


def predict(W_PV: np.ndarray, W_KQ: np.ndarray, X: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """The network's prediction ``yhat = f(E)_{d+1, N+1}`` for each prompt, shape (B,).

    ``W_PV``, ``W_KQ``: (d + 1, d + 1); ``X``, ``y``, ``xq`` as from :func:`sample`."""
    return _forward(W_PV, W_KQ, X, y, xq)[2]


def batch_loss_grad(W_PV: np.ndarray, W_KQ: np.ndarray, batch: tuple) -> tuple:
    """Mean loss ``1/(2B) sum_b (yhat_b - y_q,b)^2`` over a batch and its exact gradient.

    Parameters
    ----------
    W_PV, W_KQ : ndarray, shape (d + 1, d + 1)
        The network's matrices.
    batch : tuple
        ``(X, y, xq, yq)`` from :func:`sample`.

    Returns
    -------
    loss : float
    grads : dict
        ``{"W_PV": (d + 1, d + 1), "W_KQ": (d + 1, d + 1)}``; zero outside the last row of
        ``W^{PV}`` and the first ``d`` columns of ``W^{KQ}``, which never reach the prediction.
    """
    X, y, xq, yq = batch
    B, N, d = X.shape
    S, SKx, yhat = _forward(W_PV, W_KQ, X, y, xq)
    r = (yhat - yq) / B  # residuals, with the batch mean's 1/B
    g_PV, g_KQ = np.zeros_like(W_PV), np.zeros_like(W_KQ)
    g_PV[d] = r @ SKx / N
    g_KQ[:, :d] = ((S @ W_PV[d]) * r[:, None]).T @ xq / N
    return 0.5 * B * float(r @ r), {"W_PV": g_PV, "W_KQ": g_KQ}
