"""Throughput of the Monte Carlo trainer of the full matrix Q (MODEL.md section 5).

Prints prompts per second of :func:`dynamics.models.huang2024.montecarlo.train_mc` (online SGD, numba,
float64) after compilation, and -- when ``torch`` imports -- of the same training loop
written the way a user would write it in PyTorch (float64, autograd on a d x d ``Q``,
prompts materialised as tensors ``X (B, N, d)``, ``xq (B, d)``, ``w (B, d)``), in the same
process on the same machine, with the ratio numba / torch.

Usage::

    python benchmarks/bench_montecarlo.py [--min-time SECONDS] [--repeats R]

Each timed run repeats whole training steps for at least ``--min-time`` seconds (after
a warm-up step); numba and torch runs alternate, and the best of ``--repeats`` runs of
each is reported, so that a burst of load from other processes on a small machine is
less likely to decide the figure.  The load average is printed before and after.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numba  # noqa: E402

from dynamics.models.huang2024.montecarlo import make_features, train_mc  # noqa: E402

CASES = [  # (K, d, N, B): K = d as in the brief; B chosen so a step is ~1e5-3e5 tokens
    (20, 20, 100, 1000),
    (100, 100, 1000, 256),
]
ETA = 0.1


def _calibrate(run_steps, min_time):
    """Warm up ``run_steps`` (compilation, allocations), then find a step count taking >= min_time."""
    run_steps(1)
    n = 1
    while True:
        t0 = time.perf_counter()
        run_steps(n)
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return n
        n = max(n + 1, int(n * min(10.0, 1.2 * min_time / max(dt, 1e-9))))


def _best_rates(runners, B, min_time, repeats):
    """Best prompts/s of each runner over ``repeats`` rounds, the runners interleaved per round.

    Interleaving exposes every runner to the same share of any load from other
    processes; the best round is the one least disturbed.
    """
    counts = [_calibrate(run, min_time) for run in runners]
    best = [0.0] * len(runners)
    for _ in range(repeats):
        for i, (run, n) in enumerate(zip(runners, counts)):
            t0 = time.perf_counter()
            run(n)
            best[i] = max(best[i], n * B / (time.perf_counter() - t0))
    return best


def numba_runner(K, d, N, B):
    V = make_features(K, d, random_state=0)
    p = np.full(K, 1.0 / K)
    no_records = np.zeros(0, dtype=np.int64)

    def run(n):
        train_mc(K, d, p, N, ETA, n, B=B, V=V, record_at=no_records, n_eval=0, random_state=1)

    return run


def torch_runner(torch, K, d, N, B):
    dt = torch.float64
    gen = torch.Generator().manual_seed(0)
    V = torch.linalg.qr(torch.randn(d, K, dtype=dt, generator=gen))[0]  # (d, K)
    p = torch.full((K,), 1.0 / K, dtype=dt)
    Q = torch.zeros(d, d, dtype=dt, requires_grad=True)
    VT = V.T.contiguous()  # rows are the features

    def run(n):
        for _ in range(n):
            f = torch.multinomial(p, B * (N + 1), replacement=True, generator=gen).view(B, N + 1)
            X = VT[f[:, :N]]  # (B, N, d) prompt tokens
            xq = VT[f[:, N]]  # (B, d) queries
            w = torch.randn(B, d, dtype=dt, generator=gen)
            y = (X @ w.unsqueeze(-1)).squeeze(-1)  # (B, N) labels <w, x_i>
            yq = (xq * w).sum(-1)  # (B,) targets <w, x_q>
            scores = (X @ Q @ xq.unsqueeze(-1)).squeeze(-1)  # (B, N): x_i^T Q x_q
            attn = torch.softmax(scores, dim=-1)
            yhat = (attn.unsqueeze(1) @ y.unsqueeze(-1)).view(B)
            loss = 0.5 * ((yhat - yq) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                Q.sub_(ETA * Q.grad)
                Q.grad.zero_()

    return run


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds per timed run (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per implementation; the best counts")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        torch = None

    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; load average {os.getloadavg()[0]:.2f}")
    print(f"numpy {np.__version__}, numba {numba.__version__} ({numba.get_num_threads()} threads)", end="")
    if torch is not None:
        print(f", torch {torch.__version__} ({torch.get_num_threads()} threads)")
    else:
        print("; torch not installed: PyTorch comparison skipped")
    print("online SGD, float64, Q0 = 0, balanced p, eta = 0.1; prompts/s = B x steps / wall time\n")
    header = f"{'K':>4} {'d':>4} {'N':>5} {'B':>5} | {'numba prompts/s':>16} | {'torch prompts/s':>16} | {'numba/torch':>11}"
    print(header)
    print("-" * len(header))
    for K, d, N, B in CASES:
        runners = [numba_runner(K, d, N, B)]
        if torch is not None:
            runners.append(torch_runner(torch, K, d, N, B))
        rates = _best_rates(runners, B, args.min_time, args.repeats)
        if torch is not None:
            tcol, ratio = f"{rates[1]:16,.0f}", f"{rates[0] / rates[1]:11.1f}"
        else:
            tcol, ratio = f"{'-':>16}", f"{'-':>11}"
        print(f"{K:>4} {d:>4} {N:>5} {B:>5} | {rates[0]:16,.0f} | {tcol} | {ratio}", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
