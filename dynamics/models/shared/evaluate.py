"""Evaluating trained states at test settings other than the ones they were trained with, without
retraining: a labelled grid (xarray) over replicas and test parameters.

Shared by both of H. Li et al.'s systems (the in-context classifier and the chain-of-thought
model): a trained state is a function of the *training* parameters only, so any parameter that
enters only the test distribution (an out-of-domain coefficient sum, a test fraction ``alpha'``,
a test length ``l_ts``) can be swept on the saved weights.  This module knows nothing of either
network; a model supplies

- ``members``: the trained replicas, a list of ``(model, state)`` pairs;
- ``rebuild(model, settings) -> model``: the model at the test settings (built and *checked* by
  the model's own parameter rules; an invalid setting raises there, before anything is evaluated);
- ``point(model, state, rng) -> {quantity: (mean, se)}``: the estimates at one grid point.

:func:`evaluate_grid` checks every grid point first (all rebuilds happen before the first
evaluation, so bad settings write nothing), then evaluates with *common random numbers*: the
generator of ``(replica r, point)`` is seeded by ``(seed, r)`` only, so two grid points of one
replica see the same random stream and differ only in the swept settings (a paired comparison
across the grid).  The result is an :class:`xarray.Dataset` with dimensions ``replica`` and one
per swept parameter (in the order given), a variable per quantity and ``<quantity>_se`` (the
standard error over the point's own test prompts).  :func:`parse_values` reads a command line's
comma-separated lists; :func:`write` stores the dataset atomically as netCDF.
"""
from __future__ import annotations

import itertools

import numpy as np


def parse_values(name: str, text, kind=float) -> list:
    """``"5,10,20" -> [5, 10, 20]`` (``kind`` ``int`` or ``float``), refusing, in one line naming
    ``name``, an empty list, a non-number, a non-integer for ``int`` and a repeated value."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [t.strip() for t in str(text).split(",")]
    if not items or any(t == "" for t in items):
        raise ValueError(f"{name} must be a comma-separated list of numbers, got {text!r}")
    out = []
    for t in items:
        try:
            v = float(t)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a comma-separated list of numbers, got {t!r}") from None
        if not np.isfinite(v):
            raise ValueError(f"{name} values must be finite, got {t!r}")
        if kind is int:
            if v != int(v):
                raise ValueError(f"{name} values must be integers, got {t!r}")
            v = int(v)
        out.append(v)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} values must be distinct, got {text!r}")
    return out


def evaluate_grid(members, grid: dict, rebuild, point, *, seed: int = 0, attrs: dict | None = None):
    """Every replica at every point of the Cartesian ``grid`` (module docstring).

    Parameters
    ----------
    members : list of (model, state)
        The ``R`` trained replicas.
    grid : dict, name -> sequence
        Test parameters and their values; the grid is their Cartesian product.
    rebuild : callable ``(model, settings: dict) -> model``
        The replica's model at the test settings (raises on an invalid setting).
    point : callable ``(model, state, rng) -> {quantity: (mean, se)}``
        Estimates at one grid point.
    seed : int
        Seed of the test prompts: replica ``r`` uses ``numpy.random.default_rng([seed, r])`` afresh
        at every grid point (common random numbers).
    attrs : dict, optional
        Attributes of the dataset (e.g. the model's name and what was measured).

    Returns
    -------
    xarray.Dataset
        Dimensions ``("replica", *grid)``, a coordinate per dimension; variables
        ``<quantity>`` and ``<quantity>_se`` of shape ``(R, *map(len, grid.values()))``.
    """
    import xarray as xr

    names = list(grid)
    values = [list(grid[k]) for k in names]
    if not members:
        raise ValueError("members must hold at least one trained replica")
    for k, v in zip(names, values):
        if len(v) == 0:
            raise ValueError(f"{k} must have at least one value")
    points = list(itertools.product(*values))
    # check every point first: a bad setting raises here, before anything is evaluated or written
    models = [[rebuild(model, dict(zip(names, p))) for p in points] for model, _ in members]
    shape = (len(members),) + tuple(len(v) for v in values)
    out: dict = {}
    for r, ((_, state), row) in enumerate(zip(members, models)):
        for i, m in enumerate(row):
            est = point(m, state, np.random.default_rng([int(seed), r]))
            idx = (r,) + np.unravel_index(i, shape[1:])
            for q, (mean, se) in est.items():
                if q not in out:
                    out[q] = (np.full(shape, np.nan), np.full(shape, np.nan))
                out[q][0][idx], out[q][1][idx] = mean, se
    dims = ("replica", *names)
    data = {}
    for q, (mean, se) in out.items():
        data[q] = (dims, mean)
        data[f"{q}_se"] = (dims, se)
    coords = {"replica": np.arange(len(members)), **{k: np.asarray(v) for k, v in zip(names, values)}}
    return xr.Dataset(data, coords=coords, attrs=dict(attrs or {}, seed=int(seed)))


def write(path: str, ds) -> str:
    """Store ``ds`` atomically as netCDF at ``path`` (:func:`dynamics.core.trajectory.write_dataset`)."""
    from dynamics.core.trajectory import write_dataset

    write_dataset(path, ds)
    return path
