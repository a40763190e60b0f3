"""Exact gradient descent on the population loss, for any model with ``loss_grad``.

Every paper trains by gradient descent: Huang, Cheng, Liang on ``Q`` with step ``eta`` (here on
the reduced coordinates, MODEL.md section 2), Yang et al. with two step sizes ``eta_Q`` and
``eta_w = gamma^2 eta_Q`` (their eq. 16).  :func:`run_gd` runs the steps in segments between
snapshots and checkpoints; within a segment the model's :meth:`~dynamics.core.contract.Model.advance`
does the work (a compiled loop for Huang, :func:`advance_python` otherwise), and a
:class:`Monitor` watches every step:

- the ``eps`` stopping rule: stop once every part's gap to the optimum is ``<= eps``;
- the exact first step at which each gap falls to each of ``levels`` (convergence times);
- divergence: a non-finite value, or ``patience`` rises of the loss (exact GD with a step below
  the stability limit never raises a smooth loss).

Step ``t`` means the state after ``t`` updates; a segment ``[start, stop]`` evaluates the
state at every step from ``start`` to ``stop`` and updates it after each step before ``stop``.
"""
from __future__ import annotations

import time

import numpy as np

from dynamics.core.errors import SimulationDiverged
from dynamics.core.contract import ExactLoss
from dynamics.methods.base import Method, Outcome
from dynamics.methods.params import PARAMS

OK, STOPPED, NONFINITE, RISING = 0, 1, 2, 3
"""Status codes of a segment."""
RISE_TOL = 1e-13
"""A loss counts as risen when it exceeds the previous one by more than this, relative."""


class Monitor:
    """What the GD loop checks at every step (see the module docstring).

    Attributes
    ----------
    eps : float
        Stopping level (``-1``: no stopping rule).
    patience : int
    levels : float array (J,)
        Gap levels whose first crossing is recorded.
    first : float array (P, J)
        First step with ``gap[p] <= levels[j]`` (NaN: not yet); allocated at the first step.
    L_prev : float
        The loss at the previous step; ``rising`` the number of rises so far.
    """

    def __init__(self, eps=None, patience=50, levels=()):
        self.eps = -1.0 if eps is None else float(eps)
        self.patience = int(patience)
        self.levels = np.asarray(levels, dtype=np.float64).ravel()
        self.first = None
        self.L_prev = np.inf
        self.rising = 0

    def ensure(self, parts: int) -> np.ndarray:
        """The ``first`` array for ``parts`` gap entries (allocated once)."""
        if self.first is None:
            self.first = np.full((int(parts), self.levels.size), np.nan)
        return self.first

    def check(self, t: int, loss: float, gap, finite: bool) -> int:
        """Record step ``t`` and return its status (OK, STOPPED, NONFINITE, RISING)."""
        if not finite or not np.isfinite(loss):
            return NONFINITE
        if gap is not None:
            gap = np.asarray(gap, dtype=np.float64)
            first = self.ensure(gap.size)
            hit = np.isnan(first) & (gap[:, None] <= self.levels[None, :])
            first[hit] = t
        if loss > self.L_prev + RISE_TOL * max(1.0, abs(self.L_prev)):
            self.rising += 1
        self.L_prev = loss
        if self.rising >= self.patience:
            return RISING
        if self.eps > 0 and gap is not None and np.all(gap <= self.eps):
            return STOPPED
        return OK

    def snapshot(self) -> dict:
        """Its state, for a checkpoint."""
        return {"L_prev": self.L_prev, "rising": self.rising,
                "first": np.full((0, self.levels.size), np.nan) if self.first is None else self.first.copy()}

    def restore(self, d: dict) -> None:
        self.L_prev, self.rising = float(d["L_prev"]), int(d["rising"])
        first = np.asarray(d["first"], dtype=np.float64)
        self.first = first.copy() if first.shape[0] else None


