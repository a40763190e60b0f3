"""Monte Carlo kernels of the Huang, Cheng, Liang model: sampled prompts of the data model and the
per-prompt loss and gradient of the full ``d x d`` matrix ``Q`` (MODEL.md sections 1 and 5).

The model keeps the real ``d x d`` attention matrix ``Q`` and samples whole prompts; the
per-prompt gradient of ``1/2 (yhat - y_q)^2`` is::

    yhat   = sum_i attn_i y_i,   attn_i = exp(x_i^T Q x_q) / sum_j exp(x_j^T Q x_q),
    grad_Q = (yhat - y_q) * sum_i attn_i (y_i - yhat) x_i x_q^T.

Tokens are features, ``x_i = v_{f_i}`` with ``f_i ~ p``, so a score is an entry of the ``K x K``
matrix ``theta = V^T Q V`` (the paper's ``A_k = theta[k, k]``, ``B_{k,n} = theta[n, k]``) and the
gradient is ``V G V^T`` for a ``K x K`` matrix ``G`` of accumulated coefficients.  The claims of
MODEL.md section 2 ("GD on Q is GD on theta"; "the part of Q outside ``span{v_n v_k^T}`` never
moves") are *tested* with these kernels (tests/huang2024/test_montecarlo.py), not assumed.

Random draws (features of the tokens, task vectors, label noise) are made sequentially with a
:class:`numpy.random.Generator` outside the parallel kernels; the kernels only map given uniforms
and normals to predictions and gradients.  For ``w ~ N(0, I_d)`` the labels depend on ``w`` only
through ``V^T w ~ N(0, I_K)``, which is drawn directly (equal in law); Rademacher ``w`` is drawn
in ``R^d``.  The training loop is the generic one, :mod:`dynamics.methods.montecarlo`.
"""
from __future__ import annotations

import numba
import numpy as np

from dynamics.core import validate
from dynamics.core.jit import jit

__all__ = ["make_features", "Sampler", "prompt_losses_grads", "mean_grad_theta", "mc_gradient", "evaluate_L_k",
           "frobenius", "spawn"]

TASKS = ("gaussian", "rademacher")
_PARALLEL_MIN_TOKENS = 1_000_000
"""Tokens in a batch (B (N + 1)) from which the prompt kernel runs in parallel.  Measured on 2 cores
with the other one busy (load 2): 1e5 tokens 1.1 ms serial vs 4.2 ms parallel, 4e5 4.9 vs 8.0 ms,
2e6 27 vs 16 ms; the parallel overhead (threads woken and spinning while the other core is taken)
is about 3-4 ms per call.  Below this the kernel runs on one thread."""


def spawn(random_state, n):
    """``n`` independent Generators from an int / None / SeedSequence / Generator (SeedSequence.spawn)."""
    if isinstance(random_state, np.random.Generator):
        return random_state.spawn(n)
    if isinstance(random_state, np.random.SeedSequence):
        seqs = random_state.spawn(n)
    elif random_state is None or (isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool)):
        seqs = np.random.SeedSequence(random_state).spawn(n)
    else:
        raise ValueError(f"random_state must be None, an int, a SeedSequence or a numpy Generator; got {random_state!r}")
    return [np.random.Generator(np.random.PCG64(s)) for s in seqs]


def check_p(p, K):
    """Feature probabilities of length K (``None``: balanced ``p_k = 1/K``)."""
    if p is None:
        return np.full(K, 1.0 / K)
    return validate.probabilities(p, "p", K=K, min_len=1)


def check_dims(K, d):
    """``(K, d)`` as integers with ``d >= K >= 1``."""
    K = validate.integer(K, "K", 1)
    d = validate.integer(d, "d", 1)
    if d < K:
        raise ValueError(f"d must be >= K (K orthonormal features need dimension d >= K); got d={d}, K={K}")
    return K, d


