"""Post-training analyses of a saved ``li2024`` run: ``python -m dynamics.models.li2024.analyze RUN_DIR``.

Reads the run directory written by ``python -m dynamics.simulate --model li2024 --method mc``
(``config.json`` for the parameters, ``state.nc`` for every replica's final weights), and writes
into ``--out`` (default ``RUN_DIR/analysis``):

- ``analysis-errors.csv``: in- and out-of-domain classification error, hinge loss and
  same-pattern attention of every replica (``n`` fresh test prompts each);
- ``analysis-projections.csv``: Proposition 1, the norms of ``W_Q p_query`` and ``W_K p_i`` and
  their components along the column's own relevant pattern, in and out of domain;
- ``analysis-embedding.csv``: Proposition 2, per neuron ``|W_O(i,.)|``, ``cos(f_i, mu_bar)``,
  ``cos(g_i, sign(a_i) q)`` and the parts' norms;
- ``analysis-pruning.csv`` / ``analysis-pruning-hinge.csv`` and ``analysis-pruning.png``:
  magnitude-based and random pruning of ``W_O`` rows at the ``--rates`` (out of domain; each
  rate's change is paired on common test prompts).

With any of ``--l-test``, ``--S1``, ``--alpha-prime``, ``--odr-norm``, ``--construction``,
``--q-norm`` (comma-separated lists; ``--q-norm`` scales the test prompts' label embedding) it
instead evaluates the saved weights on that grid of test settings without retraining
(:func:`evaluate_run`) and writes ``evaluation.nc`` (dimensions ``replica`` and the swept settings;
error, hinge loss and same-pattern attention in and out of domain with their standard errors) and
the long table ``evaluation.csv``; the pruning options are refused there.

A run of another model, a ``state.nc`` whose shapes do not fit ``config.json``, or a test setting
outside the model's rules is refused in one line (exit status 2) before anything is computed or
written.

A run of another model, or a ``state.nc`` whose shapes do not fit ``config.json``, is refused in
one line (exit status 2) before anything is computed; so are an unwritable ``--out``, a non-empty
``--out`` that is not this analysis, a finished analysis (nothing is overwritten unasked: add
``--overwrite``) and an ``--n`` whose test prompts would not fit in memory
(:mod:`dynamics.core.memory`).  ``analysis.json`` records the options and the status: an analysis
killed before it finished (status ``running``) is rerun with the same options into the same folder
without ``--overwrite``; every number is seeded, so the rerun writes the same files.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from dynamics.core.errors import UsageError
from dynamics.core.report import write_table
from dynamics.core.stats import mean_se
from dynamics.models.li2024 import analysis, figures
from dynamics.models.li2024.evaluation import evaluate, evaluate_states
from dynamics.models.li2024.pruning import check_rate, pruning_errors
from dynamics.models.li2024.state import load_state

DEFAULT_RATES = "0,0.05,0.1,0.15,0.2,0.25,0.3,0.35,0.4"


def load_run(folder: str):
    """``(model, states)`` of a ``li2024`` run directory (one-line errors otherwise)."""
    from dynamics.core.rundir import read_config
    from dynamics.models.li2024.model import Li2024

    if not os.path.isdir(folder):
        raise UsageError(f"run directory {folder!r} does not exist")
    cfg = read_config(folder)
    if cfg is None:
        raise UsageError(f"{folder} has no config.json: not a run directory of python -m dynamics.simulate")
    if cfg["model"] != Li2024.name:
        raise UsageError(f"{folder} is a run of model {cfg['model']!r}; these analyses need a li2024 run")
    if not isinstance(cfg["given"], dict):
        raise UsageError(f"{folder}/config.json has 'given' of type {type(cfg['given']).__name__}; it must be a "
                         "table of the parameters given")
    model = Li2024.create(method="mc", **cfg["given"])
    return model, load_state(folder, model)


MARKER = "analysis.json"
"""The options and the status (``running``, ``completed``) of the analysis in its folder."""


def _check_out(out: str, options: dict, overwrite: bool) -> None:
    """Refuse an ``--out`` that cannot be written, holds other files, or a finished analysis or one
    with other options (unless ``overwrite``), before anything is computed (module docstring)."""
    from dynamics.core.rundir import check_writable_dir

    check_writable_dir(out)
    if not os.path.isdir(out) or not os.listdir(out):
        return
    try:
        with open(os.path.join(out, MARKER)) as fh:
            old = json.load(fh)
    except (OSError, ValueError):
        old = None
    if overwrite and old is not None:
        return
    if old is None or not isinstance(old, dict):
        raise UsageError(f"--out {out} is not empty and holds no analysis of this command; choose another folder")
    if old.get("options") != options:
        raise UsageError(f"--out {out} holds an analysis with other options ({old.get('options')}); add --overwrite "
                         "to replace it, or choose another folder")
    if old.get("status") == "completed":
        raise UsageError(f"--out {out} already holds this analysis (completed); nothing is overwritten unasked: add "
                         "--overwrite to compute it again")


def analyze(folder: str, out: str | None = None, *, n: int = 2000, rates=None, draws: int = 10, seed: int = 0,
            overwrite: bool = False) -> dict:
    """Run every analysis on the run directory ``folder``; returns the tables' markdown."""
    from dynamics.core.atomic import atomic_write_json
    from dynamics.core.memory import check_memory
    from dynamics.core.params import ParamError

    rates = [check_rate(r) for r in (rates if rates is not None else DEFAULT_RATES.split(","))]
    if int(n) < 2:
        raise ValueError(f"n must be an integer >= 2 (a standard error needs two prompts), got {n}")
    model, states = load_run(folder)
    try:
        check_memory(type(model), dict(model.config, n_eval=int(n), replicas=1), "mc")
    except ParamError as exc:
        raise UsageError(f"--n {n}: {exc}".replace("n_eval", "n")) from None
    out = out or os.path.join(folder, "analysis")
    options = {"run_dir": os.path.abspath(folder), "n": int(n), "rates": [float(r) for r in rates],
               "draws": int(draws), "seed": int(seed)}
    _check_out(out, options, overwrite)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out} cannot be created: {exc.strerror or exc}") from None
    atomic_write_json(os.path.join(out, MARKER), {"options": options, "status": "running"})
    rows_e, rows_p, rows_n, per = [], [], [], []
    for r, st in enumerate(states):
        rng = np.random.default_rng([int(seed), r])
        for dom in ("id", "ood"):
            est = evaluate(model, st, rng, n, dom)
            rows_e.append((r, dom, *est["error"], *est["hinge"], *est["attn_same"]))
            proj = analysis.projections(model, st, rng, min(int(n), 500), dom)
            rows_p += [(r, dom, mat, part, *proj[f"{mat}_{part}"]) for mat in ("W_Q", "W_K") for part in analysis.PARTS]
        emb = analysis.embedding(model, st)
        rows_n += [(r, i, "+" if st["a"][i] > 0 else "-", emb["neuron_norm"][i], emb["feature_cos"][i],
                    emb["label_cos"][i], emb["feature_norm"][i], emb["label_norm"][i]) for i in range(st["a"].size)]
        per.append(pruning_errors(model, st, rates, rng, n, "ood", draws))
    tables = {
        "errors": write_table(os.path.join(out, "analysis-errors"), ["replica", "domain", "error", "stderr", "hinge",
                                                                      "hinge_stderr", "attn_same", "attn_stderr"],
                              rows_e, digits=True),
        "projections": write_table(os.path.join(out, "analysis-projections"), ["replica", "domain", "matrix", "part",
                                                                               "projection", "stderr"], rows_p,
                                   digits=True),
        "embedding": write_table(os.path.join(out, "analysis-embedding"), ["replica", "neuron", "sign_a", "neuron_norm",
                                                                           "feature_cos", "label_cos", "feature_norm",
                                                                           "label_norm"], rows_n, digits=True),
    }
    lines = {}
    for metric, name in (("error", "analysis-pruning"), ("hinge", "analysis-pruning-hinge")):
        rows = [(r, rate, how, *p[(how, rate, metric)]) for r, p in enumerate(per) for rate in rates
                for how in ("magnitude", "random")]
        tables[name] = write_table(os.path.join(out, name), ["replica", "prune_rate", "method", metric, "stderr",
                                                             "change", "change_stderr"], rows, digits=True)
        lines[metric] = {how: (np.array([np.mean([p[(how, rate, metric)][0] for p in per]) for rate in rates]),
                               np.array([_se([p[(how, rate, metric)][0] for p in per]) for rate in rates]))
                         for how in ("magnitude", "random")}
    figures.pruning(os.path.join(out, "analysis-pruning.png"), np.array(rates), lines["error"], lines["hinge"],
                    [np.linalg.norm(st["W_O"], axis=1) for st in states])
    atomic_write_json(os.path.join(out, MARKER), {"options": options, "status": "completed"})
    return tables


