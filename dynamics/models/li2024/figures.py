"""Figures of the H. Li et al. (ICML 2024) reproduce targets (PNG through the atomic writer)."""
from __future__ import annotations

import numpy as np

from dynamics.core.report import plt, save_figure
from dynamics.core.stats import mean_se
from dynamics.models.shared.figures import curves, err_axis  # noqa: F401 (curves: reproduce targets)

def pruning(path, rates, lines_err, lines_hinge, norms):
    """Error and hinge loss against pruning rate (``{method: (mean, se)}`` arrays) and the
    sorted neuron magnitudes of each replica."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for ax, lines, ylabel in ((axes[0], lines_err, "OOD classification error"),
                              (axes[1], lines_hinge, "OOD hinge loss (slides' generalization error)")):
        for label, (y, se) in lines.items():
            ax.errorbar(rates, y, yerr=se, marker="o", ms=3, capsize=2, label=label)
        ax.set_xlabel("pruning rate R")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    axes[0].set_ylim(bottom=0)
    for r, nrm in enumerate(norms):
        axes[2].plot(np.arange(1, nrm.size + 1), np.sort(nrm), marker=".", lw=1,
                     label=f"replica {r}" if r < 4 else None)
    axes[2].set_xlabel("neuron rank (by |W_O(i,.)|)")
    axes[2].set_ylabel("|W_O(i,.)|")
    axes[2].set_title("sorted neuron magnitudes", fontsize=10)
    axes[2].legend(fontsize=7)
    fig.suptitle("Magnitude vs random pruning of trained W_O rows (Theorem 3)", fontsize=11)
    return save_figure(fig, path)


def attention(path, t, lines):
    """Same-pattern attention mass against iterations: ``{label: (mean, se)}`` arrays over ``t``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    keep = t > 0
    for label, (y, se) in lines.items():
        ax.plot(t[keep], y[keep], marker="o", ms=3, label=label)
        ax.fill_between(t[keep], (y - 2 * se)[keep], (y + 2 * se)[keep], alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("SGD iteration t")
    ax.set_ylabel("attention on same-pattern contexts")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("Induction head (Proposition 1): mean +- 2 SE over replicas", fontsize=10)
    return save_figure(fig, path)


def projections(path, t, proj, se):
    """``proj[t, matrix, part]`` (W_Q on queries, W_K on contexts; norm, along pattern, orthogonal)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    keep = t > 0
    for k, (ax, mat) in enumerate(zip(axes, ("W_Q p_query", "W_K p_i"))):
        for j, part in enumerate(("norm", "along own pattern", "orthogonal rest")):
            ax.plot(t[keep], proj[keep, k, j], marker="o", ms=3, label=part)
            ax.fill_between(t[keep], (proj - 2 * se)[keep, k, j], (proj + 2 * se)[keep, k, j], alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("SGD iteration t")
        ax.set_title(mat, fontsize=10)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("mean over in-domain test columns")
    fig.suptitle("W_Q and W_K project columns onto their relevant pattern (Proposition 1)", fontsize=11)
    return save_figure(fig, path)


def embedding(path, times, feature, label, sign):
    """Histograms (bars: iterations) of ``cos(f_i, mu_bar)`` and ``cos(g_i, sign(a_i) q)`` over the
    neurons of every replica; ``feature[k]``/``label[k]`` are arrays at ``times[k]``."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(-1, 1, 21)
    for ax, vals, name in ((axes[0], feature, "cos(feature part of row i of W_O W_V, mu_bar)"),
                           (axes[1], label, "cos(label part of row i of W_O W_V, sign(a_i) q)")):
        ax.hist([v for v in vals], bins=bins, label=[f"t = {int(t)}" for t in times], alpha=0.9)
        ax.set_xlabel(name, fontsize=9)
        ax.set_ylabel("neurons (all replicas)")
        ax.legend(fontsize=8)
    fig.suptitle("Rows of W_O W_V: feature part -> mu_bar, label part -> +-q (Proposition 2)", fontsize=11)
    return save_figure(fig, path)


def _replica_band(ds, name):
    """Mean and SE over replicas (with one replica: the value and its evaluation SE)."""
    v = ds[name].values
    if "replica" not in ds[name].dims:
        v = v[None]
    if v.shape[0] > 1:
        return mean_se(v)
    se = ds[f"{name}_se"].values.reshape(v.shape) if f"{name}_se" in ds else np.zeros_like(v)
    return v[0], se[0]


def run_figures(ds, outdir) -> list:
    """The run directory's figures from a Monte Carlo result dataset (``replica``, ``t``)."""
    import os

    t = ds["t"].values
    keep = t > 0
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, kind, ylabel in ((axes[0], "error", "classification error P(sign F != z)"),
                             (axes[1], "hinge", "hinge loss E max(0, 1 - z F)")):
        for dom, label in (("id", "in domain, unseen tasks"), ("ood", "out of domain")):
            y, se = _replica_band(ds, f"{kind}_{dom}")
            ax.plot(t[keep], y[keep], marker="o", ms=3, label=label)
            ax.fill_between(t[keep], (y - 2 * se)[keep], (y + 2 * se)[keep], alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("SGD iteration t")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle("H. Li et al. (ICML 2024): held-out error during training (replica mean +- 2 SE)", fontsize=11)
    paths.append(save_figure(fig, os.path.join(outdir, "errors.png")))
    lines = {label: _replica_band(ds, f"attn_same_{dom}") for dom, label in (("id", "in domain"),
                                                                           ("ood", "out of domain"))}
    paths.append(attention(os.path.join(outdir, "attention.png"), t, lines))
    return paths


def by_value(path, x, groups, xlabel, title, ylabel="OOD classification error"):
    """Per-replica values against a swept setting: ``groups`` maps a label to an ``(R, len(x))``
    array; each group is drawn as its replica mean with error bars of one standard error of that
    mean (:func:`dynamics.core.stats.mean_se`) and one dot per replica (the spread)."""
    from dynamics.core.stats import mean_se

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    x = np.asarray(x, dtype=np.float64)
    for k, (label, vals) in enumerate(groups.items()):
        vals = np.asarray(vals, dtype=np.float64)
        m, se = mean_se(vals)
        off = (k - (len(groups) - 1) / 2) * 0.02 * (np.ptp(x) or 1.0)
        line = ax.errorbar(x + off, m, yerr=se, marker="o", ms=4, capsize=3, label=label)
        for row in vals:
            ax.plot(x + off, row, ".", ms=3, alpha=0.4, color=line[0].get_color())
    err_axis(ax, xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
