"""Figures of a simulation (matplotlib, Agg): the paper's pictures from exact dynamics."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dynamics.core.atomic import atomic_write_bytes  # noqa: E402


def _save(fig, path):
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _positive_t(res):
    keep = res.t > 0
    return res.t[keep], keep


def prediction_error(res, path):
    """Per-feature prediction error ``L_k`` against iterations (log-log), ``L_k^*`` dashed:
    the paper's stage-wise convergence (dominant feature first, under-represented later)."""
    t, keep = _positive_t(res)
    fig, ax = plt.subplots(figsize=(6, 4))
    for f, name in enumerate(res.structure.names):
        line, = ax.loglog(t, res.L_f[keep, f], label=f"$L_k$, query in class '{name}' (p={res.structure.probs[f]:.3g})")
        floor = np.nanmin(res.L_f[keep]) / 100 if t.size else 0.0
        if np.isfinite(res.L_star[f]) and res.L_star[f] > floor:  # an L_k^* far below the data is not drawn
            ax.axhline(res.L_star[f], ls="--", color=line.get_color(), lw=0.8)
    ax.set_xlabel("GD iteration t")
    ax.set_ylabel("prediction error $L_k$ (dashed: $L_k^*$)")
    ax.set_title(f"K={res.structure.K}, N={res.model.N}, eta={res.eta:g}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def attention_weights(res, path):
    """``A_k`` and ``B_{k,n}`` against iterations for each query class (semilog-x)."""
    t, keep = _positive_t(res)
    names = res.structure.names
    fig, axes = plt.subplots(1, res.structure.F, figsize=(5 * res.structure.F, 3.8), squeeze=False)
    for f, ax in enumerate(axes[0]):
        ax.semilogx(t, res.coords[keep, f, 0], lw=2, label="$A_k$")
        for g, gname in enumerate(names):
            if res.model.movable()[f, 1 + g]:
                ax.semilogx(t, res.coords[keep, f, 1 + g], label=f"$B_{{k,n}}$, n in '{gname}'")
        ax.set_title(f"query k in class '{names[f]}'")
        ax.set_xlabel("GD iteration t")
        ax.legend(fontsize=8)
    return _save(fig, path)


def attention_heatmaps(res, path, iterations=None):
    """Expected attention map ``E[Attn_n | x_q = v_k]`` (rows: query k, columns: key n) at
    chosen iterations (default: 4 log-spaced snapshots); up to the first 12 features."""
    if iterations is None:
        idx = np.unique(np.linspace(0, res.t.size - 1, 4).round().astype(int))
    else:
        idx = [int(np.argmin(np.abs(res.t - it))) for it in iterations]
    fig, axes = plt.subplots(1, len(idx), figsize=(3.2 * len(idx), 3.2), squeeze=False)
    for ax, i in zip(axes[0], idx):
        im = ax.imshow(res.attention_map(i), vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"t = {res.t[i]:.3g}", fontsize=9)
        ax.set_xlabel("key feature n")
        ax.set_ylabel("query feature k")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="E[Attn]")
    return _save(fig, path)


def all_figures(res, outdir, iterations=None):
    """Write the three standard figures; returns their paths."""
    return [
        prediction_error(res, os.path.join(outdir, "prediction_error.png")),
        attention_weights(res, os.path.join(outdir, "attention_weights.png")),
        attention_heatmaps(res, os.path.join(outdir, "attention_map.png"), iterations),
    ]
