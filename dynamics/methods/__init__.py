"""The methods, each model-agnostic and each in one module: exact gradient descent
(:mod:`~dynamics.methods.gd`), gradient flow (:mod:`~dynamics.methods.flow`) and Monte Carlo
training on sampled prompts (:mod:`~dynamics.methods.montecarlo`), each a
:class:`~dynamics.methods.base.Method` registered in :data:`REGISTRY`, and one entry point that
runs any model with any of them (:func:`dynamics.methods.run.run`).  Their parameters are declared
once in :mod:`dynamics.methods.params`.

Public API for models: :func:`declare`, :func:`get`, :func:`names`, and the GD loop's fast-path
interface :class:`~dynamics.methods.gd.Monitor` with the status codes ``OK``, ``STOPPED``,
``NONFINITE``, ``RISING`` and ``RISE_TOL`` (see :func:`dynamics.methods.gd.advance_python`).
"""
from __future__ import annotations

import importlib

from dynamics.core.params import SEED, ParamError, ParamSet
from dynamics.methods.params import method_params

REGISTRY = {
    "gd": "dynamics.methods.gd:GD",
    "flow": "dynamics.methods.flow:Flow",
    "mc": "dynamics.methods.montecarlo:MonteCarlo",
}
"""Method name -> ``"module:Class"``, imported on first use (the flow's scipy.integrate costs time)."""
_INSTANCES: dict = {}


def names() -> list:
    """The registered method names."""
    return list(REGISTRY)


def get(name: str):
    """The :class:`~dynamics.methods.base.Method` registered as ``name`` (ParamError naming
    ``method`` otherwise)."""
    if name not in REGISTRY:
        raise ParamError("method", f"method must be one of {', '.join(REGISTRY)}; got {name!r}")
    if name not in _INSTANCES:
        module, cls = REGISTRY[name].split(":")
        _INSTANCES[name] = getattr(importlib.import_module(module), cls)()
    return _INSTANCES[name]


def declare(own: ParamSet, methods, method_defaults: dict | None = None) -> ParamSet:
    """A model's full parameter set: ``seed``, its own parameters, then those of its methods with
    the model's defaults for them (``method_defaults``: ``{"steps": 100_000, ...}``).  Use it for
    ``Model.params`` (rule 3 of :mod:`dynamics.core.contract`)."""
    return ParamSet([SEED]).merged(own, method_params(methods, method_defaults))
