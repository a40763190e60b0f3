"""``python -m dynamics.reproduce`` targets for Yang, Huang, Liang, Chi (2024).

Each target writes PNG figures and a CSV (plus markdown) table with named columns into ``out``
and returns the numbers its table shows (``"table"``: the markdown text).  The full versions run
at the paper's Fig 2 setting (N = 30, K = 200, d = 100, m = 20, tau = 0.01; minutes each);
``quick=True`` runs a small instance with the same structure (N = 5, K = 16, d = 8, m = 4,
tau = 0.5: N > m as in the paper; seconds), which is what the tests check.

- ``yang-convergence`` (Theorem 1): ``L - L*`` against iterations for H in {N, 2N, 64}, the fitted
  geometric rate of each run and the first iterations below ``1e-8 L*`` and ``1e-12 L*``.
- ``yang-ridge`` (Theorem 2): at convergence, ``max_k |a_k - A_{:,k}|`` and the inference losses
  against the ridge predictor, in and out of domain; the same for Monte Carlo SGD replicas.
- ``yang-fig2``: training, in-domain and out-of-domain inference losses against iterations, exact
  (Adam on the exact gradient) and Monte Carlo (Adam, batch 256), the paper's Fig 2 panel (a).
- ``yang-fig3``: the gap ``(1/K) E|yhat* - yhat_best|^2`` against N at m = 100 (closed form).
- ``yang-heads`` (Fig 4): the training loss for H around N, with the paper's Adam step and with
  one common plain GD step; the largest stable ``eta_Q = 2/ell_0`` of each H.
"""
from __future__ import annotations

import os

import numpy as np
from scipy.special import softmax

from dynamics.core.errors import SimulationDiverged
from dynamics.core.report import plt, save_figure, write_table
from dynamics.core.trajectory import snapshot_steps
from dynamics.core.stats import mean_se
from dynamics.methods.run import run
from dynamics.models.yang2024 import ridge, sampling
from dynamics.models.yang2024.analysis import fit_rate, series
from dynamics.models.yang2024.model import ADAM_LR, Yang2024

FULL = dict(N=30, K=200, d=100, m=20, tau=0.01)
"""The paper's Fig 2 setting (tau: our choice, Fig 3's value)."""
QUICK = dict(N=5, K=16, d=8, m=4, tau=0.5)
"""A small instance with N > m, as in the paper, that converges to machine precision in seconds."""
EPS_REL = 1e-14
"""Exact runs stop once ``L - L* <= EPS_REL x L*`` (45 times the float64 resolution of ``L``)."""
LEVELS_REL = 10.0 ** -np.arange(2, 15, 2)
"""Gap levels (relative to ``L*``) whose first crossings are reported."""
STEP_FRACTION = 0.6
"""Exact GD runs of Theorems 1 and 2 use ``eta_Q = STEP_FRACTION x 2/ell_0`` (the default is 0.5):
a faster approach to machine precision.  The sharpness grows along a run (by ~6% at Fig 2's
setting with H = 64, by ~25% with H = N = 30, where 0.8 x 2/ell_0 was measured to diverge); the
run's monitor stops a run whose loss rises, and the table then says so."""


def grid(steps: int, linear: int = 200, log: int = 60) -> np.ndarray:
    """Snapshots: a linear grid (the log-axis-against-iterations figures) plus log-spaced ones."""
    lin = np.round(np.linspace(0, steps, linear + 1)).astype(np.int64)
    return np.unique(np.concatenate([lin, snapshot_steps(steps, log)]))


def _first(res, level):
    """First iteration with ``L - L* <= level x L*`` (NaN: never)."""
    lv = np.asarray(res.ds["level"].values)  # relative to L* (the model's gap_scale)
    j = int(np.argmin(np.abs(np.log(lv) - np.log(level))))
    return float(res.ds["first_below"].values[0, j])


