"""Run any model with any of its methods: the main job of icl-dynamics.

``simulate("huang2024", method="gd", K=1000, N=10**6, steps=10**5)`` trains a model from the
registry (:mod:`dynamics.models`) by exact population gradient descent (``gd``), gradient flow
(``flow``, time in GD steps) or Monte Carlo training on sampled prompts (``mc``), records its
observables at log-spaced snapshots and returns a :class:`~dynamics.core.trajectory.Result`
whose ``ds`` is a labelled :class:`xarray.Dataset`.  ``python -m dynamics.simulate`` does the
same from flags or a TOML file and writes a run directory (:mod:`dynamics.core.cli`).
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from dynamics import models
from dynamics.core.contract import Model, Observable
from dynamics.core.errors import SimulationDiverged
from dynamics.core.params import ParamError
from dynamics.core.progress import Silent
from dynamics.core.progress import progress as make_progress
from dynamics.core.rng import model_rng
from dynamics.core.trajectory import Recorder, Result, cf_attrs, snapshot_steps
from dynamics.methods import flow, gd, montecarlo

TRAIN_LOSS = Observable((), "L_train", "mean batch loss over the steps since the previous snapshot")


def build(model="huang2024", method="gd", **params) -> Model:
    """The model instance for a run: a registry name and the parameters given (everything else
    at its declared default), or a model instance whose given parameters ``params`` update."""
    if isinstance(model, Model):
        return model.with_params(method, **params)
    return models.get(model).create(method=method, **params)


def simulate(model="huang2024", method=None, *, init=None, save_at=None, progress=False, on_checkpoint=None,
             resume=None, **params) -> Result:
    """Train ``model`` with ``method`` and record its observables (see the module docstring).

    Parameters
    ----------
    model : str or Model
        A registry name (``huang2024``, ...) or a model instance.
    method : {"gd", "flow", "mc"}, optional
        Exact gradient descent, gradient flow, or Monte Carlo training; refused if the model
        does not support it.  Default: the model's first method (``gd`` for exact models).
    init : dict, optional
        Initial state ``{block: array}`` (default: the model's, e.g. Huang's ``Q^(0) = 0``).
    save_at : array of int, optional
        Explicit snapshot iterations in ``[0, steps]`` (default ``snapshots`` log-spaced ones).
    progress : bool
        Draw a progress bar on standard error (only when it is a terminal).
    on_checkpoint, resume :
        Called with a checkpoint dict every ``checkpoint_every`` steps; ``resume=`` such a dict
        continues the run with identical results (``gd`` and ``mc``).
    **params :
        Any declared parameter of the model and of the method (``steps``, ``snapshots``,
        ``eps``, ``seed``, ``batch``, ...); a parameter another method uses is refused.

    Raises
    ------
    ParamError
        A parameter breaks its rule (the message names it).
    SimulationDiverged
        The run diverged; ``.result`` holds the snapshots so far.
    """
    t0 = time.perf_counter()
    if method is None:
        method = (type(model) if isinstance(model, Model) else models.get(model)).methods[0]
    m = build(model, method, **params)
    c = m.config
    steps = int(c["steps"])
    if save_at is None:
        save_at = snapshot_steps(steps, c["snapshots"])
    else:
        save_at = np.unique(np.asarray(save_at, dtype=np.int64))
        if save_at.size and (save_at[0] < 0 or save_at[-1] > steps):
            raise ParamError("save_at", f"save_at must lie in [0, steps] = [0, {steps}]")
    observables = dict(m.observables(method))
    if method == "mc":
        observables["train_loss"] = TRAIN_LOSS
    recorder = Recorder(observables, m.dim_labels(), save_at, replicas=int(c["replicas"]) if method == "mc" else None)
    state = _initial_state(m, method, init)
    bar = make_progress(steps * (int(c["replicas"]) if method == "mc" else 1), f"{m.name} {method}",
                        show=progress) if progress else Silent()
    status, message, extra, times = "completed", "", {}, save_at.astype(np.float64)
    try:
        with bar:
            if method == "gd":
                st, step, times, extra = gd.run_gd(
                    m, state, steps=steps, save_at=save_at, recorder=recorder, eps=c["eps"], patience=c["patience"],
                    levels=c["levels"], optimizer=c["optimizer"], adam=_adam(c), checkpoint_every=c["checkpoint_every"],
                    on_checkpoint=on_checkpoint, resume=resume, progress=bar)
                if st == gd.STOPPED:
                    status, message = "converged", f"every gap to the optimum <= eps = {c['eps']:g} at step {step}"
            elif method == "flow":
                state, times, extra = flow.run_flow(m, state, steps=steps, save_at=save_at, recorder=recorder,
                                                    rtol=c["flow_rtol"], atol=c["flow_atol"], levels=c["levels"],
                                                    eps=c["eps"], progress=bar, integrator=c["flow_integrator"])
                if "stopped_at" in extra:
                    status, message = "converged", f"every gap to the optimum <= eps = {c['eps']:g} at t = " \
                                                   f"{extra['stopped_at']:.6g}"
            else:
                state, extra = montecarlo.run_mc(
                    m, steps=steps, save_at=save_at, recorder=recorder, seed=c["seed"], replicas=c["replicas"],
                    batch=c["batch"], train_set=c["train_set"], optimizer=c["optimizer"], adam=_adam(c),
                    checkpoint_every=c["checkpoint_every"], on_checkpoint=on_checkpoint, resume=resume, progress=bar)
    except SimulationDiverged as err:
        _, step, times, extra = err.result
        state = extra.pop("state", state)  # Monte Carlo: every replica's state where it stopped
        res = _result(m, method, recorder, times, state, "diverged", str(err), extra, t0)
        raise SimulationDiverged(str(err), res) from None
    return _result(m, method, recorder, times, state, status, message, extra, t0)


def _adam(c):
    return (c["adam_beta1"], c["adam_beta2"], c["adam_eps"])


def _initial_state(m, method, init):
    state = m.initial_state(method, model_rng(m.config["seed"], f"{m.name}.init"))
    if init is None:
        return state
    if not isinstance(init, dict):
        if len(state) != 1:
            raise ParamError("init", f"init must be a dict of the blocks {sorted(state)}")
        init = {next(iter(state)): init}
    for b, arr in init.items():
        if b not in state:
            raise ParamError("init", f"init has no block {b!r}; the blocks are {sorted(state)}")
        arr = np.asarray(arr, dtype=np.float64)
        if arr.shape != state[b].shape or not np.all(np.isfinite(arr)):
            raise ParamError("init", f"init[{b!r}] must be a finite array of shape {state[b].shape}, got "
                                     f"shape {arr.shape}")
        state[b] = arr.copy()
    return state


def _result(m, method, recorder, times, state, status, message, extra, t0) -> Result:
    times = np.asarray(times, dtype=np.float64)
    attrs = {"model": m.name, "method": method, "reference": m.reference, "status": status, "message": message,
             "config": json.dumps(m.config, default=str, sort_keys=True)}
    ds = recorder.dataset(n=times.size, times=times, attrs=attrs)
    for name, (arr, dims, symbol, doc) in m.references().items():
        ds[name] = (dims, np.asarray(arr, dtype=np.float64), cf_attrs(doc, symbol))
    first = extra.get("first_below")
    if first is not None:
        gap = m.observables(method).get("gap")
        dims = (tuple(gap.dims) if gap is not None and len(gap.dims) == 1 else ("part",)) + ("level",)
        ds["first_below"] = (dims, np.asarray(first, dtype=np.float64),
                             cf_attrs("first iteration with gap <= level (exact; NaN: not reached)", "T(eps)"))
        ds = ds.assign_coords(level=("level", np.asarray(extra["levels"], dtype=np.float64),
                                     cf_attrs("gap level eps whose first crossing is located", "eps")))
    cls = m.result_type or Result
    return cls(ds=ds, state=state, model=m, method=method, status=status, message=message,
               wall_s=time.perf_counter() - t0, extra=extra)


if __name__ == "__main__":
    from dynamics.core.cli import simulate_main

    sys.exit(simulate_main())
