"""The model contract: what a paper's system provides so that every method and front end can run it.

A *model* is one paper's system (``huang2024``, ``yang2024``, ``li2024``, ``li2024_cot``).  A
*method* is a way of training it: exact population gradient descent (``gd``), its gradient
flow (``flow``), or Monte Carlo training on sampled prompts (``mc``, SGD or Adam).  The methods
(:mod:`dynamics.methods`) and the front ends (``simulate``, ``crosscheck``, ``sweep``,
``reproduce``) only ever talk to a model through this contract; they never name a model's
quantities.

Rules for adding a model (Huang's subpackage, :mod:`dynamics.models.huang2024`, is the worked
example; ``docs/ARCHITECTURE.md`` walks through it):

1.  Create ``dynamics/models/<name>/`` and subclass :class:`Model` in its ``model.py``; add one
    line to :data:`dynamics.models.REGISTRY`.  Nothing outside the subpackage changes.
2.  Set ``name`` (the registry name used by ``--model`` and in sweep specs) and ``reference``
    (the paper).
3.  Declare every parameter of the system once, in ``params = declare(own, methods,
    method_defaults)`` (:func:`dynamics.methods.declare` adds ``seed`` and the methods' parameters to the model's
    own :class:`~dynamics.core.params.ParamSet`): type, default, rule, and help text that names
    the paper's symbol; ``method_defaults`` overrides the defaults of the methods' own
    parameters (``steps``, ``batch``, ...) for this model.  Every modelling choice a source leaves open is a parameter with a
    documented default.  Flags, TOML keys, sweep keys, validation and the manifest all come
    from this declaration.  Rules between parameters go in :meth:`Model.check`, which raises
    :class:`~dynamics.core.params.ParamError` naming the parameter; an option that was given
    but would not be used is refused there too.
4.  List the supported methods in ``methods`` (a subset of ``("gd", "flow", "mc")``); a method
    not listed is refused with a one-line error.
5.  The state is a dict of named numpy arrays, the *blocks* (Huang: the reduced coordinates
    ``coords``; Yang: ``theta`` or ``Q``, and ``w``; H. Li: ``W_Q``, ``W_K``, ``W_V``,
    ``W_O``).  :meth:`blocks` declares, per method, each block's shape, paper symbol and the
    name of the step-size parameter that moves it; :meth:`initial_state` builds the initial
    state (from ``rng`` when it is random).
6.  Observables: :meth:`observables` declares, per method, what can be recorded: a name,
    named dimensions, the paper's symbol and a sentence; :meth:`dim_labels` gives the labels of the
    model's dimensions; :meth:`observe` computes them at a state.  Monte Carlo observables may
    come with a standard error under the name ``<name>_se``.  Time-independent references
    (an optimum such as ``L_k^*`` or ``L*``, theory curves) come from :meth:`references`.
7.  Exact methods (``gd``, ``flow``) need the opt-in part :class:`ExactLoss`: :meth:`loss_grad`,
    the exact population loss and its gradient with respect to every block, plus ``gap`` (per-part distance to the optimum, used
    by the ``eps`` stopping rule and the first-crossing times) when the optimum is known.
    :meth:`direction` maps gradients to the descent direction (a preconditioned step such as
    Yang's reduced ``theta_h`` update overrides it).  A model may set :attr:`advance` to a
    compiled loop of many steps (Huang does); it must keep the semantics of
    :func:`dynamics.methods.gd.advance_python` (and a test compares the two step for step).
8.  Monte Carlo (``mc``) needs the opt-in part :class:`SampledLoss`: :meth:`sample` (a batch of
    prompts from ``rng``) and :meth:`batch_loss_grad` (the mean loss over the batch and its exact gradient with respect to
    every block).  Evaluation on held-out prompts happens in :meth:`observe`, with the ``rng``
    it is given (a stream separate from training, so recording never changes a run).
9.  Optional: :meth:`figures` (the run directory's PNGs), :meth:`summary` (lines printed after a
    run), :attr:`result_type` (a :class:`~dynamics.core.trajectory.Result` subclass with
    accessors named after the paper's symbols), :meth:`sweep_outputs` (extra sweep outputs
    such as Huang's phase times), :meth:`crosscheck_defaults` (parameters the cross-check uses
    unless given: Yang's smaller step) and :attr:`reproduce_targets` (``python -m
    dynamics.reproduce`` targets: name -> "module:function") and :attr:`claims` (``python -m
    dynamics.claims`` ledger rows: ``"module:NAME"`` of a tuple of :class:`dynamics.core.claims.Claim`).
10. Numbers: float64 throughout, softmax with the maximum subtracted, and non-finite values stop
    the computation with a message that says where (:func:`dynamics.core.validate.finite_result`).
"""
from __future__ import annotations

