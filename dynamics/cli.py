"""``python -m dynamics.simulate``: run the exact dynamics from flags or a TOML file.

Writes one run directory: ``config.json`` (the resolved configuration), ``results.npz``,
``manifest.json`` (config, seed, versions, git commit, timings) and the figures
``prediction_error.png``, ``attention_weights.png``, ``attention_map.png``.  With
``--checkpoint-every S`` it also keeps ``checkpoint.npz``; ``--resume RUN_DIR`` continues a
killed run from it and ends with the same numbers as an uninterrupted run.
Bad input: exit status 2 and one line.  Divergence: exit status 1, snapshots kept.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib

import numpy as np

DEFAULTS = dict(
    K=10, N=100, preset="imbalanced", p1=0.5, p=None, sigma2=0.0, eta=1.0, steps=100_000, method="gd",
    A0=0.0, B0=0.0, snapshots=200, eps=None, patience=50, h=0.2, seed=0, checkpoint_every=None,
    figures=True, attention_at=None, out=None,
)
"""Every configuration key and its default: a sensible imbalanced run (about 5 s here)."""

HELP = dict(
    K="number of features K", N="prompt length N", preset="balanced | imbalanced | general",
    p1="dominant-feature probability p_1 (imbalanced)", p="comma-separated p (general; default Dirichlet(1) from seed)",
    sigma2="label-noise variance", eta="GD step size eta", steps="number of GD iterations",
    method="gd (exact GD) | flow (gradient flow, time in GD steps)", A0="initial A_k", B0="initial B_{k,n}",
    snapshots="number of log-spaced snapshots", eps="stop when every L_k - L_k^* <= eps",
    patience="consecutive loss rises that count as divergence", h="quadrature step in log t",
    seed="seed for random p (general preset)", checkpoint_every="write checkpoint.npz every this many steps",
    figures="write PNG figures (true/false)", attention_at="comma-separated iterations for the attention map",
    out="run directory (default runs/<preset>-<time>)",
)


class UsageError(Exception):
    """Bad command line or configuration: exit status 2, one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parse_list(text, kind=float):
    if text is None or isinstance(text, list):
        return text
    return [kind(x) for x in str(text).split(",") if x.strip()]


def _bool(text):
    if isinstance(text, bool):
        return text
    if str(text).lower() in ("1", "true", "yes", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"figures must be true or false, got {text!r}")


