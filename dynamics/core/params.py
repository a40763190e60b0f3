"""Parameters declared once: one :class:`Param` per name, from which the command-line flags, the
TOML configuration, sweep-spec values, validation and the manifest are all derived.

One coercion rule everywhere (:meth:`Param.coerce`): a value may arrive as text (a flag, a
TOML string, a sweep list entry) or as a native value (TOML number, Python argument, a derived
sweep expression); text is parsed by the parameter's kind, native values are type-checked.

- ``int``: an integer, or a float or text whose value is an exact integer (``1e5``, ``"100"``);
  never a bool, never ``2.5``.
- ``float``: a real number (int or float, never bool) or text parsing as one; finite unless
  the parameter says otherwise.
- ``bool``: ``true``/``false`` (also text ``yes``/``no``/``on``/``off``/``1``/``0``); never a number.
- ``str`` and ``path``: text; never a number.
- ``floats`` / ``ints``: a list of such numbers, or comma-separated text.

Then the rule: bounds (``low``/``high``, open or closed), ``choices``, or a ``check`` callable.
Every error is a :class:`ParamError` whose message names the parameter and the rule, e.g.
``K must be an integer >= 2, got 'ten'``.  ``None`` is the value of a parameter that is not set
(only parameters whose default is ``None`` accept it).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import numpy as np

INT_MAX = 2**63 - 1
"""Largest integer a parameter may take: numpy's int64, which every array index and count uses."""
KINDS = ("int", "float", "bool", "str", "path", "floats", "ints")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class ParamError(ValueError):
    """A value that breaks a parameter's rule; ``name`` is the parameter's name."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def show(value) -> str:
    """A value as a person wrote it: numpy scalars as plain numbers, no ``np.float64(...)``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else str(value)
    return repr(value)


@dataclass(frozen=True)
class Param:
    """One declared parameter.

    Attributes
    ----------
    name : str
        The name used everywhere (flag ``--name`` with dashes, TOML key, sweep key, manifest).
    kind : str
        One of :data:`KINDS`.
    default : object
        The documented default; ``None`` means "not set" (the parameter is optional).
    help : str
        What it is, naming the paper's symbol and equation where there is one.
    low, high : float, optional
        Bounds; ``low_open``/``high_open`` make them strict (``> low``, ``< high``).
    choices : tuple
        The allowed values (strings), if any.
    check : callable, optional
        ``check(value) -> str | None``: a further rule; returns the rule text when broken.
    methods : tuple of str
        The methods that use it (empty: every method).  Given for another method, it is refused.
    when : tuple of (str, tuple)
        Further conditions of use, ``((other, allowed values), ...)``: the parameter is used only
        when every ``other`` parameter resolves to one of its allowed values (Adam's ``adam_*``
        only with ``optimizer = adam``).  Given otherwise, it is refused
        (:meth:`unused_because`), in flags, TOML and sweep specs alike.
    finite : bool
        Floats must be finite (default True).
    length : int, optional
        Required length of a list (``floats``/``ints``).
    """

    name: str
    kind: str
    default: object
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    check: Callable | None = field(default=None, compare=False)
    methods: tuple = ()
    when: tuple = ()
    finite: bool = True
    length: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Param {self.name}: kind must be one of {KINDS}, got {self.kind!r}")

    # ---- the rule in words ---------------------------------------------------------------
    def rule(self) -> str:
        """The rule as a phrase: ``an integer >= 1``, ``one of gd, flow``, ..."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        noun = {"int": "an integer", "float": "a finite number" if self.finite else "a number",
                "bool": "true or false", "str": "a string", "path": "a path",
                "floats": "a list of numbers", "ints": "a list of integers"}[self.kind]
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        if self.kind in ("floats", "ints") and bounds:
            noun += " each"
        return noun + (" " + " and ".join(bounds) if bounds else "")

    def unused_because(self, values: dict, method: str | None = None) -> str | None:
        """Why this parameter would not be used with the resolved ``values`` and ``method``, as
        the one-line message of its refusal; None when it is used."""
        if method is not None and self.methods and method not in self.methods:
            return f"{self.name} is used only by method {' or '.join(self.methods)}, not by method {method}"
        for other, allowed in self.when:
            if other in values and values[other] not in allowed:
                shown = " or ".join(f"{other} = {_plain(a)}" for a in allowed)
                return f"{self.name} is used only with {shown} (got {other} = {_plain(values[other])})"
        return None

    def fail(self, value, rule: str | None = None) -> ParamError:
        return ParamError(self.name, f"{self.name} must be {rule or self.rule()}, got {show(value)}")

    # ---- coercion ------------------------------------------------------------------------
    def coerce(self, value):
        """The value converted to the parameter's kind and checked against its rule."""
        if value is None:
            if self.default is None:
                return None
            raise self.fail(value)
        if self.kind in ("floats", "ints"):
            items = value
            if isinstance(value, str):
                items = [x.strip() for x in value.split(",") if x.strip()]
            elif isinstance(value, np.ndarray):
                items = value.tolist()
            if not isinstance(items, (list, tuple)) or not items:
                raise self.fail(value)
            one = "int" if self.kind == "ints" else "float"
            out = [self._scalar(one, x, whole=value) for x in items]
            if self.length is not None and len(out) != self.length:
                raise self.fail(value, f"a list of {self.length} numbers")
            for x in out:
                self._bounds(x, whole=value)
        else:
            out = self._scalar(self.kind, value)
            self._bounds(out)
        if self.check is not None:
            broken = self.check(out)
            if broken:
                raise self.fail(value, broken)
        return out

    def _scalar(self, kind, value, whole=None):
        bad = self.fail(value if whole is None else whole)
        if kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            raise bad
        if kind in ("str", "path"):
            if not isinstance(value, str) or (kind == "path" and not value.strip()):
                raise bad
            if self.choices and value not in self.choices:
                raise bad
            return value
        if isinstance(value, (bool, np.bool_)):
            raise bad
        if isinstance(value, str):
            text = value.strip()
            try:
                value = int(text) if kind == "int" and text.lstrip("+-").isdigit() else float(text)
            except ValueError:
                raise bad from None
        if not isinstance(value, numbers.Real):
            raise bad
        if kind == "int":
            if not isinstance(value, numbers.Integral) and (not math.isfinite(value) or value != math.floor(value)):
                raise bad
            if abs(value) > INT_MAX:
                raise self.fail(value if whole is None else whole, f"{self.rule()} that fits in 64 bits "
                                f"(|value| <= 2^63 - 1)")
            return int(value)
        v = float(value)
        if self.finite and not math.isfinite(v):
            raise bad
        if math.isnan(v):
            raise bad
        return v

    def _bounds(self, v, whole=None):
        shown = v if whole is None else whole
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            raise self.fail(shown)
        if self.high is not None and (v >= self.high if self.high_open else v > self.high):
            raise self.fail(shown)

    def with_default(self, default) -> "Param":
        """The same declaration with another default (a model's choice for a method parameter)."""
        return replace(self, default=default)

    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def help_text(self) -> str:
        """``--help`` line: what it is, the rule and the real default."""
        default = "not set" if self.default is None else _plain(self.default)
        return f"{self.help} ({self.rule()}; default: {default})"


