"""Monte Carlo training of the full ``d x d`` matrix ``Q`` on sampled prompts (MODEL.md section 5).

This is the simulation that the exact population dynamics is checked against.  It
keeps the real ``d x d`` attention matrix ``Q`` as its state (not the reduced
coordinates), samples whole prompts of the paper's data model (MODEL.md section 1),
and steps ``Q <- Q - eta * grad_Q`` with the per-prompt gradient of
``1/2 (yhat - y_q)^2``::

    yhat   = sum_i attn_i y_i,   attn_i = exp(x_i^T Q x_q) / sum_j exp(x_j^T Q x_q),
    grad_Q = (yhat - y_q) * sum_i attn_i (y_i - yhat) x_i x_q^T.

Tokens are features, ``x_i = v_{f_i}`` with ``f_i ~ p``, so a score is an entry of
the ``K x K`` matrix ``theta = V^T Q V`` (``theta[n, k] = v_n^T Q v_k``; the paper's
``A_k = theta[k, k]`` and ``B_{k,n} = theta[n, k]``) and the gradient is
``V G V^T`` for a ``K x K`` matrix ``G`` of accumulated coefficients.  The kernel
uses these two facts for speed, but every step recomputes ``theta`` from the
current ``Q`` and updates ``Q`` with the ``d x d`` gradient, so the claims of
MODEL.md section 2 ("GD on Q is GD on theta"; "the part of Q outside
``span{v_n v_k^T}`` never moves") are *tested* by this module, not assumed.

Random draws (query and key features, task vectors, label noise) are made
sequentially with :class:`numpy.random.Generator` outside the parallel kernels;
the kernels only map given uniforms and normals to predictions and gradients.
For ``w ~ N(0, I_d)`` the labels depend on ``w`` only through ``V^T w ~ N(0, I_K)``,
which is drawn directly (equal in law); Rademacher ``w`` is drawn in ``R^d``.

Choices made here (documented where they act):

- ``L_k`` is recorded from a separate, stratified evaluation set (query fixed to
  ``v_k``), drawn from its own stream, so recording never changes the training run.
- A run whose ``Q``, ``theta`` or loss becomes non-finite raises
  :class:`DivergenceError`, whose ``result`` attribute keeps the records made so far.

Public API: :func:`make_features`, :func:`mc_gradient`, :func:`train_mc`,
:func:`run_replicas`, :class:`MCResult`, :class:`DivergenceError`.
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Optional

import numba
import numpy as np

from dynamics.core.jit import jit

__all__ = ["make_features", "mc_gradient", "train_mc", "run_replicas", "MCResult", "DivergenceError"]

_ORTHO_TOL = 1e-10  # max |V^T V - I| accepted as "orthonormal"
_P_TOL = 1e-9  # |sum(p) - 1| accepted as "a probability vector"
_TASKS = ("gaussian", "rademacher")
_MODES = ("online", "empirical")
_PARALLEL_MIN_TOKENS = 50_000  # work (B (N + 1) tokens, or d^2 K) from which kernels run in parallel


# --------------------------------------------------------------------------- validation
def _as_int(value, name, minimum):
    try:
        iv = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}") from None
    if iv < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {name}={iv}")
    return int(iv)


def _check_dims(K, d):
    K = _as_int(K, "K", 1)
    d = _as_int(d, "d", 1)
    if d < K:
        raise ValueError(f"d must be >= K (K orthonormal features need dimension d >= K); got d={d}, K={K}")
    return K, d


def _check_V(V, K, d):
    V = np.ascontiguousarray(V, dtype=np.float64)
    if V.shape != (d, K):
        raise ValueError(f"V must have shape (d, K) = ({d}, {K}); got {V.shape}")
    if not np.all(np.isfinite(V)):
        raise ValueError("V must be finite")
    err = np.max(np.abs(V.T @ V - np.eye(K)))
    if err > _ORTHO_TOL:
        raise ValueError(f"V must have orthonormal columns (|V^T V - I| <= {_ORTHO_TOL:g}); got max error {err:.3g}")
    return V


def _check_p(p, K):
    if p is None:
        return np.full(K, 1.0 / K)
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (K,):
        raise ValueError(f"p must be a probability vector of length K={K}; got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0.0) or abs(p.sum() - 1.0) > _P_TOL:
        raise ValueError(f"p must be a probability vector (entries >= 0, sum 1 within {_P_TOL:g}); got {p!r}")
    return p / p.sum()


def _check_float(value, name, *, positive):
    v = float(value)
    if not np.isfinite(v) or (v <= 0.0 if positive else v < 0.0):
        rule = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {rule}; got {name}={value!r}")
    return v


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value


def _spawn(random_state, n):
    """``n`` independent Generators from an int / None / SeedSequence / Generator (SeedSequence.spawn)."""
    if isinstance(random_state, np.random.Generator):
        return random_state.spawn(n)
    if isinstance(random_state, np.random.SeedSequence):
        seqs = random_state.spawn(n)
    elif random_state is None or isinstance(random_state, (int, np.integer)):
        seqs = np.random.SeedSequence(random_state).spawn(n)
    else:
        raise ValueError(f"random_state must be None, an int, a SeedSequence or a numpy Generator; got {random_state!r}")
    return [np.random.Generator(np.random.PCG64(s)) for s in seqs]


def _as_generator(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    return _spawn(random_state, 1)[0]


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
    K, d = _check_dims(K, d)
    _check_choice(kind, "kind", ("random", "standard"))
    if kind == "standard":
        return np.ascontiguousarray(np.eye(d, K))
    G = _as_generator(random_state).standard_normal((d, K))
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
    feature; ``z[b, n] = <w_b, v_n>``; ``noise`` is ``(B, N)`` label noise or ``(0, 0)``
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
        if noise.shape[0] > 0:
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


@jit
def _update_rows(Q, V, G, eta, lo, hi, vg, QV):  # pragma: no cover - numba
    """Rows ``lo..hi-1`` of ``Q <- Q - eta V G V^T`` and then of ``QV = Q V``; ``vg`` is scratch (K,)."""
    d, K = V.shape
    for i in range(lo, hi):
        for k in range(K):
            vg[k] = 0.0
        for n in range(K):
            v = V[i, n]
            for k in range(K):
                vg[k] += v * G[n, k]
        for k in range(K):
            QV[i, k] = 0.0
        for j in range(d):
            s = 0.0
            for k in range(K):
                s += vg[k] * V[j, k]
            q = Q[i, j] - eta * s  # the d x d gradient entry (V G V^T)[i, j] is s
            Q[i, j] = q
            for k in range(K):
                QV[i, k] += q * V[j, k]


@jit
def _theta_rows(V, QV, lo, hi, theta):  # pragma: no cover - numba
    """Rows ``lo..hi-1`` of ``theta = V^T (Q V)``."""
    d, K = V.shape
    for n in range(lo, hi):
        for k in range(K):
            theta[n, k] = 0.0
        for i in range(d):
            v = V[i, n]
            for k in range(K):
                theta[n, k] += v * QV[i, k]


@jit
def _step_serial(Q, V, G, eta, theta):  # pragma: no cover - numba
    """In place: ``Q <- Q - eta V G V^T``, then ``theta <- V^T Q V`` (one thread)."""
    d, K = V.shape
    QV = np.empty((d, K))
    _update_rows(Q, V, G, eta, 0, d, np.empty(K), QV)
    _theta_rows(V, QV, 0, K, theta)


@jit(parallel=True)
def _step_parallel(Q, V, G, eta, theta, nchunks):  # pragma: no cover - numba
    """:func:`_step_serial` with the rows split into ``nchunks`` parallel chunks."""
    d, K = V.shape
    QV = np.empty((d, K))
    cd = (d + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        _update_rows(Q, V, G, eta, c * cd, min(d, (c + 1) * cd), np.empty(K), QV)
    ck = (K + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        _theta_rows(V, QV, c * ck, min(K, (c + 1) * ck), theta)


def _step(Q, V, G, eta, theta):
    """``Q <- Q - eta V G V^T`` (the d x d gradient step) and ``theta <- V^T Q V``, in place.

    Written as numba loops rather than BLAS calls: numpy's threaded BLAS and numba's
    thread pool, alternating every step, make each other wait (measured 2x slower
    per step at d = K = 100 on 2 cores).
    """
    d, K = V.shape
    if d * d * K < _PARALLEL_MIN_TOKENS or numba.get_num_threads() == 1:
        _step_serial(Q, V, G, eta, theta)
    else:
        _step_parallel(Q, V, G, eta, theta, min(K, 2 * numba.get_num_threads()))


# --------------------------------------------------------------------------- sampling
class _Sampler:
    """Draws prompts of the data model (MODEL.md section 1) from one Generator.

    For ``task="gaussian"`` the labels need ``w`` only through ``z = V^T w``, and for
    ``w ~ N(0, I_d)`` with orthonormal ``V`` this is exactly ``N(0, I_K)``: ``z`` is
    drawn directly (equal in law, ``d`` times cheaper).  For ``task="rademacher"``
    ``w`` is drawn in ``{-1, +1}^d`` and projected, ``z = V^T w``.
    """

    def __init__(self, V, p, N, sigma2, task):
        self.V, self.N, self.sigma2, self.task = V, N, sigma2, task
        self.K = V.shape[1]
        cdf = np.cumsum(p)
        cdf = np.minimum(cdf / cdf[-1], 1.0)
        cdf[-1] = 1.0
        self.cdf = cdf
        G = max(self.K, 16)
        self.guide = np.searchsorted(cdf, np.arange(G) / G, side="right").astype(np.int64)
        self._bufs = {}

    def draw(self, rng, B, query=None, reuse=False):
        """``(feats (B, N+1), z (B, K), noise (B, N) or (0, 0))``; ``query`` fixes ``x_q = v_query``.

        ``reuse=True`` writes into buffers kept from the previous call of the same size
        (valid until the next such call): fresh multi-megabyte arrays every step cost
        page faults comparable to the whole kernel.  The draws are the same either way.
        """
        N, K = self.N, self.K
        bufs = self._bufs.get(B) if reuse else None
        if bufs is None:
            bufs = (np.empty((B, N + 1)), np.empty((B, N + 1), dtype=np.int64), np.empty((B, K)),
                    np.empty((B, N)) if self.sigma2 > 0.0 else np.empty((0, 0)))
            if reuse:
                self._bufs = {B: bufs}
        u, feats, z, noise = bufs
        rng.random(out=u)
        _features_from_uniforms(u, self.cdf, self.guide, feats)
        if query is not None:
            feats[:, N] = query
        if self.task == "gaussian":
            rng.standard_normal(out=z)
        else:
            w = 2.0 * rng.integers(0, 2, size=(B, self.V.shape[0])).astype(np.float64) - 1.0
            np.matmul(w, self.V, out=z)
        if self.sigma2 > 0.0:
            rng.standard_normal(out=noise)
            noise *= np.sqrt(self.sigma2)
        return feats, z, noise


def _batch(theta, feats, z, noise, out=None):
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


def _mean_grad_theta(g, fq, K):
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
    K, d = _check_dims(K, d)
    V = _check_V(V, K, d)
    Q = np.asarray(Q, dtype=np.float64)
    if Q.shape != (d, d) or not np.all(np.isfinite(Q)):
        raise ValueError(f"Q must be a finite ({d}, {d}) matrix; got shape {Q.shape}")
    p = _check_p(p, K)
    N = _as_int(N, "N", 1)
    B = _as_int(B, "B", 2)
    sigma2 = _check_float(sigma2, "sigma2", positive=False)
    _check_choice(task, "task", _TASKS)
    rng = _as_generator(random_state)

    theta = V.T @ Q @ V
    feats, z, noise = _Sampler(V, p, N, sigma2, task).draw(rng, B)
    loss, g = _batch(theta, feats, z, noise)
    fq = np.ascontiguousarray(feats[:, N])
    grad_mean = V @ _mean_grad_theta(g, fq, K) @ V.T
    # Prompt b's gradient is u_b v_{f_q}^T with u_b = V g_b, so the sum of squares of
    # entry (i, j) is sum_k V[j, k]^2 sum_{b: f_q = k} u_b[i]^2 : O(B d K), not O(B d^2).
    U = g @ V.T
    sumsq = _sum_rows_by_index(U * U, fq, K).T @ (V * V).T
    var = np.maximum(sumsq - B * grad_mean**2, 0.0) / (B - 1)
    grad_se = np.sqrt(var / B)
    return float(loss.mean()), grad_mean, grad_se, float(loss.std(ddof=1) / np.sqrt(B))


# --------------------------------------------------------------------------- training
@dataclasses.dataclass
class MCResult:
    """Records of a Monte Carlo training run (:func:`train_mc`) or of R replicas (:func:`run_replicas`).

    Arrays carry a leading replica axis ``R`` when produced by :func:`run_replicas`;
    ``T`` is the number of recorded steps.

    Attributes
    ----------
    step : ndarray (T,) int
        Recorded step indices: the state after ``step`` updates (0 is ``Q0``).
    theta : ndarray ([R,] T, K, K)
        ``theta = V^T Q V``: ``theta[n, k] = v_n^T Q v_k``; the paper's ``A_k = theta[k, k]``,
        ``B_{k,n} = theta[n, k]`` (MODEL.md section 2).
    L_k, L_k_se : ndarray ([R,] T, K)
        Per-feature prediction error ``L_k = 1/2 E[(yhat - y_q)^2 | x_q = v_k]`` estimated on a
        *separate evaluation set*: ``n_eval`` fresh prompts per feature with the query fixed to
        ``v_k``, drawn from a stream independent of training (so recording never changes the
        training trajectory); and its standard error.  ``None`` when ``n_eval = 0``.
    loss, loss_se : ndarray ([R,] T)
        Population loss estimate ``L = sum_k p_k L_k`` from the same evaluation set, and its SE.
        ``None`` when ``n_eval = 0``.
    off_span : ndarray ([R,] T)
        ``||Q - V V^T Q V V^T||_F``, the part of ``Q`` outside ``span{v_n v_k^T}``; stays at
        rounding level when ``Q0`` lies in the span (MODEL.md section 2).
    train_loss : ndarray ([R,] steps)
        Loss of the batch (online) or of the training set (empirical) at each step, at ``Q``
        before that step's update.
    Q : ndarray ([R,] d, d)
        Final ``Q``.
    V : ndarray (d, K)
        The features used (shared by all replicas).
    """

    step: np.ndarray
    theta: np.ndarray
    L_k: Optional[np.ndarray]
    L_k_se: Optional[np.ndarray]
    loss: Optional[np.ndarray]
    loss_se: Optional[np.ndarray]
    off_span: np.ndarray
    train_loss: np.ndarray
    Q: np.ndarray
    V: np.ndarray
    p: np.ndarray
    N: int
    eta: float
    mode: str
    batch: int
    sigma2: float
    task: str

    @property
    def A(self):
        """The paper's ``A_k = theta[k, k]``, shape ``([R,] T, K)``."""
        return np.diagonal(self.theta, axis1=-2, axis2=-1)


