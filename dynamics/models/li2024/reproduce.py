"""Reproduce targets of H. Li et al. (ICML 2024; MODEL.md section 8), one function each.

``python -m dynamics.reproduce li-ood|li-alpha|li-mechanism|li-pruning|li-baselines`` writes PNG
figures and ``<target>.csv`` (long format: one column per swept parameter, then the measured
value and its ``stderr``) plus a markdown copy.  Every number is a mean over ``R`` independently
trained replicas with the standard error of that mean (:mod:`.training`).  Sizes (:data:`FULL`,
:data:`QUICK`): the full targets use ``R = 16`` replicas and ``n = 2000`` test prompts per replica
and grid point; ``quick=True`` (the tests) uses ``R = 5``, shorter training and fewer prompts.
Replica ``r`` is the front end's run ``simulate("li2024", method="mc", seed=r)``: its own draw of
the training tasks, initialisation and prompts (:mod:`.training`).  ``workers`` (``--workers``)
trains the replicas, and fits the ``li-baselines`` learners, in that many processes (the numbers
do not depend on it).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from dynamics.core.report import write_table
from dynamics.core.stats import mean_se
from dynamics.models.li2024 import baselines, figures
from dynamics.models.li2024.evaluation import forward
from dynamics.models.li2024.pruning import pruning_errors
from dynamics.models.li2024.training import error_grid, replica_mean, train_replicas

FULL = dict(replicas=16, steps=1500, batch=64, n=2000, lengths=tuple(range(1, 21)), snapshots=30, draws=10,
            base_n=150, base_replicas=6, base_lengths=(2, 5, 10, 20))
QUICK = dict(replicas=5, steps=600, batch=64, n=600, lengths=(1, 2, 5, 10, 20), snapshots=12, draws=4,
             base_n=15, base_replicas=2, base_lengths=(5,))
S1_VALUES = (0.5, 0.7, 0.9, 1.1, 1.3)
CONSTRUCTIONS_OOD = ("sum_norm", "tied")
ALPHA_VALUES = (0.8, 0.9, 1.0)
"""The slides' Figure 13 test fractions."""
BASELINE_ALPHAS = (0.8, 0.9, 1.0)
PRUNE_RATES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
LEVEL = 0.05
"""Error level whose first crossing is the 'required test length' of li-alpha."""
SEED = 0


def _sizes(quick):
    return QUICK if quick else FULL


def _train(z, workers, snapshots=2, n_eval=200, replicas=None):
    """``R`` replicas (:class:`~.training.Replica`) trained at the default parameters."""
    return train_replicas(replicas or z["replicas"], SEED, z["steps"], z["batch"], snapshots=snapshots,
                          n_eval=n_eval, workers=workers)


def _z(a, sa, b, sb):
    """``(a - b) / sqrt(sa^2 + sb^2)``: a difference in standard errors."""
    den = np.hypot(sa, sb)
    return float((a - b) / den) if den > 0 else float("inf") * np.sign(a - b)


