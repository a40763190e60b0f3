"""Reproduce target ``correlated`` (issue 20): stage-wise convergence against feature correlation and task anisotropy.

Beyond the paper: exact GD (``theta <- theta - eta G g G``, :mod:`.geometry`) on Huang's imbalanced
setting with equicorrelated unit features (``--feature-corr rho``) and with a per-class task variance
(``--task-cov``), the orthonormal case (``rho = 0``, isotropic) as the reference.  For each setting:
``L_k^*`` (:func:`.theory.optimum_general`) and the first GD iteration ``T(eps)`` with
``L_k - L_k^* <= eps`` for the dominant class (``T_1``) and the rest (``T_k``).

**choice** (ours, stated before the runs): ``K = 4``, ``N = 20``, ``p_1 = 1/2``, ``eta = 1``,
``rho`` in ``{0, 0.3, 0.6}`` (quick: ``{0, 0.3}``), task variances ``tau = (tau_1, tau_rest)`` in
``{(1, 1), (2, 0.5), (0.5, 2)}`` at ``rho = 0``, ``eps`` in ``{1e-2, 1e-3}`` (quick: ``1e-2``), horizon
10 000 steps (quick: 2 000); a time not reached within the horizon is NaN.  The phase times of
:mod:`.phases` are not located here (they are defined on the class-reduced state).
``python -m dynamics.reproduce correlated [--quick]``.
"""
from __future__ import annotations

import os

import numpy as np

from dynamics.core.report import plt, save_figure, write_table

K, N, P1, ETA = 4, 20, 0.5, 1.0


def settings(quick: bool):
    """The grid of the target: ``(label, params)`` for each run."""
    rhos = (0.0, 0.3) if quick else (0.0, 0.3, 0.6)
    out = [(f"rho={r:g}", {"feature_corr": r}) for r in rhos]
    if not quick:
        out += [(f"tau={t[0]:g},{t[1]:g}", {"task_cov": list(t)}) for t in ((2.0, 0.5), (0.5, 2.0))]
    return out


def measure(params: dict, quick: bool, eps_list, preset="imbalanced", p1=P1):
    """``(L_star (F,), T (eps, F), L_f trajectory, t)`` of one exact GD run with the given geometry."""
    from dynamics.methods.run import run
    from dynamics.models.huang2024.model import Huang2024

    steps = 2_000 if quick else 10_000
    kw = {"p1": p1} if preset == "imbalanced" else {}
    r = run(Huang2024, "gd", K=K, N=N, preset=preset, eta=ETA, steps=steps, snapshots=60,
                 levels=list(eps_list), **kw, **params)
    T = np.asarray(r.ds["first_below"].values, dtype=np.float64).T  # (eps, F)
    return np.asarray(r.model.L_star), T, np.asarray(r.ds["L_k"].values), np.asarray(r.ds["t"].values)


def correlated(out, quick=False, workers=None):
    """Stage-wise convergence against ``rho`` and task anisotropy (module docstring); returns the numbers."""
    os.makedirs(out, exist_ok=True)
    eps_list = (1e-2,) if quick else (1e-2, 1e-3)
    rows, numbers = [], {"eps": eps_list, "runs": []}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, params in settings(quick):
        L_star, T, L_f, t = measure(params, quick, eps_list)
        numbers["runs"].append(dict(label=label, params=params, L_star=L_star, T=T))
        keep = t > 0
        for f, name in enumerate(("dominant", "rest")):
            ax.loglog(t[keep], L_f[keep, f] - L_star[f], ls="-" if f == 0 else "--", label=f"{label}, {name}")
            rows.append([label, name, L_star[f], *T[:, f]])
    ax.set_xlabel("GD iteration t")
    ax.set_ylabel("$L_k - L_k^*$")
    ax.set_title(f"Huang's model beyond orthonormal features (K={K}, N={N}, p_1={P1})", fontsize=10)
    ax.legend(fontsize=7)
    save_figure(fig, os.path.join(out, "correlated.png"))
    numbers["table"] = write_table(os.path.join(out, "correlated"),
                                   ["setting", "query class", "L_k^*"] + [f"T(eps={e:g})" for e in eps_list], rows,
                                   "First GD iteration with L_k - L_k^* <= eps (NaN: not within the horizon)")
    return numbers
