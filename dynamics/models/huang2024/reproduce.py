"""Reproduce the claims of Huang, Cheng, Liang (ICML 2024) from exact dynamics, one command each.

``python -m dynamics.reproduce NAME [--out DIR] [--quick]`` writes figures (PNG) and tables
(markdown and CSV) into ``DIR`` (default ``runs/reproduce/NAME``); ``--quick`` uses smaller
sizes (seconds, for tests).  Targets (``docs/REPRODUCE.md`` shows the figures):

- ``stagewise``: ``L_k`` against iterations, balanced and imbalanced (the paper's stage-wise
  convergence: the dominant feature converges first, ``L_k^*`` dashed).
- ``attention``: the expected attention map ``E[Attn_n | x_q = v_k]`` at several iterations
  (attention concentration, ``(1 - Attn_k)^2 <= O(eps)``).
- ``phases``: the balanced two phases and an under-represented feature's four phases
  (:mod:`dynamics.models.huang2024.phases`), shaded over ``A_k``, ``B_{k,1}``, ``B_{k,n}`` and ``Attn_k``.
- ``scaling``: ``T_1(eps)`` and ``T_k(K, eps)`` from ``K = 10`` to ``10^5`` with ``N = K^2``
  (gradient flow, via the sweep runner :mod:`dynamics.sweep`), fitted exponents beside the
  theorem's ``T_1 = O(log(eps^-1/2) / (eta eps))`` and
  ``T_k = O(K^2 log K / eta + K log(K eps^-1/2) / (eps eta))``.
- ``empirical``: full-batch GD on a fixed training set of prompts (Monte Carlo, the paper's
  experimental protocol) against the exact population dynamics.

Every target returns a dict of the numbers its tables show (the tests check them).
"""
from __future__ import annotations

import os
import time

import numpy as np
import xarray as xr

from dynamics.core.parallel import pmap
from dynamics.core.report import plt, write_table
from dynamics.core.report import save_figure as _save
from dynamics.core.trajectory import write_dataset
from dynamics.methods.run import run
from dynamics.models.huang2024.model import Huang2024
from dynamics.models.huang2024.montecarlo import train_mc
from dynamics.models.huang2024.phases import all_phases, detect_phases, phase_times
from dynamics.models.huang2024.theory import theorem_T1, theorem_Tk