def li_ood(out: str, quick: bool = False, workers: int | None = None) -> dict:
    """OOD error against test length for ``S1`` in {0.5, ..., 1.3} (Theorem 2: ``S1 >= 1`` needed),
    for unit-norm ODR patterns (``sum_norm``: the sum alone varies) and for the norm-tied patterns
    ``S1/2 (mu_a + mu_b)`` (norm ``S1/sqrt(2)``: sum and norm vary together), on the same trained
    replicas."""
    z = _sizes(quick)
    reps = _train(z, workers)
    R = len(reps)
    overrides = {(how, s): {"odr_construction": how, "S1": s} for how in CONSTRUCTIONS_OOD for s in S1_VALUES}
    grid, raw = error_grid(reps, domain="ood", lengths=z["lengths"], n=z["n"], seed=SEED + 1, overrides=overrides,
                           per_replica=True)
    rows = [(how, s, l, *grid[((how, s), l)], *np.quantile(raw[((how, s), l)], [0.0, 0.5, 1.0]))
            for how in CONSTRUCTIONS_OOD for s in S1_VALUES for l in z["lengths"]]
    table = write_table(os.path.join(out, "li-ood"), ["construction", "S1", "l_test", "error", "stderr", "seed_min",
                                                      "seed_median", "seed_max"], rows, digits=True,
                        title=f"OOD classification error, mean +- SE over {R} replicas ({z['n']} test prompts "
                              f"each) and the replicas' min / median / max")
    L = np.array(z["lengths"])
    figures.curves(os.path.join(out, "li-ood.png"),
                   [(title, {f"S1 = {s}": (L, *np.array([grid[((how, s), l)] for l in L]).T) for s in S1_VALUES})
                    for how, title in (("sum_norm", "unit-norm ODR patterns (sum_norm)"),
                                       ("tied", "norm-tied ODR patterns S1/2 (mu_a + mu_b)"))],
                   f"Out-of-domain error against test length (Theorem 2); error bars: 1 SE of the mean over {R} "
                   f"replicas")
    lmax, lmid = int(L[-1]), int(L[len(L) // 2])
    claims = {how: {"gap_z": _z(*grid[((how, 0.5), lmax)], *grid[((how, 1.3), lmax)]),
                    "error_at_lmax": {s: grid[((how, s), lmax)] for s in S1_VALUES},
                    "fall_from_lmid": {s: _z(*grid[((how, s), lmid)], *grid[((how, s), lmax)]) for s in S1_VALUES}}
              for how in CONSTRUCTIONS_OOD}
    return {"table": table, "rows": rows, "claims": claims}


def li_alpha(out: str, quick: bool = False, workers: int | None = None) -> dict:
    """In- and out-of-domain error against test length for ``alpha'`` in {0.6, 0.8, 1.0}."""
    z = _sizes(quick)
    reps = _train(z, workers)
    grids, raw = {}, {}
    for dom in ("id", "ood"):
        grids[dom], raw[dom] = error_grid(reps, domain=dom, lengths=z["lengths"], n=z["n"], seed=SEED + 2,
                                          overrides={a: {"alpha_test": a} for a in ALPHA_VALUES}, per_replica=True)
    rows = [(a, dom, l, *grids[dom][(a, l)]) for dom in ("id", "ood") for a in ALPHA_VALUES for l in z["lengths"]]
    table = write_table(os.path.join(out, "li-alpha"), ["alpha_test", "domain", "l_test", "error", "stderr"], rows,
                        digits=True, title=f"Classification error, mean +- SE over {z['replicas']} replicas")
    # Paired over replicas: each replica's error at alpha' minus its error at alpha' = 1 on the same
    # trained weights and training tasks (the replicas' spread in T_tr cancels).
    prow = [(a, dom, l, *replica_mean(raw[dom][(a, l)] - raw[dom][(1.0, l)])) for dom in ("id", "ood")
            for a in ALPHA_VALUES[:-1] for l in z["lengths"]]
    table += "\n" + write_table(os.path.join(out, "li-alpha-paired"), ["alpha_test", "domain", "l_test",
                                                                    "error_minus_alpha1", "stderr"], prow, digits=True,
                                title="Paired difference: error at alpha' minus error at alpha' = 1, same replica")
    L = np.array(z["lengths"])
    figures.curves(os.path.join(out, "li-alpha.png"),
                   [(title, {f"alpha' = {a}": (L, *np.array([grids[dom][(a, l)] for l in L]).T) for a in ALPHA_VALUES})
                    for dom, title in (("id", "in domain, unseen tasks T \\ T_tr"), ("ood", "out of domain, T'"))],
                   "Error against test length for test fractions alpha' (Theorems 1-2: l_ts >= 1/alpha')")
    # Required test length per replica (its own first length with error <= LEVEL; inf if none), then
    # the replicas' mean +- SE and min / median / max: a first crossing of noisy means has no error.
    required, req_rows = {}, []
    for dom in ("id", "ood"):
        for a in ALPHA_VALUES:
            per = np.array([next((float(l) for l in L if raw[dom][(a, int(l))][r] <= LEVEL), np.inf)
                            for r in range(len(reps))])
            required[(dom, a)] = per
            fin = per[np.isfinite(per)]
            req_rows.append((a, dom, *replica_mean(fin), int(np.sum(~np.isfinite(per))),
                             *(np.quantile(fin, [0.0, 0.5, 1.0]) if fin.size else [np.nan] * 3)))
    table += "\n" + write_table(os.path.join(out, "li-alpha-required"), ["alpha_test", "domain", "required_length",
                                                                       "stderr", "never", "seed_min", "seed_median",
                                                                       "seed_max"], req_rows, digits=True,
                                title=f"Per-replica first test length with error <= {LEVEL} (never: replicas that "
                                      f"do not reach it by l = {int(L[-1])})")
    claims = {"required_length": required, "paired": {(a, dom, l): (d, e) for a, dom, l, d, e in prow}}
    return {"table": table, "rows": rows, "claims": claims}


def li_mechanism(out: str, quick: bool = False, workers: int | None = None) -> dict:
    """Attention on same-pattern contexts, W_Q/W_K projections and the W_O W_V picture against
    iterations (Propositions 1 and 2)."""
    z = _sizes(quick)
    reps = _train(z, workers, snapshots=z["snapshots"], n_eval=z["n"] // 4)
    dss = [rep.ds for rep in reps]
    t = dss[0]["t"].values
    R = len(dss)
    rows, lines = [], {}
    for dom, name in (("id", "in domain"), ("ood", "out of domain")):
        vals = np.stack([ds[f"attn_same_{dom}"].values for ds in dss])
        mean, se = mean_se(vals)
        lines[name] = (mean, se)
        rows += [(int(tt), dom, m, s) for tt, m, s in zip(t, mean, se)]
    table = write_table(os.path.join(out, "li-mechanism"), ["t", "domain", "attn_same", "stderr"], rows, digits=True,
                        title=f"Attention on same-pattern contexts, mean +- SE over {R} replicas")
    figures.attention(os.path.join(out, "li-mechanism-attention.png"), t, lines)
    proj = np.stack([ds["qk_proj"].values for ds in dss])
    pm, ps = mean_se(proj)
    prow = [(int(tt), mat, part, pm[i, k, j], ps[i, k, j]) for i, tt in enumerate(t)
            for k, mat in enumerate(("W_Q", "W_K")) for j, part in enumerate(("norm", "along_pattern", "orthogonal"))]
    write_table(os.path.join(out, "li-mechanism-projections"), ["t", "matrix", "part", "projection", "stderr"], prow,
                digits=True)
    figures.projections(os.path.join(out, "li-mechanism-projections.png"), t, pm, ps)
    sign = np.sign(reps[0].state["a"])
    erow = []
    for i, tt in enumerate(t):
        for part in ("feature", "label"):
            for sgn, sname in ((1, "+"), (-1, "-")):
                per = [ds[f"{part}_cos"].values[i][sign == sgn].mean() for ds in dss]
                erow.append((int(tt), part, sname, *replica_mean(per)))
    write_table(os.path.join(out, "li-mechanism-embedding"), ["t", "part", "sign_a", "cos", "stderr"], erow,
                digits=True)
    picks = np.unique(np.linspace(0, len(t) - 1, 4).round().astype(int))
    figures.embedding(os.path.join(out, "li-mechanism-embedding.png"), t[picks],
                      [np.concatenate([ds["feature_cos"].values[i] for ds in dss]) for i in picks],
                      [np.concatenate([ds["label_cos"].values[i] for ds in dss]) for i in picks], sign)
    doms = (("id", "in domain"), ("ood", "out of domain"))
    final = {dom: (lines[name][0][-1], lines[name][1][-1]) for dom, name in doms}
    initial = {dom: (lines[name][0][0], lines[name][1][0]) for dom, name in doms}
    last = {(p, s): (c, e) for tt, p, s, c, e in erow if tt == int(t[-1])}
    claims = {"attn_final": final, "attn_initial": initial, "embedding_final": last,
              "projection_final": {(mat, part): (pm[-1, k, j], ps[-1, k, j]) for k, mat in enumerate(("W_Q", "W_K"))
                                   for j, part in enumerate(("norm", "along_pattern", "orthogonal"))}}
    return {"table": table, "rows": rows, "claims": claims}


def li_pruning(out: str, quick: bool = False, workers: int | None = None) -> dict:
    """OOD error and hinge loss against pruning rate, magnitude vs random (Theorem 3)."""
    z = _sizes(quick)
    reps = _train(z, workers)
    states = [rep.state for rep in reps]
    per = [pruning_errors(rep.model, rep.state, PRUNE_RATES, np.random.default_rng([SEED + 3, r]), z["n"], "ood",
                          z["draws"]) for r, rep in enumerate(reps)]
    out_rows, numbers = {}, {}
    for metric in ("error", "hinge"):
        rows = []
        for rate in PRUNE_RATES:
            for how in ("magnitude", "random"):
                val = replica_mean([p[(how, rate, metric)][0] for p in per])
                chg = replica_mean([p[(how, rate, metric)][2] for p in per])
                rows.append((rate, how, *val, *chg))
                numbers[(metric, how, rate)] = val + chg
        out_rows[metric] = rows
    table = write_table(os.path.join(out, "li-pruning"), ["prune_rate", "method", "error", "stderr", "change",
                                                          "change_stderr"], out_rows["error"], digits=True,
                        title=f"OOD classification error after pruning W_O rows; change = paired difference from "
                              f"the unpruned network on the same prompts; {len(states)} replicas x {z['n']} prompts")
    table += "\n" + write_table(os.path.join(out, "li-pruning-hinge"), ["prune_rate", "method", "hinge", "stderr",
                                                                        "change", "change_stderr"], out_rows["hinge"],
                                digits=True, title="OOD hinge loss (the slides' generalization error, eq. 10)")
    write_table(os.path.join(out, "li-pruning-replicas"), ["replica", "metric", "prune_rate", "method", "value",
                                                           "change"],
                [(r, metric, rate, how, p[(how, rate, metric)][0], p[(how, rate, metric)][2]) for r, p in enumerate(per)
                 for metric in ("error", "hinge") for rate in PRUNE_RATES for how in ("magnitude", "random")],
                digits=True, title="Every replica's own value and paired change (the spread behind mean +- SE)")
    norms = [np.linalg.norm(st["W_O"], axis=1) for st in states]
    write_table(os.path.join(out, "li-pruning-magnitudes"), ["replica", "rank", "neuron_norm"],
                [(r, k, v) for r, nrm in enumerate(norms) for k, v in enumerate(np.sort(nrm))], digits=True)

    def lines(metric):
        return {how: tuple(np.array([numbers[(metric, how, r)][i] for r in PRUNE_RATES]) for i in (0, 1))
                for how in ("magnitude", "random")}

    figures.pruning(os.path.join(out, "li-pruning.png"), np.array(PRUNE_RATES), lines("error"), lines("hinge"), norms)
    claims = {metric: {"magnitude_10": numbers[(metric, "magnitude", 0.1)][2:],
                       "random_10": numbers[(metric, "random", 0.1)][2:]} for metric in ("error", "hinge")}
    return {"table": table, "rows": out_rows, "claims": claims, "numbers": numbers}


def _baseline_point(args):
    model, st, seed, r, dom, alpha, length, n = args
    rng = np.random.default_rng([seed, r, int(alpha * 100), length, dom == "ood"])
    pr = model.data.sample(rng, n, length, alpha, dom)
    F, _ = forward(st, pr, model.ncols(length))
    errs = baselines.errors(pr, model.data)
    errs["transformer"] = (pr.z * F <= 0).astype(np.float64)
    return {k: float(v.mean()) for k, v in errs.items()}


def li_baselines(out: str, quick: bool = False, workers: int | None = None) -> dict:
    """The trained model's ICL error against classical learners fitted on the same context
    examples (needs scikit-learn; returns ``{"skipped": reason}`` without it)."""
    if not baselines.available():
        msg = "li-baselines skipped: scikit-learn is not installed (pip install scikit-learn)"
        print(msg)
        return {"skipped": msg, "table": ""}
    z = _sizes(quick)
    reps = _train(z, workers, replicas=z["base_replicas"])
    keys = [(dom, a, l) for dom in ("id", "ood") for a in BASELINE_ALPHAS for l in z["base_lengths"]]
    jobs = [(rep.model, rep.state, SEED + 4, r, dom, a, l, z["base_n"]) for (dom, a, l) in keys
            for r, rep in enumerate(reps)]
    if workers and int(workers) > 1:
        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            res = list(pool.map(_baseline_point, jobs))
    else:
        res = [_baseline_point(j) for j in jobs]
    R = len(reps)
    methods = ("transformer",) + baselines.METHODS
    rows, grid = [], {}
    for i, (dom, a, l) in enumerate(keys):
        chunk = res[i * R:(i + 1) * R]
        for meth in methods:
            grid[(dom, a, l, meth)] = replica_mean([c[meth] for c in chunk])
            rows.append((a, dom, l, meth, *grid[(dom, a, l, meth)]))
    table = write_table(os.path.join(out, "li-baselines"), ["alpha_test", "domain", "l_test", "method", "error",
                                                            "stderr"], rows, digits=True,
                        title=f"ICL error of the trained model and of learners fitted on the same context examples; "
                              f"{R} replicas x {z['base_n']} prompts")
    L = np.array(z["base_lengths"])
    for dom in ("id", "ood"):
        figures.curves(os.path.join(out, f"li-baselines-{dom}.png"),
                       [(f"alpha' = {a}", {m: (L, *np.array([grid[(dom, a, l, m)] for l in L]).T) for m in methods})
                        for a in BASELINE_ALPHAS],
                       "One-layer transformer vs classical learners "
                       f"({'in domain' if dom == 'id' else 'out of domain'})")
    return {"table": table, "rows": rows, "grid": grid}
