"""Figures of a Yang et al. run directory.

- ``loss_gap.png``: ``L - L*`` on a log axis against iterations (linear axis, so linear
  convergence is a straight line), with the geometric rate fitted over the second half of the run
  (:func:`.analysis.fit_rate`) dashed, and the float64 resolution of ``L`` itself dotted;
- ``inference.png``: the training loss per token ``L/K`` and the in- and out-of-domain inference
  losses ``(1/K) E|yhat - yhat*|^2`` against iterations (log-log: the paper's Fig 2 panel (a));
- ``sigma_min.png``: ``min_k sigma_min(B_k)`` against iterations (the constant of the PL
  inequality behind Theorem 1; 0 when ``H < N``).

Monte Carlo runs draw the replica mean with a band of two standard errors (over replicas).
"""
from __future__ import annotations

import os

import numpy as np

from dynamics.core.report import plt, save_figure
from dynamics.models.yang2024.analysis import fit_rate, series

RESOLUTION = float(np.finfo(np.float64).eps)
"""float64 resolution of ``L`` relative to ``L*``: the gap, computed directly as a quadratic form
in ``a_k - A_{:,k}``, stays meaningful far below ``RESOLUTION x L*``."""


def _band(ax, t, mean, se, plot, **kw):
    line, = plot(t, mean, **kw)
    if se is not None:
        ax.fill_between(t, mean - 2 * se, mean + 2 * se, color=line.get_color(), alpha=0.25, lw=0)
    return line


def _title(res):
    c = res.model.config
    return f"N={c['N']}, K={c['K']}, d={c['d']}, m={c['m']}, H={c['H']}, tau={c['tau']:g} ({res.method})"


def _finish(fig, ax, res, xlabel, ylabel, path, legend=True):
    """Axis labels, the run's setting as title, the legend; then the atomic PNG write."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_title(res), fontsize=9)
    if legend:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def loss_gap(res, path):
    """``L - L*`` against iterations on a log axis, with the fitted geometric rate."""
    ds = res.ds
    t = res.t
    gap, se = series(ds, "gap")
    L_star = float(ds["L_star"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    keep = gap > 0
    _band(ax, t[keep], gap[keep], None if se is None else se[keep], ax.semilogy, label="$L - L^*$")
    rate = fit_rate(t, gap)
    if np.isfinite(rate.rho):
        tt = np.linspace(rate.t0, rate.t1, 50)
        ax.semilogy(tt, rate.line(tt), "--", color="k", lw=1,
                    label=f"fit: $\\rho$ = 1 - {1 - rate.rho:.3g} per step ($R^2$ = {rate.r2:.4f})")
    if L_star > 0:
        ax.axhline(RESOLUTION * L_star, color="0.6", lw=0.8, ls=":", label="float64 resolution of $L$ (2.2e-16 $L^*$)")
    return _finish(fig, ax, res, "GD iteration t", "$L - L^*$", path)


def inference(res, path):
    """Training loss ``L/K`` and in/out-of-domain inference losses (log-log)."""
    ds = res.ds
    keep = res.t > 0
    t = res.t[keep]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, label in (("loss_per_token", "training loss $L/K$"),
                        ("inference_id", "in-domain inference loss"),
                        ("inference_ood", "out-of-domain inference loss")):
        mean, se = series(ds, name)
        _band(ax, t, mean[keep], None if se is None else se[keep], ax.loglog, label=label)
    ax.axhline(float(ds["L_star"]) / res.model.problem.K, color="k", ls="--", lw=0.8, label="$L^*/K$")
    return _finish(fig, ax, res, "iteration t", "loss per token", path)


def sigma_min(res, path):
    """``min_k sigma_min(B_k)`` against iterations."""
    ds = res.ds
    mean, se = series(ds, "sigma_min_B")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    keep = res.t > 0
    _band(ax, res.t[keep], mean[keep], None if se is None else se[keep], ax.semilogx)
    return _finish(fig, ax, res, "iteration t", "$\\min_k \\sigma_{\\min}(B_k)$", path, legend=False)


def run_figures(res, outdir) -> list:
    """The three figures of a run directory (none for a single snapshot)."""
    if res.t.size < 2:
        return []
    return [loss_gap(res, os.path.join(outdir, "loss_gap.png")),
            inference(res, os.path.join(outdir, "inference.png")),
            sigma_min(res, os.path.join(outdir, "sigma_min.png"))]
