"""Figures of the chain-of-thought system: the run directory's and the reproduce targets' (PNG
through the atomic writer).  Error curves against the test length use the ICML 2024 system's
:func:`dynamics.models.li2024.figures.curves`."""
from __future__ import annotations

import os

import numpy as np

from dynamics.core.report import plt, save_figure
from dynamics.core.stats import mean_se
from dynamics.models.li2024_cot.decoding import COLUMN_TYPES

LABELS = {"same_pattern_same_step": "same pattern, same step", "diff_pattern_same_step": "different pattern, same step",
          "same_pattern_diff_step": "same pattern, different step",
          "diff_pattern_diff_step": "different pattern, different step"}


def band(ds, name):
    """Mean and standard error over the ``replica`` axis (one replica: its evaluation SE)."""
    v = ds[name].values
    if "replica" not in ds[name].dims:           # exact GD: one deterministic curve
        return v, np.zeros_like(v)
    if v.shape[0] > 1:
        return mean_se(v)
    return v[0], ds[f"{name}_se"].values[0] if f"{name}_se" in ds else np.zeros_like(v[0])


def _time_axis(ax, ylabel):
    ax.set_xscale("symlog", linthresh=1.0)       # linear below t = 1: the initial state t = 0 stays on the axis
    ax.set_xlim(left=0.0)
    ax.set_xlabel("SGD iteration t")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def attention_panels(path, t, panels, title):
    """``panels``: ``[(panel title, mean (T, 4), se (T, 4))]``; the four masses against ``t``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.8 * len(panels), 4.2), squeeze=False)
    keep = t >= 0                                # t = 0 (initialisation) is kept
    for ax, (sub, mean, se) in zip(axes[0], panels):
        for j, kind in enumerate(COLUMN_TYPES):
            ax.plot(t[keep], mean[keep, j], marker="o", ms=3, label=LABELS[kind])
            ax.fill_between(t[keep], (mean - 2 * se)[keep, j], (mean + 2 * se)[keep, j], alpha=0.2)
        ax.set_ylim(0, 1.02)
        ax.set_title(sub, fontsize=10)
        _time_axis(ax, "attention mass")
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def run_figures(ds, outdir) -> list:
    """``errors.png`` and ``attention.png`` of a run directory (replica mean +- 2 SE); a run that
    recorded only the loss gets ``loss.png``."""
    t = ds["t"].values
    keep = t >= 0                                # t = 0 (initialisation) is kept
    if "error_cot" not in ds:
        fig, ax = plt.subplots(figsize=(6, 4))
        y, se = band(ds, "loss")
        ax.plot(t[keep], y[keep], marker="o", ms=3, label="held-out training loss")
        ax.fill_between(t[keep], (y - 2 * se)[keep], (y + 2 * se)[keep], alpha=0.2)
        ax.set_yscale("log")
        _time_axis(ax, "1/2 E|z - F|^2")
        return [save_figure(fig, os.path.join(outdir, "loss.png"))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, label in (("error_cot", "CoT, test prompts"), ("error_icl", "ICL, test prompts"),
                        ("error_train", "CoT, training-distribution prompts")):
        y, se = band(ds, name)
        axes[0].plot(t[keep], y[keep], marker="o", ms=3, label=label)
        axes[0].fill_between(t[keep], (y - 2 * se)[keep], (y + 2 * se)[keep], alpha=0.2)
    _time_axis(axes[0], "error")
    y, se = band(ds, "loss")
    axes[1].plot(t[keep], y[keep], marker="o", ms=3, label="held-out training loss")
    axes[1].fill_between(t[keep], (y - 2 * se)[keep], (y + 2 * se)[keep], alpha=0.2)
    axes[1].set_yscale("log")
    _time_axis(axes[1], "1/2 E|z - F|^2")
    fig.suptitle("H. Li et al. (ICLR 2025): errors and loss during training (replica mean +- 2 SE)", fontsize=11)
    paths = [save_figure(fig, os.path.join(outdir, "errors.png"))]
    panels = [(sub, *band(ds, name)) for name, sub in (("attn", "test prompts (CoT decoding)"),
                                                      ("attn_train", "training-distribution prompts"))]
    paths.append(attention_panels(os.path.join(outdir, "attention.png"), t, panels,
                                  "Attention mass by column type during CoT decoding"))
    return paths


def training_times(path, panels, title):
    """``panels``: ``[(xlabel, lines, fits, theory)]``; ``lines``: ``{label: (x, mean, se)}`` (markers
    with error bars), ``fits``: ``{label: (x, y)}`` (solid, same colour), ``theory``: ``{label: (x, y)}``
    (dashed, same colour); log-log axes."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    fig.subplots_adjust(wspace=0.3)
    for ax, (xlabel, lines, fits, theory) in zip(axes[0], panels):
        for label, (x, y, se) in lines.items():
            eb = ax.errorbar(x, y, yerr=se, fmt="o", ms=4, capsize=2, label=label)
            colour = eb[0].get_color()
            if label in fits:
                ax.plot(*fits[label], "-", color=colour, lw=1)
            if label in theory:
                ax.plot(*theory[label], "--", color=colour, lw=1)
        for label, xy in theory.items():
            if label not in lines:
                ax.plot(*xy, "--", color="k", lw=1, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("iterations T")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title + "\nsolid: power-law fit; dashed: theorem's T with one fitted constant", fontsize=10)
    return save_figure(fig, path)
