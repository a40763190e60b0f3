"""Figures of a Huang, Cheng, Liang run directory: the paper's pictures from exact dynamics.

- ``prediction_error.png``: ``L_k`` per query class against iterations (log-log), ``L_k^*`` dashed
  (stage-wise convergence);
- ``attention_weights.png``: ``A_k`` and ``B_{k,n}`` against iterations for each query class
  (the competition that makes the phases);
- ``attention_map.png``: the expected attention map ``E[Attn_n | x_q = v_k]`` at four iterations
  (attention concentration).

A run with a single snapshot (``steps = 0``) has no curve to draw: the figures are skipped and
the caller says so.  Monte Carlo runs draw the replica mean with a band of two standard errors.
"""
from __future__ import annotations

import os

import numpy as np

from dynamics.core.stats import replica_series

from dynamics.core.report import plt, save_figure


def _series(res, name):
    return replica_series(res.ds, name)


def _positive_t(res):
    keep = res.t > 0
    return res.t[keep], keep


def prediction_error(res, path):
    """Per-feature prediction error ``L_k`` against iterations (log-log), ``L_k^*`` dashed:
    the paper's stage-wise convergence (dominant feature first, under-represented later)."""
    t, keep = _positive_t(res)
    L, se = _series(res, "L_k")
    s = res.structure
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for f, name in enumerate(s.names):
        line, = ax.loglog(t, L[keep, f], label=f"$L_k$, query in class '{name}' ($p_k$={s.probs[f]:.3g})")
        if se is not None:
            ax.fill_between(t, L[keep, f] - 2 * se[keep, f], L[keep, f] + 2 * se[keep, f], color=line.get_color(),
                            alpha=0.25, lw=0)
        floor = np.nanmin(L[keep]) / 100
        if np.isfinite(res.L_star[f]) and res.L_star[f] > floor:  # an L_k^* far below the data is not drawn
            ax.axhline(res.L_star[f], ls="--", color=line.get_color(), lw=0.8)
    ax.set_xlabel("GD iteration t")
    ax.set_ylabel("prediction error $L_k$ (dashed: $L_k^*$)")
    c = res.model.config
    ax.set_title(f"K={s.K}, N={c['N']}, eta={c['eta']:g}, {res.method}")
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def attention_weights(res, path):
    """``A_k`` and ``B_{k,n}`` against iterations for each query class (semilog-x)."""
    t, keep = _positive_t(res)
    s = res.structure
    A, _ = _series(res, "A")
    B, _ = _series(res, "B")
    fig, axes = plt.subplots(1, s.F, figsize=(5.2 * s.F, 3.9), squeeze=False)
    for f, ax in enumerate(axes[0]):
        ax.semilogx(t, A[keep, f], lw=2, label="$A_k$ (own feature)")
        for g, gname in enumerate(s.names):
            if np.any(np.isfinite(B[keep, f, g])):
                ax.semilogx(t, B[keep, f, g], label=f"$B_{{k,n}}$, key n in '{gname}'")
        ax.set_title(f"query k in class '{s.names[f]}'")
        ax.set_xlabel("GD iteration t")
        ax.set_ylabel("bilinear attention weight $v_n^T Q v_k$")
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def attention_heatmaps(res, path, iterations=None):
    """Expected attention map ``E[Attn_n | x_q = v_k]`` (rows: query k, columns: key n) at
    chosen iterations (default: 4 log-spaced snapshots); the first 12 features at most."""
    if iterations is None:
        idx = np.unique(np.linspace(0, res.t.size - 1, 4).round().astype(int))
    else:
        idx = [int(np.argmin(np.abs(res.t - it))) for it in iterations]
    K = min(res.structure.K, 12)
    ticks = list(range(K)) if K <= 6 else [0, K - 1]
    labels = [f"v{k + 1}" for k in ticks]
    fig, axes = plt.subplots(1, len(idx), figsize=(3.3 * len(idx), 3.5), squeeze=False)
    for ax, i in zip(axes[0], idx):
        im = ax.imshow(res.attention_map(i), vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"t = {res.t[i]:.3g}", fontsize=9)
        ax.set_xticks(ticks, labels, fontsize=8)
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.set_xlabel("key feature n", fontsize=8)
        ax.set_ylabel("query feature k", fontsize=8)
    fig.subplots_adjust(wspace=0.45)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="E[Attn_n | x_q = v_k]")
    return save_figure(fig, path)


def all_figures(res, outdir, iterations=None):
    """Write the run directory's figures (the attention map only for exact methods); returns their
    paths, or an empty list when the run has fewer than two snapshots after t = 0."""
    if np.sum(res.t > 0) < 1:
        return []
    paths = [prediction_error(res, os.path.join(outdir, "prediction_error.png")),
             attention_weights(res, os.path.join(outdir, "attention_weights.png"))]
    if "attn_own" in res.ds:
        paths.append(attention_heatmaps(res, os.path.join(outdir, "attention_map.png"), iterations))
    return paths
