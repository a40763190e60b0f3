"""Cost of one exact evaluation (L, dL/dtheta, L_k) against K: general label covariance M (issue 20)
against the orthonormal engine (M = I), balanced p, N = 1000, theta ~ N(0, 1), M equicorrelated rho = 0.3.

Run: PYTHONPATH=$PWD python benchmarks/bench_general_m.py   (prints markdown table rows: K, ms general M, ms M = I)
"""
import time, numpy as np, dynamics
from dynamics.models.huang2024.geometry import equicorrelated_gram
rng=np.random.default_rng(0)
for K in [10, 20, 50, 100, 200]:
    p=np.ones(K)/K; th=rng.normal(size=(K,K)); M=equicorrelated_gram(K,0.3)
    dynamics.population_loss_grad(th,p,1000,M); dynamics.population_loss_grad(th,p,1000)
    n=max(1,int(200/K)); t=time.perf_counter()
    for _ in range(n): dynamics.population_loss_grad(th,p,1000,M)
    tm=(time.perf_counter()-t)/n
    t=time.perf_counter()
    for _ in range(n): dynamics.population_loss_grad(th,p,1000)
    t0=(time.perf_counter()-t)/n
    print(f"| {K} | {tm*1e3:.2f} | {t0*1e3:.2f} |")

# Class-reduced path for equicorrelated features (rho = 0.3, Sigma = I) against the orthonormal
# class-reduced engine: imbalanced K = 1e6 (p_1 = 1/2), N = 1e12, coords ~ N(0, 1).
from dynamics.models.huang2024.classes import ClassStructure
from dynamics.models.huang2024.engine import reduced_loss_grad
from dynamics.models.huang2024.geometry import equicorrelated_reduced_step

s = ClassStructure.imbalanced(10**6, 0.5)
c = rng.normal(size=(s.F, s.F + 1))
for f, label in ((lambda: equicorrelated_reduced_step(c, s, 10**12, 0.3), "equicorrelated rho=0.3"),
                 (lambda: reduced_loss_grad(c, s, 10**12), "orthonormal")):
    f()
    t = time.perf_counter()
    for _ in range(2000):
        f()
    print(f"K = 1e6, N = 1e12, {label}: {(time.perf_counter() - t) / 2000 * 1e6:.1f} us per step")
