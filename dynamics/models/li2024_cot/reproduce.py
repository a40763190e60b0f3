"""Reproduce targets of H. Li et al. (ICLR 2025; MODEL.md section 9), one function each.

``python -m dynamics.reproduce cot-length|cot-vs-icl|cot-mechanism|cot-training`` writes PNG
figures and ``<target>.csv`` (long format: one column per swept parameter, then the measured
value and its ``stderr``) plus a markdown copy, and returns the numbers.  Every number is a mean
over ``R`` independently trained replicas (replica ``r`` is ``simulate("li2024_cot",
method="mc", seed=r)``, :mod:`.training`) with the standard error of that mean.  Sizes
(:data:`FULL`, :data:`QUICK`): ``cot-length``, ``cot-vs-icl`` and ``cot-mechanism`` share one
training of ``R`` replicas at the defaults and evaluate ``n`` test prompts per replica and grid
point, with common random numbers across the swept test parameters; ``cot-training`` trains
``R_T`` replicas per ``(alpha, K)`` and records the held-out training loss densely.
"""
from __future__ import annotations

import os

import numpy as np
from scipy import stats as sps

from dynamics.core.report import write_table
from dynamics.core.stats import mean_se as replica_mean
from dynamics.models.li2024_cot import figures
from dynamics.models.li2024_cot.decoding import COLUMN_TYPES
from dynamics.models.li2024_cot.params import PARAMS
from dynamics.models.li2024_cot.training import error_grid, train_replicas
from dynamics.models.shared.figures import curves

FULL = dict(replicas=8, steps=1000, n=2000, lengths=(1, 2, 5, 10, 20, 30, 40, 60, 80, 100), snapshots=40, n_obs=1000,
            alphas=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), Ks=(2, 3, 4, 5, 6), t_replicas=8, horizon=800, stride=5,
            t_eval=1000)
QUICK = dict(replicas=4, steps=400, n=400, lengths=(2, 5, 10, 20, 40, 100), snapshots=14, n_obs=300,
             alphas=(0.4, 0.7, 1.0), Ks=(2, 3, 4), t_replicas=3, horizon=400, stride=10, t_eval=400)
SEED = 0
ALPHA_TESTS = (0.4, 0.6, 0.8, 1.0)
TAUS = (0.4, 0.5, 0.6, 0.7)
TAU_VS = 0.3
"""``tau^f`` of both test tasks of ``cot-vs-icl`` (with and without Condition 1)."""
LEVEL = 0.05
"""CoT error level whose first crossing is the 'required test length' of ``cot-length``."""
LOSS_LEVELS = (0.1, 0.05, 0.02, 0.01, 0.005)
"""Training-loss levels ``eps`` of ``cot-training``."""
MID_LENGTH = 10
"""Test length of the paired comparisons of ``cot-length``."""


def _sizes(quick):
    return QUICK if quick else FULL


def _train(z, workers):
    """The shared training of ``cot-length``, ``cot-vs-icl`` and ``cot-mechanism``."""
    return train_replicas(z["replicas"], SEED, z["steps"], snapshots=z["snapshots"], n_eval=z["n_obs"],
                          workers=workers)


def _default(name):
    return PARAMS[name].default


