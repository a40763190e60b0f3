"""Parameter sweeps of the exact dynamics on Dask: one labelled, resumable ``.npz`` per sweep.

``python -m dynamics.sweep SPEC.toml [--scheduler ADDRESS] [--workers N] [--out FILE]`` runs
every point of a grid of simulations on ``dask.distributed`` (a local cluster of single-threaded
worker processes by default; ``--scheduler`` uses an existing cluster) and writes one dataset.

A spec names the model, the fixed parameters, parameters derived per point, the swept
parameters (one dimension each, in the order given) and the outputs to keep::

    model = "softmax_icl"          # the model of Huang, Cheng, Liang (ICML 2024); see MODELS
    name = "scaling"               # optional label, kept in the dataset's metadata
    [fixed]
    preset = "imbalanced"
    method = "flow"
    [derived]                      # expressions of the other parameters (math functions allowed)
    N = "K**2"
    steps = "ceil(20 * K**2 * log(K) + 1e8 * K)"
    [sweep]
    K = [10, 100, 1000]
    [outputs]
    first_time_below = [1e-2, 1e-3]   # T(eps): first iteration with L_k - L_k^* <= eps
    final_gap = true                  # L_k - L_k^* at the horizon
    A_at = [10, 100, 1000]            # A_k at these GD iterations (recorded exactly)

The dataset (:func:`load_sweep`) holds, for every output, an array whose leading dimensions are
the swept parameters, then the output's own (``eps``, ``t``, ``query_class``, ``coord``,
``boundary``); dimension names and coordinate values are stored beside the arrays (plain
``numpy`` ``.npz``, no pickles: any numpy can read it; xarray is not needed).

Resuming: completed points are kept in ``FILE.partial.npz`` (rewritten atomically as results
arrive) and in the final file; a re-run skips every point already there (matched by a hash of
the model, its resolved parameters and the outputs) and recomputes only the missing or failed
ones.  A point that fails (an exception, a diverging run, a worker that died) is recorded as
NaN with its error in ``errors``; the other points still complete; the command exits 1.
Bad specs (unknown parameter, empty grid, ...) exit 2 with one line.

Workers run one simulation at a time with numba limited to one thread (``NUMBA_NUM_THREADS=1``
in the environment of local workers, and ``numba.set_num_threads(1)`` inside every task) so
that ``--workers`` processes use ``--workers`` cores.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import itertools
import json
import logging
import math
import os
import sys
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from dynamics.core.atomic import atomic_savez, git_commit, versions

FORMAT = "icl-dynamics-sweep/1"
CRASH_ENV = "ICL_SWEEP_CRASH_ONCE"
"""Fault injection for tests: ``MARKER:INDEX`` makes the task of point INDEX exit its process
(``os._exit``) the first time, creating the file MARKER so that it happens only once.  With
``ICL_SWEEP_CRASH_WAIT_FOR=FILE`` it first waits (at most 60 s) until FILE exists."""
CRASH_WAIT_ENV = "ICL_SWEEP_CRASH_WAIT_FOR"
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class SpecError(ValueError):
    """A sweep spec that cannot be run: the message names the key or point and the rule."""


# --------------------------------------------------------------------------- models
@dataclass(frozen=True)
class Output:
    """An output a model can extract: ``arg`` kind and its extra dimensions after the sweep's."""

    arg: str  # "flag" (true), "eps_list", "iter_list", "eps"
    dims: tuple
    doc: str


