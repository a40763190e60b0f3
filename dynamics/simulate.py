"""Exact training dynamics of one-layer softmax attention: the main job of icl-dynamics.

``simulate(...)`` iterates the paper's gradient descent ``Q <- Q - eta grad L(Q)`` from
``Q^(0) = 0`` exactly (population gradient, no sampling) on the reduced coordinates ``A_k``,
``B_{k,n}`` (MODEL.md section 2), or integrates the gradient flow ``d theta / d tau = -grad L``
with time reported in GD steps ``t = tau / eta``.  ``python -m dynamics.simulate`` runs it from
flags or a TOML file and writes a run directory (see :mod:`dynamics.cli`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp

from dynamics.core import validate
from dynamics.models.huang2024.classes import ClassStructure
from dynamics.models.huang2024.model import NONFINITE, OK, RISING, STOPPED, SoftmaxICL

METHODS = ("gd", "flow")


class SimulationDiverged(RuntimeError):
    """A run that diverged; ``.result`` holds the snapshots up to the failure."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


@dataclass
class SimulationResult:
    """Snapshots of an exact run (Huang, Cheng, Liang 2024; MODEL.md sections 2 and 4).

    Attributes
    ----------
    t : array (T,)
        GD iteration of each snapshot (float for ``method="flow"``: ``tau / eta``).
    coords : array (T, F, F + 1)
        Reduced coordinates: ``coords[:, f, 0] = A_k``, ``coords[:, f, 1 + g] = B_{k,n}``
        for a query ``k`` of class ``f`` and a key ``n`` of class ``g``.
    L_f : array (T, F)
        Per-feature prediction error ``L_k`` of a query of class ``f``.
    attn : array (T, F, F + 1)
        Expected attention ``E[Attn_n | x_q = v_k]`` on one key of each column class
        (``attn[:, f, 0] = E[Attn_k]``, the attention on the query's own feature).
    L : array (T,)
        Population loss ``L = sum_k p_k L_k``.
    L_star : array (F,)
        Optimum ``L_k^*`` of each query class (NaN with label noise).
    """

    t: np.ndarray
    coords: np.ndarray
    L_f: np.ndarray
    attn: np.ndarray
    L: np.ndarray
    L_star: np.ndarray
    model: SoftmaxICL
    method: str
    eta: float
    status: str = "completed"
    message: str = ""
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def structure(self) -> ClassStructure:
        return self.model.structure

    def feature_class(self, k: int) -> int:
        """Class index of feature ``k`` (0-based feature index; the paper's ``v_{k+1}``)."""
        K = self.structure.K
        if not (0 <= int(k) < K):
            raise ValueError(f"feature index must be in [0, K) = [0, {K}), got {k!r}")
        return int(np.searchsorted(np.cumsum(self.structure.sizes), int(k), side="right"))

    def A(self, k: int) -> np.ndarray:
        """``A_k = theta[k, k]`` over the snapshots."""
        return self.coords[:, self.feature_class(k), 0]

    def B(self, k: int, n: int) -> np.ndarray:
        """``B_{k,n} = theta[n, k]`` (``n != k``) over the snapshots."""
        if int(k) == int(n):
            raise ValueError("B(k, n) needs n != k; use A(k) for theta[k, k]")
        return self.coords[:, self.feature_class(k), 1 + self.feature_class(n)]

    def L_k(self, k: int) -> np.ndarray:
        """Per-feature prediction error ``L_k`` over the snapshots."""
        return self.L_f[:, self.feature_class(k)]

    def attention(self, k: int, n: int) -> np.ndarray:
        """``E[Attn_n | x_q = v_k]`` over the snapshots (``n = k``: the paper's ``Attn_k``)."""
        f = self.feature_class(k)
        return self.attn[:, f, 0] if int(k) == int(n) else self.attn[:, f, 1 + self.feature_class(n)]

    def attention_map(self, i: int, features=None) -> np.ndarray:
        """The expected attention map at snapshot ``i``: rows query ``k``, columns key ``n``.

        ``features`` (default: the first ``min(K, 12)``) selects which features to show;
        never K x K for large K.
        """
        if features is None:
            features = range(min(self.structure.K, 12))
        feats = list(features)
        own = [self.feature_class(k) for k in feats]
        out = np.empty((len(feats), len(feats)))
        for a, k in enumerate(feats):
            for b, n in enumerate(feats):
                out[a, b] = self.attn[i, own[a], 0] if k == n else self.attn[i, own[a], 1 + own[b]]
        return out

    def first_time_below(self, eps: float) -> np.ndarray:
        """For each query class, the first snapshot time with ``L_k - L_k^* <= eps`` (NaN if none)."""
        gap = self.L_f - self.L_star[None, :]
        out = np.full(self.structure.F, np.nan)
        for f in range(self.structure.F):
            hit = np.flatnonzero(gap[:, f] <= eps)
            if hit.size:
                out[f] = self.t[hit[0]]
        return out

    def arrays(self) -> dict:
        """Everything numeric, for ``results.npz``."""
        return dict(t=self.t, coords=self.coords, L_f=self.L_f, attn=self.attn, L=self.L, L_star=self.L_star,
                    class_sizes=self.structure.sizes, class_probs=self.structure.probs,
                    class_names=np.array(self.structure.names), N=self.model.N, sigma2=self.model.sigma2,
                    eta=self.eta, method=self.method, status=self.status)


