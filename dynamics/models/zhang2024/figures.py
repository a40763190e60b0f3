"""The run directory's figure: convergence of the loss and of the prediction's matrix."""
from __future__ import annotations

import os

import numpy as np

from dynamics.core.report import plt, save_figure


def convergence(result, outdir: str) -> str:
    """``convergence.png``: ``L - L*`` and ``|u U^T - Gamma^{-1}|_F / |Gamma^{-1}|_F`` against GD steps
    (log-log; Monte Carlo: the replicas' mean).

    Parameters
    ----------
    result : dynamics.core.trajectory.Result
        A run of ``zhang2024`` (any method).
    outdir : str
        The run directory.

    Returns
    -------
    str
        The figure's path.
    """
    ds = result.ds.mean("replica") if "replica" in result.ds.dims else result.ds
    t = ds["t"].values
    keep = t > 0
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, label in (("gap", "L - L*"), ("G_err", "|u U^T - Gamma^-1|_F / |Gamma^-1|_F")):
        y = ds[name].values[keep]
        ax.loglog(t[keep], np.where(y > 0, y, np.nan), label=label)
    ax.set_xlabel("GD iteration t")
    ax.set_title(f"zhang2024, {result.method}: d = {result.model.d}, N = {result.model.problem.N}")
    ax.legend()
    return save_figure(fig, os.path.join(outdir, "convergence.png"))