class SoftmaxICLSweep:
    """Sweep adapter of :class:`dynamics.models.SoftmaxICL` (Huang, Cheng, Liang 2024) run by
    :func:`dynamics.simulate.simulate`; other models join :data:`MODELS` with the same methods."""

    name = "softmax_icl"
    model_keys = ("K", "N", "preset", "p1", "p", "sigma2", "h")
    params = dict(
        K=("int", 10, "number of features K"), N=("int", 100, "prompt length N"),
        preset=("str", "imbalanced", "balanced | imbalanced | general"),
        p1=("float", 0.5, "dominant-feature probability p_1"), p=("floats", None, "feature probabilities (general)"),
        sigma2=("float", 0.0, "label-noise variance"), h=("float", None, "quadrature step in log t"),
        eta=("float", 1.0, "GD step size eta"), steps=("int", 10_000, "horizon in GD iterations"),
        method=("str", "gd", "gd | flow"), snapshots=("int", 200, "number of log-spaced snapshots"),
        patience=("int", 50, "loss rises that count as divergence"), flow_rtol=("float", 1e-10, "flow rtol"),
        flow_atol=("float", 1e-13, "flow atol"), A0=("float", 0.0, "initial A_k"), B0=("float", 0.0, "initial B_{k,n}"),
    )
    outputs = dict(
        first_time_below=Output("eps_list", ("eps", "query_class"),
                                "T(eps): first snapshot time with L_k - L_k^* <= eps (the paper's T_1, T_k)"),
        final_L_k=Output("flag", ("query_class",), "L_k at the horizon"),
        final_gap=Output("flag", ("query_class",), "L_k - L_k^* at the horizon"),
        L_star=Output("flag", ("query_class",), "the optimum L_k^*"),
        A_at=Output("iter_list", ("t", "query_class"), "A_k at the given GD iterations"),
        L_k_at=Output("iter_list", ("t", "query_class"), "L_k at the given GD iterations"),
        coords_at=Output("iter_list", ("t", "query_class", "coord"), "[A_k, B_{k,n} per class] at iterations"),
        attn_at=Output("iter_list", ("t", "query_class", "coord"), "E[Attn_n | x_q = v_k] at iterations"),
        phase_times=Output("eps", ("query_class", "boundary"), "phase boundaries (dynamics.models.huang2024.phases) with this eps"),
    )

    def build(self, params):
        from dynamics.simulate import make_model

        return make_model(**{k: params[k] for k in self.model_keys if params.get(k) is not None})

    def check(self, params, outputs):
        """Check one point's values before anything runs; returns the labels of its query classes."""
        model = self.build(params)
        if params["method"] not in ("gd", "flow"):
            raise ValueError(f"parameter method must be 'gd' or 'flow', got {params['method']!r}")
        for k in ("eta", "flow_rtol", "flow_atol"):
            if not params[k] > 0:
                raise ValueError(f"parameter {k} must be > 0, got {params[k]!r}")
        for k, low in (("steps", 0), ("snapshots", 1), ("patience", 1)):
            if params[k] < low:
                raise ValueError(f"parameter {k} must be >= {low}, got {params[k]!r}")
        if "phase_times" in outputs:
            from dynamics.models.huang2024.phases import phase_setting

            for f in range(model.structure.F):
                phase_setting(model.structure, f)
            if model.sigma2 > 0:
                raise ValueError("output phase_times needs sigma2 = 0 (L_k^* is unknown with label noise)")
        return tuple(model.part_labels)

    def run(self, params, outputs, n_parts):
        """Simulate one point and extract ``outputs`` (class axes padded with NaN to ``n_parts``)."""
        from dynamics.simulate import simulate, snapshot_steps

        model = self.build(params)
        F = model.structure.F
        steps = params["steps"]
        at = np.asarray(next((v for k, v in outputs.items() if self.outputs[k].arg == "iter_list"), []), dtype=np.int64)
        rec = snapshot_steps(steps, params["snapshots"])
        rec = np.union1d(rec, at[(at >= 0) & (at <= steps)])
        res = simulate(model, eta=params["eta"], steps=steps, method=params["method"], record_steps=rec,
                       init=model.initial_state(params["A0"], params["B0"]), patience=params["patience"],
                       flow_rtol=params["flow_rtol"], flow_atol=params["flow_atol"])
        idx = [np.flatnonzero(np.isclose(res.t, s, rtol=1e-12, atol=1e-9)) for s in at]

        def at_times(arr):  # rows of arr at the requested iterations (NaN beyond the horizon)
            out = np.full((at.size,) + arr.shape[1:], np.nan)
            for j, hit in enumerate(idx):
                if hit.size:
                    out[j] = arr[hit[0]]
            return out

        got = {}
        for name, arg in outputs.items():
            if name == "first_time_below":
                v = np.stack([res.first_time_below(e) for e in arg])
            elif name == "final_L_k":
                v = res.L_f[-1]
            elif name == "final_gap":
                v = res.L_f[-1] - res.L_star
            elif name == "L_star":
                v = res.L_star
            elif name == "A_at":
                v = at_times(res.coords[:, :, 0])
            elif name == "L_k_at":
                v = at_times(res.L_f)
            elif name == "coords_at":
                v = at_times(res.coords)
            elif name == "attn_at":
                v = at_times(res.attn)
            elif name == "phase_times":
                from dynamics.models.huang2024.phases import MAX_BOUNDARIES, all_phases

                v = np.full((F, MAX_BOUNDARIES), np.nan)
                for f, ph in enumerate(all_phases(res, eps=arg)):
                    v[f, : ph.times.size] = ph.times
            got[name] = _pad(np.asarray(v, dtype=np.float64), self.outputs[name].dims, F, n_parts)
        return got


