"""Figures and tables written by the front ends and every model's reproduce targets: PNGs through
the atomic writer (matplotlib's Agg backend, no screen), tables as CSV plus a markdown copy."""
from __future__ import annotations

import csv
import io

import matplotlib

matplotlib.use("Agg")
import os  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dynamics.core.atomic import atomic_write_bytes  # noqa: E402

__all__ = ["plt", "save_figure", "write_table", "fmt", "STYLE"]

STYLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "icl.mplstyle")
"""The one style file of every figure (grid, font sizes, legend frames, error-bar caps)."""
plt.style.use(STYLE)


def save_figure(fig, path: str, dpi: int = 110) -> str:
    """Write ``fig`` as a PNG at ``path`` atomically and close it; returns ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def fmt(x) -> str:
    """A table cell: 4 significant digits for floats, ``nan``/``inf`` spelled out."""
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            return "nan" if np.isnan(x) else str(float(x))
        return f"{x:.4g}"
    return str(x)


def write_table(base: str, header, rows, title: str | None = None, digits: bool = False) -> str:
    """Write ``base.csv`` (full precision with ``digits=True``, else 4 significant digits) and
    ``base.md`` (atomically); returns the markdown text."""
    buf = io.StringIO()
    cell = (lambda x: repr(float(x)) if isinstance(x, (float, np.floating)) else str(x)) if digits else fmt
    csv.writer(buf, lineterminator="\n").writerows([list(header)] + [[cell(x) for x in r] for r in rows])
    atomic_write_bytes(base + ".csv", buf.getvalue().encode())
    md = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(map(str, header)) + " |",
                                                    "|" + "---|" * len(header)]
    md += ["| " + " | ".join(fmt(x) for x in r) + " |" for r in rows]
    text = "\n".join(md) + "\n"
    atomic_write_bytes(base + ".md", text.encode())
    return text