import abc
from typing import ClassVar, NamedTuple

import numpy as np

from dynamics.core.params import ParamError, ParamSet

class Block(NamedTuple):
    """A block of the state: its ``shape``, the paper's ``symbol`` and the name of the step-size
    parameter ``lr`` that moves it (``eta``, ``eta_Q``, ...), or None for a block that is fixed."""

    shape: tuple
    symbol: str
    lr: str | None


class Observable(NamedTuple):
    """A recordable quantity: named ``dims`` (besides time and replica), the paper's ``symbol``
    and a one-sentence ``doc``."""

    dims: tuple
    symbol: str
    doc: str


class SweepOutput(NamedTuple):
    """An extra sweep output a model registers (:meth:`Model.sweep_outputs`): ``arg`` is the kind
    of value the spec gives (``flag`` true, ``eps`` one positive number), ``fn(result, arg)``
    returns an :class:`xarray.DataArray` (its dimensions labelled), ``doc`` says what it is."""

    arg: str
    fn: object
    doc: str


class Evaluation(NamedTuple):
    """The exact population quantities at a state (rule 7).

    ``loss``: the population loss; ``grads``: ``{block: dL/dblock}``; ``gap``: a 1-D array,
    the distance of each part of the loss to its optimum (None when the optimum is unknown);
    ``extra``: anything else the model computed on the way (reused by :meth:`Model.observe`).
    """

    loss: float
    grads: dict
    gap: np.ndarray | None = None
    extra: dict | None = None


