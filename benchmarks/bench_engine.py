"""Benchmark of the exact engine (issue: exact population-gradient engine).

Prints
1. the time of one exact class-reduced gradient of both query classes of the imbalanced
   setting (p1 = 0.5) at N in {10, 1e3, 1e6, 1e9} and K in {10, 1e3, 1e6}, at Q = 0 and at a
   trained-looking state (A = 8, B spread of 8), measured inside a numba loop (no Python
   overhead) and through the Python API;
2. the time of a full K x K gradient for general p (Dirichlet) at K in {10, 100, 200, 1000},
   N = 1e6, on all cores (numba prange over query features).

Run: python benchmarks/bench_engine.py
"""
from __future__ import annotations

import os
import platform
import time

import numba
import numpy as np

import dynamics
from dynamics.core.jit import jit
from dynamics.models.huang2024.classes import ClassStructure
from dynamics.models.huang2024.quadrature import DEFAULT_H, reduced_kernel, tail_weights


@jit
def _loop(reps, coords, p_col, m_col, N, h, grad, L_f, attn):
    wt = tail_weights(h)
    for _ in range(reps):
        reduced_kernel(coords, p_col, m_col, N, 0.0, h, wt, grad, L_f, attn)


def _best(fn, repeat=5):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def reduced_table():
    print("Class-reduced exact gradient, imbalanced p1 = 0.5, both query classes (F = 2), one core")
    print(f"{'state':>8} {'K':>9} {'N':>12} {'numba loop us':>14} {'python API us':>14}")
    states = {"Q=0": np.zeros((2, 3)), "trained": np.array([[8.0, 0.0, 0.0], [8.0, 2.0, -6.0]])}
    for label, coords in states.items():
        for K in (10, 10**3, 10**6):
            s = ClassStructure.imbalanced(K, 0.5)
            p_col, m_col = s.column_tables()
            for N in (10, 10**3, 10**6, 10**9):
                grad, L_f, attn = np.empty((2, 3)), np.empty(2), np.empty((2, 3))
                _loop(1, coords, p_col, m_col, float(N), DEFAULT_H, grad, L_f, attn)
                reps = 2000
                t = _best(lambda: _loop(reps, coords, p_col, m_col, float(N), DEFAULT_H, grad, L_f, attn)) / reps
                t_api = _best(lambda: [dynamics.reduced_loss_grad(coords, s, N) for _ in range(200)]) / 200
                print(f"{label:>8} {K:>9} {N:>12} {t * 1e6:>14.2f} {t_api * 1e6:>14.2f}")


def general_table():
    print(f"\nFull K x K exact gradient, general p (Dirichlet), N = 1e6, {numba.get_num_threads()} threads")
    print(f"{'K':>6} {'ms':>10}")
    rng = np.random.default_rng(0)
    for K in (10, 100, 200, 1000):
        p = rng.dirichlet(np.ones(K))
        theta = rng.normal(scale=2.0, size=(K, K))
        dynamics.population_loss_grad(theta, p, 10**6)
        t = _best(lambda: dynamics.population_loss_grad(theta, p, 10**6), repeat=3 if K < 1000 else 1)
        print(f"{K:>6} {t * 1e3:>10.2f}")


if __name__ == "__main__":
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores; numba {numba.__version__}, numpy {np.__version__}\n")
    reduced_table()
    general_table()
