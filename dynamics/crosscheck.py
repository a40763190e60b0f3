"""Cross-check of a model's exact dynamics against Monte Carlo training of the real model.

For any model with an exact method and the Monte Carlo method (Huang: MODEL.md section 5,
``theta = V^T Q V`` of a Monte Carlo run must follow the exact reduced trajectory within its
sampling error; Yang: SGD with a small step on fresh prompts follows exact GD), :func:`crosscheck`
runs exact GD and ``R`` independent Monte Carlo replicas from the same initial state and compares
every observable both record (same name), entry by entry and snapshot by snapshot: the exact
value, the replica mean, its standard error and the z-score.

Threshold.  With ``R`` replicas the studentised mean ``(mean - exact) / SE`` has a t law with
``R - 1`` degrees of freedom when the exact value is the replicas' mean (the replicas are
independent and, for a large batch, nearly Gaussian).  Over ``m`` compared (entry, time) pairs a
Bonferroni correction at family-wise level ``alpha`` (``--false-alarm``) gives the threshold
``t_{R-1}^{-1}(1 - alpha / (2 m))``; the check fails if any ``|z|`` exceeds it.  SGD's mean differs
from population GD by ``O(eta^2 / B)``: use a large batch.  A loss estimated by the replicas at
their own noisy state exceeds the exact loss by a second-order term in the sampling noise; with a
large batch this stays inside the band, but it is the first quantity to leave it.

``python -m dynamics.crosscheck --model NAME [parameters]`` writes ``crosscheck.nc``,
``crosscheck.md`` (table), ``overlay.png`` and ``difference.png`` into ``--out`` (checked before
anything runs) and exits 1 when the check fails, 2 on bad input.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import stats

from dynamics.core.params import Param, ParamError
from dynamics.core.stats import mean_se

ALPHA = Param("false_alarm", "float", 0.01, "family-wise false-alarm level alpha of the Bonferroni t-test", low=0.0, high=0.5,
              low_open=True)
DEFAULTS = {"steps": 300, "snapshots": 12, "replicas": 8, "batch": 2000}
"""The cross-check's own defaults for the run length (declared in the methods; a short, precise run)."""
SKIP = ("train_loss", "first_below")


@dataclass
class CrossCheck:
    """Result of :func:`crosscheck`.  Arrays are ``(T, m)`` over snapshots and compared entries."""

    t: np.ndarray
    names: list
    exact: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    z: np.ndarray
    threshold: float
    replicas: int
    extra: dict

    @property
    def max_abs_z(self) -> float:
        return float(np.nanmax(np.abs(self.z))) if self.z.size else 0.0

    @property
    def passed(self) -> bool:
        return self.max_abs_z <= self.threshold

    def table(self) -> str:
        lines = ["| quantity | exact (final) | MC mean (final) | SE | max abs z over time |", "|---|---|---|---|---|"]
        for j, name in enumerate(self.names):
            lines.append(f"| {name} | {self.exact[-1, j]:.6g} | {self.mean[-1, j]:.6g} | {self.se[-1, j]:.2g} "
                         f"| {np.nanmax(np.abs(self.z[:, j])):.2f} |")
        lines.append("")
        tail = "; ".join(f"{k} = {v:.2e}" for k, v in self.extra.items())
        lines.append(f"R = {self.replicas} replicas; Bonferroni threshold |z| <= {self.threshold:.2f}; "
                     f"max |z| = {self.max_abs_z:.2f} -> {'PASS' if self.passed else 'FAIL'}" + (f"; {tail}" if tail else ""))
        return "\n".join(lines)

    def dataset(self) -> xr.Dataset:
        return xr.Dataset({k: (("t", "entry"), getattr(self, k)) for k in ("exact", "mean", "se", "z")},
                          coords={"t": self.t, "entry": np.array(self.names)},
                          attrs={"threshold": self.threshold, "replicas": self.replicas,
                                 "passed": int(self.passed), **self.extra})