class Adam:
    """Adam (Kingma & Ba 2015) on a dict of blocks, with bias correction; ``lrs`` per block."""

    def __init__(self, lrs: dict, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lrs, self.b1, self.b2, self.eps = dict(lrs), float(beta1), float(beta2), float(eps)
        self.m, self.v, self.k = {}, {}, 0

    def step(self, state: dict, grads: dict) -> None:
        self.k += 1
        c1, c2 = 1.0 - self.b1 ** self.k, 1.0 - self.b2 ** self.k
        for b, lr in self.lrs.items():
            g = grads[b]
            m = self.m.setdefault(b, np.zeros_like(g))
            v = self.v.setdefault(b, np.zeros_like(g))
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * g * g
            state[b] -= lr * (m / c1) / (np.sqrt(v / c2) + self.eps)

    def snapshot(self) -> dict:
        return {"k": self.k, "m": {b: a.copy() for b, a in self.m.items()},
                "v": {b: a.copy() for b, a in self.v.items()}}

    def restore(self, d: dict) -> None:
        self.k = int(d["k"])
        self.m = {b: np.array(a, dtype=np.float64) for b, a in d.get("m", {}).items()}
        self.v = {b: np.array(a, dtype=np.float64) for b, a in d.get("v", {}).items()}


def plain_step(state: dict, direction: dict, lrs: dict) -> None:
    """``block <- block - lr * direction`` for every block that has a step size."""
    for b, lr in lrs.items():
        state[b] -= lr * direction[b]


def all_finite(loss, arrays: dict) -> bool:
    """The loss and every entry of ``arrays`` finite: a NaN or inf anywhere makes an array's sum
    non-finite, and a sum costs one pass without the temporary of ``isfinite``.  (A state becomes
    non-finite only through a non-finite step, which this sees one step earlier.)"""
    return bool(np.isfinite(loss)) and all(np.isfinite(np.sum(a)) for a in arrays.values())


def advance_python(model, state, lrs, start, stop, monitor, optimizer=None):
    """Exact GD (or Adam, with ``optimizer``) from ``start`` to ``stop`` through ``model.loss_grad``:
    the definition of the GD loop's semantics.

    At each step ``t`` from ``start``: evaluate the state (:meth:`Model.loss_grad`), form the
    descent direction (:meth:`Model.direction`) unless ``t = stop``, let the monitor check the
    step (:meth:`Monitor.check`: non-finite values, rises, first crossings, the ``eps`` rule; a
    ``FloatingPointError`` from the model counts as a non-finite value),
    return on any status but OK or at ``stop``, else update.  A model's compiled fast path
    (``Model.advance``) must do the same, step for step (Huang's does; a test compares them).

    Returns ``(status, step)``; ``state`` holds the state at ``step``.
    """
    t = int(start)
    while True:
        try:
            ev = model.loss_grad(state)
        except FloatingPointError:  # the model found a non-finite value (no silent NaN): divergence
            return NONFINITE, t
        moving = t < stop
        d = model.direction(state, ev.grads) if moving else ev.grads
        status = monitor.check(t, ev.loss, ev.gap, all_finite(ev.loss, d))
        if status != OK or not moving:
            return status, t
        if optimizer is None:
            plain_step(state, d, lrs)
        else:
            optimizer.step(state, d)
        t += 1


def run_gd(model, state, *, steps, save_at, recorder, eps=None, patience=50, levels=(), optimizer="plain",
           adam=(0.9, 0.999, 1e-8), checkpoint_every=None, on_checkpoint=None, resume=None, progress=None,
           chunk=None):
    """Run exact GD and record the snapshots ``save_at`` into ``recorder``.

    Returns ``(status, step, times, extra)``: ``times`` are the recorded steps (plus the step
    where the ``eps`` rule fired), ``extra['first_below']`` the first-crossing steps
    (parts x levels).  Raises :class:`SimulationDiverged` (with the records so far) when the
    monitor reports divergence.  ``resume``: a checkpoint dict from ``on_checkpoint``.
    """
    t0 = time.perf_counter()
    lrs = model.learning_rates("gd")
    monitor = Monitor(eps, patience, levels)
    opt = Adam(lrs, *adam) if optimizer == "adam" else None
    save_at = np.asarray(save_at, dtype=np.int64)
    pos = 0
    step = 0
    if resume is not None:
        for b in state:
            state[b][...] = resume["state"][b]
        recorder.restore(resume["records"])
        monitor.restore(resume["monitor"])
        if opt is not None:
            opt.restore(resume["optimizer"])
        step, pos = int(resume["step"]), int(resume["pos"])
    if chunk is None:
        chunk = max(1000, steps // 100)
    next_ckpt = (step // checkpoint_every + 1) * checkpoint_every if checkpoint_every else None
    status = OK
    while True:
        if pos < save_at.size and save_at[pos] == step:
            recorder.put(pos, model.observe(state, "gd"))
            pos += 1
        if step >= steps:
            break
        stop = min(steps, step + chunk)
        if pos < save_at.size:
            stop = min(stop, int(save_at[pos]))
        if next_ckpt is not None:
            stop = min(stop, next_ckpt)
        if opt is None and model.advance is not None:
            status, reached = model.advance(state, lrs, step, stop, monitor)
        else:
            status, reached = advance_python(model, state, lrs, step, stop, monitor, opt)
        if progress is not None:
            progress.update(reached - step)
        step = reached
        if status != OK:
            break
        if next_ckpt is not None and step >= next_ckpt:
            if on_checkpoint is not None:
                ck = dict(state={b: a.copy() for b, a in state.items()}, records=dict(recorder.arrays), step=step,
                          pos=pos, monitor=monitor.snapshot())
                if opt is not None:
                    ck["optimizer"] = opt.snapshot()
                on_checkpoint(ck)
            next_ckpt += checkpoint_every
    times = save_at[:pos].astype(np.float64)
    if status == STOPPED and (pos == 0 or save_at[pos - 1] != step):
        recorder.put(pos, model.observe(state, "gd"))  # the state at which the eps rule fired
        times = np.append(times, float(step))
    extra = {"wall_s": time.perf_counter() - t0}
    if monitor.first is not None:
        extra["first_below"] = monitor.first
        extra["levels"] = monitor.levels
    if status in (NONFINITE, RISING):
        why = "non-finite values" if status == NONFINITE else f"the loss rose at {patience} steps"
        hint = model.divergence_hint("gd")
        raise SimulationDiverged(f"run diverged at step {step}: {why}" + (f"; {hint}" if hint else ""),
                                 (status, step, times, extra))
    return status, step, times, extra


def adam_params(config: dict) -> tuple:
    """``(beta1, beta2, eps)`` of Adam from a model's resolved parameters."""
    return config["adam_beta1"], config["adam_beta2"], config["adam_eps"]


class GD(Method):
    """Exact gradient descent on the population loss (:func:`run_gd`); plain or Adam."""

    name = "gd"
    params = PARAMS["gd"]
    requires = ExactLoss
    exact = True
    checkpoint_keys = ("state", "records", "step", "pos", "monitor")

    def run(self, model, state, *, save_at, recorder, progress=None, on_checkpoint=None, resume=None):
        c = model.config
        st, step, times, extra = run_gd(
            model, state, steps=int(c["steps"]), save_at=save_at, recorder=recorder, eps=c["eps"],
            patience=c["patience"], levels=c["levels"], optimizer=c["optimizer"], adam=adam_params(c),
            checkpoint_every=c["checkpoint_every"], on_checkpoint=on_checkpoint, resume=resume, progress=progress)
        if st == STOPPED:
            return Outcome(state, times, "converged", f"every gap to the optimum <= eps = {c['eps']:g} at step {step}",
                           extra)
        return Outcome(state, times, "completed", "", extra)
