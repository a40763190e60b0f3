"""Throughput of the chain-of-thought (H. Li et al., ICLR 2025) Monte Carlo trainer, and wall time
of its reproduce targets.

Prints training prompts per second of the numba trainer (one SGD step = ``Li2024CoT.sample`` +
``Li2024CoT.batch_loss_grad`` + the update, as :func:`dynamics.methods.montecarlo.run_mc` runs it)
at the default setting (``M = 6``, ``K = 3``, ``d = 2 d_x = 18``, ``l_tr = 10``: up to 33 columns,
batch 64) and at batch 256, and -- when ``torch`` imports -- of the same step written the way a
user would write it in PyTorch (float64, the same numpy sampler, the padded ``(B, C, d)`` prompts
as one tensor, a mask for the columns each prompt attends, batched matmuls, ``masked_fill`` and
``softmax``, autograd, an SGD update under ``no_grad``), in the same process.  The gradient alone
(one fixed batch, no sampling) is timed too.  Each figure is the best of ``--repeats`` runs of at
least ``--min-time`` seconds (the timing helpers of ``bench_li2024.py``).

``--targets`` also runs every reproduce target at full size once, in one process as
``python -m dynamics.reproduce all --model li2024_cot`` does (the first three share one
training), and prints its wall time.

Usage::

    python benchmarks/bench_li2024_cot.py [--min-time S] [--repeats R] [--torch-threads T] [--targets]
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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_li2024 import best_rate, numba_step  # noqa: E402

from dynamics.models.li2024_cot.model import Li2024CoT  # noqa: E402


def torch_loss(torch, W, b):
    """The mean squared loss of a batch ``b`` (:class:`~dynamics.models.li2024_cot.data.Prompts`)
    written plainly in PyTorch: padded prompts as one tensor, a mask of the attended columns."""
    P, n, z = torch.from_numpy(b.P), torch.from_numpy(b.n), torch.from_numpy(b.target)
    B, C, _ = P.shape
    query = P[torch.arange(B), n]                                            # (B, d): p~_query
    scores = ((P @ W["W_K"].T) @ (query @ W["W_Q"].T)[:, :, None])[..., 0]   # (W_K p~_i)^T W_Q p~_q
    scores = scores.masked_fill(torch.arange(C)[None, :] >= n[:, None], float("-inf"))
    F = (torch.softmax(scores, dim=1)[:, None, :] @ P)[:, 0] @ W["W_V"].T    # W_V sum_i attn_i p~_i
    return 0.5 * ((F - z) ** 2).sum(dim=1).mean()


def torch_step(torch, state, sample, eta, fixed=None):
    """One SGD step (or, with ``fixed``, one gradient) of :func:`torch_loss`."""
    W = {k: torch.tensor(v, dtype=torch.float64, requires_grad=(k != "W_V")) for k, v in state.items()}

    def step():
        loss = torch_loss(torch, W, fixed if fixed is not None else sample())
        for k in ("W_Q", "W_K"):
            W[k].grad = None
        loss.backward()
        if fixed is None:
            with torch.no_grad():
                for k in ("W_Q", "W_K"):
                    W[k] -= eta * W[k].grad
    return step


def environment(threads):
    """``(description lines, torch module or None)`` of this machine and run."""
    with open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    lines = [f"machine: {cpu}, {os.cpu_count()} cores, python {platform.python_version()}",
             f"load average before: {os.getloadavg()}"]
    try:
        import torch
    except ImportError:
        return lines + ["torch not installed: numba figures only"], None
    if threads:
        torch.set_num_threads(threads)
    return lines + [f"torch {torch.__version__}, {torch.get_num_threads()} threads"], torch


OPTIONS = (("--min-time", float, 2.0, "seconds of each timed run"), ("--repeats", int, 3, "timed runs per figure "
           "(the best is kept)"), ("--torch-threads", int, None, "threads of PyTorch (default: its own choice)"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag, kind, default, text in OPTIONS:
        ap.add_argument(flag, type=kind, default=default, help=text)
    ap.add_argument("--targets", action="store_true", help="also time every reproduce target at full size")
    args = ap.parse_args(argv)
    lines, torch = environment(args.torch_threads)
    print("\n".join(lines))
    model = Li2024CoT.create(method="mc")
    lrs = model.learning_rates("mc")
    eta = model.config["eta"]
    print(f"\nprompts per second (best of repeats); default model d = {model.d}, l_tr = {model.config['l_train']}, "
          f"K = {model.config['K']}")
    print(f"{'what':<30}{'batch':>6}{'numba':>12}{'torch':>12}{'ratio':>8}")
    for batch in (64, 256):
        st = model.initial_state("mc", None)
        if torch:   # both implementations compute the same loss (rounding only)
            b = model.sample(np.random.default_rng(9), 16)
            ref = float(torch_loss(torch, {k: torch.tensor(v) for k, v in st.items()}, b))
            assert abs(ref - model.batch_loss_grad(st, b)[0]) < 1e-12 * abs(ref)
        fixed = model.sample(np.random.default_rng(1), batch)
        nb = best_rate(lambda: model.batch_loss_grad(st, fixed), batch, args.min_time, args.repeats)
        tb = best_rate(torch_step(torch, st, None, eta, fixed), batch, args.min_time,
                       args.repeats) if torch else float("nan")
        st1, st2 = model.initial_state("mc", None), model.initial_state("mc", None)
        ns = best_rate(numba_step(model, st1, np.random.default_rng(2), batch, lrs), batch, args.min_time,
                       args.repeats)
        rng = np.random.default_rng(2)
        ts = best_rate(torch_step(torch, st2, lambda: model.sample(rng, batch), eta), batch, args.min_time,
                       args.repeats) if torch else float("nan")
        for what, n, t in (("gradient of one batch", nb, tb), ("SGD step (sample+grad+update)", ns, ts)):
            print(f"{what:<30}{batch:>6}{n:>12.0f}{t:>12.0f}{n / t:>8.1f}")
        fixed_rate = best_rate(lambda: model.sample(np.random.default_rng(3), batch), batch, args.min_time, 1)
        print(f"{'  (sampling alone)':<30}{batch:>6}{fixed_rate:>12.0f}")
    if args.targets:   # through the front end, in registry order (the first trains the shared replicas)
        from dynamics.reproduce import run_target

        walls = {}
        with tempfile.TemporaryDirectory() as out:
            for name in Li2024CoT.reproduce_targets:
                t0 = time.perf_counter()
                run_target(name, os.path.join(out, name))
                walls[name] = time.perf_counter() - t0
        print("\nreproduce targets at full size, one process: " + ", ".join(f"{k} {v:.1f} s" for k, v in walls.items()))
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