def _plain(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(_plain(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


class ParamSet:
    """An ordered set of :class:`Param` (a model's, a method's, or a command's)."""

    def __init__(self, params: Iterable[Param] = ()):
        self._params = {}
        for p in params:
            self.add(p)

    def add(self, p: Param) -> None:
        if p.name in self._params:
            raise ValueError(f"parameter {p.name!r} declared twice")
        self._params[p.name] = p

    def __iter__(self):
        return iter(self._params.values())

    def __contains__(self, name) -> bool:
        return name in self._params

    def __getitem__(self, name) -> Param:
        return self._params[name]

    def __len__(self) -> int:
        return len(self._params)

    def names(self) -> list:
        return list(self._params)

    def merged(self, *others: "ParamSet") -> "ParamSet":
        out = ParamSet(self)
        for o in others:
            for p in o:
                out.add(p)
        return out

    def with_defaults(self, defaults: dict) -> "ParamSet":
        """A copy whose defaults are replaced for the names in ``defaults`` (unknown names: error)."""
        unknown = set(defaults) - set(self._params)
        if unknown:
            raise ValueError(f"defaults for undeclared parameters: {sorted(unknown)}")
        return ParamSet(p.with_default(defaults[p.name]) if p.name in defaults else p for p in self)

    def defaults(self) -> dict:
        return {p.name: p.default for p in self}

    def resolve(self, *layers: dict, origin: Iterable[str] = ()) -> tuple[dict, set]:
        """Defaults < ``layers[0]`` < ``layers[1]`` < ...; every given value is coerced.

        Returns ``(values, given)``: the resolved values of every parameter and the names that
        some layer set explicitly.  Unknown names raise :class:`ParamError` naming them; ``origin``
        labels the layers in that message (``"config file x.toml"``, ``"flags"``).
        """
        origin = list(origin) + [""] * len(layers)
        values = self.defaults()
        given = set()
        for layer, where in zip(layers, origin):
            for name, raw in layer.items():
                if name not in self._params:
                    known = ", ".join(self._params)
                    place = f" in {where}" if where else ""
                    raise ParamError(name, f"unknown parameter {name!r}{place}; known: {known}")
                try:
                    values[name] = self._params[name].coerce(raw)
                except ParamError as exc:
                    if where and where != "flags":
                        raise ParamError(name, f"{exc} (in {where})") from None
                    raise
                given.add(name)
        return values, given


SEED = Param("seed", "int", 0, "seed of every random draw of the run (model data, random initial states, Monte "
             "Carlo streams; dynamics.core.rng)", low=0)
"""Every model has it (:func:`dynamics.core.contract.declare`)."""


def positive_int(name, default, help, **kw) -> Param:
    """An integer ``>= 1``."""
    return Param(name, "int", default, help, low=1, **kw)


def positive_float(name, default, help, **kw) -> Param:
    """A finite number ``> 0``."""
    return Param(name, "float", default, help, low=0.0, low_open=True, **kw)


def nonnegative_float(name, default, help, **kw) -> Param:
    """A finite number ``>= 0``."""
    return Param(name, "float", default, help, low=0.0, **kw)