def _exact_to_convergence(params, steps):
    """Exact GD at ``eta_Q = STEP_FRACTION x 2/ell_0`` until ``L - L* <= EPS_REL L*`` or ``steps``;
    returns ``(result, 2/ell_0)``."""
    model = Yang2024.create("gd", **params)
    limit = 2.0 / model.ell0
    try:
        res = run(Yang2024, "gd", steps=steps, save_at=grid(steps), eps=EPS_REL, levels=list(LEVELS_REL),
                  eta_Q=STEP_FRACTION * limit, **params)
    except SimulationDiverged as err:
        res = err.result
    return res, limit


# ---- Theorem 1 ----------------------------------------------------------------------------
def yang_convergence(out, quick=False, workers=None):
    """Linear convergence of ``L - L*`` for H in {N, 2N, 64} (Theorem 1; H >= N)."""
    base = QUICK if quick else FULL
    N = base["N"]
    Hs = [N, 2 * N, 16 if quick else 64]
    steps = {N: 4000 if quick else 30_000}
    rows, runs = [], []
    for H in Hs:
        res, limit = _exact_to_convergence(dict(base, H=H), steps.get(H, 4000 if quick else 100_000))
        ds = res.ds
        L_star = float(ds["L_star"])
        gap = ds["gap"].values
        rate = fit_rate(res.t, gap)
        rows.append([H, H / N, float(ds["eta_Q"]), limit, int(res.t[-1]), gap[-1] / L_star,
                     rate.rho, 1 - rate.rho, rate.r2, _first(res, 1e-8), _first(res, 1e-12), res.status])
        runs.append((H, res, rate))
    header = ["H", "H_over_N", "eta_Q", "eta_limit0", "steps", "final_gap_rel", "rho", "one_minus_rho", "r2",
              "t_gap_1e-8", "t_gap_1e-12", "status"]
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for H, res, rate in runs:
        L_star = float(res.ds["L_star"])
        g = res.ds["gap"].values / L_star
        keep = g > 0
        line, = ax.semilogy(res.t[keep], g[keep], label=f"H = {H} ({H / N:g} N)")
        if np.isfinite(rate.rho):
            tt = np.linspace(rate.t0, rate.t1, 50)
            ax.semilogy(tt, rate.line(tt) / L_star, "--", color=line.get_color(), lw=1,
                        label=f"  fit $\\rho$ = 1 - {1 - rate.rho:.2g}, $R^2$ = {rate.r2:.4f}")
    ax.axhline(np.finfo(float).eps, color="0.6", ls=":", lw=0.8, label="float64 resolution of $L$")
    ax.set_xlabel("GD iteration t")
    ax.set_ylabel("$(L - L^*)/L^*$")
    ax.set_title("Theorem 1: linear convergence for H >= N (" + ", ".join(f"{k}={v}" for k, v in base.items()) + ")",
                 fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, os.path.join(out, "convergence.png"))
    table = write_table(os.path.join(out, "convergence"), header, rows,
                        title=f"L - L* under exact GD (eta_Q = {STEP_FRACTION:g} x the stability limit 2/ell_0 at "
                              "the start)")
    return {"table": table, "rows": [dict(zip(header, r)) for r in rows]}


# ---- Theorem 2 ----------------------------------------------------------------------------
def _forward_check(res, params, n=500, seed=1):
    """Largest ``|yhat - yhat*|`` over ``n`` fresh prompts of each test law, relative to the largest
    ``|yhat*|``: the trained model's forward pass (scipy's softmax of its own ``theta_h``) against
    ridge regression solved in the m-dimensional basis (:func:`.ridge.predict`)."""
    model = res.model
    pr = model.problem
    a = np.einsum("hnk,hk->nk", softmax(model.theta_of(res.state), axis=1), res.state["w"])
    out = []
    rng = np.random.default_rng(seed)
    for mu, var in (params.get("id_tasks", (0.0, 1.0)), params.get("ood_tasks", (1.0, 4.0))):
        Y = sampling.sample_labels(pr, rng, n, "gaussian", mu, var)
        yhat = Y[:, :pr.N] @ a
        ystar = ridge.predict(pr, Y[:, :pr.N], pr.m * pr.tau)
        out.append(float(np.abs(yhat - ystar).max() / np.abs(ystar).max()))
    return out


