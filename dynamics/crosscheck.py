"""Cross-check of the exact reduced dynamics against Monte Carlo training of the full model.

MODEL.md section 5: ``theta = V^T Q V`` from a Monte Carlo run must follow the exact reduced
trajectory within its sampling error.  :func:`crosscheck` runs the exact GD
(:func:`dynamics.simulate.simulate`) and ``R`` independent Monte Carlo replicas (the model's
``monte_carlo`` method; the model is a parameter) from the same initial state ``Q = 0`` and
reports, for every tracked coordinate (``A_k``, ``B_{k,n}`` and ``L_k`` of each class) and
snapshot, the exact value, the replica mean, its standard error and the z-score.

Threshold.  With ``R`` replicas the studentised mean ``(mean - exact) / SE`` has a t law with
``R - 1`` degrees of freedom when the exact value is the replicas' mean (the replicas are
independent and, for a large batch, nearly Gaussian).  Over ``m`` tracked (coordinate, time)
pairs a Bonferroni correction at family-wise level ``alpha`` gives the threshold
``t_{R-1}^{-1}(1 - alpha / (2 m))``; the check fails if any ``|z|`` exceeds it.  Note that
SGD's mean differs from population GD by ``O(eta^2 / B)``: use a large batch ``B``.  The
replicas' ``L_k`` is the loss at their own noisy ``theta``, so it exceeds the exact ``L_k``
by a second-order term in the coordinates' sampling noise (``L_k`` is smooth in ``theta``);
with a large batch this stays inside the band, but it is the first quantity to leave it.

``python -m dynamics.crosscheck`` writes ``crosscheck.npz``, ``crosscheck.md`` (table),
``overlay.png`` and ``difference.png``, and exits 1 when the check fails (2 on bad input).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
from scipy import stats

from dynamics.core import atomic as runio
from dynamics.simulate import make_model, simulate, snapshot_steps


@dataclass
class CrossCheck:
    """Result of :func:`crosscheck`.  Arrays are ``(T, m)`` over snapshots and tracked names."""

    t: np.ndarray
    names: list
    exact: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    z: np.ndarray
    threshold: float
    off_span_max: float
    replicas: int

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
        lines.append(f"R = {self.replicas} replicas; Bonferroni threshold |z| <= {self.threshold:.2f}; "
                     f"max |z| = {self.max_abs_z:.2f} -> {'PASS' if self.passed else 'FAIL'}; "
                     f"max ||Q outside span{{v_n v_k^T}}||_F = {self.off_span_max:.2e}")
        return "\n".join(lines)


def tracked(model):
    """Names and selectors of the tracked coordinates: A_k, B_{k,n} (each non-empty class), L_k."""
    names, sel = [], []
    labels = model.structure.names
    movable = model.movable()
    for f, lf in enumerate(labels):
        names.append(f"A_k ({lf})")
        sel.append(("c", f, 0))
        for g, lg in enumerate(labels):
            if movable[f, 1 + g]:
                names.append(f"B_k,n ({lf} <- {lg})")
                sel.append(("c", f, 1 + g))
    for f, lf in enumerate(labels):
        names.append(f"L_k ({lf})")
        sel.append(("L", f, 0))
    return names, sel


def _pick(coords, L_f, sel):
    return np.stack([coords[..., f, j] if kind == "c" else L_f[..., f] for kind, f, j in sel], axis=-1)


def crosscheck(model, *, eta=1.0, steps=300, replicas=8, batch=1000, record_at=None, alpha=0.01, random_state=0,
               **mc_kwargs) -> CrossCheck:
    """Exact reduced GD against ``replicas`` Monte Carlo trainings of the full ``Q`` (MODEL.md s.5)."""
    if int(replicas) < 2:
        raise ValueError(f"replicas must be >= 2 to estimate a standard error, got {replicas!r}")
    rec = snapshot_steps(steps, 12) if record_at is None else np.unique(np.asarray(record_at, dtype=np.int64))
    exact = simulate(model, eta=eta, steps=steps, record_steps=rec)
    coords, L_f, off = model.monte_carlo(int(replicas), eta, steps, rec, B=batch, random_state=random_state, **mc_kwargs)
    names, sel = tracked(model)
    ex = _pick(exact.coords, exact.L_f, sel)
    mc = _pick(coords, L_f, sel)
    mean = mc.mean(axis=0)
    se = mc.std(axis=0, ddof=1) / np.sqrt(mc.shape[0])
    diff = mean - ex
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, diff / se, np.where(np.abs(diff) <= 1e-12, 0.0, np.inf))
    m = int(np.sum(rec > 0)) * len(names)
    threshold = float(stats.t.ppf(1 - alpha / (2 * max(m, 1)), mc.shape[0] - 1))
    return CrossCheck(t=rec.astype(float), names=names, exact=ex, mean=mean, se=se, z=z, threshold=threshold,
                      off_span_max=float(np.max(off)), replicas=int(replicas))


def figures(cc: CrossCheck, outdir):
    """``overlay.png`` (exact solid, replica mean dashed, +-2 SE band) and ``difference.png``."""
    import matplotlib.pyplot as plt

    from dynamics.models.huang2024.figures import _save

    m = len(cc.names)
    cols = min(4, m)
    rows = int(np.ceil(m / cols))
    paths = []
    for kind in ("overlay", "difference"):
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
        for j, ax in enumerate(axes.ravel()):
            if j >= m:
                ax.axis("off")
                continue
            base = cc.exact[:, j] if kind == "overlay" else np.zeros_like(cc.exact[:, j])
            centre = cc.mean[:, j] - (0 if kind == "overlay" else cc.exact[:, j])
            if kind == "overlay":
                ax.plot(cc.t, base, "-", color="k", label="exact")
            else:
                ax.axhline(0, color="k", lw=0.8)
            ax.plot(cc.t, centre, "--", color="C1", label="MC mean" if kind == "overlay" else "MC mean - exact")
            ax.fill_between(cc.t, centre - 2 * cc.se[:, j], centre + 2 * cc.se[:, j], color="C1", alpha=0.3, label="+-2 SE")
            ax.set_title(cc.names[j], fontsize=9)
            ax.set_xlabel("GD iteration t", fontsize=8)
            if j == 0:
                ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(_save(fig, os.path.join(outdir, f"{kind}.png")))
    return paths


def main(argv=None) -> int:
    from dynamics.cli import UsageError, _Parser

    ap = _Parser(prog="python -m dynamics.crosscheck", description="Exact reduced GD vs Monte Carlo training of Q")
    ap.add_argument("--preset", default="imbalanced")
    ap.add_argument("--K", type=int, default=5)
    ap.add_argument("--N", type=int, default=20)
    ap.add_argument("--p1", type=float, default=0.5)
    ap.add_argument("--sigma2", type=float, default=0.0)
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2000, help="prompts per SGD step (online mode)")
    ap.add_argument("--mode", default="online", help="online | empirical")
    ap.add_argument("--M", type=int, default=300, help="training-set size (empirical mode)")
    ap.add_argument("--d", type=int, default=None, help="embedding dimension (default K)")
    ap.add_argument("--alpha", type=float, default=0.01, help="family-wise level of the z-test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/crosscheck")
    try:
        a = ap.parse_args(argv)
        model = make_model(K=a.K, N=a.N, preset=a.preset, p1=a.p1, sigma2=a.sigma2)
        cc = crosscheck(model, eta=a.eta, steps=a.steps, replicas=a.replicas, batch=a.batch, alpha=a.alpha,
                        random_state=a.seed, mode=a.mode, M=a.M, d=a.d)
    except (UsageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    runio.atomic_savez(os.path.join(a.out, "crosscheck.npz"), t=cc.t, names=np.array(cc.names), exact=cc.exact,
                       mean=cc.mean, se=cc.se, z=cc.z, threshold=cc.threshold, off_span_max=cc.off_span_max)
    runio.atomic_write_bytes(os.path.join(a.out, "crosscheck.md"), (cc.table() + "\n").encode())
    figures(cc, a.out)
    print(cc.table())
    return 0 if cc.passed else 1


if __name__ == "__main__":
    sys.exit(main())
