"""Saved trained states: read a run directory's ``state.nc`` for the post-training analyses.

A Monte Carlo run writes its final weights to ``state.nc`` (:meth:`Result.save`): one variable
per block with a leading ``replica`` axis, and the attributes ``model`` and ``method``.
:func:`load_state` returns the replicas' states and refuses, in one line naming the file and the
rule, a file of another model or with blocks whose shapes do not match the model's parameters.
"""
from __future__ import annotations

import os

import numpy as np

BLOCK_NAMES = ("W_Q", "W_K", "W_V", "W_O", "a")


def load_state(path: str, model) -> list:
    """The replicas' states ``[{block: array}]`` stored in ``path`` (a ``state.nc`` file or a run
    directory holding one), checked against ``model`` (a :class:`Li2024`)."""
    import xarray as xr

    if os.path.isdir(path):
        path = os.path.join(path, "state.nc")
    if not os.path.isfile(path):
        raise ValueError(f"state must be a state.nc file or a run directory holding one, got {path!r}")
    try:
        with xr.open_dataset(path, engine="scipy") as ds:
            ds.load()
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"state {path!r} is not a readable netCDF state file: {exc}".splitlines()[0]) from None
    owner = ds.attrs.get("model")
    if owner != model.name:
        raise ValueError(f"state {path!r} was saved by model {owner!r}; the {model.name} analyses need a "
                         f"{model.name} state")
    missing = [b for b in BLOCK_NAMES if b not in ds]
    if missing:
        raise ValueError(f"state {path!r} lacks the blocks {', '.join(missing)} of a {model.name} state")
    blocks = model.blocks("mc")
    arrays = {}
    for b in BLOCK_NAMES:
        arr = np.asarray(ds[b].values, dtype=np.float64)
        if "replica" not in ds[b].dims:
            arr = arr[None]
        if arr.shape[1:] != tuple(blocks[b].shape):
            raise ValueError(f"state {path!r}: {b} has shape {arr.shape[1:]} but the parameters (mlp_width = "
                             f"{model.config['mlp_width']}, d = d_x + label_dim = {model.d}) give "
                             f"{tuple(blocks[b].shape)}: inconsistent dimensions")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"state {path!r}: {b} has non-finite entries")
        arrays[b] = arr
    return [{b: arrays[b][r].copy() for b in BLOCK_NAMES} for r in range(arrays["W_O"].shape[0])]
