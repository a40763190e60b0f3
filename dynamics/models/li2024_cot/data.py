"""The data model of H. Li et al.'s chain-of-thought system (ICLR 2025; MODEL.md section 9):
patterns, positional encodings, reasoning chains and prompt columns.

Patterns.  ``M`` orthonormal training-relevant (TRR) patterns ``mu_1..mu_M`` and ``K`` positional
encodings ``c_0..c_{K-1}`` orthonormal to them (scaled by ``pe_scale``) in ``R^{d_x}``
(:func:`~dynamics.models.shared.patterns.orthonormal_sets`); ``M'`` test-relevant (TSR) patterns
``mu'_j = sum_i c_{j,i} mu_i`` with coefficient sum ``S1`` (:func:`.patterns.coefficients`,
:func:`.patterns.combine`).

Chains.  A training prompt has a task ``f = f_K o ... o f_1`` of step functions on the TRR
patterns (fresh for every prompt).  Example ``i``'s input pattern is the query's with
probability ``alpha`` and one of the other ``M - 1`` otherwise (the alpha-fraction rule,
:func:`.patterns.example_patterns` with ``r = 1``), and its states are ``s_{i,0} = x_i``,
``s_{i,k} = f_k(s_{i,k-1})``; the query's path is ``z_0, z_k = f_k(z_{k-1})``.  A test prompt
uses the TSR patterns and the test task's transition matrices: ``s_{i,k} ~ A_k^f[s_{i,k-1}, .]``
(wrong steps possible), while the query follows the correct steps (:mod:`.transitions`).

Columns (slides p. 28-29).  Example ``i`` occupies ``K`` columns, ``(s_{i,k-1}; s_{i,k})`` for
``k = 1..K``; the CoT query block after ``l`` examples is ``(z_0; z_1) .. (z_{k-2}; z_{k-1}),
(z_{k-1}; 0)`` (training: label ``z_k``, ``k`` uniform in ``[K]``).  The ICL prompt keeps
``(x_i; y_{i,K})`` in the first column of each example and zeros in the other ``K - 1`` ("E_i =
(x_i 0 ... 0; y_{i,K} 0 ... 0)"), then the query ``(x_q; 0)``.  Column ``c`` (0-based) gets the
positional encoding ``c_{c mod K}`` in its x half (**choice**: the slides add ``c_(i mod K)`` to
``p_i`` without saying which half; in the x half it marks the step of the column's input, and the
y half that the output reads stays a pure label), so every column of step ``k`` shares ``c_{k-1}``
with the query column that predicts step ``k``.  Every column is stored as an index pair
``(x pattern, y pattern)``, ``-1`` for a zero half; :func:`fill_columns` builds the vectors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dynamics.core.jit import jit
from dynamics.models.shared import patterns
from dynamics.models.shared.draws import alpha_patterns, check_rule, draws_need_other
from dynamics.models.li2024_cot import transitions


@jit
def fill_columns(vecs, pe, xi, yi, P):
    """``P[b, c] = (vecs[xi[b, c]] + pe[c mod K]; vecs[yi[b, c]])``, an index ``-1`` giving a zero
    half (one pass, no temporaries)."""
    B, C = xi.shape
    dx = vecs.shape[1]
    K = pe.shape[0]
    for b in range(B):
        for c in range(C):
            k = c % K
            ix = xi[b, c]
            iy = yi[b, c]
            for j in range(dx):
                P[b, c, j] = pe[k, j] + (vecs[ix, j] if ix >= 0 else 0.0)
                P[b, c, dx + j] = vecs[iy, j] if iy >= 0 else 0.0


@jit
def chain_states(f, starts, z0, s, z):
    """``s[b, i, 0] = starts[b, i]``, ``s[b, i, k + 1] = f[b, k, s[b, i, k]]`` and the query's path
    ``z[b, 0] = z0[b]``, ``z[b, k + 1] = f[b, k, z[b, k]]`` (one pass over the batch)."""
    size, length = starts.shape
    K = f.shape[1]
    for b in range(size):
        for i in range(length):
            x = starts[b, i]
            s[b, i, 0] = x
            for k in range(K):
                x = f[b, k, x]
                s[b, i, k + 1] = x
        x = z0[b]
        z[b, 0] = x
        for k in range(K):
            x = f[b, k, x]
            z[b, k + 1] = x


@jit
def cot_index(s, z, k, xi, yi):
    """The column index pairs of :meth:`DataModel.cot_columns`: example columns ``(s_{i,kk};
    s_{i,kk+1})``, then the query block ``(z_jj; z_{jj+1})`` for ``jj < k - 1``, ``(z_{k-1}; -1)``
    and ``(-1; -1)`` after."""
    n, length, K1 = s.shape
    K = K1 - 1
    lK = length * K
    for b in range(n):
        for i in range(length):
            for kk in range(K):
                xi[b, i * K + kk] = s[b, i, kk]
                yi[b, i * K + kk] = s[b, i, kk + 1]
        kb = k[b]
        for jj in range(K):
            xi[b, lK + jj] = z[b, jj] if jj < kb else -1
            yi[b, lK + jj] = z[b, jj + 1] if jj < kb - 1 else -1


def ball(rng: np.random.Generator, shape, dim: int, radius: float) -> np.ndarray | None:
    """Vectors uniform in the ball of ``R^dim`` of the given radius (None for radius 0)."""
    if radius == 0.0:
        return None
    g = rng.standard_normal(tuple(shape) + (dim,))
    g /= np.linalg.norm(g, axis=-1, keepdims=True)
    return g * (radius * rng.random(tuple(shape) + (1,)) ** (1.0 / dim))


class Chains(NamedTuple):
    """The pattern indices of a batch of prompts (module docstring).

    ``s``: ``(n, l, K + 1)`` example states; ``z``: ``(n, K + 1)`` the query's correct path;
    ``noise``: ``(n, l, K + 1, d_x)`` one noise vector per example token, or None;
    ``qnoise``: ``(n, K + 1, d_x)`` per query token, or None.
    """

    s: np.ndarray
    z: np.ndarray
    noise: np.ndarray | None
    qnoise: np.ndarray | None


class Prompts(NamedTuple):
    """A training batch (a tuple of arrays whose first axis is the prompt).

    ``P``: ``(B, l K + K, 2 d_x)`` columns, the query at index ``n[b]``, never-attended columns after
    it (positional encoding only);
    ``n``: ``(B,)`` attended columns ``l K + k - 1``; ``target``: ``(B, d_x)`` the label ``z_k``.
    """

    P: np.ndarray
    n: np.ndarray
    target: np.ndarray


@dataclass
class DataModel:
    """Patterns, the test task and the samplers (module docstring).

    Attributes
    ----------
    mu : (M, d_x)         TRR patterns.          pe : (K, d_x)  positional encodings ``c_k``.
    tsr : (M', d_x)       TSR patterns ``mu'``.  tsr_coeffs : (M', M) their ``c_{j,i}``.
    A : (K, M', M')       the test task's ``A_k^f``.  stats : :class:`.transitions.TaskStats`.
    train_task : ``permutation`` or ``random_map``.  noise_train, noise : noise radii.
    """

    mu: np.ndarray
    pe: np.ndarray
    tsr: np.ndarray
    tsr_coeffs: np.ndarray
    A: np.ndarray
    stats: transitions.TaskStats
    train_task: str = "permutation"
    noise_train: float = 0.0
    noise: float = 0.0

    @property
    def K(self) -> int:
        return self.pe.shape[0]

    @property
    def d_x(self) -> int:
        return self.mu.shape[1]

    @property
    def d(self) -> int:
        """Column dimension ``2 d_x``."""
        return 2 * self.mu.shape[1]

    # ---- chains ---------------------------------------------------------------------------
    def train_chains(self, rng: np.random.Generator, size: int, length: int, alpha: float) -> Chains:
        """``size`` training chains: a fresh task per prompt, the alpha-fraction rule, ``length``
        examples."""
        M, K = self.mu.shape[0], self.K
        size, length = int(size), int(length)
        alpha = float(alpha)
        check_rule(alpha, length, M, 1)
        # the draws of patterns.example_patterns (r = 1), in the same calls and order (the stream is
        # unchanged); draws.alpha_patterns and chain_states do the arithmetic in one pass each
        z0 = rng.integers(0, M, size)
        u = rng.random((size, length))
        if draws_need_other(u, alpha):
            other = rng.integers(0, max(M - 1, 1), size=(size, length))
        else:
            other = np.zeros((size, length), dtype=np.int64)
        starts = np.empty((size, length), dtype=np.int64)
        alpha_patterns(z0.reshape(size, 1), u, alpha, other, starts, np.empty((size, length), dtype=np.int64))
        if self.train_task == "permutation":
            f = rng.permuted(np.broadcast_to(np.arange(M), (size, K, M)), axis=2)
        else:
            f = rng.integers(0, M, (size, K, M))
        s = np.empty((size, length, K + 1), dtype=np.int64)
        z = np.empty((size, K + 1), dtype=np.int64)
        chain_states(np.ascontiguousarray(f), starts, z0, s, z)
        return Chains(s, z, ball(rng, (size, length, K + 1), self.d_x, self.noise_train),
                      ball(rng, (size, K + 1), self.d_x, self.noise_train))

    def test_chains(self, rng: np.random.Generator, size: int, length: int, alpha: float) -> Chains:
        """``size`` test chains: examples follow ``A_k^f`` from their start, the query follows the
        correct path from a uniform start; only the query's input ``z_0`` carries noise."""
        Mt, K = self.tsr.shape[0], self.K
        size, length = int(size), int(length)
        z0 = rng.integers(0, Mt, size)
        starts, _ = patterns.example_patterns(rng, z0[:, None], alpha, Mt, length)
        cum = np.cumsum(self.A, axis=2)
        cum[:, :, -1] = np.inf                   # rounding never lets u exceed the last cumulative value
        s = np.empty((size, length, K + 1), dtype=np.int64)
        s[:, :, 0] = starts
        for k in range(K):
            u = rng.random((size, length))
            s[:, :, k + 1] = np.sum(u[..., None] >= cum[k][s[:, :, k]], axis=-1)
        qn = ball(rng, (size, 1), self.d_x, self.noise)
        if qn is not None:
            qn = np.concatenate([qn, np.zeros((size, K, self.d_x))], axis=1)
        return Chains(s, self.stats.paths[z0], ball(rng, (size, length, K + 1), self.d_x, self.noise), qn)

    # ---- columns --------------------------------------------------------------------------
    def cot_columns(self, ch: Chains, vecs, k) -> np.ndarray:
        """``(n, l K + K, 2 d_x)`` CoT prompts whose query block holds the first ``k[b]`` steps
        (``k`` an int or an array in ``[1, K]``), the query last; the columns after it hold only their
        positional encoding (never attended; decoding fills them)."""
        n, length, K1 = ch.s.shape
        K = K1 - 1
        lK = length * K
        k = np.broadcast_to(np.asarray(k, dtype=np.int64), (n,))
        xi = np.empty((n, lK + K), dtype=np.int64)
        yi = np.empty_like(xi)
        cot_index(np.ascontiguousarray(ch.s), np.ascontiguousarray(ch.z), np.ascontiguousarray(k), xi, yi)
        P = np.empty((n, lK + K, self.d))
        fill_columns(vecs, self.pe, xi, yi, P)
        if ch.noise is not None:
            dx = self.d_x
            P[:, :lK, :dx] += ch.noise[:, :, :K].reshape(n, lK, dx)
            P[:, :lK, dx:] += ch.noise[:, :, 1:].reshape(n, lK, dx)
        if ch.qnoise is not None:
            dx = self.d_x
            jj = np.arange(K)[None, :]
            P[:, lK:, :dx] += np.where((jj < k[:, None])[..., None], ch.qnoise[:, :K], 0.0)
            P[:, lK:, dx:] += np.where((jj < k[:, None] - 1)[..., None], ch.qnoise[:, 1:], 0.0)
        return P

    def icl_columns(self, ch: Chains, vecs) -> np.ndarray:
        """``(n, l K + 1, 2 d_x)`` ICL prompts: ``(x_i; y_{i,K})`` then ``K - 1`` zero columns per
        example, the query ``(z_0; 0)`` last."""
        n, length, K1 = ch.s.shape
        K = K1 - 1
        lK = length * K
        xi = np.full((n, lK + 1), -1, dtype=np.int64)
        yi = np.full((n, lK + 1), -1, dtype=np.int64)
        xi[:, 0:lK:K] = ch.s[:, :, 0]
        yi[:, 0:lK:K] = ch.s[:, :, K]
        xi[:, lK] = ch.z[:, 0]
        P = np.empty((n, lK + 1, self.d))
        fill_columns(vecs, self.pe, xi, yi, P)
        dx = self.d_x
        if ch.noise is not None:
            P[:, 0:lK:K, :dx] += ch.noise[:, :, 0]
            P[:, 0:lK:K, dx:] += ch.noise[:, :, K]
        if ch.qnoise is not None:
            P[:, lK, :dx] += ch.qnoise[:, 0]
        return P

    def sample_train(self, rng: np.random.Generator, size: int, length: int, alpha: float) -> Prompts:
        """A training batch: chains, ``k`` uniform in ``[K]``, label ``z_k`` (slides p. 28)."""
        ch = self.train_chains(rng, size, length, alpha)
        k = rng.integers(1, self.K + 1, int(size))
        P = self.cot_columns(ch, self.mu, k)
        target = self.mu[ch.z[np.arange(int(size)), k]]
        return Prompts(P, int(length) * self.K + k - 1, target)