# --------------------------------------------------------------------------- features
def make_features(K, d, kind="random", random_state=None):
    """Orthonormal feature vectors ``v_1..v_K`` in ``R^d`` as the columns of ``V`` (MODEL.md section 1).

    Parameters
    ----------
    K, d : int
        Number of features and ambient dimension, ``d >= K``.
    kind : {"random", "standard"}
        ``"random"``: Q factor of the QR decomposition of a standard Gaussian
        ``d x K`` matrix, with column signs fixed so that ``diag(R) > 0`` (Haar
        distributed on the Stiefel manifold).  ``"standard"``: the first ``K``
        standard basis vectors.
    random_state : None, int, SeedSequence or numpy.random.Generator

    Returns
    -------
    V : ndarray, shape (d, K), float64, with ``V^T V = I``.
    """
    K, d = check_dims(K, d)
    validate.choice(kind, "kind", ("random", "standard"))
    if kind == "standard":
        return np.ascontiguousarray(np.eye(d, K))
    G = spawn(random_state, 1)[0].standard_normal((d, K))
    Vq, R = np.linalg.qr(G)
    s = np.sign(np.diag(R))
    s[s == 0] = 1.0
    return np.ascontiguousarray(Vq * s)


# --------------------------------------------------------------------------- kernels
@jit
def _features_from_uniforms(u, cdf, guide, out):  # pragma: no cover - numba
    """Inverse-CDF map ``out = min{n : cdf[n] > u}`` with a guide table (O(1) per draw)."""
    G = guide.shape[0]
    for b in range(u.shape[0]):
        for j in range(u.shape[1]):
            x = u[b, j]
            n = guide[min(int(x * G), G - 1)]
            while cdf[n] <= x:
                n += 1
            out[b, j] = n


@jit
def _one_prompt(theta_cols, feats, z, noise, b, e, ys, loss_out, g_out):  # pragma: no cover - numba
    """Loss ``1/2 (yhat - y_q)^2`` of prompt ``b`` and its gradient w.r.t. column ``f_q`` of ``theta``.

    ``theta_cols[k, n] = theta[n, k]`` (row k = the scores of all keys for a query of
    feature k).  ``feats[b, :N]`` are the key features and ``feats[b, N]`` the query
    feature; ``z[b, n] = <w_b, v_n>``; ``noise`` is ``(B, N)`` label noise or ``(B, 0)``
    for none; ``e``, ``ys`` are scratch of length N.  Writes ``loss_out[b]`` and
    ``g_out[b, n] = (yhat - y_q) sum_{i: f_i = n} attn_i (y_i - yhat)``, so that the
    prompt's gradient is ``grad_Q = V g_b e_{f_q}^T V^T``.
    """
    N = feats.shape[1] - 1
    fq = feats[b, N]
    m = -np.inf
    for i in range(N):
        s = theta_cols[fq, feats[b, i]]
        e[i] = s
        if s > m:
            m = s
    Z = 0.0
    num = 0.0
    for i in range(N):
        a = np.exp(e[i] - m)  # softmax with the max subtracted
        e[i] = a
        Z += a
        y = z[b, feats[b, i]]
        if noise.shape[1] > 0:
            y += noise[b, i]
        ys[i] = y
        num += a * y
    yhat = num / Z
    r = yhat - z[b, fq]  # the target y_q = <w, x_q> is noise-free
    loss_out[b] = 0.5 * r * r
    for n in range(g_out.shape[1]):
        g_out[b, n] = 0.0
    coef = r / Z
    for i in range(N):
        g_out[b, feats[b, i]] += coef * e[i] * (ys[i] - yhat)


@jit
def _loss_grad_serial(theta_cols, feats, z, noise, loss_out, g_out):  # pragma: no cover - numba
    """:func:`_one_prompt` for every prompt of the batch, in one thread."""
    N = feats.shape[1] - 1
    e = np.empty(N)
    ys = np.empty(N)
    for b in range(feats.shape[0]):
        _one_prompt(theta_cols, feats, z, noise, b, e, ys, loss_out, g_out)