def yang_ridge(out, quick=False, workers=None):
    """At convergence the model is ridge regression over the basis (Theorem 2), exact and Monte Carlo.

    Rows: exact GD at convergence; exact GD at the Monte Carlo horizon; Monte Carlo SGD (batch
    256, the exact run's step, fresh prompts) at that horizon, mean and standard error over
    replicas.  SGD settles at a noise floor set by its step and batch, so it stays above the exact
    row at the same iteration by more than the standard error (which measures the spread over
    replicas, not this bias)."""
    params = dict(QUICK if quick else FULL, H=16 if quick else 64)
    res, _ = _exact_to_convergence(params, 4000 if quick else 100_000)
    last = res.ds.isel(t=-1)
    L_star = float(res.ds["L_star"])
    fid, food = _forward_check(res, params)
    header = ["method", "steps", "gap_rel", "gap_rel_se", "a_dist_max", "a_dist_max_se", "inference_id",
              "inference_id_se", "inference_ood", "inference_ood_se", "forward_id_rel", "forward_ood_rel"]
    rows = [["exact GD", int(res.t[-1]), float(last["gap"]) / L_star, 0.0, float(last["a_dist_max"]), 0.0,
             float(last["inference_id"]), 0.0, float(last["inference_ood"]), 0.0, fid, food]]
    mc_steps = min(4000 if quick else 10_000, int(res.t[-1]))
    R = 4 if quick else 2
    i = int(np.argmin(np.abs(res.t - mc_steps)))
    at = res.ds.isel(t=i)
    rows.append([f"exact GD at t = {int(res.t[i])}", int(res.t[i]), float(at["gap"]) / L_star, 0.0,
                 float(at["a_dist_max"]), 0.0, float(at["inference_id"]), 0.0, float(at["inference_ood"]), 0.0,
                 np.nan, np.nan])
    mc = run(Yang2024, "mc", steps=mc_steps, save_at=grid(mc_steps, 30, 30), replicas=R, batch=256,
                  eta_Q=float(res.ds["eta_Q"]), check_step=False, **params)
    fin = mc.ds.isel(t=-1)
    row = ["Monte Carlo SGD (batch 256)", mc_steps]
    for name, scale in (("gap", L_star), ("a_dist_max", 1.0), ("inference_id", 1.0), ("inference_ood", 1.0)):
        v = np.asarray(fin[name].values) / scale
        row += list(mean_se(v))
    row += [np.nan, np.nan]
    rows.append(row)
    held = np.asarray(fin["loss_heldout"].values)
    held_se = np.asarray(fin["loss_heldout_se"].values)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (r, label) in zip(axes, ((res, "exact GD"), (mc, f"Monte Carlo SGD, {R} replicas, batch 256"))):
        for name, lab in (("a_dist_max", "$\\max_k |a_k - A_{:,k}|$"), ("inference_id", "in-domain inference loss"),
                          ("inference_ood", "out-of-domain inference loss")):
            m, se = series(r.ds, name)
            keep = r.t > 0
            line, = ax.loglog(r.t[keep], m[keep], label=lab)
            if se is not None:
                ax.fill_between(r.t[keep], np.maximum(m[keep] - 2 * se[keep], 1e-300), m[keep] + 2 * se[keep],
                                color=line.get_color(), alpha=0.25, lw=0)
        ax.set_xlabel("iteration t")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("distance to the ridge predictor")
    save_figure(fig, os.path.join(out, "ridge.png"))
    table = write_table(os.path.join(out, "ridge"), header, rows,
                        title="Theorem 2: the trained model against ridge regression with penalty m tau")
    return {"table": table, "rows": [dict(zip(header, r)) for r in rows], "L_star": L_star,
            "mc_heldout_minus_L_star": float(held.mean() - L_star),
            "mc_heldout_se": float(np.sqrt(np.sum(held_se ** 2)) / R)}