GRID_FLAGS = {"l_test": ("--l-test", int), "S1": ("--S1", float), "alpha_test": ("--alpha-prime", float),
              "odr_norm": ("--odr-norm", float), "odr_construction": ("--construction", str),
              "q_norm": ("--q-norm", float)}
"""Test settings the command line can sweep: setting -> (flag, kind)."""


def evaluate_run(folder: str, grid: dict, out: str | None = None, *, n: int = 2000, seed: int = 0):
    """Evaluate the saved replicas of ``folder`` on ``grid`` (``{setting: values}``,
    :data:`~.evaluation.TEST_SETTINGS`); writes ``evaluation.nc`` and ``evaluation.csv`` into
    ``out`` (default ``RUN_DIR/analysis``) and returns the :class:`xarray.Dataset`.  Every grid
    point is checked against the model's rules before anything is evaluated or written."""
    import itertools

    from dynamics.models.li2024.evaluation import rebuild
    from dynamics.models.shared.evaluate import write

    model, states = load_run(folder)
    names = list(grid)
    for p in itertools.product(*grid.values()):  # refuse a bad point before the folder is created
        rebuild(model, dict(zip(names, p)))
    ds = evaluate_states([(model, st) for st in states], grid, n=n, seed=seed)
    out = out or os.path.join(folder, "analysis")
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "evaluation.nc"), ds)
    qs = [v for v in ds.data_vars if not v.endswith("_se")]
    df = ds.to_dataframe().reset_index()
    rows = [tuple(r[c] for c in ["replica", *names]) + tuple(x for q in qs for x in (r[q], r[q + "_se"]))
            for _, r in df.iterrows()]
    write_table(os.path.join(out, "evaluation"), ["replica", *names, *[x for q in qs for x in (q, q + "_stderr")]],
                rows, digits=True)
    return ds


