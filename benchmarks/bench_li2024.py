"""Throughput of the H. Li et al. (ICML 2024) Monte Carlo trainer, and wall time of its targets.

Prints training prompts per second of the numba trainer (one SGD step = ``Li2024.sample`` +
``Li2024.batch_loss_grad`` + the update, as :func:`dynamics.methods.montecarlo.run_mc` runs it)
at the default setting (``d = 34``, ``l_tr = 20``, ``m = 40``, batch 64) and at batch 256, and --
when ``torch`` imports -- of the same step written the way a user would write it in PyTorch
(float64, the same numpy sampler, prompts as a ``(B, l + 1, d)`` tensor, batched einsum forward,
``torch.clamp`` hinge, autograd, an SGD update under ``no_grad``), in the same process.  The
gradient alone (one fixed batch, no sampling) is timed too.  Each figure is the best of
``--repeats`` runs of at least ``--min-time`` seconds, numba and torch alternating, so a burst of
load from other processes is less likely to decide it.

``--targets`` also runs every reproduce target at full size once and prints its wall time.

Usage::

    python benchmarks/bench_li2024.py [--min-time S] [--repeats R] [--torch-threads T] [--targets]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dynamics.methods.gd import plain_step  # noqa: E402
from dynamics.models.li2024.model import Li2024  # noqa: E402


def best_rate(fn, prompts_per_call, min_time, repeats):
    """Best prompts/s over ``repeats`` runs of at least ``min_time`` seconds each (after a warm-up)."""
    fn()
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < min_time:
            fn()
            n += 1
        best = max(best, n * prompts_per_call / (time.perf_counter() - t0))
    return best


def numba_step(model, state, rng, batch, lrs):
    def step():
        b = model.sample(rng, batch)
        _, g = model.batch_loss_grad(state, b)
        plain_step(state, g, lrs)
    return step


def torch_step(torch, model, state, rng, batch, eta, fixed=None):
    W = {k: torch.tensor(v, dtype=torch.float64, requires_grad=(k != "a")) for k, v in state.items()}
    ncols = model.ncols(model.config["l_train"])

    def loss_of(P, z):
        cols, pq = P[:, :ncols], P[:, -1]
        keys = cols @ W["W_K"].T                                  # (B, l, d): W_K p_i
        query = pq @ W["W_Q"].T                                   # (B, d):    W_Q p_query
        attn = torch.softmax((keys @ query[:, :, None])[..., 0], dim=1)
        pbar = (attn[:, None, :] @ cols)[:, 0]                    # sum_i attn_i p_i
        F = torch.relu(pbar @ W["W_V"].T @ W["W_O"].T) @ W["a"]
        return torch.clamp(1.0 - z * F, min=0.0).mean()

    def step():
        b = fixed if fixed is not None else model.sample(rng, batch)
        loss = loss_of(torch.from_numpy(b.P), torch.from_numpy(b.z))
        for k in ("W_Q", "W_K", "W_V", "W_O"):
            W[k].grad = None
        loss.backward()
        if fixed is None:
            with torch.no_grad():
                for k in ("W_Q", "W_K", "W_V", "W_O"):
                    W[k] -= eta * W[k].grad
    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch-threads", type=int, default=None)
    ap.add_argument("--targets", action="store_true", help="also time every reproduce target at full size")
    args = ap.parse_args(argv)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"load average before: {os.getloadavg()}")
    try:
        import torch
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    except ImportError:
        torch = None
        print("torch not installed: numba figures only")
    model = Li2024.create()
    lrs = model.learning_rates("mc")
    print("\nprompts per second (best of repeats); default model d = 34, l_tr = 20, m = 40")
    print(f"{'what':<28}{'batch':>6}{'numba':>12}{'torch':>12}{'ratio':>8}")
    for batch in (64, 256):
        rows = []
        st = model.initial_state("mc", np.random.default_rng(0))
        st["W_O"] *= 30  # the trained scale: most prompts inside the margin, full backward pass
        fixed = model.sample(np.random.default_rng(1), batch)
        nb = best_rate(lambda: model.batch_loss_grad(st, fixed), batch, args.min_time, args.repeats)
        tb = best_rate(torch_step(torch, model, st, None, batch, 0.0, fixed), batch, args.min_time,
                       args.repeats) if torch else float("nan")
        rows.append(("gradient of one batch", nb, tb))
        st1 = model.initial_state("mc", np.random.default_rng(0))
        st2 = {k: v.copy() for k, v in st1.items()}
        ns = best_rate(numba_step(model, st1, np.random.default_rng(2), batch, lrs), batch, args.min_time,
                       args.repeats)
        ts = best_rate(torch_step(torch, model, st2, np.random.default_rng(2), batch, model.config["eta"]), batch,
                       args.min_time, args.repeats) if torch else float("nan")
        rows.append(("SGD step (sample+grad+update)", ns, ts))
        for what, n, t in rows:
            print(f"{what:<28}{batch:>6}{n:>12.0f}{t:>12.0f}{n / t:>8.1f}")
    if args.targets:
        from dynamics.models.li2024 import reproduce

        print("\nreproduce targets at full size (wall s)")
        for name in ("li_ood", "li_alpha", "li_mechanism", "li_pruning", "li_baselines"):
            with tempfile.TemporaryDirectory() as out:
                t0 = time.perf_counter()
                getattr(reproduce, name)(out)
                print(f"  {name.replace('_', '-'):<14}{time.perf_counter() - t0:8.1f}")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