# ---- Fig 2 --------------------------------------------------------------------------------
def yang_fig2(out, quick=False, workers=None):
    """Training and inference losses against iterations, exact and Monte Carlo, both with Adam."""
    params = dict(QUICK if quick else FULL, H=16 if quick else 64)
    steps = 3000 if quick else 10_000
    lr = 1e-3 if quick else ADAM_LR
    R = 2
    exact = run(Yang2024, "gd", optimizer="adam", eta_Q=lr, steps=steps, snapshots=60, **params)
    mc = run(Yang2024, "mc", optimizer="adam", eta_Q=lr, steps=steps, snapshots=60, replicas=R, batch=256,
                  **params)
    K = params["K"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    names = (("loss_per_token", "training loss $L/K$"), ("inference_id", "in-domain inference loss"),
             ("inference_ood", "out-of-domain inference loss"))
    for ax, (r, title) in zip(axes, ((exact, "exact population gradient, Adam"),
                                     (mc, f"Monte Carlo, Adam, batch 256 ({R} replicas)"))):
        keep = r.t > 0
        for name, lab in names:
            m, se = series(r.ds, name)
            line, = ax.loglog(r.t[keep], m[keep], label=lab)
            if se is not None:
                ax.fill_between(r.t[keep], np.maximum(m[keep] - 2 * se[keep], 1e-300), m[keep] + 2 * se[keep],
                                color=line.get_color(), alpha=0.25, lw=0)
        if "train_loss" in r.ds:
            m, _ = series(r.ds, "train_loss")
            ax.loglog(r.t[keep], m[keep] / K, ":", color="C0", label="minibatch training loss / K")
        ax.axhline(float(r.ds["L_star"]) / K, color="k", ls="--", lw=0.8, label="$L^*/K$")
        ax.set_xlabel("iteration t")
        ax.set_title(f"{title}, lr {lr:g}", fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("loss per token")
    save_figure(fig, os.path.join(out, "fig2.png"))
    header = ["t", "exact_train", "exact_id", "exact_ood", "mc_train", "mc_train_se", "mc_id", "mc_id_se", "mc_ood",
              "mc_ood_se"]
    rows = []
    for t in sorted({0, int(steps ** (1 / 3)), int(steps ** 0.5), steps // 10, steps}):
        i = int(np.argmin(np.abs(exact.t - t)))
        row = [int(exact.t[i])] + [float(exact.ds[n].values[i]) for n, _ in names]
        for n, _ in names:
            m, se = series(mc.ds, n)
            row += [float(m[i]), float(se[i]) if se is not None else np.nan]
        rows.append(row)
    table = write_table(os.path.join(out, "fig2"), header, rows,
                        title="Fig 2 (a): losses per token, exact and Monte Carlo (Adam)")
    return {"table": table, "rows": [dict(zip(header, r)) for r in rows],
            "L_star_per_token": float(exact.ds["L_star"]) / K}


# ---- Fig 3 --------------------------------------------------------------------------------
def yang_fig3(out, quick=False, workers=None):
    """``(1/K) E|yhat* - yhat_best|^2`` against N at m = 100, tau = 0.01 (closed form, averaged
    over data seeds); smallest near N = m."""
    m, tau, K = 100, 0.01, 200
    Ns, gaps = ridge.fig3_curve(quick)
    seeds = range(gaps.shape[0])
    mean, se = mean_se(gaps)
    best = int(Ns[np.argmin(mean)])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.errorbar(Ns, mean, yerr=2 * se, marker="o", ms=3, capsize=2)
    ax.axvline(m, color="k", ls="--", lw=0.8, label="N = m")
    ax.set_xlabel("prompt length N")
    ax.set_ylabel("$(1/K)\\, E|\\hat y^* - \\hat y^{best}|^2$ (in-domain tasks)")
    ax.set_title(f"Fig 3: m = {m}, tau = {tau:g}, K = {K}; mean +- 2 SE over {len(seeds)} data seeds", fontsize=9)
    ax.legend()
    save_figure(fig, os.path.join(out, "fig3.png"))
    rows = [[int(N), float(g), float(s)] for N, g, s in zip(Ns, mean, se)]
    table = write_table(os.path.join(out, "fig3"), ["N", "gap", "gap_se"], rows,
                        title=f"Fig 3: ridge with penalty m tau against penalty N tau (minimum at N = {best})")
    return {"table": table, "N": Ns.tolist(), "gap": mean.tolist(), "gap_se": se.tolist(), "argmin_N": best, "m": m}


# ---- Fig 4 --------------------------------------------------------------------------------
def yang_heads(out, quick=False, workers=None):
    """Training loss against iterations for H around N: one common plain GD step (``1/ell_0`` of
    the second-largest H, beyond the stability limit of the largest) and the paper's Adam step
    for every H; the largest stable plain step ``2/ell_0`` per H."""
    base = QUICK if quick else FULL
    N = base["N"]
    Hs = [2, 3, 5, 10, 16, 64] if quick else [8, 16, 30, 64, 128, 400]
    gd_steps, adam_steps = (3000, 3000) if quick else (12_000, 8000)
    lr = 1e-3 if quick else ADAM_LR
    limits = {H: 2.0 / Yang2024.create("gd", H=H, **base).ell0 for H in Hs}
    eta = 0.5 * limits[Hs[-2]]       # stable for every H up to Hs[-2] (ell_0 grows with H)
    header = ["H", "H_over_N", "eta_limit0", "gd_eta_Q", "gd_steps", "gd_final_gap_rel", "gd_status",
              "adam_steps", "adam_final_gap_rel", "adam_final_loss_per_token", "adam_snapshot_rises"]
    rows, curves = [], {}
    for H in Hs:
        params = dict(base, H=H)
        try:
            g = run(Yang2024, "gd", eta_Q=eta, check_step=False, steps=gd_steps, save_at=grid(gd_steps),
                         **params)
            gstat = g.status
        except SimulationDiverged as err:
            g, gstat = err.result, f"diverged at t = {int(err.result.t[-1])}"
        a = run(Yang2024, "gd", optimizer="adam", eta_Q=lr, steps=adam_steps, save_at=grid(adam_steps),
                     patience=10 ** 9, **params)
        L_star = float(g.ds["L_star"])
        aloss = a.ds["loss"].values
        rises = int(np.sum(np.diff(aloss) > 1e-13 * np.abs(aloss[:-1])))
        rows.append([H, H / N, limits[H], eta, int(g.t[-1]), float(g.ds["gap"].values[-1]) / L_star, gstat,
                     adam_steps, float(a.ds["gap"].values[-1]) / L_star, float(aloss[-1]) / base["K"], rises])
        curves[H] = (g, a)
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.3), sharey=True)
    top = 0.0
    for H in Hs:
        for ax, r in zip(axes, curves[H]):
            gg = r.ds["gap"].values / float(r.ds["L_star"])
            top = max(top, gg[0])
            keep = np.isfinite(gg) & (gg > 0)
            line, = ax.semilogy(r.t[keep], gg[keep], label=f"H = {H}")
            if r.status == "diverged":
                ax.plot(r.t[keep][-1], min(gg[keep][-1], 30 * top), "x", color=line.get_color(), ms=9,
                        label=f"H = {H} diverged")
    axes[0].set_ylim(top=30 * top)
    axes[0].set_title(f"plain GD, common eta_Q = {eta:.3g} (= 1/ell_0 at H = {Hs[-2]})", fontsize=9)
    axes[1].set_title(f"Adam on the exact gradient, lr {lr:g}", fontsize=9)
    for ax in axes:
        ax.set_xlabel("iteration t")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("$(L - L^*)/L^*$")
    save_figure(fig, os.path.join(out, "heads.png"))
    table = write_table(os.path.join(out, "heads"), header, rows,
                        title=f"Fig 4: heads H around N = {N}; eta_limit0 = 2/ell_0, the largest stable plain step")
    return {"table": table, "rows": [dict(zip(header, r)) for r in rows], "N": N, "common_eta": eta}