class DivergenceError(RuntimeError):
    """A Monte Carlo run produced a non-finite ``Q``, ``theta`` or loss.

    Attributes
    ----------
    step : int
        The first step at which a non-finite value was seen.
    result : MCResult
        The records made before that step (``train_loss`` up to it).
    """

    def __init__(self, message, step, result):
        super().__init__(message)
        self.step = step
        self.result = result


def _fro(X):
    """Frobenius norm without overflow for finite entries near the float64 limit."""
    s = np.max(np.abs(X)) if X.size else 0.0
    return 0.0 if s == 0.0 else float(s * np.linalg.norm(X / s))


def _default_record_at(steps):
    if steps == 0:
        return np.zeros(1, dtype=np.int64)
    # Log-spaced snapshots: the paper's time scales span decades (stage-wise learning).
    return np.unique(np.r_[0, np.round(np.geomspace(1, steps, 40))].astype(np.int64))


def _check_record_at(record_at, steps):
    if record_at is None:
        return _default_record_at(steps)
    r = np.asarray(record_at)
    if r.ndim != 1 or (r.size and not np.issubdtype(r.dtype, np.integer)):
        raise ValueError("record_at must be a 1-d array of integer step indices")
    if r.size and (r.min() < 0 or r.max() > steps):
        raise ValueError(f"record_at entries must lie in [0, steps] = [0, {steps}]")
    return np.unique(r.astype(np.int64))