@jit(parallel=True)
def _loss_grad_parallel(theta_cols, feats, z, noise, nchunks, loss_out, g_out):  # pragma: no cover - numba
    """:func:`_one_prompt` for every prompt, the batch split into ``nchunks`` parallel chunks."""
    B = feats.shape[0]
    N = feats.shape[1] - 1
    chunk = (B + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        e = np.empty(N)
        ys = np.empty(N)
        for b in range(c * chunk, min(B, (c + 1) * chunk)):
            _one_prompt(theta_cols, feats, z, noise, b, e, ys, loss_out, g_out)


@jit
def _sum_rows_by_index(vals, idx, K):  # pragma: no cover - numba
    """``out[k] = sum_{b : idx[b] = k} vals[b]`` (sequential, so no write races)."""
    out = np.zeros((K, vals.shape[1]))
    for b in range(vals.shape[0]):
        k = idx[b]
        for j in range(vals.shape[1]):
            out[k, j] += vals[b, j]
    return out


# --------------------------------------------------------------------------- sampling
class Sampler:
    """Draws prompts of the data model (MODEL.md section 1) from one Generator.

    For ``task="gaussian"`` the labels need ``w`` only through ``z = V^T w``, and for
    ``w ~ N(0, I_d)`` with orthonormal ``V`` this is exactly ``N(0, I_K)``: ``z`` is
    drawn directly (equal in law, ``d`` times cheaper).  With correlated features or an
    anisotropic task (``label_root = R``, ``R R^T = M = V^T Sigma V``) ``z = R xi`` is ``N(0, M)``,
    the law of ``V^T w`` for ``w ~ N(0, Sigma)``.  For ``task="rademacher"``
    ``w`` is drawn in ``{-1, +1}^d`` and projected, ``z = V^T w``.
    """

    def __init__(self, V, p, N, sigma2, task, label_root=None):
        self.V, self.N, self.sigma2, self.task = V, N, sigma2, task
        self.label_root = None if label_root is None else np.ascontiguousarray(np.asarray(label_root).T)
        self.K = V.shape[1]
        cdf = np.cumsum(p)
        cdf = np.minimum(cdf / cdf[-1], 1.0)
        cdf[-1] = 1.0
        self.cdf = cdf
        G = max(self.K, 16)
        self.guide = np.searchsorted(cdf, np.arange(G) / G, side="right").astype(np.int64)
        self._bufs = {}

    def draw(self, rng, B, query=None, reuse=False):
        """``(feats (B, N+1), z (B, K), noise (B, N) or (B, 0))``; ``query`` fixes ``x_q = v_query``.

        ``reuse=True`` writes into buffers kept from the previous call of the same size
        (valid until the next such call): fresh multi-megabyte arrays every step cost
        page faults comparable to the whole kernel.  The draws are the same either way.
        """
        N, K = self.N, self.K
        bufs = self._bufs.get(B) if reuse else None
        if bufs is None:
            bufs = (np.empty((B, N + 1)), np.empty((B, N + 1), dtype=np.int64), np.empty((B, K)),
                    np.empty((B, N)) if self.sigma2 > 0.0 else np.empty((B, 0)))
            if reuse:
                self._bufs = {B: bufs}
        u, feats, z, noise = bufs
        rng.random(out=u)
        _features_from_uniforms(u, self.cdf, self.guide, feats)
        if query is not None:
            feats[:, N] = query
        if self.task == "gaussian":
            rng.standard_normal(out=z)
            if self.label_root is not None:  # correlated labels z = R xi ~ N(0, M) (issue 20)
                z[...] = z @ self.label_root
        else:
            w = 2.0 * rng.integers(0, 2, size=(B, self.V.shape[0])).astype(np.float64) - 1.0
            np.matmul(w, self.V, out=z)
        if self.sigma2 > 0.0:
            rng.standard_normal(out=noise)
            noise *= np.sqrt(self.sigma2)
        return feats, z, noise


def prompt_losses_grads(theta, feats, z, noise, out=None):
    """Per-prompt losses ``(B,)`` and theta-column gradients ``(B, K)`` on one batch.

    ``out``: optional ``(loss, g)`` buffers to write into.

    Batches of fewer than ``_PARALLEL_MIN_TOKENS`` tokens run in one thread: below
    that, thread start-up and barrier waits cost more than they save (on a 2-core
    machine shared with other processes, many times more).
    """
    B, N1 = feats.shape
    K = theta.shape[0]
    loss, g = (np.empty(B), np.empty((B, K))) if out is None else out
    theta_cols = np.ascontiguousarray(theta.T)
    if B * N1 < _PARALLEL_MIN_TOKENS or numba.get_num_threads() == 1:
        _loss_grad_serial(theta_cols, feats, z, noise, loss, g)
    else:
        nchunks = min(B, 4 * numba.get_num_threads())
        _loss_grad_parallel(theta_cols, feats, z, noise, nchunks, loss, g)
    return loss, g


def mean_grad_theta(g, fq, K):
    """``G[n, k] = 1/B sum_{b : f_q = k} g_b[n]``: the batch-mean gradient w.r.t. ``theta``."""
    return _sum_rows_by_index(g, fq, K).T / g.shape[0]


# --------------------------------------------------------------------------- gradient estimate
def mc_gradient(Q, V, p, N, B, sigma2=0.0, task="gaussian", random_state=None):
    """Monte Carlo estimate of the population loss ``L(Q)`` and its gradient ``dL/dQ`` (MODEL.md 1, 5).

    ``L(Q) = 1/2 E[(yhat - <w, x_q>)^2]`` over prompts of ``N`` tokens (features
    ``~ p``), ``w`` from ``task`` and label noise ``N(0, sigma2)`` on the prompt labels.
    With orthonormal ``V`` the exact gradient is ``V (dL/dtheta) V^T``, ``theta = V^T Q V``
    (compare with :func:`dynamics.bruteforce.population_loss_grad_bruteforce`).

    Parameters
    ----------
    Q : ndarray (d, d)
    V : ndarray (d, K), orthonormal columns (the features).
    p : ndarray (K,), probability vector.
    N : int >= 1, prompt length.
    B : int >= 2, number of sampled prompts.
    sigma2 : float >= 0, label-noise variance.
    task : {"gaussian", "rademacher"}
    random_state : None, int, SeedSequence or Generator

    Returns
    -------
    loss_mean : float
        Mean of ``1/2 (yhat - y_q)^2`` over the B prompts.
    grad_mean : ndarray (d, d)
        Mean of the per-prompt gradients ``grad_Q``.
    grad_se : ndarray (d, d)
        Per-entry standard error: sample standard deviation (``ddof=1``) over the B
        prompts divided by ``sqrt(B)``.
    loss_se : float
        The same for the loss.
    """
    V = np.ascontiguousarray(V, dtype=np.float64)
    if V.ndim != 2:
        raise ValueError(f"V must be a (d, K) matrix; got shape {V.shape}")
    d, K = V.shape
    K, d = check_dims(K, d)
    V = validate.orthonormal_columns(V, K, d)
    Q = np.asarray(Q, dtype=np.float64)
    if Q.shape != (d, d) or not np.all(np.isfinite(Q)):
        raise ValueError(f"Q must be a finite ({d}, {d}) matrix; got shape {Q.shape}")
    p = check_p(p, K)
    N = validate.integer(N, "N", 1)
    B = validate.integer(B, "B", 2)
    sigma2 = validate.real(sigma2, "sigma2", positive=False)
    validate.choice(task, "task", TASKS)
    rng = spawn(random_state, 1)[0]

    theta = V.T @ Q @ V
    feats, z, noise = Sampler(V, p, N, sigma2, task).draw(rng, B)
    loss, g = prompt_losses_grads(theta, feats, z, noise)
    fq = np.ascontiguousarray(feats[:, N])
    grad_mean = V @ mean_grad_theta(g, fq, K) @ V.T
    # Prompt b's gradient is u_b v_{f_q}^T with u_b = V g_b, so the sum of squares of
    # entry (i, j) is sum_k V[j, k]^2 sum_{b: f_q = k} u_b[i]^2 : O(B d K), not O(B d^2).
    U = g @ V.T
    sumsq = _sum_rows_by_index(U * U, fq, K).T @ (V * V).T
    var = np.maximum(sumsq - B * grad_mean**2, 0.0) / (B - 1)
    grad_se = np.sqrt(var / B)
    return float(loss.mean()), grad_mean, grad_se, float(loss.std(ddof=1) / np.sqrt(B))


def frobenius(X):
    """Frobenius norm without overflow for finite entries near the float64 limit."""
    s = np.max(np.abs(X)) if X.size else 0.0
    return 0.0 if s == 0.0 else float(s * np.linalg.norm(X / s))


def evaluate_L_k(theta, sampler, rng, p, n_eval):
    """Stratified estimate of ``L_k`` (query fixed to ``v_k``, ``n_eval`` prompts each) and SEs."""
    K = theta.shape[0]
    L_k = np.empty(K)
    se = np.empty(K)
    for k in range(K):
        feats, z, noise = sampler.draw(rng, n_eval, query=k)
        loss, _ = prompt_losses_grads(theta, feats, z, noise)
        L_k[k] = loss.mean()
        se[k] = loss.std(ddof=1) / np.sqrt(n_eval)
    return L_k, se, float(p @ L_k), float(np.sqrt(np.sum((p * se) ** 2)))