def _se(v):
    return mean_se(v)[1]


def main(argv=None) -> int:
    from dynamics.core.cli import ArgParser, guarded
    from dynamics.core.params import Param

    def run(args_in):
        ap = ArgParser(prog="python -m dynamics.models.li2024.analyze", description=__doc__.split("\n\n")[0])
        ap.add_argument("run_dir", help="run directory of python -m dynamics.simulate --model li2024 --method mc")
        ap.add_argument("--out", help="output folder (default RUN_DIR/analysis)")
        ap.add_argument("--n", default="2000", help="test prompts per replica and quantity (default 2000)")
        ap.add_argument("--rates", default=None, help=f"pruning rates in [0, 1) (default {DEFAULT_RATES})")
        ap.add_argument("--draws", default=None, help="random prunings averaged per rate (default 10)")
        ap.add_argument("--seed", default="0", help="seed of the test prompts (default 0)")
        ap.add_argument("--overwrite", action="store_true", help="replace a finished analysis in --out (or one "
                        "made with other options)")
        for setting, (flag, _) in GRID_FLAGS.items():
            ap.add_argument(flag, dest=setting, default=None,
                            help=f"evaluate the saved states at these {setting} values (comma-separated; "
                                 f"no retraining)")
        args = ap.parse_args(args_in)
        n = Param("n", "int", 2000, "", low=2).coerce(args.n)
        seed = Param("seed", "int", 0, "", low=0).coerce(args.seed)
        grid = {}
        for setting, (flag, kind) in GRID_FLAGS.items():
            text = getattr(args, setting)
            if text is not None:
                from dynamics.models.shared.evaluate import parse_values

                if kind is str:
                    grid[setting] = [t.strip() for t in text.split(",")]
                else:
                    try:
                        grid[setting] = parse_values(flag, text, kind)
                    except ValueError as exc:
                        raise UsageError(str(exc)) from None
        if grid:
            for opt in ("rates", "draws"):
                if getattr(args, opt) is not None:
                    raise UsageError(f"--{opt} belongs to the pruning analyses, which a grid evaluation "
                                     f"({', '.join(GRID_FLAGS[k][0] for k in grid)}) does not run")
            ds = evaluate_run(args.run_dir, grid, args.out, n=n, seed=seed)
            print(f"wrote evaluation.nc: {dict(ds.sizes)}")
            return 0
        draws = Param("draws", "int", 10, "", low=1).coerce(args.draws if args.draws is not None else "10")
        rates = [check_rate(x) for x in Param("rates", "floats", [0.0], "").coerce(
            args.rates if args.rates is not None else DEFAULT_RATES)]
        tables = analyze(args.run_dir, args.out, n=n, rates=rates, draws=draws, seed=seed,
                         overwrite=args.overwrite)
        print(tables["errors"])
        print(tables["analysis-pruning-hinge"])
        return 0

    return guarded(run, argv)


if __name__ == "__main__":
    sys.exit(main())