def snapshot_steps(steps: int, count: int = 200) -> np.ndarray:
    """Log-spaced snapshot iterations in ``[0, steps]`` (0, 1 and ``steps`` always included)."""
    steps = int(steps)
    if steps <= 0:
        return np.zeros(1, dtype=np.int64)
    grid = np.unique(np.round(np.logspace(0, np.log10(steps), max(2, int(count)))).astype(np.int64))
    return np.unique(np.concatenate([[0], grid, [steps]])).astype(np.int64)


def make_model(K=10, N=100, preset="imbalanced", p1=0.5, p=None, sigma2=0.0, h=None) -> SoftmaxICL:
    """The paper's model for a preset: ``balanced`` (p_k = 1/K), ``imbalanced`` (dominant p1,
    the rest equal) or ``general`` (explicit ``p``, every feature its own class)."""
    if preset == "balanced":
        s = ClassStructure.balanced(K)
    elif preset == "imbalanced":
        s = ClassStructure.imbalanced(K, p1)
    elif preset == "general":
        if p is None:
            raise ValueError("p must be given with preset 'general'")
        s = ClassStructure.general(p)
    else:
        raise ValueError(f"preset must be one of balanced, imbalanced, general; got {preset!r}")
    kw = {} if h is None else {"h": h}
    return SoftmaxICL(s, N, sigma2, **kw)


def simulate(model=None, *, eta=1.0, steps=10_000, method="gd", init=None, snapshots=200, record_steps=None,
             eps=None, patience=50, progress=False, chunk=None, checkpoint_every=None, on_checkpoint=None,
             resume=None, flow_rtol=1e-8, flow_atol=1e-12, **model_kwargs) -> SimulationResult:
    """Exact population gradient descent (``gd``) or gradient flow (``flow``) of the paper's model.

    Parameters
    ----------
    model : SoftmaxICL, optional
        The model; otherwise built by :func:`make_model` from ``K``, ``N``, ``preset``, ``p1``,
        ``p``, ``sigma2`` in ``model_kwargs``.
    eta : float
        Step size ``eta > 0``.  ``steps``: number of GD iterations (the horizon ``t``).
    init : array (F, F + 1), optional
        Initial reduced coordinates; default ``Q^(0) = 0`` as in the paper.
    snapshots, record_steps :
        Number of log-spaced snapshots, or the explicit iterations to record.
    eps : float, optional
        Stop once every ``L_k - L_k^* <= eps`` (``gd`` only, noise-free).
    patience : int
        Declare divergence after this many rises of ``L`` (GD on a smooth loss with a small
        enough step never raises it; a step too large for the curvature makes it oscillate).
    checkpoint_every, on_checkpoint, resume :
        Call ``on_checkpoint(state)`` every ``checkpoint_every`` steps; ``resume=state``
        continues from such a state with identical results.
    """
    t0 = time.perf_counter()
    if model is None:
        model = make_model(**model_kwargs)
    elif model_kwargs:
        raise ValueError(f"give either model or model parameters, not both: {sorted(model_kwargs)}")
    eta = validate.positive(eta, "eta")
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    steps = int(steps)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    state = model.initial_state() if init is None else model.check_state(np.array(init, dtype=np.float64))
    rec = snapshot_steps(steps, snapshots) if record_steps is None else np.unique(np.asarray(record_steps, dtype=np.int64))
    if rec.size and (rec[0] < 0 or rec[-1] > steps):
        raise ValueError(f"record_steps must lie in [0, steps] = [0, {steps}]")
    L_star = model.optimum()
    if eps is not None:
        eps = validate.positive(eps, "eps")
        if np.any(np.isnan(L_star)):
            raise ValueError("eps (stopping rule) needs sigma2 = 0: with label noise L_k^* is not known")
    if method == "flow":
        return _flow(model, state, eta, steps, rec, L_star, flow_rtol, flow_atol, t0)
    return _gd(model, state, eta, steps, rec, L_star, eps, patience, progress, chunk, checkpoint_every,
               on_checkpoint, resume, t0)