def build_parser():
    ap = _Parser(prog="python -m dynamics.simulate", description=__doc__.split("\n")[0],
                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--config", help="TOML file with any of the keys below (flags override it)")
    ap.add_argument("--resume", metavar="RUN_DIR", help="continue a run from RUN_DIR/checkpoint.npz")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    types = dict(K=int, N=int, p1=float, sigma2=float, eta=float, steps=int, A0=float, B0=float, snapshots=int,
                 eps=float, patience=int, h=float, seed=int, checkpoint_every=int)
    for key, default in DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        ap.add_argument(flag, dest=key, type=types.get(key, str), default=None, help=f"{HELP[key]} [{default}]")
    return ap


def resolve(args) -> dict:
    """Defaults < TOML file < flags; unknown TOML keys are an error."""
    cfg = dict(DEFAULTS)
    if args.config:
        try:
            with open(args.config, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise UsageError(f"config file not found: {args.config}") from None
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"config file {args.config} is not valid TOML: {e}") from None
        unknown = sorted(set(data) - set(DEFAULTS))
        if unknown:
            raise UsageError(f"unknown config key(s) in {args.config}: {', '.join(unknown)}")
        cfg.update(data)
    for key in DEFAULTS:
        val = getattr(args, key)
        if val is not None:
            cfg[key] = val
    cfg["p"] = _parse_list(cfg["p"])
    cfg["attention_at"] = _parse_list(cfg["attention_at"])
    cfg["figures"] = _bool(cfg["figures"])
    if cfg["method"] not in ("gd", "flow"):
        raise UsageError(f"method must be gd or flow, got {cfg['method']!r}")
    if cfg["preset"] not in ("balanced", "imbalanced", "general"):
        raise UsageError(f"unknown preset {cfg['preset']!r}: use balanced, imbalanced or general")
    if cfg["preset"] == "general" and cfg["p"] is None:
        rng = np.random.default_rng(cfg["seed"])
        cfg["p"] = rng.dirichlet(np.ones(cfg["K"])).tolist()
    if cfg["out"] is None:
        cfg["out"] = os.path.join("runs", f"{cfg['preset']}-{time.strftime('%Y%m%d-%H%M%S')}")
    return cfg


def run(cfg: dict, resume_state=None, progress=True) -> int:
    from dynamics.models.huang2024 import figures; from dynamics.core import atomic as runio
    from dynamics.simulate import SimulationDiverged, make_model, simulate

    out = cfg["out"]
    os.makedirs(out, exist_ok=True)
    runio.atomic_write_json(os.path.join(out, "config.json"), cfg)
    model = make_model(K=cfg["K"], N=cfg["N"], preset=cfg["preset"], p1=cfg["p1"], p=cfg["p"],
                       sigma2=cfg["sigma2"], h=cfg["h"])
    ckpt_path = os.path.join(out, "checkpoint.npz")

    def on_checkpoint(state):
        arrays = {f"records_{k}": v for k, v in state["records"].items()}
        runio.atomic_savez(ckpt_path, state=state["state"], rec_steps=state["rec_steps"], step=state["step"],
                           rec_pos=state["rec_pos"], L_prev=state["L_prev"], rising=state["rising"], **arrays)

    t0 = time.perf_counter()
    exit_code, message = 0, ""
    try:
        res = simulate(model, eta=cfg["eta"], steps=cfg["steps"], method=cfg["method"],
                       init=model.initial_state(cfg["A0"], cfg["B0"]), snapshots=cfg["snapshots"], eps=cfg["eps"],
                       patience=cfg["patience"], progress=progress, checkpoint_every=cfg["checkpoint_every"],
                       on_checkpoint=on_checkpoint, resume=resume_state)
    except SimulationDiverged as e:
        res, exit_code, message = e.result, 1, str(e)
    runio.atomic_savez(os.path.join(out, "results.npz"), **res.arrays())
    paths = figures.all_figures(res, out, cfg["attention_at"]) if cfg["figures"] and res.t.size else []
    manifest = dict(config=cfg, seed=cfg["seed"], versions=runio.versions(), git_commit=runio.git_commit(),
                    status=res.status, message=res.message, wall_seconds=time.perf_counter() - t0,
                    simulate_seconds=res.wall_s, snapshots=int(res.t.size), final_L_k=res.L_f[-1] if res.t.size else [],
                    L_star=res.L_star, figures=[os.path.basename(p) for p in paths], model=model.name)
    runio.atomic_write_json(os.path.join(out, "manifest.json"), manifest)
    if exit_code:
        print(f"error: {message} (snapshots so far are in {out})", file=sys.stderr)
    else:
        print(f"{res.status}: {res.t.size} snapshots to t = {res.t[-1]:.6g} in {res.wall_s:.2f} s; wrote {out}")
        for f, name in enumerate(model.part_labels):
            print(f"  L_k (query in '{name}') = {res.L_f[-1, f]:.6e}   L_k^* = {res.L_star[f]:.6e}"
                  f"   A_k = {res.coords[-1, f, 0]:.4f}   E[Attn_k] = {res.attn[-1, f, 0]:.4f}")
    return exit_code


def load_checkpoint(run_dir):
    path = os.path.join(run_dir, "checkpoint.npz")
    cfg_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(cfg_path):
        raise UsageError(f"--resume: no config.json in {run_dir}")
    with open(cfg_path) as fh:
        cfg = json.load(fh)
    if not os.path.exists(path):
        return cfg, None  # killed before the first checkpoint: start again
    with np.load(path) as z:
        state = dict(state=z["state"], rec_steps=z["rec_steps"], step=int(z["step"]), rec_pos=int(z["rec_pos"]),
                     L_prev=float(z["L_prev"]), rising=int(z["rising"]),
                     records={k[len("records_"):]: z[k] for k in z.files if k.startswith("records_")})
    return cfg, state


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.resume:
            cfg, state = load_checkpoint(args.resume)
            cfg["out"] = args.resume
        else:
            cfg, state = resolve(args), None
        return run(cfg, state, progress=not args.quiet and sys.stderr.isatty())
    except (UsageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (resume with --resume RUN_DIR if checkpoints were on)", file=sys.stderr)
        return 130
