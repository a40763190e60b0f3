"""Cost of one exact evaluation (L, dL/dtheta, L_k) against K: general label covariance M (issue 20)
against the orthonormal engine (M = I), balanced p, N = 1000, theta ~ N(0, 1), M equicorrelated rho = 0.3;
then the class-reduced equicorrelated step against the orthonormal class-reduced one at K = 1e6, N = 1e12.

Run: python benchmarks/bench_general_m.py   (prints markdown table rows: K, ms general M, ms M = I)
"""
import time

import numpy as np

import dynamics
from dynamics.models.huang2024.classes import ClassStructure
from dynamics.models.huang2024.engine import reduced_loss_grad
from dynamics.models.huang2024.geometry import equicorrelated_gram, equicorrelated_reduced_step


def per_call(f, n):
    """Seconds per call of ``f`` over ``n`` calls (after one warm-up call)."""
    f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n


def main():
    rng = np.random.default_rng(0)
    print("| K | general M (ms) | M = I (ms) |")
    print("|---|---|---|")
    for K in [10, 20, 50, 100, 200]:
        p = np.ones(K) / K
        th = rng.normal(size=(K, K))
        M = equicorrelated_gram(K, 0.3)
        n = max(1, int(200 / K))
        tm = per_call(lambda: dynamics.population_loss_grad(th, p, 1000, M), n)
        t0 = per_call(lambda: dynamics.population_loss_grad(th, p, 1000), n)
        print(f"| {K} | {tm * 1e3:.2f} | {t0 * 1e3:.2f} |")
    s = ClassStructure.imbalanced(10**6, 0.5)
    c = rng.normal(size=(s.F, s.F + 1))
    for f, label in ((lambda: equicorrelated_reduced_step(c, s, 10**12, 0.3), "equicorrelated rho=0.3"),
                     (lambda: reduced_loss_grad(c, s, 10**12), "orthonormal")):
        print(f"K = 1e6, N = 1e12, {label}: {per_call(f, 2000) * 1e6:.1f} us per step")


if __name__ == "__main__":
    main()
