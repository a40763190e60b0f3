"""The points of a sweep: every combination of the swept values, resolved with the fixed and
derived ones and checked against the model's declared parameters, with a key per point."""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

import numpy as np

from dynamics.sweep.spec import SpecError, SweepSpec, evaluate


@dataclass
class Grid:
    """Every point of a spec: method, the parameters given to the model, labels and keys."""

    spec: SweepSpec
    methods: list
    points: list
    labels: list
    keys: list
    shape: tuple
    derived: dict
    notes: list = None
    """Lines the command prints before running (e.g. ``at`` times beyond some points' horizons)."""


def build_grid(spec: SweepSpec) -> Grid:
    """Resolve every point (fixed < swept < derived) and check it with the model's declaration."""
    from dynamics import models

    cls = models.get(spec.model)
    dims = list(spec.sweep)
    shape = tuple(len(spec.sweep[d]) for d in dims)
    methods, points, labels, keys, checked, beyond = [], [], [], [], {}, []
    derived = {k: np.full(shape, np.nan) for k in spec.derived}
    for flat, combo in enumerate(itertools.product(*(spec.sweep[d] for d in dims))):
        label = ", ".join(f"{d}={v}" for d, v in zip(dims, combo))
        where = f"{spec.source}: point {flat} ({label})"
        p = {**spec.fixed, **dict(zip(dims, combo))}
        method = p.pop("method", cls.methods[0])  # the model's first method, as simulate's default
        defaults = cls.params.defaults()
        for k, expr in spec.derived.items():
            names = {n: v for n, v in {**defaults, **p}.items() if isinstance(v, (int, float))
                     and not isinstance(v, bool) and v is not None}
            try:
                p[k] = evaluate(expr, k, names)
            except SpecError as exc:
                raise SpecError(f"{where}: {exc}") from None
            derived[k][np.unravel_index(flat, shape)] = float(p[k])
        if "first_below" in spec.outputs:
            p["levels"] = sorted(spec.outputs["first_below"], reverse=True)
        try:
            values, given = cls.resolve(p, method=method)
        except ValueError as exc:
            raise SpecError(f"{where}: {exc}") from None
        at = spec.outputs.get("at")
        if at and max(at["t"]) > values["steps"]:
            beyond.append(label)
        if method not in checked:
            checked[method] = _check_observables(cls, method, {k: values[k] for k in given}, spec, where)
        points.append({k: values[k] for k in given})
        methods.append(method)
        labels.append(label)
        keys.append(_point_key(spec, method, {k: values[k] for k in given}))
    notes = []
    if beyond:
        notes.append(f"note: [outputs] at t = {max(spec.outputs['at']['t'])} lies beyond the horizon (steps) of "
                     f"{len(beyond)} of {len(keys)} points ({'; '.join(beyond[:3])}{'; ...' if len(beyond) > 3 else ''}):"
                     f" those values are recorded as NaN")
    return Grid(spec, methods, points, labels, keys, shape, derived, notes)


def _check_observables(cls, method, params, spec, where) -> bool:
    """Refuse, before anything runs, ``final``/``at`` names that the method does not record (the
    observables of a model built for the first point of that method)."""
    wanted = list(spec.outputs.get("final", [])) + list((spec.outputs.get("at") or {}).get("observables", []))
    if not wanted:
        return True
    try:
        m = cls.create(method=method, **params)
        known = set(m.observables(method)) | ({"train_loss"} if method == "mc" else set())
    except (ValueError, NotImplementedError) as exc:
        raise SpecError(f"{where}: {exc}") from None
    for name in wanted:
        if name not in known:
            raise SpecError(f"{where}: [outputs] {name!r} is not an observable of {cls.name} with method {method}; "
                            f"it records {', '.join(sorted(known))}")
    return True


def coordinate(value):
    """The label of a swept value on its dimension (a list of numbers is labelled by its text)."""
    return ",".join(repr(x) for x in value) if isinstance(value, list) else value


def _point_key(spec, method, params):
    blob = json.dumps({"model": spec.model, "method": method, "params": params, "outputs": spec.outputs},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]