# --------------------------------------------------------------------------- helpers
def loglog_slope(x, y):
    """Least-squares slope of ``log y`` on ``log x`` (finite, positive pairs only)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return np.nan
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def _run(preset, K, N, steps, method="gd", snapshots=400, p1=0.5, **kw):
    return run(Huang2024, method, K=K, N=N, preset=preset, **({"p1": p1} if preset == "imbalanced" else {}),
                    eta=1.0, steps=steps, snapshots=snapshots, **kw)


# --------------------------------------------------------------------------- stagewise
def stagewise(out, quick=False, workers=None):
    """Stage-wise convergence (paper's Theorem on ``T_1``, ``T_k``; MODEL.md section 4): ``L_k``
    against GD iterations for balanced and imbalanced features, ``L_k^*`` dashed."""
    os.makedirs(out, exist_ok=True)
    steps = 20_000 if quick else 100_000
    big_K = 100 if quick else 1000
    runs = [("balanced", "balanced K=10, N=100 (GD)", _run("balanced", 10, 100, steps)),
            ("imbalanced", "imbalanced K=10, N=100 (GD)", _run("imbalanced", 10, 100, steps)),
            ("imbalanced", f"imbalanced K={big_K}, N=K^2 (flow)",
             _run("imbalanced", big_K, big_K ** 2, int(30 * big_K ** 2 * np.log(big_K)), "flow"))]
    eps_list = (1e-2, 1e-3) if quick else (1e-2, 1e-3, 1e-4)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    rows, numbers = [], {"runs": []}
    for ax, (preset, title, res) in zip(axes, runs):
        keep = res.t > 0
        for f, name in enumerate(res.structure.names):
            line, = ax.loglog(res.t[keep], res.L_f[keep, f], lw=2,
                              label=f"query '{name}' (p_k={res.structure.probs[f]:.3g})")
            ymin = np.nanmin(res.L_f[keep]) / 10
            if res.L_star[f] > ymin:
                ax.axhline(res.L_star[f], ls="--", lw=1, color=line.get_color())
            else:
                ax.annotate(f"$L_k^*$ = {res.L_star[f]:.1e} (below axis)", xy=(0.02, 0.04 + 0.07 * f),
                            xycoords="axes fraction", fontsize=7, color=line.get_color())
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("GD iteration t")
        ax.set_ylabel("$L_k$ (dashed: $L_k^*$)")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
        T = np.array([res.first_time_below(e) for e in eps_list])  # (eps, F)
        numbers["runs"].append(dict(title=title, names=res.structure.names, T=T, L_star=res.L_star,
                                    L_f=res.L_f, t=res.t))
        for f, name in enumerate(res.structure.names):
            rows.append([title, name, res.structure.probs[f], res.L_star[f], *T[:, f]])
    fig.suptitle("Stage-wise convergence: prediction error $L_k$ per query class", fontsize=11)
    _save(fig, os.path.join(out, "stagewise.png"))
    numbers["table"] = write_table(os.path.join(out, "stagewise"),
                                   ["setting", "query class", "p_k", "L_k^*"] + [f"T(eps={e:g})" for e in eps_list],
                                   rows, "First GD iteration with L_k - L_k^* <= eps")
    numbers["eps"] = eps_list
    return numbers


# --------------------------------------------------------------------------- attention
def attention(out, quick=False, workers=None):
    """Attention concentration (paper's attention theorem, ``(1 - Attn_k)^2 <= O(eps)``): the
    expected attention map ``E[Attn_n | x_q = v_k]`` at several iterations."""
    os.makedirs(out, exist_ok=True)
    steps = 20_000 if quick else 100_000
    iters = [0, 10, 100, 1000, 10_000] + ([] if quick else [100_000])
    K = 10
    runs = [("balanced", _run("balanced", K, 100, steps, save_at=iters + [steps])),
            ("imbalanced", _run("imbalanced", K, 100, steps, save_at=iters + [steps]))]
    fig, axes = plt.subplots(2, len(iters), figsize=(2.6 * len(iters), 5.4), squeeze=False)
    rows, numbers = [], {"iters": iters, "maps": {}, "runs": {}}
    for r, (preset, res) in enumerate(runs):
        maps = []
        for c, it in enumerate(iters):
            i = int(np.flatnonzero(res.t == it)[0])
            m = res.attention_map(i)
            maps.append(m)
            im = axes[r, c].imshow(m, vmin=0, vmax=1, cmap="viridis")
            axes[r, c].set_title(f"{preset}, t = {it:g}", fontsize=8)
            axes[r, c].set_xticks([0, K - 1], ["1", str(K)])
            axes[r, c].set_yticks([0, K - 1], ["1", str(K)])
            if c == 0:
                axes[r, c].set_ylabel("query feature k")
            if r == 1:
                axes[r, c].set_xlabel("key feature n")
            for f, name in enumerate(res.structure.names):
                rows.append([preset, it, name, res.attn[i, f, 0], (1 - res.attn[i, f, 0]) ** 2,
                             res.L_f[i, f] - res.L_star[f]])
        numbers["maps"][preset] = np.array(maps)
        numbers["runs"][preset] = res
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.7, label="E[Attn_n | x_q = v_k]")
    fig.suptitle("Expected attention map (rows: query feature k, columns: key feature n; feature 1 dominant "
                 "in the imbalanced case)", fontsize=10)
    _save(fig, os.path.join(out, "attention.png"))
    numbers["table"] = write_table(os.path.join(out, "attention"),
                                   ["setting", "t", "query class", "E[Attn_k]", "(1 - E[Attn_k])^2", "L_k - L_k^*"],
                                   rows, "Attention on the query's own feature")
    return numbers


# --------------------------------------------------------------------------- phases
_BAND_COLORS = ("#e8eef7", "#fbeede", "#e6f2e6", "#f6e6f0")


def _shade(ax, ph, tmin):
    for j, (a, b, name) in enumerate(ph.bands()):
        lo = max(a, tmin)
        if b <= lo:
            continue
        ax.axvspan(lo, b, color=_BAND_COLORS[j % 4], zorder=0)
        ax.text(np.sqrt(lo * b), 0.97, name, transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=9,
                fontweight="bold")


def _phases_point(job):
    """Phase boundaries (query class, boundary) of the flow at one K with N = K^2."""
    preset, K, snapshots, eps = job
    res = run(Huang2024, "flow", preset=preset, K=K, N=K ** 2, eta=1.0, snapshots=snapshots,
              steps=int(np.ceil(20 * K ** 2 * np.log(K) + 1e5 * K)))
    return phase_times(res, eps).values


def phases(out, quick=False, workers=None, processes=None):
    """The paper's training phases (:mod:`dynamics.models.huang2024.phases`): balanced two phases, an
    under-represented feature's four phases; transition-time tables.  ``processes``: worker
    processes for the runs over K (default: threads when ``quick``, no start-up cost)."""
    os.makedirs(out, exist_ok=True)
    eps = 1e-3
    steps = 20_000
    processes = (not quick) if processes is None else processes
    bal = _run("balanced", 10, 100, steps, snapshots=500 if quick else 2000)
    imb = _run("imbalanced", 10, 100, steps, snapshots=500 if quick else 2000)
    ph_bal = detect_phases(bal, 0, eps=eps)
    ph_dom, ph_rare = all_phases(imb, eps=eps)
    fig, axes = plt.subplots(3, 2, figsize=(16, 10), sharex="col")
    for c, (res, ph, f, title) in enumerate([(bal, ph_bal, 0, "balanced K=10, N=100: query k"),
                                             (imb, ph_rare, 1, "imbalanced K=10, N=100: under-represented query k")]):
        keep = res.t > 0
        t = res.t[keep]
        ax = axes[0, c]
        ax.semilogx(t, res.coords[keep, f, 0], lw=2, label="$A_k$")
        if res.structure.F == 2:
            ax.semilogx(t, res.coords[keep, f, 1], label="$B_{k,1}$ (dominant feature)")
        ax.semilogx(t, res.coords[keep, f, 1 + f], label="$B_{k,n}$ (n another rare feature)" if f else "$B_{k,n}$")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("bilinear attention weight")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax = axes[1, c]
        ax.semilogx(t, res.attn[keep, f, 0], lw=2, label="E[Attn_k]")
        if res.structure.F == 2:
            ax.semilogx(t, res.attn[keep, f, 1], label="E[Attn_1] (dominant)")
        ax.semilogx(t, res.attn[keep, f, 1 + f], label="E[Attn_n] (one other feature)")
        ax.set_ylabel("expected attention")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax = axes[2, c]  # zoom on B_{k,n} (its maximum ends phase I of a rare query) and the gap L_k - L_k^*
        ax.semilogx(t, res.coords[keep, f, 1 + f], color="C2" if f else "C1", label="$B_{k,n}$ (zoom)" if f else "$B_{k,n}$")
        if f:  # a rare query's B_{k,n} rises a little in phase I, then falls: zoom on its maximum
            top = float(np.max(res.coords[keep, f, 1 + f]))
            ax.set_ylim(-2.0 * top, 1.5 * top)
        ax.set_ylabel("$B_{k,n}$")
        ax.set_xlabel("GD iteration t")
        tw = ax.twinx()
        tw.loglog(t, res.L_f[keep, f] - res.L_star[f], color="k", lw=1, label="$L_k - L_k^*$ (right axis)")
        tw.axhline(eps, color="k", ls=":", lw=1)
        tw.set_ylabel("$L_k - L_k^*$ (dotted: eps)")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = tw.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left", bbox_to_anchor=(1.22, 1.0), frameon=False)
        for a in axes[:, c]:
            _shade(a, ph, t[0])
    fig.subplots_adjust(wspace=0.85, right=0.86)
    fig.suptitle(f"Training phases (boundaries: dynamics.models.huang2024.phases, eps = {eps:g})", fontsize=11)
    _save(fig, os.path.join(out, "phases.png"))
    rows = []
    for name, ph in (("balanced", ph_bal), ("imbalanced, dominant", ph_dom), ("imbalanced, under-represented", ph_rare)):
        for j in range(ph.times.size):
            rows.append([name, ph.names[j], ph.boundaries[j], ph.times[j], ph.brackets[j, 0]])
    table = write_table(os.path.join(out, "phases"),
                        ["setting", "phase ends", "boundary condition", "t (exact GD step)", "snapshot before"],
                        rows, "Phase transition times, K = 10, N = 100, eta = 1 (exact GD)")
    # The same boundaries over K with N = K^2 (gradient flow, one run per K in parallel).
    Ks = [10, 30] if quick else [10, 30, 100, 300, 1000, 3000, 10_000]
    snaps = 300 if quick else 1500
    jobs = [(preset, K, snaps, eps) for preset in ("imbalanced", "balanced") for K in Ks]
    times = pmap(_phases_point, jobs, workers, processes)
    over_K_i, over_K_b = np.array(times[:len(Ks)]), np.array(times[len(Ks):])  # (K, query class, boundary)
    krows = [[K, *over_K_b[i, 0, :2], over_K_i[i, 0, 0], *over_K_i[i, 1, :4]] for i, K in enumerate(Ks)]
    ktable = write_table(os.path.join(out, "phases_over_K"),
                         ["K", "balanced tau1 (Attn_k>=1/2)", f"balanced tau2 (gap<={eps:g})",
                          f"dominant T_1 (gap<={eps:g})", "rare tau1 (B_kn update<=0)", "rare tau2 (Attn_k>=Attn_1)",
                          "rare tau3 (Attn_k>=1/2)", f"rare tau4 (gap<={eps:g})"], krows,
                         "Phase boundaries over K, N = K^2 (gradient flow, boundaries located exactly)")
    return dict(balanced=ph_bal, dominant=ph_dom, rare=ph_rare, table=table, over_K=np.array(krows, dtype=float),
                over_K_table=ktable, Ks=Ks)


# --------------------------------------------------------------------------- scaling
def _scaling_point(job):
    """``(first_below (eps, class), final gap (class))`` of one run at K with N = K^2."""
    method, K, snapshots, steps, eps = job
    if steps is None:
        steps = int(np.ceil(20 * K ** 2 * np.log(K) + 100 * K / min(eps)))
    res = run(Huang2024, method, preset="imbalanced", p1=0.5, K=K, N=K ** 2, eta=1.0, snapshots=snapshots,
              steps=steps, levels=list(eps))
    return res.ds["first_below"].transpose("level", ...).values, res.ds["gap"].isel(t=-1).values


def convergence_times(Ks, eps, snapshots=400, workers=None, processes=False):
    """The convergence times ``T_1(eps)`` and ``T_k(K, eps)`` of the paper's theorem, by gradient flow.

    Imbalanced preset with ``p_1 = 1/2``, ``N = K^2``, ``eta = 1`` (time in GD steps), from
    ``Q = 0``, horizon ``20 K^2 log K + 100 K / min(eps)``; one run per ``K`` (:func:`_scaling_point`,
    in parallel through :func:`dynamics.core.parallel.pmap`).  Each time is the root of
    ``L_k - L_k^* - eps`` on the integrator's dense output (NaN where not reached).  The scaling
    target and the claims ledger's convergence-time rows both use it.

    Parameters
    ----------
    Ks : list of int, shape (nK,)
    eps : list of float, shape (ne,)
    snapshots : int
        Recorded snapshots per run.
    workers, processes
        Parallel workers, and whether they are processes (else threads).

    Returns
    -------
    T : ndarray, shape (nK, ne, 2)
        ``T[:, :, 0] = T_1`` (dominant query), ``T[:, :, 1] = T_k`` (under-represented query).
    final_gap : ndarray, shape (nK, 2)
        ``L_k - L_k^*`` at the horizon.
    """
    points = pmap(_scaling_point, [("flow", K, int(snapshots), None, list(eps)) for K in Ks], workers, processes)
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def scaling(out, quick=False, workers=None, processes=None):
    """Convergence times against the paper's theorem: ``T_1(eps)`` and ``T_k(K, eps)`` with
    ``N = K^2`` (gradient flow; time in GD steps, eta = 1), fitted log-log exponents."""
    os.makedirs(out, exist_ok=True)
    processes = (not quick) if processes is None else processes
    Ks = [10, 100, 1000, 10_000] if quick else [10, 30, 100, 300, 1000, 3000, 10_000, 30_000, 100_000, 300_000,
                                                1_000_000]
    eps = [1e-2, 1e-3, 1e-4] if quick else [float(f"{m}e-{j}") for j in range(2, 11) for m in (3, 1)][1:]
    t0 = time.perf_counter()
    T, final_gap = convergence_times(Ks, eps, 400 if quick else 1200, workers, processes)
    T1, Tk = T[:, :, 0], T[:, :, 1]
    # GD cross-check at K = 10: exact GD against the flow (eta = 1).
    gd_eps = eps[: 2] if quick else [e for e in eps if e >= 1e-4]
    T_gd = _scaling_point(("gd", 10, 1200, 8000 if quick else 60_000, gd_eps))[0]  # (eps, class)
    ds = xr.Dataset({"first_below": (("K", "eps", "query_class"), T), "final_gap": (("K", "query_class"), final_gap)},
                    coords={"K": Ks, "eps": eps, "N": ("K", [K ** 2 for K in Ks])},
                    attrs={"description": "first GD step (flow time in GD steps) with L_k - L_k^* <= eps; "
                                          "imbalanced p_1 = 1/2, eta = 1, N = K^2"})
    points_path = os.path.join(out, "scaling_points.nc")
    write_dataset(points_path, ds)
    wall = time.perf_counter() - t0
    eps_a = np.array(eps)
    inv = 1.0 / eps_a
    # Fits (diffrax-style order test): slopes of log T on log(1/eps) or log K.
    b1 = loglog_slope(np.tile(inv, len(Ks)), T1.ravel())          # T_1 vs 1/eps, pooled over K
    b1_thm = loglog_slope(inv, theorem_T1(eps_a))
    c1 = [loglog_slope(Ks, T1[:, j]) for j in range(len(eps))]     # T_1 vs K (theorem: 0)
    big = np.array(Ks) >= 1000
    bK = [loglog_slope(np.array(Ks)[big], Tk[big, j]) for j in range(len(eps))]
    bK_thm = [loglog_slope(np.array(Ks)[big], theorem_Tk(np.array(Ks)[big], e)) for e in eps]
    small = eps_a <= 1e-3  # where the K log(K eps^-1/2) / eps term of the bound dominates at K = 10
    be = loglog_slope(inv[small], Tk[0, small])                    # T_k vs 1/eps at the smallest K
    be_thm = loglog_slope(inv[small], theorem_Tk(Ks[0], eps_a[small]))
    # Figure.
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    ax = axes[0]
    for i, K in enumerate(Ks):
        ax.loglog(inv, T1[i], "o-", ms=3, lw=1, alpha=0.7, label=f"K={K}")
    ref = theorem_T1(eps_a)
    ax.loglog(inv, ref * np.nanmedian(T1[:, -1]) / ref[-1], "k--", lw=1.5, label="log(eps^-1/2)/eps (scaled)")
    ax.set_xlabel("1/eps")
    ax.set_ylabel("$T_1$ (GD iterations)")
    ax.set_title(f"dominant feature: slope {b1:.3f} (bound's {b1_thm:.3f})", fontsize=10)
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    ax = axes[1]
    for j, e in enumerate(eps):
        if j % 2 == 0 or quick:
            ax.loglog(Ks, Tk[:, j], "o-", ms=3, label=f"eps={e:g} (slope K>=1e3: {bK[j]:.2f})")
    Kf = np.array(Ks, dtype=float)
    ax.loglog(Kf, Kf ** 2 * np.log(Kf) * Tk[-1, 0] / (Kf[-1] ** 2 * np.log(Kf[-1])), "k--", lw=1.5,
              label="K^2 log K (scaled)")
    ax.set_xlabel("K (N = K^2)")
    ax.set_ylabel("$T_k$ (GD iterations)")
    ax.set_title("under-represented feature against K", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    ax = axes[2]
    for i, K in enumerate(Ks):
        if i % 2 == 0:
            ax.loglog(inv, Tk[i], "o-", ms=3, label=f"K={K}")
    ax.set_xlabel("1/eps")
    ax.set_ylabel("$T_k$ (GD iterations)")
    ax.set_title(f"under-represented against eps (K={Ks[0]}: slope {be:.2f}, bound's {be_thm:.2f})", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.suptitle("Convergence times: first iteration with $L_k - L_k^* \\leq \\epsilon$ (gradient flow, eta = 1, "
                 "p_1 = 1/2, N = K^2)", fontsize=11)
    _save(fig, os.path.join(out, "scaling.png"))
    # Tables.
    rows = [[K, int(ds["N"].values[i]), *T1[i], *Tk[i]] for i, K in enumerate(Ks)]
    t_table = write_table(os.path.join(out, "scaling_times"),
                          ["K", "N"] + [f"T_1({e:g})" for e in eps] + [f"T_k({e:g})" for e in eps], rows,
                          "First iteration with L_k - L_k^* <= eps (gradient flow, time in GD steps)")
    frows = [["T_1 vs 1/eps (pooled over K)", b1, b1_thm, 1.0, "[0.85, 1.15]"]]
    frows += [[f"T_1 vs K, eps={e:g}", c1[j], 0.0, 0.0, "[-0.1, 0.1]"] for j, e in enumerate(eps)]
    frows += [[f"T_k vs K (K >= 1000), eps={e:g}", bK[j], bK_thm[j], 2.0, "[1.8, 2.3]" if e in (1e-2, 1e-3) else "-"]
              for j, e in enumerate(eps)]
    frows += [[f"T_k vs 1/eps (eps <= 1e-3), K={Ks[0]}", be, be_thm, 1.0, "[0.85, 1.2]"]]
    f_table = write_table(os.path.join(out, "scaling_fits"),
                          ["fit (log-log least squares)", "measured exponent", "bound's local slope (same grid)",
                           "bound's leading power", "band (tests)"], frows,
                          "Fitted exponents against the theorem's bounds")
    g_rows = [[e, T_gd[j, 0], T[0, eps.index(e), 0], T_gd[j, 1], T[0, eps.index(e), 1]] for j, e in enumerate(gd_eps)]
    g_table = write_table(os.path.join(out, "scaling_gd_check"),
                          ["eps", "T_1 exact GD", "T_1 flow", "T_k exact GD", "T_k flow"], g_rows,
                          "Exact GD against gradient flow, K = 10, N = 100")
    return dict(Ks=Ks, eps=eps, T1=T1, Tk=Tk, T_gd=T_gd, gd_eps=gd_eps, b1=b1, b1_thm=b1_thm, c1=c1, bK=bK,
                bK_thm=bK_thm, be=be, be_thm=be_thm, final_gap=final_gap, points_path=points_path,
                tables=t_table + "\n" + f_table + "\n" + g_table, wall_s=wall)


# --------------------------------------------------------------------------- empirical
def empirical(out, quick=False, workers=None, seed=2024):
    """The paper's experimental protocol against the exact population dynamics: full-batch GD on
    a fixed training set of ``M`` prompts (:func:`dynamics.models.huang2024.montecarlo.train_mc`, ``mode =
    "empirical"``; the paper uses ``M = 300``) compared with exact population GD (MODEL.md
    sections 2-5): ``L_k`` (Monte Carlo estimate on fresh prompts) and ``A_k = theta[k, k]``."""

    os.makedirs(out, exist_ok=True)
    K, N = 10, 100
    steps = 1000 if quick else 20_000
    Ms = (100, 1000) if quick else (300, 3000)
    n_eval = 200 if quick else 2000
    p = np.r_[0.5, np.full(K - 1, 0.5 / (K - 1))]
    rec = np.unique(np.r_[0, np.round(np.logspace(0, np.log10(steps), 16 if quick else 25)).astype(np.int64)])
    ex = run(Huang2024, K=K, N=N, preset="imbalanced", p1=0.5, eta=1.0, steps=steps, save_at=rec)
    mc = {M: train_mc(K, K, p, N, 1.0, steps, mode="empirical", M=M, record_at=rec, n_eval=n_eval,
                      random_state=seed) for M in Ms}

    def by_class(r):  # dominant = feature 0; the rest averaged over the K - 1 rare features
        L = np.stack([r.L_k[:, 0], r.L_k[:, 1:].mean(1)], 1)
        se = np.stack([r.L_k_se[:, 0], np.sqrt((r.L_k_se[:, 1:] ** 2).sum(1)) / (K - 1)], 1)
        A = np.stack([r.A[:, 0], r.A[:, 1:].mean(1)], 1)
        return L, se, A

    cls = {M: by_class(mc[M]) for M in Ms}
    dev = {M: np.max(np.abs(cls[M][2] - ex.coords[:, :, 0]), axis=0) for M in Ms}  # max_t |A_MC - A_exact|
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    keep = rec > 0
    for f, name in enumerate(("dominant", "rest")):
        c = f"C{f}"
        axes[0].loglog(rec[keep], ex.L_f[keep, f], color=c, lw=2, label=f"exact population GD, query '{name}'")
        axes[1].semilogx(rec[keep], ex.coords[keep, f, 0], color=c, lw=2, label=f"exact $A_k$, '{name}'")
        for m, M in zip(("o", "s"), Ms):
            L, se, A = cls[M]
            axes[0].errorbar(rec[keep], L[keep, f], yerr=2 * se[keep, f], fmt=m, ms=3, color=c, alpha=0.7,
                             mfc="none" if M == Ms[0] else c, label=f"empirical GD, M={M} prompts")
            axes[1].semilogx(rec[keep], A[keep, f], m, ms=3, color=c, alpha=0.7, mfc="none" if M == Ms[0] else c,
                             label=f"M={M}")
    axes[0].set_xlabel("GD iteration t")
    axes[0].set_ylabel("$L_k$ (markers: estimate on fresh prompts, +-2 SE)")
    axes[1].set_xlabel("GD iteration t")
    axes[1].set_ylabel("$A_k$ (rest: mean over the rare features)")
    for ax in axes:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False, ncol=2)
    fig.suptitle(f"Empirical risk (fixed training set of M prompts, full-batch GD) against exact population GD: "
                 f"K={K}, N={N}, eta=1, d=K", fontsize=10)
    _save(fig, os.path.join(out, "empirical.png"))
    rows = []
    for i in sorted(set(np.flatnonzero(keep)[:: (3 if quick else 4)].tolist() + [rec.size - 1])):
        row = [int(rec[i])]
        for f in range(2):
            row += [ex.L_f[i, f]] + [cls[M][0][i, f] for M in Ms] + [ex.coords[i, f, 0]] + [cls[M][2][i, f] for M in Ms]
        rows.append(row)
    head = ["t"]
    for name in ("dom", "rare"):
        head += [f"L_{name} exact"] + [f"L_{name} M={M}" for M in Ms] + [f"A_{name} exact"] + [f"A_{name} M={M}"
                                                                                           for M in Ms]
    table = write_table(os.path.join(out, "empirical"), head, rows,
                        f"Exact population GD against empirical GD on M prompts (rare: mean over {K - 1} features)")
    dtable = write_table(os.path.join(out, "empirical_deviation"), ["M", "max over t of abs(A_dom MC - exact)",
                                                                    "max over t of abs(A_rare MC - exact)"],
                         [[M, *dev[M]] for M in Ms], "Largest deviation of A_k from the exact trajectory")
    return dict(rec=rec, exact=ex, classes=cls, dev=dev, Ms=Ms, table=table + "\n" + dtable)
