"""Trajectories: what to save, how to record it, and the labelled result of a run.

- :func:`snapshot_steps`: log-spaced snapshot iterations (the paper's time scales span decades).
- :class:`Recorder`: preallocated arrays filled with :meth:`Model.observe` at the snapshots,
  turned into an :class:`xarray.Dataset` with named dimensions (``replica``, ``t`` in GD steps,
  then the model's own: ``query_class``, ``head``, ...) and coordinates.
- :class:`Result`: the dataset, the final state, the model and the run's status; written to a run
  directory as ``results.nc`` (netCDF through scipy: ``xarray.open_dataset`` reads it) and
  ``state.nc`` (the final state's blocks), atomically.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from dynamics.core.atomic import atomic_write_bytes, json_default


def snapshot_steps(steps: int, count: int = 200) -> np.ndarray:
    """Log-spaced snapshot iterations in ``[0, steps]`` (0, 1 and ``steps`` always included)."""
    steps = int(steps)
    if steps <= 0:
        return np.zeros(1, dtype=np.int64)
    grid = np.unique(np.round(np.logspace(0, np.log10(steps), max(2, int(count)))).astype(np.int64))
    grid = grid[grid < steps]  # logspace can round past the horizon when steps > 2^53
    return np.unique(np.concatenate([[0], grid, [steps]])).astype(np.int64)


class Recorder:
    """Records observables at the snapshot times ``times`` (one row per time, per replica).

    Arrays are allocated at the first record, from the shapes :meth:`Model.observe` returns;
    unrecorded rows stay NaN.  ``replicas=None`` means no replica dimension.
    """

    def __init__(self, observables: dict, coords: dict, times, replicas: int | None = None):
        self.observables = dict(observables)
        self.coords = dict(coords)
        self.times = np.asarray(times, dtype=np.float64)
        self.replicas = replicas
        self.arrays: dict = {}

    def _lead(self):
        return (self.times.size,) if self.replicas is None else (self.replicas, self.times.size)

    def put(self, i: int, values: dict, replica: int | None = None) -> None:
        """Store ``values`` (``{name: array}``) as row ``i`` (of ``replica``)."""
        for name, v in values.items():
            v = np.asarray(v, dtype=np.float64)
            arr = self.arrays.get(name)
            if arr is None:
                arr = self.arrays[name] = np.full(self._lead() + v.shape, np.nan)
            if replica is None:
                arr[i] = v
            else:
                arr[replica, i] = v

    def restore(self, arrays: dict) -> None:
        """Take the arrays of a checkpoint."""
        self.arrays = {k: np.array(v, dtype=np.float64) for k, v in arrays.items()}

    def dataset(self, n: int | None = None, times=None, attrs: dict | None = None) -> xr.Dataset:
        """The first ``n`` rows as a Dataset (``times`` replaces the time coordinate if given)."""
        t = self.times if times is None else np.asarray(times, dtype=np.float64)
        n = t.size if n is None else int(n)
        lead = ("t",) if self.replicas is None else ("replica", "t")
        data = {}
        for name, arr in self.arrays.items():
            base = name[:-3] if name.endswith("_se") else name
            obs = self.observables.get(base)
            dims = tuple(obs.dims) if obs is not None else tuple(f"{name}_dim{i}" for i in range(arr.ndim - len(lead)))
            sl = arr[:, :n] if self.replicas is not None else arr[:n]
            va = {}
            if obs is not None:
                va = {"symbol": obs.symbol, "description": obs.doc}
                if name.endswith("_se"):
                    va = {"symbol": f"SE({obs.symbol})", "description": f"standard error of {base}"}
            data[name] = xr.Variable(lead + dims, sl, attrs=va)
        coords = {"t": ("t", t[:n], {"description": "time in GD iterations (flow: tau / eta)"})}
        if self.replicas is not None:
            coords["replica"] = ("replica", np.arange(self.replicas))
        used = {d for v in data.values() for d in v.dims}
        for dim, labels in self.coords.items():
            if dim in used:
                coords[dim] = (dim, np.asarray(labels))
        return xr.Dataset(data, coords=coords, attrs=dict(attrs or {}))


def dataset_bytes(ds: xr.Dataset) -> bytes:
    """A Dataset as netCDF-3 bytes (scipy engine: no compiled extra).  Attributes that are not
    strings or numbers are stored as JSON text."""
    ds = ds.copy()
    ds.attrs = {k: _attr(v) for k, v in ds.attrs.items()}
    for v in ds.variables.values():
        v.attrs = {k: _attr(x) for k, x in v.attrs.items()}
    return bytes(ds.to_netcdf(None, engine="scipy"))


def _attr(v):
    if isinstance(v, (str, int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return v
    return json.dumps(v, default=json_default, sort_keys=True)


def write_dataset(path: str, ds: xr.Dataset) -> None:
    """Write ``ds`` to ``path`` as netCDF, atomically (never a half-written file)."""
    atomic_write_bytes(path, dataset_bytes(ds))


def state_dataset(state: dict, blocks: dict | None = None, attrs: dict | None = None, replicas: bool = False):
    """The blocks of a state as a Dataset (dimensions ``<block>_0``, ``<block>_1``, ...)."""
    data = {}
    for name, arr in state.items():
        arr = np.asarray(arr, dtype=np.float64)
        lead = ("replica",) if replicas else ()
        dims = lead + tuple(f"{name}_{i}" for i in range(arr.ndim - len(lead)))
        va = {"symbol": blocks[name].symbol} if blocks and name in blocks else {}
        data[name] = xr.Variable(dims, arr, attrs=va)
    return xr.Dataset(data, attrs=dict(attrs or {}))


@dataclass
class Result:
    """The outcome of one run (any model, any method).

    Attributes
    ----------
    ds : xarray.Dataset
        The trajectory: one variable per observable, dimensions ``t`` (GD iterations; for the
        flow ``tau / eta``), ``replica`` for Monte Carlo, then the model's own; attributes carry
        the model, the method and the resolved configuration.  Time-independent references
        (``L_star``, ...) are variables without ``t``.
    state : dict
        The final state ``{block: array}`` (Monte Carlo: a leading replica axis).
    model : Model
    method : str
    status : str
        ``completed``, ``converged`` (the ``eps`` rule fired) or ``diverged``.
    message : str
    wall_s : float
        Seconds spent in the method.
    extra : dict
        Method diagnostics (e.g. ``rhs_evaluations`` of the flow, ``first_below``).
    """

    ds: xr.Dataset
    state: dict
    model: object
    method: str
    status: str = "completed"
    message: str = ""
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def t(self) -> np.ndarray:
        """Snapshot times in GD iterations."""
        return np.asarray(self.ds["t"].values, dtype=np.float64)

    def save(self, folder: str) -> list:
        """Write ``results.nc`` and ``state.nc`` into ``folder`` (atomically); returns the paths."""
        import os

        res = os.path.join(folder, "results.nc")
        st = os.path.join(folder, "state.nc")
        write_dataset(res, self.ds)
        blocks = self.model.blocks(self.method)
        write_dataset(st, state_dataset(self.state, blocks, {"model": self.model.name, "method": self.method},
                                        replicas="replica" in self.ds.dims))
        return [res, st]
