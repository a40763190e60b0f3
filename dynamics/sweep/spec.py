"""Sweep specs: parsing, bounded derived expressions, and the outputs a sweep can keep.

A spec (TOML, or the same tables as a dict) names a model, fixed values, values derived per point
from formulas, the swept values (one dimension each, in the order given) and the outputs::

    model = "huang2024"
    name = "scaling"                 # optional label
    [fixed]
    method = "flow"                  # gd | flow | mc (default gd)
    preset = "imbalanced"
    [derived]                        # formulas of the parameters before them
    N = "K**2"
    steps = "ceil(20 * K**2 * log(K) + 1e8 * K)"
    [sweep]
    K = [10, 100, 1000]
    [outputs]
    final = ["L_k", "gap"]           # observables at the horizon
    first_below = [1e-2, 1e-3]       # exact first time each gap part reaches each level (gd, flow)
    at = { t = [10, 100], observables = ["A"] }   # observables at these iterations (recorded exactly)
    references = true                # the model's references (optimum, ...)
    phase_times = 1e-3               # an extra output of the model (Model.sweep_outputs)

Every value goes through the model's declared parameters (the one coercion rule of
:mod:`dynamics.core.params`).  Derived formulas may use numbers, the parameters before them,
``+ - * / // % **`` and ``log log2 log10 exp sqrt ceil floor min max abs round int float``;
they are evaluated by a small interpreter that refuses any intermediate value beyond
:data:`MAX_MAGNITUDE` (no hang on ``10**10**8``, no OverflowError).
"""
from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass, field

import numpy as np

from dynamics import methods
from dynamics.core.errors import UsageError

RUN_KEYS = ("method",)
"""Spec keys besides the model's parameters."""

MAX_MAGNITUDE = 1e300
"""Largest magnitude of any value inside a derived formula."""
_FUNCS = dict(log=math.log, log2=math.log2, log10=math.log10, exp=math.exp, sqrt=math.sqrt, ceil=math.ceil,
              floor=math.floor, int=int, float=float, min=min, max=max, abs=abs, round=round)
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UN = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class SpecError(UsageError):
    """A sweep spec that cannot be run: the message names the key or point and the rule."""


@dataclass
class SweepSpec:
    """A parsed spec (see the module docstring)."""

    model: str
    fixed: dict
    derived: dict
    sweep: dict
    outputs: dict
    name: str = ""
    source: str = "spec"
    extra: dict = field(default_factory=dict)

    def to_dict(self):
        return dict(model=self.model, name=self.name, fixed=self.fixed, derived=self.derived, sweep=self.sweep,
                    outputs=self.outputs)


# ---- derived formulas ----------------------------------------------------------------------
def _check(value, key, expr):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"[derived] {key} = {expr!r}: values must be numbers")
    if isinstance(value, float) and math.isnan(value):
        raise SpecError(f"[derived] {key} = {expr!r} gives NaN")
    if abs(value) > MAX_MAGNITUDE:
        raise SpecError(f"[derived] {key} = {expr!r} exceeds {MAX_MAGNITUDE:g} in magnitude")
    return value


def parse_formula(expr, key):
    """The syntax tree of a derived formula, or SpecError naming it."""
    if not isinstance(expr, str):
        raise SpecError(f"[derived] {key} must be a formula in a string, got {expr!r}")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise SpecError(f"[derived] {key} = {expr!r} is not a formula") from None
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load, ast.Call)) \
            or type(node) in _BIN or type(node) in _UN
        if isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords
        if isinstance(node, ast.Constant):
            ok = isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        if not ok:
            raise SpecError(f"[derived] {key} = {expr!r} may use numbers, parameters, + - * / // % ** and "
                            f"{', '.join(_FUNCS)}")
    return tree


