"""The method contract: what a way of training a model declares, so that the front ends never
branch on a method's name (as :func:`scipy.integrate.solve_ivp` maps names to solver classes).

A :class:`Method` declares its parameters (:attr:`Method.params`), whether it needs the model's
exact population gradient (:attr:`Method.exact`), the observables it adds to the model's own
(:attr:`Method.extra_observables`), whether its records have a replica axis
(:attr:`Method.replicated`), what a checkpoint must hold to resume (:attr:`Method.checkpoint_keys`)
and which of its run's numbers go into the manifest (:attr:`Method.manifest_keys`); it runs
through one entry point, :meth:`Method.run`, which returns an :class:`Outcome`.
"""
from __future__ import annotations

import abc
from typing import ClassVar, NamedTuple

import numpy as np

from dynamics.core.contract import Observable
from dynamics.core.params import ParamSet


class Outcome(NamedTuple):
    """What a method's run produced.

    ``state``: the final state (``{block: array}``; a leading replica axis for replicated
    methods); ``times``: the recorded times, float (n,); ``status``: ``completed`` or
    ``converged``; ``message``: one line or ``""``; ``extra``: numbers of the run
    (``first_below`` (parts, levels) and ``levels`` where gaps are tracked, ``wall_s``, ...).
    """

    state: dict
    times: np.ndarray
    status: str
    message: str
    extra: dict


class Method(abc.ABC):
    """Base class of the training methods (see the module docstring)."""

    name: ClassVar[str]
    params: ClassVar[ParamSet]
    requires: ClassVar[type]
    """The opt-in part of the model contract the method needs (:class:`~dynamics.core.contract.ExactLoss`
    or :class:`~dynamics.core.contract.SampledLoss`)."""
    exact: ClassVar[bool] = False
    replicated: ClassVar[bool] = False
    extra_observables: ClassVar[dict] = {}
    checkpoint_keys: ClassVar[tuple] = ()
    manifest_keys: ClassVar[tuple] = ()

    def replicas(self, config: dict) -> int | None:
        """Number of replicas the records hold (None: no replica axis)."""
        return int(config["replicas"]) if self.replicated else None

    def work(self, config: dict) -> int:
        """Units of progress of a run (steps, times replicas where replicated)."""
        return int(config["steps"]) * (self.replicas(config) or 1)

    @abc.abstractmethod
    def run(self, model, state: dict, *, save_at, recorder, progress=None, on_checkpoint=None,
            resume=None) -> Outcome:
        """Train ``model`` from ``state`` with the parameters in ``model.config``, recording the
        snapshots ``save_at`` into ``recorder``.  Raises
        :class:`~dynamics.core.errors.SimulationDiverged` whose ``result`` is ``(status, step,
        times, extra)`` when the run diverges."""

    def __repr__(self):
        return f"<method {self.name}>"


TRAIN_LOSS = Observable((), "L_train", "mean batch loss over the steps since the previous snapshot")
"""The observable every Monte Carlo run adds: its training loss between snapshots."""