def _entries(ds_exact, ds_mc):
    """``(names, exact (T, m), replicas (R, T, m))`` of every entry both runs record."""
    names, ex, mc = [], [], []
    for var in ds_exact.data_vars:
        if var in SKIP or var.endswith("_se") or var not in ds_mc or "t" not in ds_exact[var].dims:
            continue
        e = ds_exact[var]
        m = ds_mc[var].transpose("replica", *e.dims)
        others = [d for d in e.dims if d != "t"]
        stacked_e = e.stack(entry=others) if others else e.expand_dims(entry=[0], axis=-1)
        stacked_m = m.stack(entry=others) if others else m.expand_dims(entry=[0], axis=-1)
        for j in range(stacked_e.sizes["entry"]):
            col = stacked_e.isel(entry=j).values
            if not np.all(np.isfinite(col)):
                continue  # entries that do not exist (Huang's empty classes)
            label = var
            if others:
                idx = stacked_e["entry"].values[j]
                idx = idx if isinstance(idx, tuple) else (idx,)
                label += "[" + ", ".join(f"{d}={v}" for d, v in zip(others, idx)) + "]"
            names.append(label)
            ex.append(col)
            mc.append(stacked_m.isel(entry=j).values)
    if not names:
        raise ParamError("model", "the exact and Monte Carlo methods of this model record no common observable")
    return names, np.stack(ex, axis=-1), np.stack(mc, axis=-1)


def crosscheck(model="huang2024", *, false_alarm=ALPHA.default, save_at=None, mc_overrides=None, **params) -> CrossCheck:
    """Exact GD against ``replicas`` Monte Carlo trainings of ``model`` (see the module docstring).

    ``params``: any parameter of the model and of its ``gd`` and ``mc`` methods; each goes to the
    method(s) that use it, and every value is checked before anything runs.  The cross-check's
    defaults: :data:`DEFAULTS`.  ``mc_overrides``: parameters that differ for the Monte Carlo run
    only (a negative control: a deliberately wrong step must fail the check).
    """
    from dynamics import models
    from dynamics.core.contract import Model
    from dynamics.core.trajectory import snapshot_steps
    from dynamics.simulate import build, simulate

    cls = type(model) if isinstance(model, Model) else models.get(model)
    for m in ("gd", "mc"):
        if m not in cls.methods:
            raise ParamError("model", f"the cross-check needs methods gd and mc; model {cls.name} supports "
                                      f"{', '.join(cls.methods)}")
    alpha = ALPHA.coerce(false_alarm)
    params = {**DEFAULTS, **cls.crosscheck_defaults(params), **params}
    split = {m: {k: v for k, v in params.items() if not cls.params[k].methods or m in cls.params[k].methods}
             for m in ("gd", "mc")} if all(k in cls.params for k in params) else None
    if split is None:
        unknown = sorted(k for k in params if k not in cls.params)
        raise ParamError(unknown[0], f"unknown parameter {unknown[0]!r}; model {cls.name} takes "
                                     f"{', '.join(cls.params.names())}")
    if int(params["replicas"]) < 2:
        raise ParamError("replicas", f"replicas must be >= 2 to estimate a standard error, got {params['replicas']}")
    base = model if isinstance(model, Model) else cls.name
    mc_params = {**split["mc"], **(mc_overrides or {})}
    mc_model = base.with_params("mc", **mc_params) if isinstance(base, Model) else cls.create("mc", **mc_params)
    build(base, "gd", **split["gd"])  # checks the exact run's parameters too, before anything runs
    steps = int(mc_model.config["steps"])
    rec = snapshot_steps(steps, int(mc_model.config["snapshots"])) if save_at is None else np.asarray(save_at)
    exact = simulate(base, "gd", save_at=rec, **split["gd"])
    mc = simulate(mc_model, "mc", save_at=rec)
    names, ex, reps = _entries(exact.ds, mc.ds)
    R = reps.shape[0]
    mean, se = mean_se(reps)
    diff = mean - ex
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, diff / se, np.where(np.abs(diff) <= 1e-12 * np.maximum(1, np.abs(ex)), 0.0, np.inf))
    t = exact.t
    compared = t > 0
    z[~compared] = 0.0  # both start from the same state
    m = int(compared.sum()) * len(names)
    threshold = float(stats.t.ppf(1 - alpha / (2 * max(m, 1)), R - 1))
    extra = {}
    if "off_span" in mc.ds:
        extra["max_off_span"] = float(mc.ds["off_span"].max())
    return CrossCheck(t=t, names=names, exact=ex, mean=mean, se=se, z=z, threshold=threshold, replicas=R, extra=extra)