def _pad(v, dims, F, n):
    """Pad the ``query_class`` (size F -> n) and ``coord`` (F + 1 -> n + 1) axes with NaN."""
    width = [(0, n - F) if d in ("query_class", "coord") else (0, 0) for d in dims]
    return np.pad(v, width, constant_values=np.nan) if n > F else v


MODELS = {SoftmaxICLSweep.name: SoftmaxICLSweep()}
"""Sweepable models by the name a spec uses."""


# --------------------------------------------------------------------------- spec
@dataclass
class SweepSpec:
    """A parsed spec: ``model`` name, ``fixed`` values, ``derived`` expressions, ``sweep`` lists
    (one dimension each, in order), ``outputs`` (name -> argument)."""

    model: str
    fixed: dict
    derived: dict
    sweep: dict
    outputs: dict
    name: str = ""
    source: str = "spec"

    def to_dict(self):
        return dict(model=self.model, name=self.name, fixed=self.fixed, derived=self.derived, sweep=self.sweep,
                    outputs=self.outputs)


def load_spec(path) -> SweepSpec:
    """Read and check a TOML spec (:class:`SpecError` names the problem)."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: invalid TOML: {exc}") from None
    return parse_spec(raw, source=str(path))


def parse_spec(raw: dict, source: str = "spec") -> SweepSpec:
    """Check a spec given as a dict (the TOML's tables); errors name the key and the rule."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a spec must be a table of keys")
    top = {"model", "name", "fixed", "derived", "sweep", "outputs"}
    for k in raw:
        if k not in top:
            raise SpecError(f"{source}: unknown key {k!r}; a spec has {sorted(top)}")
    model = raw.get("model", "softmax_icl")
    if model not in MODELS:
        raise SpecError(f"{source}: unknown model {model!r}; available: {sorted(MODELS)}")
    adapter = MODELS[model]
    tables = {}
    for t in ("fixed", "derived", "sweep", "outputs"):
        tables[t] = raw.get(t, {})
        if not isinstance(tables[t], dict):
            raise SpecError(f"{source}: [{t}] must be a table")
    seen = {}
    for t in ("fixed", "derived", "sweep"):
        for k in tables[t]:
            if k not in adapter.params:
                raise SpecError(f"{source}: unknown parameter {k!r} in [{t}]; model {model!r} takes "
                                f"{', '.join(adapter.params)}")
            if k in seen:
                raise SpecError(f"{source}: parameter {k!r} is in both [{seen[k]}] and [{t}]")
            seen[k] = t
    for k, expr in tables["derived"].items():
        if not isinstance(expr, str):
            raise SpecError(f"{source}: [derived] {k} must be an expression in a string, got {expr!r}")
        _parse_expr(expr, k, source)
    if not tables["sweep"]:
        raise SpecError(f"{source}: empty grid: [sweep] names no parameter (give at least one list of values)")
    for k, vals in tables["sweep"].items():
        if not isinstance(vals, list):
            raise SpecError(f"{source}: [sweep] {k} must be a list of values, got {vals!r}")
        if not vals:
            raise SpecError(f"{source}: empty grid: [sweep] {k} is an empty list")
        if not all(isinstance(v, (int, float, str, bool)) for v in vals):
            raise SpecError(f"{source}: [sweep] {k} values must be numbers or strings (one dimension each)")
        if len(set(map(repr, vals))) != len(vals):
            raise SpecError(f"{source}: [sweep] {k} repeats a value: {vals!r}")
    if not tables["outputs"]:
        raise SpecError(f"{source}: [outputs] names nothing to keep; model {model!r} offers {', '.join(adapter.outputs)}")
    iter_lists = {}
    for k, arg in tables["outputs"].items():
        if k not in adapter.outputs:
            raise SpecError(f"{source}: unknown output {k!r} in [outputs]; model {model!r} offers "
                            f"{', '.join(adapter.outputs)}")
        kind = adapter.outputs[k].arg
        num = (int, float)
        if kind == "flag" and arg is not True:
            raise SpecError(f"{source}: [outputs] {k} takes true, got {arg!r}")
        if kind == "eps" and not (isinstance(arg, num) and not isinstance(arg, bool) and arg > 0):
            raise SpecError(f"{source}: [outputs] {k} takes one threshold eps > 0, got {arg!r}")
        if kind == "eps_list" and not (isinstance(arg, list) and arg and all(
                isinstance(e, num) and not isinstance(e, bool) and e > 0 for e in arg)):
            raise SpecError(f"{source}: [outputs] {k} takes a non-empty list of thresholds eps > 0, got {arg!r}")
        if kind == "iter_list":
            if not (isinstance(arg, list) and arg and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                         for s in arg)):
                raise SpecError(f"{source}: [outputs] {k} takes a non-empty list of GD iterations (integers >= 0), "
                                f"got {arg!r}")
            iter_lists[k] = arg
    if len({tuple(v) for v in iter_lists.values()}) > 1:
        raise SpecError(f"{source}: [outputs] {', '.join(iter_lists)} share the dimension 't' and must list the same "
                        "iterations")
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise SpecError(f"{source}: name must be a string")
    return SweepSpec(model, dict(tables["fixed"]), dict(tables["derived"]), dict(tables["sweep"]),
                     dict(tables["outputs"]), name, source)


