"""Parameter sweeps on Dask: one labelled, resumable netCDF dataset per sweep, for any model.

``python -m dynamics.sweep SPEC.toml [--scheduler ADDRESS] [--workers N] [--out FILE.nc]`` runs
every point of the grid a spec describes (:mod:`dynamics.core.spec`) on ``dask.distributed`` (a
local cluster of single-threaded worker processes by default; ``--scheduler`` uses an existing
cluster) and writes one :class:`xarray.Dataset`: the swept parameters are its first dimensions
(then the outputs' own, e.g. ``query_class``, ``eps``, ``t_at``), derived parameters are
variables over the swept dimensions, and ``failed``/``wall_s``/``point_key`` say what happened at
each point.  ``xarray.open_dataset("sweep.nc").sel(K=1000)`` just works.

Resuming: finished points are kept in ``FILE.partial.nc`` (rewritten atomically as results arrive)
and in the final file; a re-run skips every point already there (matched by a hash of the model,
method, parameters and outputs) and computes only the missing or failed ones, so a grid can be
extended.  A point that fails (an exception, a diverging run, a worker that died) is recorded as
NaN with its error in the ``errors`` attribute; the other points still complete; the command
exits 1.  Bad specs exit 2 with one line, before anything runs; an ``--out`` file that is not a
sweep of the same model is never replaced (exit 2).  Ctrl-C exits 130 and keeps the points done.

Workers run one simulation at a time with numba limited to one thread (``NUMBA_NUM_THREADS=1`` in
local workers' environment and ``numba.set_num_threads(1)`` in every task).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import xarray as xr

from dynamics.core.spec import SpecError, SweepSpec, check_outputs, evaluate, extract, parse_formula

FORMAT = "icl-dynamics-sweep/2"
CRASH_ENV = "ICL_SWEEP_CRASH_ONCE"
"""Fault injection for tests: ``MARKER:INDEX`` makes the task of point INDEX exit its process
(``os._exit``) the first time, creating the file MARKER so that it happens only once.  With
``ICL_SWEEP_CRASH_WAIT_FOR=FILE`` it first waits (at most 60 s) until FILE exists."""
CRASH_WAIT_ENV = "ICL_SWEEP_CRASH_WAIT_FOR"
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
RUN_KEYS = ("method",)
"""Spec keys besides the model's parameters."""


# ---- spec ----------------------------------------------------------------------------------
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


def build_grid(spec: SweepSpec) -> Grid:
    """Resolve every point (fixed < swept < derived) and check it with the model's declaration."""
    from dynamics import models

    cls = models.get(spec.model)
    dims = list(spec.sweep)
    shape = tuple(len(spec.sweep[d]) for d in dims)
    methods, points, labels, keys = [], [], [], []
    derived = {k: np.full(shape, np.nan) for k in spec.derived}
    for flat, combo in enumerate(itertools.product(*(spec.sweep[d] for d in dims))):
        label = ", ".join(f"{d}={v}" for d, v in zip(dims, combo))
        where = f"{spec.source}: point {flat} ({label})"
        p = {**spec.fixed, **dict(zip(dims, combo))}
        method = p.pop("method", "gd")
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
            pass  # beyond the horizon: NaN, documented
        points.append({k: values[k] for k in given})
        methods.append(method)
        labels.append(label)
        keys.append(_point_key(spec, method, {k: values[k] for k in given}))
    return Grid(spec, methods, points, labels, keys, shape, derived)


def coordinate(value):
    """The label of a swept value on its dimension (a list of numbers is labelled by its text)."""
    return ",".join(repr(x) for x in value) if isinstance(value, list) else value


