"""Run any model with any of its methods: the main job of icl-dynamics.

``simulate("huang2024", method="gd", K=1000, N=10**6, steps=10**5)`` trains a model from the
registry (:mod:`dynamics.models`) by exact population gradient descent (``gd``), gradient flow
(``flow``, time in GD steps) or Monte Carlo training on sampled prompts (``mc``), records its
observables at log-spaced snapshots and returns a :class:`~dynamics.core.trajectory.Result`
whose ``ds`` is a labelled :class:`xarray.Dataset` (:func:`dynamics.methods.run.run` underneath).

``python -m dynamics.simulate`` does the same from flags or a TOML file and writes a run
directory (flags or ``--config FILE.toml``, one run directory per call; ``--resume RUN_DIR``
continues a checkpointing run): exit 0 done, 1 diverged (snapshots kept), 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

from dynamics import methods, models
from dynamics.core import rundir
from dynamics.core.atomic import git_commit, versions
from dynamics.core.cli import (EXIT_DIVERGED, RUN_PARAMS, ArgParser, add_params, given, guarded, jsonable, load_toml,
                               one_line, recorded_warnings)
from dynamics.core.contract import Model
from dynamics.core.errors import SimulationDiverged, UsageError
from dynamics.core.params import ParamError, ParamSet
from dynamics.core.progress import enabled as progress_enabled
from dynamics.core.trajectory import Result
from dynamics.methods import run as _run


def build(model="huang2024", method="gd", **params) -> Model:
    """The model instance for a run: a registry name (or a model class) and the parameters given
    (everything else at its declared default), or a model instance whose given parameters
    ``params`` update."""
    return _run.build(models.get(model) if isinstance(model, str) else model, method, **params)


def simulate(model="huang2024", method=None, **kwargs) -> Result:
    """Train ``model`` (a registry name, a model class or instance) with ``method``; every other
    argument as :func:`dynamics.methods.run.run` (``init``, ``save_at``, ``progress``,
    ``on_checkpoint``, ``resume``, and the model's and method's parameters)."""
    return _run.run(models.get(model) if isinstance(model, str) else model, method, **kwargs)


def _pre_parse(argv):
    pre = ArgParser(add_help=False)
    for flag in ("--model", "--method", "--config", "--resume"):
        pre.add_argument(flag)
    pre.add_argument("-h", "--help", action="store_true")
    known, _ = pre.parse_known_args(argv)
    return known


def simulate_parser(cls, method_choices):
    """The full parser of the simulate command for model class ``cls``."""
    ap = ArgParser(prog="python -m dynamics.simulate",
                   description=f"Train {cls.name} ({cls.reference}) with one method and write a run directory.")
    run = ap.add_argument_group("run")
    run.add_argument("--model", choices=models.names(), help=f"the system (default {models.DEFAULT})")
    run.add_argument("--method", choices=methods.names(),
                     help=f"exact GD, gradient flow or Monte Carlo; {cls.name} supports {', '.join(method_choices)} "
                          f"(default {method_choices[0]})")
    run.add_argument("--config", metavar="FILE.toml", help="TOML file with any of the parameters below and "
                     "model, method, out, figures (flags override it)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint.npz "
                     "(no other options)")
    run.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out folder, removing the files "
                     "a previous run wrote there")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--check", action="store_true", help="check the configuration and the output folder, print "
                     "the resolved parameters and exit (nothing is computed or written)")
    for p in RUN_PARAMS:
        run.add_argument(p.flag(), dest=p.name, default=argparse.SUPPRESS, help=p.help_text())
    groups: dict = {}
    for p in cls.params:
        used = tuple(m for m in cls.methods if not p.methods or m in p.methods)
        groups.setdefault(used, []).append(p)
    for used, ps in groups.items():
        title = f"{cls.name} parameters" if used == tuple(cls.methods) else f"used by method {' and '.join(used)}"
        add_params(ap, ParamSet(ps), title)
    return ap


def simulate_main(argv=None) -> int:
    """``python -m dynamics.simulate``: 0 done, 1 diverged (snapshots kept), 2 bad input."""
    return guarded(_simulate, argv, "snapshots so far are lost unless --checkpoint-every was given: then "
                                    "python -m dynamics.simulate --resume RUN_DIR continues")


def _simulate(argv):
    known = _pre_parse(argv)
    if known.resume:
        return _resume(known.resume, argv)
    toml = load_toml(known.config) if known.config else {}
    name = known.model or toml.get("model", models.DEFAULT)
    if not isinstance(name, str):
        raise UsageError(f"model must be one of {', '.join(models.names())}; got {name!r}")
    cls = models.get(name)
    ap = simulate_parser(cls, cls.methods)
    ns = ap.parse_args(argv)
    method = known.method or toml.get("method", cls.methods[0])
    if not isinstance(method, str):
        raise UsageError(f"method must be a string, got {method!r}")
    run_names = {p.name for p in RUN_PARAMS}
    toml_params = {k: v for k, v in toml.items() if k not in run_names | {"model", "method"}}
    flags = given(ns, cls.params.names())
    where = f"config file {known.config}"
    values, names = cls.resolve(toml_params, flags, method=method, origin=(where, "flags"))
    run = {}
    for p in RUN_PARAMS:  # both layers are checked, even a value the flag overrides
        if p.name in toml:
            try:
                run[p.name] = p.coerce(toml[p.name])
            except ParamError as exc:
                raise UsageError(f"{exc} (in {where})") from None
        run[p.name] = p.coerce(getattr(ns, p.name)) if hasattr(ns, p.name) else run.get(p.name, p.default)
    given_values = {k: values[k] for k in names}
    out = run["out"] or os.path.join("runs", f"{cls.name}-{method}-{time.strftime('%Y%m%d-%H%M%S')}")
    request = {"model": cls.name, "method": method, "given": jsonable(given_values)}
    if ns.check:
        rundir.check_writable_dir(out)
        m = cls.create(method=method, **given_values)
        print(f"configuration ok: model {cls.name}, method {method}, out {out}")
        print(json.dumps(jsonable(m.config), sort_keys=True))
        return 0
    out = rundir.prepare(out, request, overwrite=ns.overwrite)
    return execute(cls.name, method, given_values, out, run["figures"], quiet=ns.quiet, request=request)


def _resume(folder, argv):
    others = [a for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("-")
              and a not in ("--resume", "--quiet")]
    if others:
        raise UsageError(f"--resume continues the run with its own configuration (config.json); "
                         f"it takes no other options, got {' '.join(others)}")
    if not os.path.isdir(folder):
        raise UsageError(f"--resume {folder} is not a run directory")
    cfg = rundir.read_config(folder)
    if cfg is None:
        raise UsageError(f"--resume: no config.json in {folder}")
    rundir.clean_temporaries(folder)
    ck = rundir.load_checkpoint(folder)
    quiet = "--quiet" in (argv if argv is not None else sys.argv[1:])
    return execute(cfg["model"], cfg["method"], cfg["given"], folder, cfg.get("figures", True), quiet=quiet,
                   request={k: cfg[k] for k in ("model", "method", "given")}, resume=ck)


def execute(model, method, given_values, out, figures, *, quiet=False, request=None, resume=None) -> int:
    """Run one simulation into the run directory ``out`` (already checked) and write its files."""
    m = build(model, method, **given_values)
    required = methods.get(method).checkpoint_keys
    if resume is not None and any(k not in resume for k in required):
        raise UsageError(f"--resume: {out}/checkpoint.npz is incomplete (no {', '.join(required)}); remove "
                         "it to start the run again")
    os.makedirs(out, exist_ok=True)
    rundir.write_json(os.path.join(out, "config.json"),
                      dict(request or {}, figures=figures, resolved=jsonable(m.config)))

    def on_checkpoint(ck):
        rundir.save_checkpoint(out, ck)

    t0 = time.perf_counter()
    code, message = 0, ""
    try:
        res = simulate(m, method, progress=progress_enabled(quiet), on_checkpoint=on_checkpoint, resume=resume)
    except SimulationDiverged as err:
        res, code, message = err.result, EXIT_DIVERGED, str(err)
    except (KeyError, ValueError, IndexError) as exc:
        if resume is None:
            raise
        raise UsageError(f"--resume: {out}/checkpoint.npz does not fit this run ({one_line(exc)}); remove it to "
                         "start the run again") from None
    files = [os.path.basename(p) for p in res.save(out)]
    shown = []
    if figures:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shown = [os.path.basename(p) for p in m.figures(res, out)]
        if not shown and res.t.size < 2:
            print("note: no figures: the run recorded a single snapshot")
    manifest = dict(model=m.describe(), method=method, seed=m.config["seed"], status=res.status,
                    message=message or res.message, versions=versions(), git_commit=git_commit(),
                    wall_seconds=time.perf_counter() - t0, method_seconds=res.wall_s, snapshots=int(res.t.size),
                    files=files + shown + ["config.json", "manifest.json"], warnings=sorted(set(recorded_warnings)),
                    extra={k: v for k, v in res.extra.items() if k in methods.get(method).manifest_keys})
    rundir.write_json(os.path.join(out, "manifest.json"), manifest)
    ck = os.path.join(out, "checkpoint.npz")
    if code == 0 and os.path.exists(ck):
        os.unlink(ck)
    if code:
        print(f"error: {message} (snapshots so far are in {out})", file=sys.stderr)
        return code
    print(f"{res.status}: {res.t.size} snapshots to t = {res.t[-1]:.6g} in {res.wall_s:.2f} s; wrote {out}")
    if res.message:
        print(f"  {res.message}")
    for line in m.summary(res):
        print(line)
    return 0


def main(argv=None) -> int:
    """``python -m dynamics.simulate`` (see the module docstring)."""
    return simulate_main(argv)


if __name__ == "__main__":
    sys.exit(main())
