"""Where a sweep keeps its points: the progress store ``OUT.partial.nc`` (rewritten atomically as
points arrive) and the final labelled dataset ``OUT`` (swept parameters as its first
dimensions); an existing ``OUT`` that is not a sweep of the same model is never replaced."""
from __future__ import annotations

import itertools
import json
import os
import time

import numpy as np
import xarray as xr

from dynamics.sweep.grid import coordinate
from dynamics.sweep.spec import SpecError

FORMAT = "icl-dynamics-sweep/2"


def partial_path(out):
    return out + ".partial.nc"


def write_store(path, done):
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


def load_done(out, grid):
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


def consolidate(out, grid, done, errors):
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
    ds = xr.concat(parts, dim="point", join="outer") if parts else xr.Dataset(coords={"point": [0]})
    ds = ds.reindex(point=np.arange(len(grid.keys)))  # every point failed: a dataset of failures only
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
