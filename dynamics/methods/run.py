"""One entry point that trains any model with any of its methods: :func:`run`.

``run(Huang2024, "gd", K=1000, steps=10**5)`` builds the model from its class (or updates a model
instance's parameters), makes the snapshot times (log-spaced by default) and a
:class:`~dynamics.core.trajectory.Recorder` of the model's observables and the method's own,
runs the registered :class:`~dynamics.methods.base.Method` and returns a
:class:`~dynamics.core.trajectory.Result` whose ``ds`` is a labelled :class:`xarray.Dataset`.
:func:`dynamics.simulate.simulate` is the same with a registry name; the front ends and the models'
reproduce targets and ledger rows call one of the two.
"""
from __future__ import annotations

import json
import time

import numpy as np

from dynamics.core.contract import Model
from dynamics.core.errors import SimulationDiverged
from dynamics.core.params import ParamError
from dynamics.core.progress import progress as make_progress
from dynamics.core.rng import model_rng
from dynamics.core.trajectory import Recorder, Result, snapshot_steps
from dynamics.methods import get as get_method


def build(model, method: str, **params) -> Model:
    """The model instance for a run: a :class:`Model` subclass and the parameters given
    (everything else at its declared default), or an instance whose given parameters ``params``
    update."""
    if isinstance(model, Model):
        return model.with_params(method, **params)
    if isinstance(model, type) and issubclass(model, Model):
        return model.create(method=method, **params)
    raise ParamError("model", f"model must be a Model subclass or instance, got {type(model).__name__}")


def run(model, method=None, *, init=None, save_at=None, progress=False, on_checkpoint=None, resume=None,
        **params) -> Result:
    """Train ``model`` with ``method`` and record its observables.

    Parameters
    ----------
    model : Model subclass or instance
    method : str, optional
        A name of :data:`dynamics.methods.REGISTRY` the model supports (default: its first).
    init : dict, optional
        Initial state ``{block: array}`` (default: the model's, e.g. Huang's ``Q^(0) = 0``).
    save_at : array of int, optional
        Explicit snapshot iterations in ``[0, steps]`` (default ``snapshots`` log-spaced ones).
    progress : bool
        Draw a progress bar on standard error (only when it is a terminal).
    on_checkpoint, resume :
        Called with a checkpoint dict every ``checkpoint_every`` steps; ``resume=`` such a dict
        continues the run with identical results (methods with checkpoints).
    **params :
        Any declared parameter of the model and of the method; one only another method uses is
        refused.

    Returns
    -------
    Result
        ``ds`` (dims ``t``, the model's own, ``replica`` for replicated methods), final ``state``.

    Raises
    ------
    ParamError
        A parameter breaks its rule (the message names it).
    SimulationDiverged
        The run diverged; ``.result`` holds the snapshots so far.
    """
    t0 = time.perf_counter()
    if method is None:
        method = model.methods[0]
    m = build(model, method, **params)
    meth = get_method(method)
    if not isinstance(m, meth.requires):
        raise TypeError(f"{m.name} lists method {method} but does not implement {meth.requires.__name__} "
                        "(rule 7 or 8 of dynamics.core.contract)")
    c = m.config
    steps = int(c["steps"])
    if save_at is None:
        save_at = snapshot_steps(steps, c["snapshots"])
    else:
        save_at = np.unique(np.asarray(save_at, dtype=np.int64))
        if save_at.size and (save_at[0] < 0 or save_at[-1] > steps):
            raise ParamError("save_at", f"save_at must lie in [0, steps] = [0, {steps}]")
    observables = dict(m.observables(method), **meth.extra_observables)
    recorder = Recorder(observables, m.dim_labels(), save_at, replicas=meth.replicas(c))
    state = _initial_state(m, method, init)
    bar = make_progress(meth.work(c), f"{m.name} {method}", show=bool(progress))
    try:
        with bar:
            out = meth.run(m, state, save_at=save_at, recorder=recorder, progress=bar,
                           on_checkpoint=on_checkpoint, resume=resume)
    except SimulationDiverged as err:
        _, step, times, extra = err.result
        res = _result(m, method, recorder, times, state, "diverged", str(err), extra, t0)
        raise SimulationDiverged(str(err), res) from None
    return _result(m, method, recorder, out.times, out.state, out.status, out.message, out.extra, t0)


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
        ds[name] = (dims, np.asarray(arr, dtype=np.float64), {"symbol": symbol, "description": doc})
    first = extra.get("first_below")
    if first is not None:
        gap = m.observables(method).get("gap")
        dims = (tuple(gap.dims) if gap is not None and len(gap.dims) == 1 else ("part",)) + ("level",)
        ds["first_below"] = (dims, np.asarray(first, dtype=np.float64),
                             {"description": "first iteration with gap <= level (exact; NaN: not reached)"})
        ds = ds.assign_coords(level=("level", np.asarray(extra["levels"], dtype=np.float64)))
    cls = m.result_type or Result
    return cls(ds=ds, state=state, model=m, method=method, status=status, message=message,
               wall_s=time.perf_counter() - t0, extra=extra)