def cot_length(out: str, quick: bool = False, workers: int | None = None) -> dict:
    """CoT error against test length for ``alpha'`` in {0.4, ..., 1} and ``tau^f`` in {0.4, ..., 0.7}
    (Theorem 5: ``l_ts >= Omega((alpha' tau^f rho^f)^-2)``)."""
    z = _sizes(quick)
    reps = _train(z, workers)
    a0, t0 = _default("alpha_test"), _default("tau_f")
    keys = sorted({(a, t0) for a in ALPHA_TESTS} | {(a0, t) for t in TAUS})
    grid = error_grid(reps, lengths=z["lengths"], n=z["n"], seed=SEED + 1,
                      overrides={k: {"alpha_test": k[0], "tau_f": k[1]} for k in keys})
    rows = [(a, t, l, *replica_mean(grid[((a, t), l)]["cot"])) for a, t in keys for l in z["lengths"]]
    table = write_table(os.path.join(out, "cot-length"), ["alpha_test", "tau_f", "l_test", "error", "stderr"], rows,
                        digits=True, title=f"CoT error, mean +- SE over {z['replicas']} replicas, {z['n']} test "
                                           f"prompts each")
    L = np.array(z["lengths"])

    def line(key):
        return (L, *np.array([replica_mean(grid[(key, l)]["cot"]) for l in L]).T)

    curves(os.path.join(out, "cot-length.png"),
           [(f"test fraction alpha' (tau^f = {t0})", {f"alpha' = {a}": line((a, t0)) for a in ALPHA_TESTS}),
            (f"tau^f (alpha' = {a0})", {f"tau^f = {t}": line((a0, t)) for t in TAUS})],
           "CoT error against test length (more examples needed when alpha' or tau^f is small)", ylabel="CoT error")
    required, bound = {}, {}
    for a, t in keys:
        required[(a, t)] = crossing(L, np.array([replica_mean(grid[((a, t), l)]["cot"])[0] for l in L]), LEVEL)
        rho = reps[0].model.with_params("mc", tau_f=t).data.stats.rho
        bound[(a, t)] = (a * t * rho, (a * t * rho) ** -2.0)
    rrows = [(a, t, *bound[(a, t)], required[(a, t)]) for a, t in keys]
    table += "\n" + write_table(os.path.join(out, "cot-length-required"),
                                ["alpha_test", "tau_f", "alpha_tau_rho", "theorem_bound", "required_length"], rrows,
                                digits=True, title=f"Test length at which the CoT error reaches {LEVEL} (log-linear "
                                                   f"interpolation between grid lengths; inf: not reached), beside "
                                                   f"Theorem 5's (alpha' tau^f rho^f)^-2")
    fin = [k for k in keys if np.isfinite(required[k])]
    slope = sps.linregress(np.log([bound[k][1] for k in fin]), np.log([required[k] for k in fin])) \
        if len(fin) > 2 else None
    lm = MID_LENGTH if MID_LENGTH in z["lengths"] else int(L[len(L) // 2])
    claims = {"required_length": required, "bound": bound,
              "bound_slope": (slope.slope, slope.stderr) if slope is not None else None,
              "paired_alpha": replica_mean(grid[((0.4, t0), lm)]["cot"] - grid[((1.0, t0), lm)]["cot"]),
              "paired_tau": replica_mean(grid[((a0, 0.4), lm)]["cot"] - grid[((a0, 0.7), lm)]["cot"]),
              "mid_length": lm}
    return {"table": table, "rows": rows, "claims": claims}


def cot_vs_icl(out: str, quick: bool = False, workers: int | None = None) -> dict:
    """CoT and ICL errors against test length on test tasks with ``tau^f = 0.3``, with and without
    Condition 1 (Theorem 6: without it ICL stays wrong however long the prompt; CoT does not need it)."""
    z = _sizes(quick)
    reps = _train(z, workers)
    grid = error_grid(reps, lengths=z["lengths"], n=z["n"], seed=SEED + 2,
                      overrides={c: {"tau_f": TAU_VS, "condition1": c} for c in (True, False)})
    nums = {(m, c, l): replica_mean(grid[(c, l)][m]) for m in ("cot", "icl") for c in (True, False)
            for l in z["lengths"]}
    rows = [(m, str(c).lower(), l, *nums[(m, c, l)]) for m in ("cot", "icl") for c in (True, False)
            for l in z["lengths"]]
    table = write_table(os.path.join(out, "cot-vs-icl"), ["method", "condition1", "l_test", "error", "stderr"], rows,
                        digits=True, title=f"CoT and ICL errors at tau^f = {TAU_VS}, mean +- SE over "
                                           f"{z['replicas']} replicas, {z['n']} test prompts each (the same draws)")
    task = []
    for c in (True, False):
        st = reps[0].model.with_params("mc", tau_f=TAU_VS, condition1=c).data.stats
        task.append((str(c).lower(), st.tau, st.tau_o, st.rho, st.rho_o, float(st.failing.mean())))
    table += "\n" + write_table(os.path.join(out, "cot-vs-icl-task"), ["condition1", "tau_f", "tau_o_f", "rho_f",
                                                                        "rho_o_f", "icl_limit"], task, digits=True,
                                title="The two test tasks (exact statistics; icl_limit: ICL error of plurality "
                                      "copying as l -> infinity)")
    L = np.array(z["lengths"])
    lines = {f"{ {'cot': 'CoT', 'icl': 'ICL'}[m]}, {'with' if c else 'without'} Condition 1":
             (L, *np.array([nums[(m, c, l)] for l in L]).T) for m in ("cot", "icl") for c in (True, False)}
    curves(os.path.join(out, "cot-vs-icl.png"), [(f"tau^f = {TAU_VS}, alpha' = {_default('alpha_test')}", lines)],
           "CoT against ICL: without Condition 1 ICL does not improve with more examples", ylabel="error")
    lmin, lmax = int(L[0]), int(L[-1])
    claims = {key: {"lmin": nums[key + (lmin,)], "lmax": nums[key + (lmax,)]}
              for key in (("cot", True), ("cot", False), ("icl", True), ("icl", False))}
    return {"table": table, "rows": rows, "claims": claims, "task": task}


def _half_time(t, mass):
    """First time (linear interpolation between snapshots) at which ``mass`` falls to half its
    initial value; ``inf`` if it never does."""
    half = 0.5 * mass[0]
    below = np.nonzero(mass <= half)[0]
    if below.size == 0:
        return np.inf
    i = below[0]
    return float(t[i - 1] + (t[i] - t[i - 1]) * (mass[i - 1] - half) / (mass[i - 1] - mass[i]))


def cot_mechanism(out: str, quick: bool = False, workers: int | None = None) -> dict:
    """The four attention masses against iterations on test and training prompts (slides' Figure
    20), and when positions and patterns are learned."""
    z = _sizes(quick)
    reps = _train(z, workers)
    t = reps[0].ds["t"].values
    R = len(reps)
    rows, panels, halves, claims = [], [], [], {}
    for var, prompts, sub in (("attn", "test", "test prompts (TSR, CoT decoding)"),
                              ("attn_train", "train", "training-distribution prompts")):
        vals = np.stack([rep.ds[var].values for rep in reps])          # (R, T, 4)
        mean, se = replica_mean(vals)
        panels.append((sub, mean, se))
        rows += [(int(tt), prompts, kind, mean[i, j], se[i, j]) for i, tt in enumerate(t)
                 for j, kind in enumerate(COLUMN_TYPES)]
        pos = np.array([_half_time(t, v[:, 2] + v[:, 3]) for v in vals])   # mass on other steps
        pat = np.array([_half_time(t, v[:, 1] + v[:, 3]) for v in vals])   # mass on other patterns
        halves += [(prompts, "different_step", *replica_mean(pos)), (prompts, "different_pattern", *replica_mean(pat))]
        claims[prompts] = {"initial": (mean[0], se[0]), "final": (mean[-1], se[-1]),
                           "half_step": replica_mean(pos), "half_pattern": replica_mean(pat),
                           "pattern_minus_step": replica_mean(pat - pos)}
    table = write_table(os.path.join(out, "cot-mechanism"), ["t", "prompts", "column_type", "attention", "stderr"],
                        rows, digits=True, title=f"Attention mass by column type, mean +- SE over {R} replicas")
    table += "\n" + write_table(os.path.join(out, "cot-mechanism-halftimes"), ["prompts", "mass", "t_half", "stderr"],
                                halves, digits=True,
                                title="Iteration at which the mass on columns of other steps (positions) / other "
                                      "patterns falls to half its initial value")
    figures.attention_panels(os.path.join(out, "cot-mechanism.png"), t, panels,
                             "Attention by column type during CoT decoding (mean +- 2 SE over replicas)")
    return {"table": table, "rows": rows, "claims": claims}


def crossing(t, loss, level):
    """First ``t`` (iteration, or test length) at which ``loss`` reaches ``level``, interpolating
    ``log loss`` linearly between grid points (errors fall about exponentially in both); ``inf``
    if it never does."""
    below = np.nonzero(loss <= level)[0]
    if below.size == 0:
        return np.inf
    i = below[0]
    if i == 0:
        return float(t[0])
    if loss[i] <= 0.0:                  # an exact zero (no error on any prompt): interpolate linearly
        return float(t[i - 1] + (t[i] - t[i - 1]) * (loss[i - 1] - level) / loss[i - 1])
    a, b = np.log(loss[i - 1]), np.log(loss[i])
    return float(t[i - 1] + (t[i] - t[i - 1]) * (a - np.log(level)) / (a - b))


def theorem_T(alpha, K, M, eps):
    """The theorem's ``T = alpha^-2 K^3 + M K (alpha^-1 + eps^-1)`` with unit constants."""
    return np.asarray(alpha) ** -2.0 * np.asarray(K) ** 3.0 + M * np.asarray(K) * (np.asarray(alpha) ** -1.0 + 1 / eps)


def _fit(x, T):
    """Power-law exponent of ``T`` (replicas x settings) in ``x``: OLS of ``log T`` on ``log x`` over
    every replica's point; ``(slope, stderr, ci95 low, ci95 high, intercept)``."""
    X = np.repeat(np.log(x)[None, :], T.shape[0], axis=0).ravel()
    Y = np.log(T).ravel()
    fit = sps.linregress(X, Y)
    q = sps.t.ppf(0.975, X.size - 2)
    return fit.slope, fit.stderr, fit.slope - q * fit.stderr, fit.slope + q * fit.stderr, fit.intercept


def cot_training(out: str, quick: bool = False, workers: int | None = None) -> dict:
    """Iterations to reach training-loss levels ``eps`` against ``alpha`` (K = 3), ``K`` (alpha =
    0.8) and ``eps``, beside Theorem 4's ``T = Theta(alpha^-2 K^3 + M K (alpha^-1 + eps^-1))``."""
    z = _sizes(quick)
    save_at = np.unique(np.r_[np.arange(0, min(100, z["horizon"])), np.arange(100, z["horizon"] + 1, z["stride"])])
    M, K0, a0 = _default("M"), _default("K"), _default("alpha")
    settings = sorted({(a, K0) for a in z["alphas"]} | {(a0, K) for K in z["Ks"]})
    times = {}
    for a, K in settings:
        reps = train_replicas(z["t_replicas"], SEED + 100, z["horizon"], n_eval=z["t_eval"], save_at=save_at,
                              workers=workers, alpha=a, K=K, record="loss")
        for eps in LOSS_LEVELS:
            times[(eps, a, K)] = np.array([crossing(rep.ds["t"].values, rep.ds["loss"].values, eps) for rep in reps])
    rows = [(eps, a, K, *replica_mean(times[(eps, a, K)])) for eps in LOSS_LEVELS for a, K in settings]
    table = write_table(os.path.join(out, "cot-training"), ["level", "alpha", "K", "iterations", "stderr"], rows,
                        digits=True, title=f"SGD iterations until the held-out training loss ({z['t_eval']} prompts) "
                                           f"is <= level, mean +- SE over {z['t_replicas']} replicas")
    sweeps = {"alpha": (np.array(z["alphas"]), lambda x, eps: (eps, x, K0), lambda x, eps: theorem_T(x, K0, M, eps)),
              "K": (np.array(z["Ks"], dtype=float), lambda x, eps: (eps, a0, int(x)),
                    lambda x, eps: theorem_T(a0, x, M, eps))}
    frow, fits, panels = [], {}, []
    for name, (xs, key, th) in sweeps.items():
        lines, fitted, theory = {}, {}, {}
        for eps in LOSS_LEVELS:
            T = np.stack([times[key(x, eps)] for x in xs], axis=1)             # (R, n)
            slope, se, lo, hi, icpt = _fit(xs, T)
            fits[(name, eps)] = (slope, se, lo, hi, sps.linregress(np.log(xs), np.log(th(xs, eps))).slope)
            frow.append((name, eps, *fits[(name, eps)]))
            lines[f"eps = {eps}"] = (xs, *np.array([replica_mean(T[:, j]) for j in range(xs.size)]).T)
            fitted[f"eps = {eps}"] = (xs, np.exp(icpt) * xs ** slope)
            if eps in (LOSS_LEVELS[0], LOSS_LEVELS[-1]):
                theory[f"eps = {eps}"] = (xs, np.exp(np.mean(np.log(T.mean(0) / th(xs, eps)))) * th(xs, eps))
        panels.append((f"alpha (K = {K0})" if name == "alpha" else f"K (alpha = {a0})", lines, fitted, theory))
    eps = np.array(LOSS_LEVELS)
    T = np.stack([times[(e, a0, K0)] for e in LOSS_LEVELS], axis=1)
    slope, se, lo, hi, icpt = _fit(eps, T)
    th = theorem_T(a0, K0, M, eps)
    fits[("eps", None)] = (slope, se, lo, hi, sps.linregress(np.log(eps), np.log(th)).slope)
    frow.append(("eps", "all", *fits[("eps", None)]))
    panels.append((f"level eps (alpha = {a0}, K = {K0})",
                   {"measured": (eps, *np.array([replica_mean(T[:, j]) for j in range(eps.size)]).T)},
                   {"measured": (eps, np.exp(icpt) * eps ** slope)},
                   {"theorem": (eps, np.exp(np.mean(np.log(T.mean(0) / th))) * th)}))
    table += "\n" + write_table(os.path.join(out, "cot-training-fit"), ["swept", "level", "exponent", "stderr",
                                                                         "ci95_low", "ci95_high", "theorem_exponent"],
                                 frow, digits=True,
                                 title="Power-law exponents of the iterations (OLS of log T on log x over replicas; "
                                       "95% t intervals) beside the log-log slope of the theorem's T (unit constants, "
                                       f"M = {M}) over the same grid")
    figures.training_times(os.path.join(out, "cot-training.png"), panels,
                           "Iterations to reach a training-loss level (Theorem 4: T = Theta(alpha^-2 K^3 + M K "
                           "(alpha^-1 + eps^-1)))")
    return {"table": table, "rows": rows, "claims": {"fits": fits, "times": times}}