def evaluate(expr, key, names: dict):
    """The value of a derived formula for the parameters ``names`` (bounded: module docstring)."""
    tree = parse_formula(expr, key)

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return _check(node.value, key, expr)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise SpecError(f"[derived] {key} = {expr!r} uses {node.id!r}, which is not a numeric parameter "
                                "given before it")
            return _check(names[node.id], key, expr)
        if isinstance(node, ast.UnaryOp):
            return _check(_UN[type(node.op)](ev(node.operand)), key, expr)
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow):
                if a != 0 and abs(b) * math.log10(max(abs(a), 1e-300)) > math.log10(MAX_MAGNITUDE):
                    raise SpecError(f"[derived] {key} = {expr!r} exceeds {MAX_MAGNITUDE:g} in magnitude")
            if isinstance(node.op, ast.Mult) and isinstance(a, int) and isinstance(b, int) and \
                    abs(a) > 0 and abs(b) > 0 and math.log10(abs(a)) + math.log10(abs(b)) > math.log10(MAX_MAGNITUDE):
                raise SpecError(f"[derived] {key} = {expr!r} exceeds {MAX_MAGNITUDE:g} in magnitude")
            try:
                return _check(_BIN[type(node.op)](a, b), key, expr)
            except (ArithmeticError, ValueError) as exc:
                raise SpecError(f"[derived] {key} = {expr!r} failed: {exc}") from None
        if isinstance(node, ast.Call):
            args = [ev(a) for a in node.args]
            try:
                return _check(_FUNCS[node.func.id](*args), key, expr)
            except (ArithmeticError, ValueError, TypeError) as exc:
                raise SpecError(f"[derived] {key} = {expr!r} failed: {exc}") from None
        raise SpecError(f"[derived] {key} = {expr!r}: unsupported syntax")  # pragma: no cover

    return ev(tree)


# ---- outputs ----------------------------------------------------------------------------------
GENERIC_OUTPUTS = {
    "final": "observables at the horizon: a list of names",
    "first_below": "exact first time each gap part reaches each level: a list of levels > 0 (gd, flow)",
    "at": "observables at given iterations: a table {t = [...], observables = [...]}",
    "references": "the model's references (optimum, ...): true",
}


def check_outputs(outputs: dict, model_cls, method_values, source: str) -> None:
    """Check the [outputs] table against the model (names, argument kinds)."""
    if not outputs:
        raise SpecError(f"{source}: [outputs] names nothing to keep; outputs: {', '.join(GENERIC_OUTPUTS)} and the "
                        f"model's extras")
    extras = model_cls.sweep_outputs()
    for key, arg in outputs.items():
        if key == "final":
            if not (isinstance(arg, list) and arg and all(isinstance(x, str) for x in arg)):
                raise SpecError(f"{source}: [outputs] final takes a list of observable names, got {arg!r}")
        elif key == "first_below":
            if not (isinstance(arg, list) and arg and all(isinstance(e, (int, float)) and not isinstance(e, bool)
                                                         and e > 0 for e in arg)):
                raise SpecError(f"{source}: [outputs] first_below takes a non-empty list of levels > 0, got {arg!r}")
            exact = [m for m in methods.names() if methods.get(m).exact]
            if any(m not in exact for m in method_values):
                raise SpecError(f"{source}: [outputs] first_below needs an exact method ({' or '.join(exact)})")
        elif key == "at":
            ok = isinstance(arg, dict) and set(arg) == {"t", "observables"} and isinstance(arg["t"], list) and \
                arg["t"] and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in arg["t"]) and \
                isinstance(arg["observables"], list) and arg["observables"] and \
                all(isinstance(x, str) for x in arg["observables"])
            if not ok:
                raise SpecError(f"{source}: [outputs] at takes {{t = [iterations >= 0], observables = [names]}}, "
                                f"got {arg!r}")
        elif key == "references":
            if arg is not True:
                raise SpecError(f"{source}: [outputs] references takes true, got {arg!r}")
        elif key in extras:
            out = extras[key]
            if out.arg == "flag" and arg is not True:
                raise SpecError(f"{source}: [outputs] {key} takes true, got {arg!r}")
            if out.arg == "eps" and not (isinstance(arg, (int, float)) and not isinstance(arg, bool) and arg > 0):
                raise SpecError(f"{source}: [outputs] {key} takes one number > 0, got {arg!r}")
        else:
            raise SpecError(f"{source}: unknown output {key!r} in [outputs]; model {model_cls.name} offers "
                            f"{', '.join(list(GENERIC_OUTPUTS) + list(extras))}")


