"""Benchmark of the simulator (issue: reduced GD simulator).

Prints the wall time of 1e5 exact GD steps in the imbalanced setting (p1 = 0.5, eta = 1)
at (K, N) = (20, 100), (1e3, 1e6), (1e6, 1e9), after compilation, and of a gradient-flow
run to t = 1e9 GD steps.

Run: python benchmarks/bench_simulate.py
"""
from __future__ import annotations

import os
import time

import numpy as np

from dynamics.simulate import simulate


def main():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores\n")
    simulate(K=20, N=100, steps=10)  # compile
    print(f"{'K':>9} {'N':>12} {'method':>6} {'horizon t':>10} {'wall s':>8} {'final L_rare':>13} {'A_rare':>8}")
    for K, N in ((20, 100), (10**3, 10**6), (10**6, 10**9)):
        t0 = time.perf_counter()
        r = simulate(K=K, N=N, eta=1.0, steps=10**5, snapshots=50)
        dt = time.perf_counter() - t0
        print(f"{K:>9} {N:>12} {'gd':>6} {10**5:>10.0e} {dt:>8.2f} {r.L_f[-1, 1]:>13.4e} {r.coords[-1, 1, 0]:>8.3f}")
    for K, N in ((20, 100), (10**3, 10**6)):
        t0 = time.perf_counter()
        r = simulate(K=K, N=N, eta=1.0, steps=10**9, method="flow", snapshots=60)
        dt = time.perf_counter() - t0
        print(f"{K:>9} {N:>12} {'flow':>6} {1e9:>10.0e} {dt:>8.2f} {r.L_f[-1, 1]:>13.4e} {r.coords[-1, 1, 0]:>8.3f}"
              f"   ({r.extra['rhs_evaluations']} gradient evaluations)")
    # flow against gd at the GD horizon, same model
    g = simulate(K=20, N=100, eta=1.0, steps=10**5, save_at=[10**5])
    f = simulate(K=20, N=100, eta=1.0, steps=10**5, method="flow", save_at=[10**5])
    print(f"\nflow vs gd at t = 1e5 (K=20, N=100, eta=1): max |coord difference| = {np.nanmax(np.abs(g.coords[-1] - f.coords[-1])):.2e}")


if __name__ == "__main__":
    main()