def _evaluate(theta, sampler, rng, p, n_eval):
    """Stratified estimate of ``L_k`` (query fixed to ``v_k``, ``n_eval`` prompts each) and SEs."""
    K = theta.shape[0]
    L_k = np.empty(K)
    se = np.empty(K)
    for k in range(K):
        feats, z, noise = sampler.draw(rng, n_eval, query=k)
        loss, _ = _batch(theta, feats, z, noise)
        L_k[k] = loss.mean()
        se[k] = loss.std(ddof=1) / np.sqrt(n_eval)
    return L_k, se, float(p @ L_k), float(np.sqrt(np.sum((p * se) ** 2)))


def train_mc(
    K,
    d,
    p,
    N,
    eta,
    steps,
    *,
    mode="online",
    B=256,
    M=300,
    sigma2=0.0,
    V=None,
    Q0=None,
    task="gaussian",
    features="random",
    record_at=None,
    n_eval=500,
    random_state=None,
):
    """Train the full ``d x d`` matrix ``Q`` by Monte Carlo gradient descent (MODEL.md section 5).

    Each step computes ``theta = V^T Q V`` from the current ``Q``, the per-prompt
    predictions ``yhat = sum_i Attn_i y_i`` and gradients
    ``grad_Q = (yhat - y_q) sum_i attn_i (y_i - yhat) x_i x_q^T`` on a set of prompts,
    and steps ``Q <- Q - eta * mean(grad_Q)``.  In expectation over prompts this is the
    paper's GD on the population loss ``L(Q)``; the exact counterpart in the reduced
    coordinates is ``theta <- theta - eta dL/dtheta`` (MODEL.md section 2).

    Parameters
    ----------
    K, d : int
        Features and dimension, ``d >= K``.
    p : ndarray (K,) or None
        Feature probabilities (``None``: balanced, ``p_k = 1/K``).
    N : int >= 1
        Prompt length.
    eta : float > 0
        Step size.
    steps : int >= 0
        Number of updates.
    mode : {"online", "empirical"}
        ``"online"``: online SGD, a fresh batch of ``B`` prompts every step.
        ``"empirical"``: full-batch GD on a fixed training set of ``M`` prompts drawn once
        (the paper's experimental protocol, ``M = 300`` there).
    B, M : int >= 1
        Batch size (online) and training-set size (empirical).
    sigma2 : float >= 0
        Variance of the label noise on the prompt labels ``y_i`` (the target is noise-free).
    V : ndarray (d, K), optional
        Orthonormal features; default :func:`make_features` of kind ``features``.
    Q0 : ndarray (d, d), optional
        Initial ``Q`` (default zeros, as in the paper).
    task : {"gaussian", "rademacher"}
        Law of ``w``: ``N(0, I_d)`` or uniform on ``{-1, +1}^d`` (both zero mean, identity
        covariance, so both have the same population loss).
    features : {"random", "standard"}
        Kind of ``V`` drawn when ``V`` is not given.
    record_at : array of int in ``[0, steps]``, optional
        Steps at which to record (default: about 40 log-spaced steps and 0).
    n_eval : int, 0 or >= 2
        Evaluation prompts per query feature for ``L_k`` (0: do not estimate ``L_k``).
    random_state : None, int, SeedSequence or numpy.random.Generator
        Three independent children are spawned: features, training prompts, evaluation prompts.

    Returns
    -------
    MCResult

    Raises
    ------
    ValueError
        For an argument outside its domain; the message names the argument and the rule.
    DivergenceError
        When ``Q``, ``theta`` or the loss becomes non-finite; its ``result`` holds the
        records made so far and its ``step`` the step where it happened.
    """
    K, d = _check_dims(K, d)
    p = _check_p(p, K)
    N = _as_int(N, "N", 1)
    eta = _check_float(eta, "eta", positive=True)
    steps = _as_int(steps, "steps", 0)
    _check_choice(mode, "mode", _MODES)
    B = _as_int(B, "B", 1)
    M = _as_int(M, "M", 1)
    sigma2 = _check_float(sigma2, "sigma2", positive=False)
    _check_choice(task, "task", _TASKS)
    _check_choice(features, "features", ("random", "standard"))
    n_eval = _as_int(n_eval, "n_eval", 0)
    if n_eval == 1:
        raise ValueError("n_eval must be 0 (no evaluation) or >= 2 (a standard error needs two prompts)")
    rec = _check_record_at(record_at, steps)
    rng_v, rng_train, rng_eval = _spawn(random_state, 3)
    V = make_features(K, d, kind=features, random_state=rng_v) if V is None else _check_V(V, K, d)
    if Q0 is None:
        Q = np.zeros((d, d))
    else:
        Q = np.array(Q0, dtype=np.float64)
        if Q.shape != (d, d) or not np.all(np.isfinite(Q)):
            raise ValueError(f"Q0 must be a finite ({d}, {d}) matrix; got shape {Q.shape}")

    sampler = _Sampler(V, p, N, sigma2, task)
    batch = B if mode == "online" else M
    if mode == "empirical":
        fixed = sampler.draw(rng_train, M)
    T = rec.size
    theta_rec = np.full((T, K, K), np.nan)
    off_rec = np.full(T, np.nan)
    Lk_rec = Lk_se_rec = loss_rec = loss_se_rec = None
    if n_eval > 0:
        Lk_rec, Lk_se_rec = np.full((T, K), np.nan), np.full((T, K), np.nan)
        loss_rec, loss_se_rec = np.full(T, np.nan), np.full(T, np.nan)
    train_loss = np.full(steps, np.nan)

    def result(n_rec, n_steps):
        cut = (lambda a: None if a is None else a[:n_rec].copy())
        return MCResult(
            step=rec[:n_rec].copy(), theta=cut(theta_rec), L_k=cut(Lk_rec), L_k_se=cut(Lk_se_rec),
            loss=cut(loss_rec), loss_se=cut(loss_se_rec), off_span=cut(off_rec),
            train_loss=train_loss[:n_steps].copy(), Q=Q.copy(), V=V, p=p, N=N, eta=eta, mode=mode,
            batch=batch, sigma2=sigma2, task=task,
        )

    def diverge(t, what, n_rec):
        msg = (f"Monte Carlo training diverged at step {t}: {what} is not finite "
               f"(eta={eta:g}); try a smaller eta. The records made so far are in .result")
        return DivergenceError(msg, t, result(n_rec, t))

    work = (np.empty(batch), np.empty((batch, K)))  # per-prompt losses and gradients, reused
    theta = np.empty((K, K))
    _step(Q, V, np.zeros((K, K)), 0.0, theta)  # theta = V^T Q0 V; Q unchanged
    j = 0  # next record
    for t in range(steps + 1):
        # here theta = V^T Q V of the current Q (recomputed from Q after every update)
        if not (np.all(np.isfinite(Q)) and np.all(np.isfinite(theta))):
            raise diverge(t, "Q or theta = V^T Q V", j)
        if j < T and rec[j] == t:
            theta_rec[j] = theta
            off_rec[j] = _fro(Q - V @ theta @ V.T)
            if n_eval > 0:
                Lk_rec[j], Lk_se_rec[j], loss_rec[j], loss_se_rec[j] = _evaluate(theta, sampler, rng_eval, p, n_eval)
            j += 1
        if t == steps:
            break
        feats, z, noise = fixed if mode == "empirical" else sampler.draw(rng_train, B, reuse=True)
        loss, g = _batch(theta, feats, z, noise, out=work)
        train_loss[t] = loss.mean()
        if not np.isfinite(train_loss[t]):
            raise diverge(t, "the loss", j)
        G = _mean_grad_theta(g, np.ascontiguousarray(feats[:, N]), K)
        _step(Q, V, G, eta, theta)  # Q <- Q - eta * grad_Q (d x d), theta <- V^T Q V
    return result(T, steps)


