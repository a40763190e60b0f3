"""Exact population loss and gradient of the chain-of-thought model (H. Li et al., ICLR 2025;
``dynamics/models/li2024_cot/exact.py``) against the Monte Carlo batch gradient, side by side.

For each instance ``(M, K)`` (``l_tr = 10``, ``alpha = 0.8``, permutation tasks, the initial state
``W_Q = W_K = 0.3 I``) the script prints

* the number of conditionings ``M K (M!)^K`` and the time of one exact loss-and-gradient
  evaluation (best of ``--repeats``, after compilation), over every conditioning and with the
  orbit reduction (``z_0 = 0``, symmetrised gradient; the initial state is relabelling-invariant);
* the Monte Carlo route (``Li2024CoT.sample`` + ``batch_loss_grad``, batches of 2,000 prompts):
  its throughput, the per-prompt standard deviation of the loss and of the largest-SD gradient
  entry (from 20 batches), and from these the time to a standard error of ``1e-3`` and ``1e-4``
  of the loss and of every gradient entry (``time = (sd / SE)^2 / throughput``), beside the time
  to the exact route's own accuracy (relative 1e-12 of the loss: extrapolated).

Usage::

    python benchmarks/bench_li2024_cot_exact.py [--repeats R]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dynamics.models.li2024_cot.exact import PopulationLoss  # noqa: E402
from dynamics.models.li2024_cot.kernels import loss_grad_batch  # noqa: E402
from dynamics.models.li2024_cot.model import Li2024CoT  # noqa: E402

INSTANCES = ((2, 2), (2, 3), (3, 2), (2, 4), (2, 5), (3, 3), (4, 2))
SES = (1e-3, 1e-4)


def best(f, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return min(out)


def mc_stats(m, st, batches=20, size=2000, seed=0):
    """Throughput (prompts/s, sampling included) and per-prompt SDs of the loss and of the gradient
    entries (from the spread of batch means)."""
    rng = np.random.default_rng(seed)
    Ls, Gs = [], []
    gQ, gK, gV = (np.empty_like(st[b]) for b in ("W_Q", "W_K", "W_V"))
    t = time.perf_counter()
    for _ in range(batches):
        P, n, target = m.sample(rng, size)
        Ls.append(loss_grad_batch(st["W_Q"], st["W_K"], st["W_V"], P, np.ascontiguousarray(n, dtype=np.int64),
                                  target, gQ, gK, gV))
        Gs.append(np.concatenate([gQ.ravel(), gK.ravel()]))
    rate = batches * size / (time.perf_counter() - t)
    sd_loss = np.std(Ls, ddof=1) * np.sqrt(size)
    sd_grad = np.max(np.std(Gs, axis=0, ddof=1)) * np.sqrt(size)
    return rate, sd_loss, sd_grad, float(np.mean(Ls))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, load {os.getloadavg()}")
    print("| M | K | conditionings | exact L+grad (full sum) | (orbit-reduced) | MC prompts/s | loss: exact / MC mean | sd(loss) | "
          "sd(grad entry) | MC to SE 1e-3 (loss, grad) | MC to SE 1e-4 (loss, grad) | MC to 1e-12 rel. (loss) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for M, K in INSTANCES:
        m = Li2024CoT.create("gd", M=M, K=K, M_test=2)
        st = m.initial_state("gd", None)
        ev = m.loss_grad(st)                                      # compiles, builds the tables
        t_exact = best(lambda: m.loss_grad(st), args.repeats)
        full = PopulationLoss(m.data.mu, m.data.pe, m.config["l_train"], m.config["alpha"], orbit=False)
        full.loss_grad(st["W_Q"], st["W_K"])
        t_full = best(lambda: full.loss_grad(st["W_Q"], st["W_K"]), args.repeats)
        m.sample(np.random.default_rng(1), 10)
        rate, sdl, sdg, mean = mc_stats(m, st)
        cols = [f"{(s_l / s) ** 2 / rate:.3g} s, {(sdg / s) ** 2 / rate:.3g} s" for s in SES for s_l in (sdl,)]
        far = (sdl / (1e-12 * ev.loss)) ** 2 / rate
        print(f"| {M} | {K} | {m._exact().n_conditionings:,} | {1e3 * t_full:.3g} ms | {1e3 * t_exact:.3g} ms | {rate:,.0f} | "
              f"{ev.loss:.6f} / {mean:.6f} | {sdl:.3g} | {sdg:.3g} | {cols[0]} | {cols[1]} | {far:.2g} s |")


if __name__ == "__main__":
    main()