def figures(cc: CrossCheck, outdir):
    """``overlay.png`` (exact solid, replica mean dashed, +-2 SE band) and ``difference.png``,
    time on a log axis like the snapshots."""
    from dynamics.core.report import plt, save_figure

    m = len(cc.names)
    cols = min(4, m)
    rows = int(np.ceil(m / cols))
    keep = cc.t > 0
    t = cc.t[keep]
    paths = []
    for kind in ("overlay", "difference"):
        fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 2.9 * rows), squeeze=False)
        for j, ax in enumerate(axes.ravel()):
            if j >= m:
                ax.axis("off")
                continue
            ex, mean, se = cc.exact[keep, j], cc.mean[keep, j], cc.se[keep, j]
            centre = mean if kind == "overlay" else mean - ex
            if kind == "overlay":
                ax.semilogx(t, ex, "-", color="k", label="exact")
            else:
                ax.axhline(0, color="k", lw=0.8)
            ax.semilogx(t, centre, "--", color="C1", label="MC mean" if kind == "overlay" else "MC mean - exact")
            ax.fill_between(t, centre - 2 * se, centre + 2 * se, color="C1", alpha=0.3, label="+-2 SE")
            ax.set_title(cc.names[j], fontsize=8)
            ax.set_xlabel("GD iteration t", fontsize=8)
            if j == 0:
                ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(save_figure(fig, os.path.join(outdir, f"{kind}.png")))
    return paths


def main(argv=None) -> int:
    from dynamics.core.cli import guarded

    return guarded(_main, argv)


def _main(argv):
    from dynamics import models
    from dynamics.core import rundir
    from dynamics.core.atomic import atomic_write_bytes
    from dynamics.core.cli import ArgParser, add_params, given
    from dynamics.core.params import ParamSet
    from dynamics.core.trajectory import write_dataset

    pre = ArgParser(add_help=False)
    pre.add_argument("--model", default=models.DEFAULT)
    known, _ = pre.parse_known_args(argv)
    cls = models.get(known.model)
    if not {"gd", "mc"} <= set(cls.methods):  # refused before its parameters are even parsed
        raise ParamError("model", f"the cross-check needs methods gd and mc; model {cls.name} supports "
                                  f"{', '.join(cls.methods)}")
    if ALPHA.name in cls.params:
        raise ParamError(ALPHA.name, f"model {cls.name} declares a parameter {ALPHA.name}, which the cross-check's "
                                     f"own {ALPHA.flag()} would shadow")
    ap = ArgParser(prog="python -m dynamics.crosscheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=models.names(), help=f"the system (default {models.DEFAULT})")
    ap.add_argument("--out", default="runs/crosscheck", help="output folder (default runs/crosscheck)")
    ap.add_argument("--overwrite", action="store_true", help="replace the files of a previous cross-check there")
    shown = ParamSet(p.with_default(DEFAULTS[p.name]) if p.name in DEFAULTS else p for p in cls.params
                     if not p.methods or set(p.methods) & {"gd", "mc"})
    add_params(ap, shown, f"{cls.name} parameters (gd and mc)")
    add_params(ap, ParamSet([ALPHA]), "test")
    ns = ap.parse_args(argv)
    params = given(ns, shown.names())
    alpha = ALPHA.coerce(getattr(ns, ALPHA.name, ALPHA.default))
    out = rundir.check_writable_dir(ns.out)
    existing = [f for f in ("crosscheck.nc", "crosscheck.md", "overlay.png", "difference.png")
                if os.path.exists(os.path.join(out, f))]
    if existing and not ns.overwrite:
        raise ParamError("out", f"--out {out} already holds a cross-check ({existing[0]}); add --overwrite or "
                                "choose another folder")
    cc = crosscheck(cls.name, false_alarm=alpha, **params)
    os.makedirs(out, exist_ok=True)
    write_dataset(os.path.join(out, "crosscheck.nc"), cc.dataset())
    atomic_write_bytes(os.path.join(out, "crosscheck.md"), (cc.table() + "\n").encode())
    figures(cc, out)
    print(cc.table())
    return 0 if cc.passed else 1


if __name__ == "__main__":
    sys.exit(main())