_FUNCS = dict(log=math.log, log2=math.log2, log10=math.log10, exp=math.exp, sqrt=math.sqrt, ceil=math.ceil,
              floor=math.floor, int=int, float=float, min=min, max=max, abs=abs, round=round)
_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load, ast.Call, ast.Add, ast.Sub,
          ast.Mult, ast.Div, ast.FloorDiv, ast.Pow, ast.Mod, ast.USub, ast.UAdd)


def _parse_expr(expr, key, source):
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise SpecError(f"{source}: [derived] {key} = {expr!r} is not an expression") from None
    for node in ast.walk(tree):
        if not isinstance(node, _NODES) or (isinstance(node, ast.Call) and not (
                isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords)):
            raise SpecError(f"{source}: [derived] {key} = {expr!r} may use numbers, parameters, + - * / // % ** "
                            f"and {', '.join(_FUNCS)}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise SpecError(f"{source}: [derived] {key} = {expr!r} may hold only numeric constants")
    return tree


def _eval_expr(expr, key, names, source):
    tree = _parse_expr(expr, key, source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in _FUNCS and node.id not in names:
            raise SpecError(f"{source}: [derived] {key} = {expr!r} uses {node.id!r}, which is not a parameter "
                            "given before it")
    try:
        return eval(compile(tree, "<derived>", "eval"), {"__builtins__": {}}, {**_FUNCS, **names})
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise SpecError(f"{source}: [derived] {key} = {expr!r} failed: {exc}") from None


def _coerce(kind, value, key, where):
    bad = SpecError(f"{where}: parameter {key} must be {dict(int='an integer', float='a finite number', str='a string', floats='a list of numbers')[kind]}, got {value!r}")
    if kind == "str":
        if not isinstance(value, str):
            raise bad
        return value
    if kind == "floats":
        if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
            raise bad
        return [float(x) for x in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad
    if kind == "int":
        if value != int(value):
            raise bad
        return int(value)
    return float(value)


# --------------------------------------------------------------------------- grid
@dataclass
class Grid:
    """Every point of a spec: resolved parameters, labels, keys, and the dataset's coordinates."""

    spec: SweepSpec
    points: list
    labels: list
    keys: list
    shape: tuple
    n_parts: int
    part_labels: tuple
    derived: dict = field(default_factory=dict)

    def extra_coords(self):
        """Coordinates of the outputs' own dimensions."""
        c = {"query_class": np.array(self.part_labels),
             "coord": np.array(["own"] + [f"class:{x}" for x in self.part_labels]),
             "boundary": np.array([f"tau{i + 1}" for i in range(4)])}
        for name, arg in self.spec.outputs.items():
            kind = MODELS[self.spec.model].outputs[name].arg
            if kind == "eps_list":
                c["eps"] = np.array(arg, dtype=np.float64)
            elif kind == "iter_list":
                c["t"] = np.array(arg, dtype=np.int64)
        used = {d for n in self.spec.outputs for d in MODELS[self.spec.model].outputs[n].dims}
        return {d: v for d, v in c.items() if d in used}

    def extra_shape(self, name):
        c = self.extra_coords()
        return tuple(c[d].size for d in MODELS[self.spec.model].outputs[name].dims)


def build_grid(spec: SweepSpec) -> Grid:
    """Resolve every point (fixed < swept < derived), check its types and build its model once."""
    adapter = MODELS[spec.model]
    dims = list(spec.sweep)
    shape = tuple(len(spec.sweep[d]) for d in dims)
    defaults = {k: v[1] for k, v in adapter.params.items()}
    points, labels, keys, parts = [], [], [], []
    derived = {k: np.full(shape, np.nan) for k in spec.derived}
    for flat, combo in enumerate(itertools.product(*(spec.sweep[d] for d in dims))):
        label = ", ".join(f"{d}={v}" for d, v in zip(dims, combo))
        where = f"{spec.source}: point {flat} ({label})"
        p = {**defaults, **spec.fixed, **dict(zip(dims, combo))}
        for k, expr in spec.derived.items():
            p[k] = _eval_expr(expr, k, {n: v for n, v in p.items() if v is not None and not isinstance(v, list)},
                              where)
            derived[k][np.unravel_index(flat, shape)] = float(p[k])
        p = {k: (v if v is None else _coerce(adapter.params[k][0], v, k, where)) for k, v in p.items()}
        try:
            parts.append(adapter.check(p, spec.outputs))
        except ValueError as exc:
            raise SpecError(f"{where}: {exc}") from None
        points.append(p)
        labels.append(label)
        keys.append(_point_key(spec, p))
    n_parts = max(len(x) for x in parts)
    part_labels = parts[0] if all(x == parts[0] for x in parts) else tuple(f"class{i}" for i in range(n_parts))
    return Grid(spec, points, labels, keys, shape, n_parts, part_labels, derived)


def _point_key(spec, params):
    blob = json.dumps({"model": spec.model, "params": params, "outputs": spec.outputs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# --------------------------------------------------------------------------- workers
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


def _run_point(model_name, params, outputs, n_parts, index):
    """Task of one grid point, run on a worker: never raises for a failing simulation."""
    import numba

    _crash_hook(index)
    if numba.get_num_threads() > 1:
        numba.set_num_threads(1)  # one simulation per worker thread: no oversubscription of cores
    t0 = time.perf_counter()
    try:
        data = MODELS[model_name].run(params, outputs, n_parts)
    except Exception as exc:  # noqa: BLE001 -- recorded with the point, the sweep goes on
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
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


# --------------------------------------------------------------------------- store
def _partial_path(out):
    return out + ".partial.npz"


def _read_store(path):
    """Completed points of a partial store: key -> (data dict, wall_s)."""
    with np.load(path, allow_pickle=False) as z:
        names = [k[6:] for k in z.files if k.startswith("data__")]
        return {str(key): ({n: z["data__" + n][i] for n in names}, float(z["wall_s"][i]))
                for i, key in enumerate(z["keys"])}


def _write_store(path, done):
    keys = list(done)
    names = sorted({n for d, _ in done.values() for n in d})
    atomic_savez(path, keys=np.array(keys, dtype=str), wall_s=np.array([done[k][1] for k in keys]),
                 **{"data__" + n: np.stack([done[k][0][n] for k in keys]) for n in names})


def _load_done(out, grid):
    """Points already computed (final file and partial store), checked against this grid."""
    done = {}
    if os.path.exists(out):
        try:
            ds = load_sweep(out)
        except (OSError, ValueError, KeyError):
            ds = None
        if ds is not None:
            for flat, key in enumerate(ds.point_key.ravel()):
                if not ds.failed.ravel()[flat]:
                    ix = np.unravel_index(flat, ds.failed.shape)
                    done[str(key)] = ({n: ds.data[n][ix] for n in ds.data}, float(ds.wall_s[ix]))
    if os.path.exists(_partial_path(out)):
        try:
            done.update(_read_store(_partial_path(out)))
        except (OSError, ValueError, KeyError):
            pass  # an unreadable store is recomputed, never trusted
    wanted = set(grid.keys)
    return {k: v for k, v in done.items() if k in wanted and all(
        n in v[0] and v[0][n].shape == grid.extra_shape(n) for n in grid.spec.outputs)}


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
              flush_interval=1.0, log=None) -> SweepReport:
    """Run every point of ``spec`` (a path, a dict or a :class:`SweepSpec`) and write one dataset.

    ``scheduler``: address of an existing Dask scheduler; otherwise a local cluster of
    ``workers`` single-threaded workers (processes, or threads with ``processes=False``).
    ``retries``: how often a task may lose its worker before the point is failed (local
    cluster; Dask's default 3 when None).  ``flush_interval``: seconds between rewrites of the
    progress store.  ``log``: a callable receiving one line per finished point.
    """
    t0 = time.perf_counter()
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec) if isinstance(spec, (str, os.PathLike)) else parse_spec(spec)
    grid = build_grid(spec)
    out = os.path.abspath(out or os.path.splitext(spec.source)[0] + ".npz")
    done = _load_done(out, grid)
    todo = [i for i, k in enumerate(grid.keys) if k not in done]
    n_skipped = len(grid.keys) - len(todo)
    errors = {}
    if todo:
        last = time.monotonic()
        try:
            with _client(scheduler, workers, processes, retries) as client:
                from distributed import as_completed

                futs = {client.submit(_run_point, spec.model, grid.points[i], spec.outputs, grid.n_parts, i,
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
                    if log:
                        log(line)
                    if time.monotonic() - last >= flush_interval:
                        _write_store(_partial_path(out), done)
                        last = time.monotonic()
        finally:
            if done:
                _write_store(_partial_path(out), done)
    _consolidate(out, grid, done, [errors[i] for i in sorted(errors)])
    if os.path.exists(_partial_path(out)):
        os.unlink(_partial_path(out))
    return SweepReport(out, len(grid.keys), len(todo), n_skipped, [errors[i] for i in sorted(errors)],
                       time.perf_counter() - t0)


def _consolidate(out, grid, done, errors):
    spec = grid.spec
    dims = list(spec.sweep)
    arrays = {"format": np.array(FORMAT), "sweep_dims": np.array(dims, dtype=str)}
    for d in dims:
        arrays["coord__" + d] = np.array(spec.sweep[d])
    for d, c in grid.extra_coords().items():
        arrays["coord__" + d] = c
    failed = np.array([k not in done for k in grid.keys]).reshape(grid.shape)
    wall = np.array([done[k][1] if k in done else np.nan for k in grid.keys]).reshape(grid.shape)
    for name in spec.outputs:
        full = np.full(grid.shape + grid.extra_shape(name), np.nan)
        flat = full.reshape((-1,) + grid.extra_shape(name))
        for i, k in enumerate(grid.keys):
            if k in done:
                flat[i] = done[k][0][name]
        arrays["data__" + name] = full
        arrays["dims__" + name] = np.array(dims + list(MODELS[spec.model].outputs[name].dims), dtype=str)
    for k, v in grid.derived.items():
        arrays["derived__" + k] = v
    meta = dict(spec=spec.to_dict(), source=spec.source, n_points=len(grid.keys), n_failed=int(failed.sum()),
                versions=versions(), git_commit=git_commit(), written=time.strftime("%Y-%m-%dT%H:%M:%S"))
    arrays.update(failed=failed, wall_s=wall, point_key=np.array(grid.keys, dtype=str).reshape(grid.shape),
                  errors=np.array(errors, dtype=str), meta=np.array(json.dumps(meta, default=str)))
    atomic_savez(out, **arrays)


# --------------------------------------------------------------------------- reading
@dataclass
class SweepData:
    """A sweep dataset: ``data[name]`` has dimensions ``dims[name]`` (the swept parameters first,
    in spec order), ``coords[dim]`` their values; ``derived[name]`` the derived parameters over
    the sweep dimensions; ``failed`` / ``wall_s`` / ``point_key`` over the sweep dimensions."""

    sweep_dims: tuple
    dims: dict
    coords: dict
    data: dict
    derived: dict
    failed: np.ndarray
    wall_s: np.ndarray
    point_key: np.ndarray
    errors: list
    meta: dict

    def sel(self, name, **where) -> np.ndarray:
        """``data[name]`` at coordinate values, e.g. ``sel("first_time_below", K=100, eps=1e-3)``."""
        arr, dims = self.data[name], list(self.dims[name])
        index = [slice(None)] * arr.ndim
        for d, v in where.items():
            if d not in dims:
                raise ValueError(f"{name} has no dimension {d!r}; its dimensions are {dims}")
            c = self.coords[d]
            hit = np.flatnonzero(c == v) if c.dtype.kind in "USO" else np.flatnonzero(np.isclose(c, v, rtol=1e-12))
            if hit.size != 1:
                raise ValueError(f"{d} = {v!r} is not one of the coordinates {c.tolist()}")
            index[dims.index(d)] = int(hit[0])
        return arr[tuple(index)]


def load_sweep(path) -> SweepData:
    """Read a dataset written by :func:`run_sweep` (plain ``numpy.load``, no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        if "format" not in z.files or str(z["format"]) != FORMAT:
            raise ValueError(f"{path} is not a sweep dataset ({FORMAT})")
        names = [k[6:] for k in z.files if k.startswith("data__")]
        return SweepData(
            sweep_dims=tuple(str(d) for d in z["sweep_dims"]),
            dims={n: tuple(str(d) for d in z["dims__" + n]) for n in names},
            coords={k[7:]: z[k] for k in z.files if k.startswith("coord__")},
            data={n: z["data__" + n] for n in names},
            derived={k[9:]: z[k] for k in z.files if k.startswith("derived__")},
            failed=z["failed"], wall_s=z["wall_s"], point_key=z["point_key"],
            errors=[str(e) for e in z["errors"]], meta=json.loads(str(z["meta"])))


# --------------------------------------------------------------------------- CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise SpecError(message)


def main(argv=None) -> int:
    """``python -m dynamics.sweep SPEC.toml``: 0 all points done, 1 some failed, 2 bad input."""
    ap = _Parser(prog="python -m dynamics.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", help="sweep spec (TOML)")
    ap.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a local cluster)")
    ap.add_argument("--workers", type=int, help="local worker processes, one thread each (default: all cores)")
    ap.add_argument("--out", help="dataset file (default: SPEC with suffix .npz)")
    ap.add_argument("--threads", action="store_true", help="local workers as threads of this process")
    ap.add_argument("--retries", type=int, help="times a point may lose its worker before it fails (default 3)")
    ap.add_argument("--quiet", action="store_true", help="no line per finished point")
    try:
        args = ap.parse_args(argv)
        if args.workers is not None and args.workers < 1:
            raise SpecError(f"--workers must be >= 1, got {args.workers}")
        spec = load_spec(args.spec)
        build_grid(spec)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        rep = run_sweep(spec, args.out, scheduler=args.scheduler, workers=args.workers,
                        processes=not args.threads, retries=args.retries, log=say)
    except (OSError, TimeoutError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{rep.path}: {rep.n_points} points, {rep.n_computed} run now, {rep.n_skipped} already done, "
          f"{len(rep.errors)} failed ({rep.wall_s:.1f} s)")
    for e in rep.errors:
        print(f"failed: {e}", file=sys.stderr)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
