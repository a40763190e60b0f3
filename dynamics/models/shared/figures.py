"""Error-bar figures that the Monte Carlo models share (PNG through the atomic writer)."""
from __future__ import annotations

from dynamics.core.report import plt, save_figure

LINTHRESH = 1e-3
"""Error axes are symlog, linear below 1e-3, so that an error of exactly 0 is still drawn."""


def err_axis(ax, xlabel="test prompt length l_ts"):
    """A classification-error axis: symlog below :data:`LINTHRESH`, limits [0, 1] (the grid comes from
    the style file)."""
    ax.set_yscale("symlog", linthresh=LINTHRESH)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)


def curves(path, panels, title, ylabel="classification error"):
    """``panels``: list of ``(panel title, {label: (x, mean, se)})``; one errorbar line per label."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (sub, lines) in zip(axes[0], panels):
        for label, (x, y, se) in lines.items():
            ax.errorbar(x, y, yerr=se, marker="o", ms=3, capsize=2, label=label)
        err_axis(ax)
        ax.set_ylabel(ylabel)
        ax.set_title(sub, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