def _gd(model, state, eta, steps, rec, L_star, eps, patience, progress, chunk, checkpoint_every, on_checkpoint,
        resume, t0):
    shapes = model.record_shapes()
    if resume is not None:
        state = np.array(resume["state"], dtype=np.float64)
        records = {k: np.array(resume["records"][k], dtype=np.float64) for k in shapes}
        rec = np.asarray(resume["rec_steps"], dtype=np.int64)
        step, rec_pos = int(resume["step"]), int(resume["rec_pos"])
        L_prev, rising = float(resume["L_prev"]), int(resume["rising"])
    else:
        records = {k: np.full((rec.size,) + shp, np.nan) for k, shp in shapes.items()}
        step, rec_pos, L_prev, rising = 0, 0, np.inf, 0
    if chunk is None:
        chunk = max(1000, steps // 100)
    if checkpoint_every:
        chunk = min(chunk, int(checkpoint_every))
    status = OK
    next_ckpt = (step // checkpoint_every + 1) * checkpoint_every if checkpoint_every else None
    while True:
        stop = min(steps, step + chunk)
        if next_ckpt is not None:
            stop = min(stop, next_ckpt)
        status, step, rec_pos, L_prev, rising = model.gd_segment(
            state, eta, step, stop, rec, rec_pos, records, L_star, -1.0 if eps is None else eps, patience, L_prev, rising)
        if progress:
            sys.stderr.write(f"\r  step {step:>12d}/{steps}  L = {L_prev:.6e}")
            sys.stderr.flush()
        if status != OK or step >= steps:
            break
        if next_ckpt is not None and step >= next_ckpt:
            if on_checkpoint is not None:
                on_checkpoint(dict(state=state.copy(), records={k: v.copy() for k, v in records.items()},
                                   rec_steps=rec, step=step, rec_pos=rec_pos, L_prev=L_prev, rising=rising))
            next_ckpt += checkpoint_every
    if progress:
        sys.stderr.write("\n")
    keep = slice(0, rec_pos)
    t = rec[keep].astype(np.float64)
    if status == STOPPED and (rec_pos == 0 or rec[rec_pos - 1] != step):
        # record the state at which the stopping rule fired
        ev = model.evaluate(state)
        t = np.append(t, step)
        records = {k: np.concatenate([records[k][keep], v[None]]) for k, v in
                   (("coords", state.copy()), ("L_f", ev.L_f), ("attn", ev.attn))}
        keep = slice(None)
    res = _result(model, "gd", eta, t, records["coords"][keep], records["L_f"][keep], records["attn"][keep], L_star, t0)
    if status == STOPPED:
        res.status, res.message = "converged", f"every L_k - L_k^* <= eps at step {step}"
    elif status in (NONFINITE, RISING):
        why = "non-finite coordinates or loss" if status == NONFINITE else f"the loss rose at {patience} steps"
        res.status = "diverged"
        res.message = f"run diverged at step {step}: {why}; try a smaller eta (eta = {eta:g} now)"
        raise SimulationDiverged(res.message, res)
    return res


def _result(model, method, eta, t, coords, L_f, attn, L_star, t0):
    L = L_f @ model.part_weights
    return SimulationResult(t=np.asarray(t, dtype=np.float64), coords=coords, L_f=L_f, attn=attn, L=L,
                            L_star=L_star, model=model, method=method, eta=eta, wall_s=time.perf_counter() - t0)


def _flow(model, state, eta, steps, rec, L_star, rtol, atol, t0):
    mask = model.movable()
    y0 = state[mask]

    def rhs(_tau, y):
        s = state.copy()
        s[mask] = y
        return model.flow_rhs(s)[mask]

    sol = solve_ivp(rhs, (0.0, eta * steps), y0, method="LSODA", t_eval=eta * rec.astype(np.float64),
                    rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"gradient flow failed: {sol.message}")
    T = sol.t.size
    coords = np.repeat(state[None], T, axis=0)
    L_f = np.empty((T, model.structure.F))
    attn = np.empty_like(coords)
    for i in range(T):
        coords[i][mask] = sol.y[:, i]
        ev = model.evaluate(coords[i])
        L_f[i], attn[i] = ev.L_f, ev.attn
    res = _result(model, "flow", eta, sol.t / eta, coords, L_f, attn, L_star, t0)
    res.extra["rhs_evaluations"] = int(sol.nfev)
    return res


if __name__ == "__main__":
    from dynamics.cli import main

    sys.exit(main())
