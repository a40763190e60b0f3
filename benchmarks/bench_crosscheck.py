"""Time-to-accuracy of Monte Carlo training against the exact simulator (issue: Monte Carlo cross-check).

How long does online SGD on the full matrix Q need to reproduce 2000 steps of the exact
imbalanced trajectory (K = 20, N = 100, p1 = 0.5, eta = 1) to within 1e-2 in every tracked
coordinate (the class averages of A_k and B_{k,n}, at 12 log-spaced snapshots)?  The batch B
doubles until one run (one seed) is within 1e-2; the exact simulator's time is printed beside it.

Run: python benchmarks/bench_crosscheck.py
"""
from __future__ import annotations

import os
import time

import numpy as np

from dynamics.core.trajectory import snapshot_steps
from dynamics.simulate import simulate

MODEL = dict(K=20, N=100, preset="imbalanced", p1=0.5, eta=1.0)


def main(max_batch=51_200):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}\n")
    steps = 2000
    rec = snapshot_steps(steps, 12)
    simulate("huang2024", steps=10, save_at=[10], **MODEL)  # compile
    t0 = time.perf_counter()
    exact = simulate("huang2024", steps=steps, save_at=rec, **MODEL)
    t_exact = time.perf_counter() - t0
    print(f"exact simulator, 2000 steps: {t_exact * 1e3:.1f} ms")
    simulate("huang2024", "mc", steps=2, save_at=[0, 2], batch=10, n_eval=2, **MODEL)  # compile
    mask = np.isfinite(exact.coords[0])
    print(f"{'batch B':>8} {'prompts':>12} {'wall s':>8} {'max |error|':>12}")
    B = 100
    while B <= max_batch:
        t0 = time.perf_counter()
        mc = simulate("huang2024", "mc", steps=steps, save_at=rec, batch=B, n_eval=2, seed=B, **MODEL)
        dt = time.perf_counter() - t0
        err = np.abs(mc.coords[0][:, mask] - exact.coords[:, mask]).max()
        print(f"{B:>8} {B * steps:>12.3g} {dt:>8.2f} {err:>12.3e}")
        if err < 1e-2:
            print(f"\nMonte Carlo within 1e-2: B = {B}, {dt:.2f} s; exact: {t_exact:.3f} s; ratio {dt / t_exact:.0f}x")
            return
        B *= 2
    print("\nMonte Carlo did not reach 1e-2 within the batch budget")


if __name__ == "__main__":
    main()
