"""Inference by greedy chain-of-thought decoding and by one-step in-context learning, with the
errors and attention masses the slides define (p. 29, 34; MODEL.md section 9).

CoT (slides: "Feed the current prompt to the model to generate the most probable output v
(greedy decoding), and then we put v at the end of P to form the new prompt").  Step ``k = 1..K``
reads ``F(P_k)`` at the query column ``(v_{k-1}; 0)`` (``v_0 = x_query``), decodes
``v_k = argmin_u |F(P_k) - u|`` over the clean patterns ``u`` of the domain (TSR at test), writes
``v_k`` into that column's y half and appends ``(v_k; 0)`` with the next positional encoding: the
training format of the query block.  CoT error ``(1/K) sum_k 1[v_k != z_k]`` against the correct
path.  ICL: one read-out of the ICL prompt (:meth:`.data.DataModel.icl_columns`), error
``1[v != z_K]``.  Both are evaluated on the same draws (paired).

Attention mass by column type at each CoT step (slides' Figure 20): a column before the query
is *same step* when its positional encoding is the query's (``c mod K = k - 1``) and *same
pattern* when the pattern index of its x half equals that of the query's x half (the decoded
``v_{k-1}``; noise ignored; zero halves match nothing).  The four masses sum to 1.
"""
from __future__ import annotations

import numpy as np

from dynamics.core.validate import finite_result
from dynamics.models.li2024_cot.kernels import forward_batch

COLUMN_TYPES = ("same_pattern_same_step", "diff_pattern_same_step", "same_pattern_diff_step",
                "diff_pattern_diff_step")
"""The four attention masses, in this order everywhere."""
CHUNK = 512
"""Prompts per chunk (bounds the memory of long prompts)."""


def forward(state: dict, P, n):
    """``(F, attn)``: outputs ``(B, d_x)`` and attention weights ``(B, C)`` of a batch."""
    B, C, _ = P.shape
    F = np.empty((B, state["W_V"].shape[0]))
    attn = np.empty((B, C))
    nn = np.empty(B, dtype=np.int64)
    nn[:] = n
    forward_batch(state["W_Q"], state["W_K"], state["W_V"], P, nn, F, attn)
    finite_result("li2024_cot forward pass", F=F)
    return F, attn


def losses(state: dict, batch) -> np.ndarray:
    """Per-prompt squared loss ``1/2 |z - F(P)|^2`` of a training batch (:class:`.data.Prompts`)."""
    F, _ = forward(state, batch.P, batch.n)
    return 0.5 * np.sum((F - batch.target) ** 2, axis=1)


def nearest(F, vecs) -> np.ndarray:
    """``argmin_u |F - u|`` over the rows of ``vecs`` (``|u|^2 - 2 F.u``; ties to the lowest index)."""
    return np.argmin(np.sum(vecs * vecs, axis=1)[None, :] - 2.0 * F @ vecs.T, axis=1)


def masses(attn, xpat, ncol: int, K: int) -> np.ndarray:
    """``(B, 4)`` attention mass on the columns before the query at ``ncol`` by type (module doc)."""
    a = attn[:, :ncol]
    same_p = xpat[:, :ncol] == xpat[:, ncol][:, None]
    same_p &= xpat[:, :ncol] >= 0
    same_s = (np.arange(ncol) % K == ncol % K)[None, :]
    return np.stack([np.sum(a * (same_p & same_s), 1), np.sum(a * (~same_p & same_s), 1),
                     np.sum(a * (same_p & ~same_s), 1), np.sum(a * (~same_p & ~same_s), 1)], axis=1)


def greedy_cot(state, data, ch, vecs):
    """``(v, mass)``: decoded steps ``(n, K)`` and attention masses ``(n, K, 4)`` (module doc)."""
    nb, length, K1 = ch.s.shape
    K, dx = K1 - 1, data.d_x
    lK = length * K
    P = data.cot_columns(ch, vecs, 1)
    xpat = np.full((nb, lK + K), -1, dtype=np.int64)
    xpat[:, :lK] = ch.s[:, :, :K].reshape(nb, lK)
    xpat[:, lK] = ch.z[:, 0]
    v = np.empty((nb, K), dtype=np.int64)
    mass = np.empty((nb, K, len(COLUMN_TYPES)))
    for k in range(1, K + 1):
        ncol = lK + k - 1
        F, attn = forward(state, P, ncol)
        v[:, k - 1] = nearest(F, vecs)
        mass[:, k - 1] = masses(attn, xpat, ncol, K)
        if k < K:
            P[:, ncol, dx:] = vecs[v[:, k - 1]]
            P[:, ncol + 1, :dx] = vecs[v[:, k - 1]] + data.pe[k % K]
            xpat[:, ncol + 1] = v[:, k - 1]
    return v, mass


def icl(state, data, ch, vecs):
    """``(v, mass)``: the ICL prediction ``(n,)`` and its attention masses ``(n, 4)``."""
    nb, length, K1 = ch.s.shape
    K = K1 - 1
    lK = length * K
    P = data.icl_columns(ch, vecs)
    xpat = np.full((nb, lK + 1), -1, dtype=np.int64)
    xpat[:, 0:lK:K] = ch.s[:, :, 0]
    xpat[:, lK] = ch.z[:, 0]
    F, attn = forward(state, P, lK)
    return nearest(F, vecs), masses(attn, xpat, lK, K)


def per_prompt(model, state, rng, n: int, *, domain: str = "test", length: int | None = None,
               alpha: float | None = None, data=None, icl_too: bool = True) -> dict:
    """Per-prompt results on ``n`` fresh prompts of ``domain``.

    ``domain``: ``test`` (TSR patterns, the test task, ``alpha_test``, ``l_test`` by default) or
    ``train`` (TRR patterns, fresh training tasks, ``alpha``, ``l_train``).  ``data`` replaces the
    model's :class:`~.data.DataModel` (another test task or noise without retraining).  Returns
    ``{"cot": (n,) CoT error, "steps": (n, K) 1[v_k != z_k], "attn": (n, 4) CoT attention masses
    averaged over steps}`` and with ``icl_too`` ``"icl": (n,)`` and ``"attn_icl": (n, 4)``.
    """
    data = model.data if data is None else data
    cfg = model.config
    if domain == "test":
        length = cfg["l_test"] if length is None else length
        alpha = cfg["alpha_test"] if alpha is None else alpha
        draw, vecs = data.test_chains, data.tsr
    elif domain == "train":
        length = cfg["l_train"] if length is None else length
        alpha = cfg["alpha"] if alpha is None else alpha
        draw, vecs = data.train_chains, data.mu
    else:
        raise ValueError(f"domain must be test or train, got {domain!r}")
    parts = {}
    left = int(n)
    while left > 0:
        m = min(left, CHUNK)
        ch = draw(rng, m, length, alpha)
        v, mass = greedy_cot(state, data, ch, vecs)
        wrong = (v != ch.z[:, 1:]).astype(np.float64)
        out = {"cot": wrong.mean(axis=1), "steps": wrong, "attn": mass.mean(axis=1)}
        if icl_too:
            vi, mi = icl(state, data, ch, vecs)
            out["icl"] = (vi != ch.z[:, -1]).astype(np.float64)
            out["attn_icl"] = mi
        for key, val in out.items():
            parts.setdefault(key, []).append(val)
        left -= m
    return {key: np.concatenate(v) for key, v in parts.items()}