def extract(result, outputs: dict):
    """The outputs of one point as an :class:`xarray.Dataset` (labelled dimensions)."""
    import xarray as xr

    ds = result.ds
    data = {}
    for key, arg in outputs.items():
        if key == "final":
            for name in arg:
                if name not in ds or "t" not in ds[name].dims:
                    raise ValueError(f"[outputs] final: {name!r} is not an observable of this run; it records "
                                     f"{', '.join(v for v in ds.data_vars if 't' in ds[v].dims)}")
                data[f"final_{name}"] = ds[name].isel(t=-1, drop=True)
        elif key == "first_below":
            data["first_below"] = ds["first_below"].rename(level="eps").sel(eps=np.asarray(arg, dtype=np.float64))
        elif key == "at":
            want = np.asarray(arg["t"], dtype=np.float64)
            for name in arg["observables"]:
                if name not in ds or "t" not in ds[name].dims:
                    raise ValueError(f"[outputs] at: {name!r} is not an observable of this run")
                da = ds[name].reindex(t=want).rename(t="t_at")
                data[f"at_{name}"] = da
        elif key == "references":
            for name in ds.data_vars:
                if "t" not in ds[name].dims and name != "first_below":
                    data[f"ref_{name}"] = ds[name]
        else:
            data[key] = result.model.sweep_outputs()[key].fn(result, arg)
    return xr.Dataset(data)


# ---- reading a spec ------------------------------------------------------------------------
def load_spec(path) -> SweepSpec:
    """Read and check a TOML spec (:class:`SpecError` names the problem)."""
    from dynamics.core.cli import load_toml

    try:
        raw = load_toml(str(path), "spec")
    except SpecError:
        raise
    except Exception as exc:  # UsageError from the loader: same one-line rule
        raise SpecError(str(exc)) from None
    return parse_spec(raw, source=str(path))


def parse_spec(raw: dict, source: str = "spec") -> SweepSpec:
    """Check a spec given as a dict (the TOML's tables); errors name the key and the rule."""
    from dynamics import models

    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a spec must be a table of keys")
    top = {"model", "name", "fixed", "derived", "sweep", "outputs"}
    for k in raw:
        if k not in top:
            raise SpecError(f"{source}: unknown key {k!r}; a spec has {sorted(top)}")
    model = raw.get("model", models.DEFAULT)
    if model not in models.REGISTRY:
        raise SpecError(f"{source}: unknown model {model!r}; available: {', '.join(models.names())}")
    cls = models.get(model)
    tables = {}
    for t in ("fixed", "derived", "sweep", "outputs"):
        tables[t] = raw.get(t, {})
        if not isinstance(tables[t], dict):
            raise SpecError(f"{source}: [{t}] must be a table")
    seen = {}
    for t in ("fixed", "derived", "sweep"):
        for k in tables[t]:
            if k not in cls.params and k not in RUN_KEYS:
                raise SpecError(f"{source}: unknown parameter {k!r} in [{t}]; model {model!r} takes "
                                f"{', '.join(list(RUN_KEYS) + cls.params.names())}")
            if k in seen:
                raise SpecError(f"{source}: parameter {k!r} is in both [{seen[k]}] and [{t}]")
            seen[k] = t
    for k, expr in tables["derived"].items():
        parse_formula(expr, k)
    if not tables["sweep"]:
        raise SpecError(f"{source}: empty grid: [sweep] names no parameter (give at least one list of values)")
    for k, vals in tables["sweep"].items():
        if not isinstance(vals, list):
            raise SpecError(f"{source}: [sweep] {k} must be a list of values, got {vals!r}")
        if not vals:
            raise SpecError(f"{source}: empty grid: [sweep] {k} is an empty list")
        if not all(isinstance(v, (int, float, str, bool)) or (isinstance(v, list) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)) for v in vals):
            raise SpecError(f"{source}: [sweep] {k} values must be numbers, strings or lists of numbers (one "
                            "dimension each)")
        if len(set(map(repr, vals))) != len(vals):
            raise SpecError(f"{source}: [sweep] {k} repeats a value: {vals!r}")
    methods = tables["sweep"].get("method", [tables["fixed"].get("method", "gd")])
    check_outputs(tables["outputs"], cls, methods, source)
    if "first_below" in tables["outputs"] and "levels" in seen:
        raise SpecError(f"{source}: [outputs] first_below sets the levels; do not also give parameter 'levels'")
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise SpecError(f"{source}: name must be a string")
    return SweepSpec(model, dict(tables["fixed"]), dict(tables["derived"]), dict(tables["sweep"]),
                     dict(tables["outputs"]), name, source)


