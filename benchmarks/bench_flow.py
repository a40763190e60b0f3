"""Side-by-side benchmark of Huang's exact engine and gradient flow: this checkout against an
older commit (default 13c2cfb, the engine before issue 13), measured in one run.

Prints, for both:
1. the gradient flow to t = 4.2e14 GD steps at (K, N) = (1e6, 1e12) (the horizon the scaling
   target needs): wall time, right-hand-side evaluations, and the rare feature's convergence times
   T_k(eps), eps = 1e-2 .. 1e-10 (new: exact roots; old: resolved to 3000 log-spaced snapshots, so
   the table gives the old value's snapshot bracket);
2. the flow to t = 1e9 at the three benchmark settings (K, N) = (20, 100), (1e3, 1e6), (1e6, 1e9);
3. one class-reduced gradient through the Python API (``dynamics.reduced_loss_grad``) and, for the
   new code, the bare kernel, i.e. the Python overhead above it;
4. exact GD steps per second (1e5 steps) at the three settings.

The old code runs in a subprocess from a temporary `git archive` copy of the given commit.
Run: python benchmarks/bench_flow.py [--old REV]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = [10.0 ** -j for j in range(2, 11)]
SETTINGS = [(20, 100), (1000, 10**6), (10**6, 10**9)]

OLD = r'''
import json, sys, time
import numpy as np
import dynamics
from dynamics.simulate import simulate
from dynamics.classes import ClassStructure
EPS = [10.0 ** -j for j in range(2, 11)]
out = {}
simulate(K=20, N=100, steps=10, method="flow", snapshots=5)
t0 = time.perf_counter()
r = simulate(K=10**6, N=10**12, steps=int(4.2e14), method="flow", snapshots=3000)
out["big_wall"] = time.perf_counter() - t0
out["big_nfev"] = r.extra["rhs_evaluations"]
gap = r.L_f[:, 1] - r.L_star[1]
T, prev = [], []
for e in EPS:
    hit = np.flatnonzero(gap <= e)
    T.append(float(r.t[hit[0]]) if hit.size else None)
    prev.append(float(r.t[hit[0] - 1]) if hit.size and hit[0] > 0 else None)
out["big_T"], out["big_prev"] = T, prev
out["flow1e9"] = []
for K, N in [(20, 100), (1000, 10**6), (10**6, 10**9)]:
    t0 = time.perf_counter()
    r = simulate(K=K, N=N, steps=10**9, method="flow", snapshots=60)
    out["flow1e9"].append([time.perf_counter() - t0, r.extra["rhs_evaluations"]])
s = ClassStructure.imbalanced(10**6, 0.5)
c = s.zeros()
dynamics.reduced_loss_grad(c, s, 10**12)
best = 1e9
for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(2000):
        dynamics.reduced_loss_grad(c, s, 10**12)
    best = min(best, (time.perf_counter() - t0) / 2000)
out["api_us"] = best * 1e6
simulate(K=20, N=100, steps=10)
out["gd"] = []
for K, N in [(20, 100), (1000, 10**6), (10**6, 10**9)]:
    t0 = time.perf_counter()
    simulate(K=K, N=N, steps=10**5, snapshots=50)
    out["gd"].append(time.perf_counter() - t0)
print(json.dumps(out))
'''


def old_numbers(rev):
    """Run :data:`OLD` in an exported copy of ``rev`` (``git archive``: the repository's own
    worktree list is left alone; the copy is deleted afterwards); returns its JSON."""
    with tempfile.TemporaryDirectory(prefix=f"icl-dynamics-{rev}-") as path:
        tar = subprocess.run(["git", "-C", ROOT, "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", path], input=tar, check=True)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        r = subprocess.run([sys.executable, "-c", OLD], cwd=path, capture_output=True, text=True, env=env,
                           check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def new_numbers():
    import dynamics
    from dynamics.models.huang2024 import engine
    from dynamics.models.huang2024.classes import ClassStructure
    from dynamics.models.huang2024.quadrature import N_PARTS, reduced_terms
    from dynamics.simulate import simulate

    out = {}
    simulate("huang2024", "flow", K=20, N=100, steps=10, snapshots=5)
    t0 = time.perf_counter()
    r = simulate("huang2024", "flow", K=10**6, N=10**12, steps=int(4.2e14), snapshots=100, levels=EPS)
    out["big_wall"] = time.perf_counter() - t0
    out["big_nfev"] = r.extra["rhs_evaluations"]
    out["big_T"] = [None if np.isnan(x) else float(x) for x in r.extra["first_below"][1]]
    out["flow1e9"] = []
    for K, N in SETTINGS:
        t0 = time.perf_counter()
        r = simulate("huang2024", "flow", K=K, N=N, steps=10**9, snapshots=60)
        out["flow1e9"].append([time.perf_counter() - t0, r.extra["rhs_evaluations"]])
    s = ClassStructure.imbalanced(10**6, 0.5)
    c = s.zeros()
    coords, p_col, m_col, N_, s2, h = engine._reduced_inputs(c, s, 10**12, 0.0, engine.DEFAULT_H)
    gp, gn, at, parts = np.empty((2, 3)), np.empty((2, 3)), np.empty((2, 3)), np.empty((2, N_PARTS))
    wt = engine._tail_weights(h)

    def best(fn):
        fn()
        b = 1e9
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(2000):
                fn()
            b = min(b, (time.perf_counter() - t0) / 2000)
        return b * 1e6

    out["api_us"] = best(lambda: dynamics.reduced_loss_grad(c, s, 10**12))
    out["kernel_us"] = best(lambda: reduced_terms(coords, p_col, m_col, N_, s2, h, wt, gp, gn, at, parts))
    simulate("huang2024", K=20, N=100, steps=10)
    out["gd"] = []
    for K, N in SETTINGS:
        t0 = time.perf_counter()
        simulate("huang2024", K=K, N=N, steps=10**5, snapshots=50)
        out["gd"].append(time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default="13c2cfb", help="the commit to compare with (default 13c2cfb)")
    args = ap.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    old = old_numbers(args.old)
    new = new_numbers()
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print("1. flow to t = 4.2e14 at K = 1e6, N = 1e12")
    print(f"   wall: old {old['big_wall']:.2f} s, new {new['big_wall']:.3f} s ({old['big_wall'] / new['big_wall']:.0f}x); "
          f"rhs evaluations: old {old['big_nfev']}, new {new['big_nfev']}")
    print(f"   {'eps':>7} {'T_k new (exact)':>17} {'T_k old (snapshot)':>19} {'old bracket':>26} {'inside':>7}")
    for e, tn, to, tp in zip(EPS, new["big_T"], old["big_T"], old["big_prev"]):
        inside = "-" if tn is None or to is None else str(tp is not None and tp < tn <= to * (1 + 1e-9))
        f = (lambda x: "not reached" if x is None else f"{x:.6e}")
        print(f"   {e:>7.0e} {f(tn):>17} {f(to):>19} {('(' + f(tp) + ', ' + f(to) + ']') if tp else '-':>26} "
              f"{inside:>7}")
    print("\n2. flow to t = 1e9")
    for (K, N), o, n in zip(SETTINGS, old["flow1e9"], new["flow1e9"]):
        print(f"   K = {K:g}, N = {N:g}: old {o[0]:.3f} s ({o[1]} rhs), new {n[0]:.3f} s ({n[1]} rhs)")
    print("\n3. one class-reduced gradient (K = 1e6, N = 1e12, Q = 0)")
    print(f"   Python API: old {old['api_us']:.1f} us, new {new['api_us']:.1f} us; new kernel alone "
          f"{new['kernel_us']:.1f} us: {new['api_us'] - new['kernel_us']:.1f} us above it")
    print("\n4. 1e5 exact GD steps (50 snapshots)")
    for (K, N), o, n in zip(SETTINGS, old["gd"], new["gd"]):
        print(f"   K = {K:g}, N = {N:g}: old {o:.2f} s, new {n:.2f} s ({1e5 / o:.0f} vs {1e5 / n:.0f} steps/s)")


if __name__ == "__main__":
    main()