def _point_key(spec, method, params):
    blob = json.dumps({"model": spec.model, "method": method, "params": params, "outputs": spec.outputs},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# ---- workers -------------------------------------------------------------------------------
def _crash_hook(index):
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    marker, _, idx = spec.rpartition(":")
    if idx.strip() != str(index):
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    wait_for, t0 = os.environ.get(CRASH_WAIT_ENV), time.monotonic()
    while wait_for and not os.path.exists(wait_for) and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    os._exit(70)


def run_point(model, method, params, outputs, index=0):
    """Task of one grid point, run on a worker: never raises for a failing simulation."""
    import numba

    from dynamics.core.trajectory import snapshot_steps
    from dynamics.simulate import build, simulate

    _crash_hook(index)
    if numba.get_num_threads() > 1:
        numba.set_num_threads(1)  # one simulation per worker thread: no oversubscription of cores
    t0 = time.perf_counter()
    try:
        m = build(model, method, **params)
        steps = int(m.config["steps"])
        save_at = snapshot_steps(steps, m.config["snapshots"])
        if "at" in outputs:
            extra = [s for s in outputs["at"]["t"] if s <= steps]
            save_at = np.unique(np.concatenate([save_at, np.asarray(extra, dtype=np.int64)]))
        res = simulate(m, method, save_at=save_at)
        data = extract(res, outputs)
    except Exception as exc:  # noqa: BLE001 -- recorded with the point, the sweep goes on
        return {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
    return {"ok": True, "data": data, "wall_s": time.perf_counter() - t0}


@contextmanager
def _client(scheduler, workers, processes, retries):
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    cfg = {} if retries is None else {"distributed.scheduler.allowed-failures": int(retries)}
    kw = dict(n_workers=int(workers or os.cpu_count() or 1), threads_per_worker=1, processes=processes,
              dashboard_address=None, silence_logs=logging.CRITICAL)
    if processes:
        kw["env"] = WORKER_ENV
    with dask.config.set(cfg), LocalCluster(**kw) as cluster, Client(cluster) as client:
        yield client


# ---- store -----------------------------------------------------------------------------------
def partial_path(out):
    return out + ".partial.nc"


def _write_store(path, done):
    from dynamics.core.trajectory import write_dataset

    keys = list(done)
    parts = [done[k][0].expand_dims(point=[i]) for i, k in enumerate(keys)]
    ds = xr.concat(parts, dim="point", join="outer") if parts else xr.Dataset()
    ds["point_key"] = ("point", np.array(keys))
    ds["wall_s"] = ("point", np.array([done[k][1] for k in keys]))
    ds.attrs["format"] = FORMAT + "-partial"
    write_dataset(path, ds)


def _read_store(path):
    done = {}
    with xr.open_dataset(path, engine="scipy") as ds:
        ds = ds.load()
    for i in range(ds.sizes["point"]):
        row = ds.isel(point=i)
        data = row.drop_vars(["point_key", "wall_s", "point"], errors="ignore")
        done[str(row["point_key"].values)] = (data, float(row["wall_s"]))
    return done


def _read_final(path, grid):
    """Points of an existing final dataset; SpecError if the file is not a sweep of this model."""
    try:
        with xr.open_dataset(path, engine="scipy") as ds:
            ds = ds.load()
    except Exception:  # noqa: BLE001 -- any unreadable file is not ours
        raise SpecError(f"--out {path} exists and is not a sweep dataset; it is never replaced: choose another "
                        "file (or remove it)") from None
    if ds.attrs.get("format") != FORMAT or ds.attrs.get("model") != grid.spec.model:
        raise SpecError(f"--out {path} exists and is not a sweep of model {grid.spec.model} ({FORMAT}); it is "
                        "never replaced: choose another file (or remove it)")
    done = {}
    dims = [d for d in ds["failed"].dims]
    for ix in np.ndindex(*ds["failed"].shape):
        if int(ds["failed"].values[ix]):
            continue
        sel = dict(zip(dims, ix))
        row = ds.isel(sel)
        data = row.drop_vars(["failed", "wall_s", "point_key"] + list(ds.attrs.get("derived", "").split(",")),
                             errors="ignore").drop_vars(dims, errors="ignore")
        data = data[[v for v in data.data_vars if v not in grid.derived]]
        done[str(row["point_key"].values)] = (data, float(row["wall_s"]))
    return done


def _load_done(out, grid):
    done = {}
    if os.path.exists(out):
        done.update(_read_final(out, grid))
    if os.path.exists(partial_path(out)):
        try:
            done.update(_read_store(partial_path(out)))
        except Exception:  # noqa: BLE001 -- an unreadable store is recomputed, never trusted
            pass
    wanted = set(grid.keys)
    return {k: v for k, v in done.items() if k in wanted}


@dataclass
class SweepReport:
    """What a run did: ``path`` written, points in the grid, computed now, taken from the store,
    and ``errors`` (one line per failed point)."""

    path: str
    n_points: int
    n_computed: int
    n_skipped: int
    errors: list
    wall_s: float

    @property
    def ok(self) -> bool:
        return not self.errors


def run_sweep(spec, out=None, *, scheduler=None, workers=None, processes=True, retries=None,
              flush_interval=1.0, log=None, show_progress=False) -> SweepReport:
    """Run every point of ``spec`` (a path, a dict or a :class:`SweepSpec`) and write one dataset.

    ``scheduler``: address of an existing Dask scheduler; otherwise a local cluster of
    ``workers`` single-threaded workers (processes, or threads with ``processes=False``).
    ``retries``: how often a task may lose its worker before the point fails (local cluster;
    Dask's default 3 when None).  ``flush_interval``: seconds between rewrites of the progress
    store.  ``log``: a callable receiving one line per finished point.
    """
    from dynamics.core.progress import progress
    from dynamics.core.rundir import check_writable_file

    t0 = time.perf_counter()
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec) if isinstance(spec, (str, os.PathLike)) else parse_spec(spec)
    grid = build_grid(spec)
    out = os.path.abspath(out or os.path.splitext(spec.source)[0] + ".nc")
    check_writable_file(out)
    done = _load_done(out, grid)
    todo = [i for i, k in enumerate(grid.keys) if k not in done]
    n_skipped = len(grid.keys) - len(todo)
    errors = {}
    if todo:
        last = time.monotonic()
        bar = progress(len(todo), f"sweep {spec.name or spec.model}", unit="point", show=show_progress)
        try:
            with bar, _client(scheduler, workers, processes, retries) as client:
                from distributed import as_completed

                futs = {client.submit(run_point, spec.model, grid.methods[i], grid.points[i], spec.outputs, i,
                                      pure=False): i for i in todo}
                for fut in as_completed(futs):
                    i = futs[fut]
                    try:
                        r = fut.result()
                    except Exception as exc:  # noqa: BLE001 -- e.g. KilledWorker: the point failed
                        why = str(exc).split(". ")[0]  # Dask's KilledWorker text goes on for lines
                        r = {"ok": False, "error": f"worker lost while computing it: {type(exc).__name__}: {why}"}
                    if r["ok"]:
                        done[grid.keys[i]] = (r["data"], r["wall_s"])
                        line = f"point {i} ({grid.labels[i]}): done in {r['wall_s']:.2f} s"
                    else:
                        errors[i] = f"point {i} ({grid.labels[i]}): {r['error']}"
                        line = errors[i]
                    bar.update(1)
                    if log:
                        log(line)
                    if time.monotonic() - last >= flush_interval:
                        _write_store(partial_path(out), done)
                        last = time.monotonic()
        finally:
            if done:
                _write_store(partial_path(out), done)
    _consolidate(out, grid, done, [errors[i] for i in sorted(errors)])
    if os.path.exists(partial_path(out)):
        os.unlink(partial_path(out))
    return SweepReport(out, len(grid.keys), len(todo), n_skipped, [errors[i] for i in sorted(errors)],
                       time.perf_counter() - t0)


def _consolidate(out, grid, done, errors):
    """Write the final dataset: sweep dimensions first (spec order), NaN for failed points."""
    from dynamics.core.atomic import git_commit, versions
    from dynamics.core.trajectory import write_dataset

    spec = grid.spec
    dims = list(spec.sweep)
    combos = list(itertools.product(*(spec.sweep[d] for d in dims)))
    parts, have = [], []
    for i, key in enumerate(grid.keys):
        if key in done:
            parts.append(done[key][0].expand_dims(point=[i]))
            have.append(i)
    ds = xr.concat(parts, dim="point", join="outer") if parts else xr.Dataset()
    ds = ds.reindex(point=np.arange(len(grid.keys)))
    for j, d in enumerate(dims):
        ds = ds.assign_coords({f"_sweep_{d}": ("point", np.array([coordinate(c[j]) for c in combos]))})
    if len(dims) == 1:
        ds = ds.swap_dims(point=f"_sweep_{dims[0]}").drop_vars("point")
    else:
        ds = ds.set_index(point=[f"_sweep_{d}" for d in dims]).unstack("point")
    ds = ds.rename({f"_sweep_{d}": d for d in dims})
    for name in ds.data_vars:
        rest = [x for x in ds[name].dims if x not in dims]
        ds[name] = ds[name].transpose(*dims, *rest)
    ds = ds.reindex({d: [coordinate(v) for v in spec.sweep[d]] for d in dims})
    ds["failed"] = (tuple(dims), np.array([k not in done for k in grid.keys], dtype=np.int8).reshape(grid.shape))
    ds["wall_s"] = (tuple(dims), np.array([done[k][1] if k in done else np.nan for k in grid.keys]).reshape(grid.shape))
    ds["point_key"] = (tuple(dims), np.array(grid.keys).reshape(grid.shape))
    for k, v in grid.derived.items():
        ds[k] = (tuple(dims), v, {"description": f"derived: {spec.derived[k]}"})
    ds.attrs = dict(format=FORMAT, model=spec.model, name=spec.name, spec=json.dumps(spec.to_dict(), default=str),
                    source=spec.source, n_points=len(grid.keys), n_failed=int(sum(k not in done for k in grid.keys)),
                    errors=json.dumps(errors), versions=json.dumps(versions()), git_commit=git_commit() or "",
                    written=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_dataset(out, ds)


def load_sweep(path) -> xr.Dataset:
    """Open a sweep dataset (``xarray.open_dataset`` with the scipy engine, loaded into memory)."""
    with xr.open_dataset(path, engine="scipy") as ds:
        return ds.load()


# ---- CLI -----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    """``python -m dynamics.sweep SPEC.toml``: 0 all points done, 1 some failed, 2 bad input, 130 Ctrl-C."""
    from dynamics.core.cli import guarded

    return guarded(_main, argv)


def _main(argv):
    from dynamics.core.cli import ArgParser
    from dynamics.core.params import Param
    from dynamics.core.progress import enabled

    ap = ArgParser(prog="python -m dynamics.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", help="sweep spec (TOML)")
    ap.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a local cluster)")
    ap.add_argument("--workers", help="local worker processes, one thread each (default: all cores)")
    ap.add_argument("--out", help="dataset file (default: SPEC with suffix .nc)")
    ap.add_argument("--threads", action="store_true", help="local workers as threads of this process")
    ap.add_argument("--retries", help="times a point may lose its worker before it fails (default 3)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar and no line per finished point")
    ap.add_argument("--check", action="store_true", help="check the spec and every point's parameters, print the "
                    "grid size and exit (nothing runs)")
    args = ap.parse_args(argv)
    workers = None if args.workers is None else Param("workers", "int", 1, "", low=1).coerce(args.workers)
    retries = None if args.retries is None else Param("retries", "int", 0, "", low=0).coerce(args.retries)
    spec = load_spec(args.spec)
    grid = build_grid(spec)
    if args.out:
        from dynamics.core.rundir import check_writable_file

        check_writable_file(args.out)
    if args.check:
        print(f"spec ok: model {spec.model}, {len(grid.keys)} points over {', '.join(spec.sweep)}")
        return 0
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    show = enabled(args.quiet)
    rep = run_sweep(spec, args.out, scheduler=args.scheduler, workers=workers, processes=not args.threads,
                    retries=retries, log=None if show else say, show_progress=show)
    print(f"{rep.path}: {rep.n_points} points, {rep.n_computed} run now, {rep.n_skipped} already done, "
          f"{len(rep.errors)} failed ({rep.wall_s:.1f} s)")
    for e in rep.errors:
        print(f"failed: {e}", file=sys.stderr)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
