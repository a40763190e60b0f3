"""Gradient flow of the exact population loss, for any model with ``loss_grad``.

The continuous-time limit of the papers' gradient descent: ``d block / dt = -lr_block x
direction(block)`` with time ``t`` in GD steps (so ``t = tau / eta`` for the flow
``d theta / d tau = -grad L`` of Huang, Cheng, Liang), integrated by :func:`scipy.integrate.solve_ivp`
over the coordinates that move (:meth:`Model.movable`).  First crossings of the gap levels are
located on the integrator's dense output between snapshots (root finding), so a convergence time
is not resolved to the snapshot grid.
"""
from __future__ import annotations

import time

import numpy as np

from dynamics.core.contract import ExactLoss
from dynamics.methods.base import Method, Outcome
from dynamics.methods.params import PARAMS


class Packing:
    """Maps the moving entries of a state's blocks to one vector and back."""

    def __init__(self, state: dict, lrs: dict, masks: dict):
        self.names = [b for b in state if b in lrs]
        self.masks = {b: (np.ones(state[b].shape, bool) if masks.get(b) is None else np.asarray(masks[b], bool))
                      for b in self.names}
        self.lr = np.concatenate([np.full(int(self.masks[b].sum()), lrs[b]) for b in self.names])

    def flat_mask(self, state: dict) -> np.ndarray:
        """Which entries of the concatenated, flattened blocks (all of them, in state order) move."""
        return np.concatenate([self.masks[b].ravel() if b in self.masks else np.zeros(state[b].size, bool)
                               for b in state])

    def pack(self, blocks: dict) -> np.ndarray:
        return np.concatenate([np.asarray(blocks[b])[self.masks[b]] for b in self.names])

    def unpack(self, y: np.ndarray, into: dict) -> dict:
        i = 0
        for b in self.names:
            n = int(self.masks[b].sum())
            into[b][self.masks[b]] = y[i:i + n]
            i += n
        return into


def run_flow(model, state, *, steps, save_at, recorder, rtol=1e-8, atol=1e-12, levels=(), eps=None, progress=None,
             integrator="LSODA"):
    """Integrate the flow to ``t = steps``, recording at ``save_at``; returns ``(state, times, extra)``.

    ``eps``: stop at the first time every gap is ``<= eps`` (an integrator event).  ``integrator``:
    a :func:`scipy.integrate.solve_ivp` method; it gets the model's exact Jacobian
    (:meth:`Model.direction_jacobian`) when the model has one, instead of finite differences.
    ``extra['first_below']``: for every part and level, the first time its gap falls to the
    level (NaN if never), located on the dense output.
    """
    from scipy.integrate import solve_ivp  # heavy (about 2 s to import): only where the flow runs

    t0 = time.perf_counter()
    if steps <= 0:  # nothing to integrate: the initial state is the one snapshot
        recorder.put(0, model.observe(state, "flow"))
        return {b: a.copy() for b, a in state.items()}, np.zeros(1), {"rhs_evaluations": 0, "wall_s": 0.0}
    lrs = model.learning_rates("flow")
    pk = Packing(state, lrs, model.movable("flow"))
    work = {b: a.copy() for b, a in state.items()}
    reached = [0.0]

    def rhs(t, y):
        ev = model.loss_grad(pk.unpack(y, work))
        d = model.direction(work, ev.grads)
        if progress is not None and t > reached[0]:
            progress.update(t - reached[0])
            reached[0] = t
        return -pk.lr * pk.pack(d)

    flat = pk.flat_mask(state)
    names = list(state)
    order = [names.index(b) for b in pk.names]

    def jac(t, y):
        H = model.direction_jacobian(pk.unpack(y, work))
        return -pk.lr[:, None] * H[np.ix_(flat, flat)]

    has_jac = model.direction_jacobian(work) is not None and order == sorted(order)

    def gap_at(y):
        return model.loss_grad(pk.unpack(y, work)).gap

    events = None
    if eps is not None:
        def stop(t, y):
            g = gap_at(y)
            return float(np.max(g) - eps) if g is not None else 1.0
        stop.terminal, stop.direction = True, -1
        events = [stop]
    t_eval = np.minimum(np.asarray(save_at, dtype=np.float64), float(steps))  # steps > 2^53 rounds as a float
    sol = solve_ivp(rhs, (0.0, float(steps)), pk.pack(state), method=integrator, t_eval=t_eval, rtol=rtol, atol=atol,
                    dense_output=bool(len(levels)), events=events, **({"jac": jac} if has_jac else {}))
    if sol.status < 0:
        raise RuntimeError(f"gradient flow failed: {sol.message}")
    times = list(sol.t)
    ys = [sol.y[:, i] for i in range(sol.t.size)]
    extra = {"rhs_evaluations": int(sol.nfev), "jacobian_evaluations": int(sol.njev)}
    if eps is not None and sol.status == 1 and sol.t_events[0].size:
        times.append(float(sol.t_events[0][0]))
        ys.append(sol.y_events[0][0])
        extra["stopped_at"] = times[-1]
    for i, y in enumerate(ys):
        recorder.put(i, model.observe(pk.unpack(y, work), "flow"))
    if len(levels) and sol.sol is not None:
        extra["first_below"] = _first_crossings(gap_at, sol.sol, np.asarray(times), ys, np.asarray(levels))
        extra["levels"] = np.asarray(levels, dtype=np.float64)
    final = {b: a.copy() for b, a in state.items()}
    pk.unpack(ys[-1], final)
    extra["wall_s"] = time.perf_counter() - t0
    return final, np.asarray(times, dtype=np.float64), extra


def _first_crossings(gap_at, dense, times, ys, levels):
    """First time each gap falls to each level: bracket on the snapshots, then ``brentq`` on
    the dense output (the integrator's own interpolant, accurate to its tolerance)."""
    from scipy.optimize import brentq  # with the flow, only where it runs

    gaps = [gap_at(y) for y in ys]
    if gaps[0] is None:
        return None
    G = np.array(gaps)  # (T, P)
    out = np.full((G.shape[1], levels.size), np.nan)
    for p in range(G.shape[1]):
        for j, lev in enumerate(levels):
            hit = np.flatnonzero(G[:, p] <= lev)
            if not hit.size:
                continue
            i = int(hit[0])
            if i == 0:
                out[p, j] = times[0]
                continue
            f = (lambda t: float(gap_at(dense(t))[p] - lev))
            a, b = times[i - 1], times[i]
            out[p, j] = brentq(f, a, b, xtol=1e-12 * max(1.0, b), rtol=1e-12) if f(a) > 0 else a
    return out


class Flow(Method):
    """The gradient flow of the exact population loss (:func:`run_flow`), time in GD steps."""

    name = "flow"
    params = PARAMS["flow"]
    requires = ExactLoss
    exact = True
    manifest_keys = ("rhs_evaluations", "stopped_at")

    def run(self, model, state, *, save_at, recorder, progress=None, on_checkpoint=None, resume=None):
        c = model.config
        if resume is not None:
            raise ValueError("the gradient flow does not checkpoint; it cannot resume")
        state, times, extra = run_flow(model, state, steps=int(c["steps"]), save_at=save_at, recorder=recorder,
                                       rtol=c["flow_rtol"], atol=c["flow_atol"], levels=c["levels"], eps=c["eps"],
                                       progress=progress, integrator=c["flow_integrator"])
        if "stopped_at" in extra:
            return Outcome(state, times, "converged", f"every gap to the optimum <= eps = {c['eps']:g} at t = "
                                                      f"{extra['stopped_at']:.6g}", extra)
        return Outcome(state, times, "completed", "", extra)
