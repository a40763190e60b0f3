"""Command-line machinery shared by every front end.

- :class:`ArgParser`: argparse whose errors are one line (:class:`UsageError`, exit status 2).
- :func:`add_params`: one flag per declared :class:`~dynamics.core.params.Param` (``--name``),
  its help the parameter's help, rule and real default; values stay text until the one
  coercion rule of :mod:`dynamics.core.params` converts them.
- :func:`load_toml`: a TOML file of parameters, with one-line errors.
- :func:`guarded`: runs a command so that bad input exits 2 with one line and no traceback,
  Ctrl-C exits 130 with one line, a closed pipe exits 141 silently, and warnings are recorded
  instead of leaking to the terminal.
- :func:`jsonable`: a dict with numpy values as plain JSON types (the one JSON encoder).

The ``simulate`` command itself is in :mod:`dynamics.simulate` (a front end); this module is the
core's and imports nothing above it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
import warnings

from dynamics.core.atomic import json_default
from dynamics.core.errors import UsageError
from dynamics.core.params import Param, ParamError

RUN_PARAMS = (
    Param("out", "path", None, "run directory (default runs/<model>-<method>-<date-time>)"),
    Param("figures", "bool", True, "write the model's PNG figures"),
)
"""Options of a run that are not parameters of the model (also accepted in a TOML config)."""
EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_PIPE = 2, 1, 130, 141


class ArgParser(argparse.ArgumentParser):
    """``argparse`` whose errors raise :class:`UsageError` (one line, exit status 2).  No prefix
    abbreviations: a parameter named like the start of another flag (Yang's ``--m`` against
    ``--model``/``--method``) must reach its own option, never be taken for a prefix."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message)


def add_params(parser, params, title: str, skip=()):
    """Add ``--name`` for every parameter of ``params`` (not ``skip``) to a new argument group."""
    group = parser.add_argument_group(title)
    for p in params:
        if p.name in skip:
            continue
        metavar = {"int": "INT", "float": "X", "bool": "BOOL", "floats": "X,X,...", "ints": "N,N,..."}.get(
            p.kind, "TEXT" if not p.choices else "{" + ",".join(p.choices) + "}")
        group.add_argument(p.flag(), dest=p.name, default=argparse.SUPPRESS, metavar=metavar,
                           help=p.help_text().replace("%", "%%"))
    return group


def given(ns, names) -> dict:
    """The options of ``names`` that were given on the command line (text)."""
    return {n: getattr(ns, n) for n in names if hasattr(ns, n)}


def load_toml(path: str, what: str = "--config") -> dict:
    """The tables of a TOML file; one-line UsageError for a missing file, a folder or bad TOML."""
    if os.path.isdir(path):
        raise UsageError(f"{what} {path} is a directory, not a TOML file")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid TOML: {exc}") from None
    return data


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def guarded(run, argv=None, interrupted: str = "results written so far are kept") -> int:
    """Run ``run(argv)`` (returning an exit status) with the error conventions of the project;
    ``interrupted`` completes the one line printed on Ctrl-C."""
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return int(run(argv) or 0)
    except (UsageError, ParamError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"error: interrupted; {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_PIPE
    finally:
        recorded_warnings.extend(str(w.message) for w in caught)


recorded_warnings: list = []
"""Warnings raised during the current command (written to the manifest, not the terminal)."""


def jsonable(d):
    """``d`` with numpy arrays and scalars as lists and numbers, anything else as its text (for
    ``config.json``, manifests and the ledger's CSV)."""
    def default(x):
        try:
            return json_default(x)
        except TypeError:
            return str(x)

    return json.loads(json.dumps(d, default=default))