def run_replicas(R, K, d, p, N, eta, steps, *, V=None, features="random", random_state=None, **kwargs):
    """``R`` independent replicas of :func:`train_mc`, stacked along a leading axis.

    The replicas share one ``V`` (given, or drawn once) and get independent streams
    (``SeedSequence.spawn``: child 0 draws ``V``, children ``1..R`` the replicas).
    Keyword arguments go to :func:`train_mc`.  A replica that diverges raises its
    :class:`DivergenceError`, with the replica index in the message.

    Returns
    -------
    MCResult
        Fields ``theta, L_k, L_k_se, loss, loss_se, off_span, train_loss, Q`` have a
        leading axis of length ``R``.
    """
    R = _as_int(R, "R", 1)
    K, d = _check_dims(K, d)
    rngs = _spawn(random_state, R + 1)
    V = make_features(K, d, kind=features, random_state=rngs[0]) if V is None else _check_V(V, K, d)
    runs = []
    for r in range(R):
        try:
            runs.append(train_mc(K, d, p, N, eta, steps, V=V, random_state=rngs[r + 1], **kwargs))
        except DivergenceError as err:
            raise DivergenceError(f"replica {r}: {err}", err.step, err.result) from err
    stacked = {}
    for f in ("theta", "L_k", "L_k_se", "loss", "loss_se", "off_span", "train_loss", "Q"):
        vals = [getattr(run, f) for run in runs]
        stacked[f] = None if vals[0] is None else np.stack(vals)
    first = runs[0]
    return dataclasses.replace(first, **stacked)
