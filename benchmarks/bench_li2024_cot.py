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


def torch_step(torch, state, sample, eta, fixed=None):
    """One SGD step (or, with ``fixed``, one gradient) of the model written plainly in PyTorch."""
    W = {k: torch.tensor(v, dtype=torch.float64, requires_grad=(k != "W_V")) for k, v in state.items()}

    def loss_of(P, n, z):
        B, C, _ = P.shape
        query = P[torch.arange(B), n]                                      # (B, d): p~_query
        scores = ((P @ W["W_K"].T) @ (query @ W["W_Q"].T)[:, :, None])[..., 0]   # (W_K p~_i)^T W_Q p~_q
        scores = scores.masked_fill(torch.arange(C)[None, :] >= n[:, None], float("-inf"))
        attn = torch.softmax(scores, dim=1)
        F = (attn[:, None, :] @ P)[:, 0] @ W["W_V"].T                      # W_V sum_i attn_i p~_i
        return 0.5 * ((F - z) ** 2).sum(dim=1).mean()

    def step():
        b = fixed if fixed is not None else sample()
        loss = loss_of(torch.from_numpy(b.P), torch.from_numpy(b.n), torch.from_numpy(b.target))
        for k in ("W_Q", "W_K"):
            W[k].grad = None
        loss.backward()
        if fixed is None:
            with torch.no_grad():
                for k in ("W_Q", "W_K"):
                    W[k] -= eta * W[k].grad
    return step


def check_torch(torch, model, state):
    """The PyTorch loss equals the numba kernel's on one batch (so both time the same computation)."""
    b = model.sample(np.random.default_rng(9), 16)
    loss, _ = model.batch_loss_grad(state, b)
    W = {k: torch.tensor(v) for k, v in state.items()}
    P, n = torch.from_numpy(b.P), torch.from_numpy(b.n)
    q = P[torch.arange(16), n]
    s = ((P @ W["W_K"].T) @ (q @ W["W_Q"].T)[:, :, None])[..., 0]
    s = s.masked_fill(torch.arange(P.shape[1])[None, :] >= n[:, None], float("-inf"))
    F = (torch.softmax(s, 1)[:, None, :] @ P)[:, 0] @ W["W_V"].T
    ref = float(0.5 * ((F - torch.from_numpy(b.target)) ** 2).sum(1).mean())
    assert abs(ref - loss) < 1e-12 * abs(loss), (ref, loss)


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
    model = Li2024CoT.create(method="mc")
    lrs = model.learning_rates("mc")
    eta = model.config["eta"]
    print(f"\nprompts per second (best of repeats); default model d = {model.d}, l_tr = {model.config['l_train']}, "
          f"K = {model.config['K']}")
    print(f"{'what':<30}{'batch':>6}{'numba':>12}{'torch':>12}{'ratio':>8}")
    for batch in (64, 256):
        st = model.initial_state("mc", None)
        if torch:
            check_torch(torch, model, st)
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
    if args.targets:
        from dynamics.models.li2024_cot import reproduce

        print("\nreproduce targets at full size (wall s, one process)")
        for name in ("cot_length", "cot_vs_icl", "cot_mechanism", "cot_training"):
            with tempfile.TemporaryDirectory() as out:
                t0 = time.perf_counter()
                getattr(reproduce, name)(out)
                print(f"  {name.replace('_', '-'):<14}{time.perf_counter() - t0:8.1f}")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
