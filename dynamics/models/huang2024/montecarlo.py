"""Monte Carlo training of the full ``d x d`` matrix ``Q`` of Huang, Cheng, Liang (MODEL.md section 5):
the full-matrix view of one run, with every feature's ``theta`` and ``L_k``.

:func:`train_mc` and :func:`run_replicas` run the generic trainer
(:func:`dynamics.methods.montecarlo.run_mc`) on :class:`~.model.Huang2024` with its Monte Carlo
kernels (:mod:`.mc_kernels`), but record the full ``K x K`` scores ``theta = V^T Q V`` and the
per-feature ``L_k`` instead of class averages, accept a given ``V`` and ``Q0``, and keep every
step's batch loss.  ``python -m dynamics.simulate --method mc`` and the cross-check use the class
averages of the same runs.

- ``mode="online"``: online SGD, ``B`` fresh prompts per step.
- ``mode="empirical"``: full-batch GD on one fixed training set of ``M`` prompts (the paper's
  experimental protocol, ``M = 300``).
- ``L_k`` is estimated on a separate, stratified evaluation set (query fixed to ``v_k``, ``n_eval``
  prompts each) drawn from its own stream, so recording never changes the training run.
- A non-finite ``Q``, ``theta`` or loss raises :class:`DivergenceError`, whose ``result`` keeps the
  records made so far.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from dynamics.core import validate
from dynamics.core.contract import Observable
from dynamics.core.errors import SimulationDiverged
from dynamics.core.trajectory import Recorder, snapshot_steps
from dynamics.methods.montecarlo import run_mc
from dynamics.models.huang2024 import mc_kernels as kern
from dynamics.models.huang2024.mc_kernels import make_features, mc_gradient  # noqa: F401 (public API)

__all__ = ["make_features", "mc_gradient", "train_mc", "run_replicas", "MCResult", "DivergenceError"]
MODES = ("online", "empirical")
DEFAULT_RECORDS = 40
"""Default number of log-spaced records (the paper's time scales span decades)."""


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
        separate evaluation set, and its standard error.  ``None`` when ``n_eval = 0``.
    loss, loss_se : ndarray ([R,] T)
        Population loss estimate ``L = sum_k p_k L_k`` from the same evaluation set, and its SE.
    off_span : ndarray ([R,] T)
        ``||Q - V V^T Q V V^T||_F``, the part of ``Q`` outside ``span{v_n v_k^T}``.
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

    ``step``: the first step at which a non-finite value was seen; ``result``: the records made
    before that step (``train_loss`` up to it).
    """

    def __init__(self, message, step, result):
        super().__init__(message)
        self.step = step
        self.result = result


class _FullView:
    """The full-matrix model for :func:`run_mc` (the hooks of rule 8 of the contract): state ``Q``,
    observables the full ``theta`` and per-feature ``L_k`` (any K >= 1, given V and Q0)."""

    def __init__(self, V, Q0, p, N, sigma2, task, eta, n_eval):
        self.V, self.Q0, self.p, self.N, self.eta, self.n_eval = V, Q0, p, N, eta, n_eval
        self.sampler = kern.Sampler(V, p, N, sigma2, task)

    def learning_rates(self, method):
        return {"Q": self.eta}

    def divergence_hint(self, method):
        return f"try a smaller eta (eta = {self.eta:g} now)"

    def initial_state(self, method, rng):
        return {"Q": self.Q0.copy()}

    def sample(self, rng, size):
        return self.sampler.draw(rng, size)

    def theta(self, Q):
        with np.errstate(all="ignore"):  # an overflow is reported below, as a divergence
            th = self.V.T @ Q @ self.V
        if not np.all(np.isfinite(th)):
            raise FloatingPointError("Q or theta = V^T Q V is not finite")
        return th

    def batch_loss_grad(self, state, batch):
        th = self.theta(state["Q"])
        feats, z, noise = batch
        loss, g = kern.prompt_losses_grads(th, feats, z, noise)
        G = kern.mean_grad_theta(g, np.ascontiguousarray(feats[:, self.N]), th.shape[0])
        return float(loss.mean()), {"Q": self.V @ G @ self.V.T}

    def observe(self, state, method, rng=None):
        Q = state["Q"]
        th = self.theta(Q)
        out = {"theta": th, "off_span": kern.frobenius(Q - self.V @ th @ self.V.T)}
        if self.n_eval:
            L_k, se, L, L_se = kern.evaluate_L_k(th, self.sampler, rng, self.p, self.n_eval)
            out.update(L_feature=L_k, L_feature_se=se, L=L, L_se=L_se)
        return out


def train_mc(K, d, p, N, eta, steps, *, mode="online", B=256, M=300, sigma2=0.0, V=None, Q0=None, task="gaussian",
             features="random", record_at=None, n_eval=500, random_state=None):
    """Train the full ``d x d`` matrix ``Q`` by Monte Carlo gradient descent (MODEL.md section 5).

    Each step computes ``theta = V^T Q V`` from the current ``Q``, the per-prompt predictions
    ``yhat = sum_i Attn_i y_i`` and gradients ``grad_Q = (yhat - y_q) sum_i attn_i (y_i - yhat)
    x_i x_q^T`` on a set of prompts, and steps ``Q <- Q - eta * mean(grad_Q)``: in expectation
    the paper's GD on the population loss ``L(Q)``, whose exact counterpart in the reduced
    coordinates is ``theta <- theta - eta dL/dtheta`` (MODEL.md section 2).

    Parameters
    ----------
    K, d : int
        Features and dimension, ``d >= K``.
    p : ndarray (K,) or None
        Feature probabilities (``None``: balanced, ``p_k = 1/K``).
    N : int >= 1
        Prompt length.  ``eta``: step size > 0; ``steps``: number of updates >= 0.
    mode : {"online", "empirical"}
        Online SGD with ``B`` fresh prompts per step, or full-batch GD on ``M`` fixed prompts.
    sigma2 : float >= 0
        Variance of the label noise on the prompt labels ``y_i`` (the target is noise-free).
    V : ndarray (d, K), optional
        Orthonormal features; default :func:`make_features` of kind ``features``.
    Q0 : ndarray (d, d), optional
        Initial ``Q`` (default zeros, as in the paper).
    task : {"gaussian", "rademacher"}
        Law of ``w`` (both zero mean, identity covariance: the same population loss).
    record_at : array of int in ``[0, steps]``, optional
        Steps at which to record (default: about 40 log-spaced steps and 0).
    n_eval : int, 0 or >= 2
        Evaluation prompts per query feature for ``L_k`` (0: do not estimate ``L_k``).
    random_state : None, int, SeedSequence or numpy.random.Generator
        Two independent children: the features, and the run's streams (training set, batches,
        evaluation; :func:`dynamics.methods.montecarlo.replica_streams`).

    Raises
    ------
    ValueError
        For an argument outside its domain; the message names the argument and the rule.
    DivergenceError
        When ``Q``, ``theta`` or the loss becomes non-finite.
    """
    return run_replicas(1, K, d, p, N, eta, steps, mode=mode, B=B, M=M, sigma2=sigma2, V=V, Q0=Q0, task=task,
                        features=features, record_at=record_at, n_eval=n_eval, random_state=random_state,
                        _single=True)


def run_replicas(R, K, d, p, N, eta, steps, *, V=None, features="random", random_state=None, mode="online", B=256,
                 M=300, sigma2=0.0, Q0=None, task="gaussian", record_at=None, n_eval=500, _single=False):
    """``R`` independent replicas of :func:`train_mc`, stacked along a leading axis.

    The replicas share one ``V`` (given, or drawn once) and get independent streams.  A replica
    that diverges raises its :class:`DivergenceError`, with the replica index in the message.
    """
    R = validate.integer(R, "R", 1)
    K, d = kern.check_dims(K, d)
    p = kern.check_p(p, K)
    N = validate.integer(N, "N", 1)
    eta = validate.real(eta, "eta", positive=True)
    steps = validate.integer(steps, "steps", 0)
    validate.choice(mode, "mode", MODES)
    B = validate.integer(B, "B", 1)
    M = validate.integer(M, "M", 1)
    sigma2 = validate.real(sigma2, "sigma2", positive=False)
    validate.choice(task, "task", kern.TASKS)
    validate.choice(features, "features", ("random", "standard"))
    n_eval = validate.integer(n_eval, "n_eval", 0)
    if n_eval == 1:
        raise ValueError("n_eval must be 0 (no evaluation) or >= 2 (a standard error needs two prompts)")
    rec = _check_record_at(record_at, steps)
    rng_v, run_stream = kern.spawn(random_state, 2)
    V = make_features(K, d, kind=features, random_state=rng_v) if V is None else validate.orthonormal_columns(V, K, d)
    if Q0 is None:
        Q0 = np.zeros((d, d))
    Q0 = np.array(Q0, dtype=np.float64)
    if Q0.shape != (d, d) or not np.all(np.isfinite(Q0)):
        raise ValueError(f"Q0 must be a finite ({d}, {d}) matrix; got shape {Q0.shape}")
    view = _FullView(V, Q0, p, N, sigma2, task, eta, n_eval)
    obs = {"theta": Observable(("key_feature", "query_feature"), "theta", "V^T Q V"),
           "off_span": Observable((), "", ""), "L_feature": Observable(("query_feature",), "L_k", ""),
           "L": Observable((), "L", ""), "train_loss": Observable((), "", "")}
    recorder = Recorder(obs, {}, rec, replicas=R)
    trace = np.full((R, steps), np.nan)
    empirical = mode == "empirical"
    try:
        final, _ = run_mc(view, steps=steps, save_at=rec, recorder=recorder, seed=run_stream, replicas=R,
                          batch=M if empirical else B, train_set=M if empirical else 0, trace=trace)
    except SimulationDiverged as err:
        r, step, times = err.result[0], err.result[1], err.result[2]
        msg = str(err) if R == 1 else f"replica {r}: {err}"
        res = _result(recorder, rec, trace, None, V, p, N, eta, mode, M if empirical else B, sigma2, task,
                      n=len(times), r=r, step=step, single=True)
        raise DivergenceError(msg, step, res) from None
    return _result(recorder, rec, trace, final["Q"], V, p, N, eta, mode, M if empirical else B, sigma2, task,
                   single=_single)


def _result(recorder, rec, trace, Q, V, p, N, eta, mode, batch, sigma2, task, n=None, r=None, step=None,
            single=False):
    a = recorder.arrays
    T = rec.size if n is None else max(int(n), 0)
    K = V.shape[1]

    def cut(name, shape=()):
        if name not in a:
            return np.full((a["theta"].shape[0] if "theta" in a else 1, T) + shape, np.nan)
        return a[name][:, :T]

    theta, off = cut("theta", (K, K)), cut("off_span")
    L_k = cut("L_feature", (K,)) if "L_feature" in a else None
    L_k_se = cut("L_feature_se", (K,)) if "L_feature_se" in a else None
    loss = cut("L") if "L" in a else None
    loss_se = cut("L_se") if "L_se" in a else None
    tl = trace if step is None else trace[:, :step]
    fields = dict(theta=theta, L_k=L_k, L_k_se=L_k_se, loss=loss, loss_se=loss_se, off_span=off, train_loss=tl)
    if single:
        i = 0 if r is None else r
        fields = {k: None if v is None else v[i] for k, v in fields.items()}
    return MCResult(step=rec[:T].copy(), Q=Q if Q is None or not single else Q[0], V=V, p=p, N=N, eta=eta,
                    mode=mode, batch=batch, sigma2=sigma2, task=task, **fields)


def _check_record_at(record_at, steps):
    if record_at is None:
        return snapshot_steps(steps, DEFAULT_RECORDS)
    r = np.asarray(record_at)
    if r.ndim != 1 or (r.size and not np.issubdtype(r.dtype, np.integer)):
        raise ValueError("record_at must be a 1-d array of integer step indices")
    if r.size and (r.min() < 0 or r.max() > steps):
        raise ValueError(f"record_at entries must lie in [0, steps] = [0, {steps}]")
    return np.unique(r.astype(np.int64))