class Model(abc.ABC):
    """Base class of every model; see the module docstring for the rules."""

    name: ClassVar[str]
    reference: ClassVar[str]
    params: ClassVar[ParamSet]
    methods: ClassVar[tuple]
    result_type: ClassVar[type | None] = None
    reproduce_targets: ClassVar[dict] = {}
    claims: ClassVar[str | None] = None
    """``"module:NAME"`` of the model's tuple of :class:`dynamics.core.claims.Claim` (the ledger)."""

    def __init__(self, **params):
        """``params``: the resolved values of every declared parameter (see :meth:`create`)."""
        missing = set(self.params.names()) - set(params)
        if missing:
            raise ValueError(f"{self.name}: missing parameters {sorted(missing)}")
        self.config = dict(params)

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def create(cls, method: str | None = None, **given) -> "Model":
        """Build the model from the parameters a user gave: defaults filled in, every value
        coerced and checked (:class:`ParamError` names the parameter and the rule).  With
        ``method``, a method the model lacks and parameters only other methods use are refused."""
        values, names = cls.resolve(given, method=method)
        model = cls(**values)
        model.given = frozenset(names)
        return model

    def with_params(self, method: str | None = None, **params) -> "Model":
        """A new instance with the parameters this one was given, updated by ``params``."""
        old = {k: self.config[k] for k in getattr(self, "given", ()) if k not in params}
        return type(self).create(method=method, **old, **params)

    @classmethod
    def resolve(cls, *layers: dict, method: str | None = None, origin=()) -> tuple:
        """``(values, given names)``: defaults < ``layers[0]`` < ``layers[1]`` ..., coerced and
        checked (``origin`` names the layers in errors, e.g. the config file)."""
        values, names = cls.params.resolve(*layers, origin=origin)
        if method is not None:
            cls.supports(method)
            for name in sorted(names):
                used_by = cls.params[name].methods
                if used_by and method not in used_by:
                    raise ParamError(name, f"{name} is used only by method {' or '.join(used_by)}, not by "
                                           f"method {method}")
        cls.check(values, names)
        return values, names

    @classmethod
    def check(cls, values: dict, given: set) -> None:
        """Rules between parameters (rule 3); raise :class:`ParamError`.  Default: none."""

    @classmethod
    def supports(cls, method: str) -> None:
        """Refuse a method the model does not support, in one line naming the alternatives."""
        if method not in cls.methods:
            raise ParamError("method", f"model {cls.name} does not support method {method!r}; "
                                       f"it supports {', '.join(cls.methods)}")

    # ---- state and observables (rules 5, 6) --------------------------------------------
    @abc.abstractmethod
    def blocks(self, method: str) -> dict:
        """``{name: Block}`` of the state this method trains."""

    @abc.abstractmethod
    def initial_state(self, method: str, rng: np.random.Generator) -> dict:
        """The initial state ``{name: array}`` (fresh arrays the caller may modify)."""

    @abc.abstractmethod
    def observables(self, method: str) -> dict:
        """``{name: Observable}`` recorded by this method."""

    def dim_labels(self) -> dict:
        """``{dimension: labels}`` of the model's own dimensions (query class, head, ...)."""
        return {}

    @abc.abstractmethod
    def observe(self, state: dict, method: str, rng: np.random.Generator | None = None) -> dict:
        """``{name: array}`` of every observable at ``state`` (and ``<name>_se`` for estimates)."""

    def references(self) -> dict:
        """Time-independent references: ``{name: (array, dims, symbol, doc)}`` (optimum, theory)."""
        return {}

    def learning_rates(self, method: str) -> dict:
        """``{block: step size}`` from the step-size parameter of each block."""
        return {b: float(self.config[blk.lr]) for b, blk in self.blocks(method).items() if blk.lr is not None}

    def divergence_hint(self, method: str) -> str:
        """What to try when a run diverges (printed after the step where it happened)."""
        names = sorted({blk.lr for blk in self.blocks(method).values() if blk.lr})
        return f"try a smaller {' or '.join(names)}" if names else ""

    # ---- optional (rule 9) -------------------------------------------------------------
    def figures(self, result, outdir: str) -> list:
        """Write the run directory's figures; returns their paths (default: none)."""
        return []

    def summary(self, result) -> list:
        """Lines printed after a run (default: the final value of each scalar observable)."""
        ds = result.ds
        out = []
        for name, var in ds.data_vars.items():
            if "t" in var.dims and var.ndim - ("replica" in var.dims) == 1:
                last = var.isel(t=-1)
                v = float(last.mean()) if "replica" in var.dims else float(last)
                out.append(f"  {name} = {v:.6e}")
        return out

    @classmethod
    def crosscheck_defaults(cls, given: dict) -> dict:
        """Parameters the cross-check uses unless given (``given``: what the caller passed), e.g. a
        smaller step where SGD's second-order bias would otherwise leave the band."""
        return {}

    @classmethod
    def sweep_outputs(cls) -> dict:
        """Extra sweep outputs ``{name: SweepOutput}`` (see :mod:`dynamics.sweep.spec`)."""
        return {}

    def describe(self) -> dict:
        """What the manifest records about the model: name, reference and every parameter."""
        return {"model": self.name, "reference": self.reference, "params": dict(self.config)}


class ExactLoss(abc.ABC):
    """Opt-in part of the contract for the exact methods (rule 7): a model whose population loss
    has a closed form subclasses ``Model`` and this; ``gd`` and ``flow`` refuse any other."""

    @abc.abstractmethod
    def loss_grad(self, state: dict) -> Evaluation:
        """The exact population loss, its gradient with respect to every block and the gap to the
        optimum (:class:`Evaluation`)."""

    def movable(self, method: str) -> dict:
        """``{block: boolean mask}`` of the entries that move (default: every entry of every block
        with a step size).  The flow integrates only these; Huang's empty classes never move."""
        return {}

    def direction(self, state: dict, grads: dict) -> dict:
        """The descent direction of each block given its gradient (default: the gradient)."""
        return grads

    def direction_jacobian(self, state: dict):
        """Optional: ``d direction / d state`` over the concatenated, flattened blocks (C order, in
        the order of :meth:`Model.blocks`), for implicit flow integrators; None when not available."""
        return None

    advance = None
    """Optional compiled fast path of exact GD: a method ``advance(state, lrs, start, stop,
    monitor) -> (status, step)`` that does in place what :func:`dynamics.methods.gd.advance_python`
    does, step for step, reading and updating the monitor's documented fields.  None: the generic
    loop runs."""


class SampledLoss(abc.ABC):
    """Opt-in part of the contract for Monte Carlo training (rule 8): a model whose prompts can
    be sampled subclasses ``Model`` and this; ``mc`` refuses any other."""

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator, size: int):
        """A batch of ``size`` training prompts: a tuple of arrays whose first axis is the prompt."""

    @abc.abstractmethod
    def batch_loss_grad(self, state: dict, batch) -> tuple:
        """``(mean loss, {block: gradient of the mean loss})`` on one batch."""
