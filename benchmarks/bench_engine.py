"""Benchmark of the exact engine, today's code against a reference commit in the same run.

Prints, in this order,
1. the worst absolute and relative errors of this tree and of the reference against the
   50-digit brute force of tests/huang2024/mp_oracle.py on random small problems, and the
   issue's example (theta = 40 I, p = (.5, .5), N = 100);
2. the time of one exact class-reduced gradient of both query classes of the imbalanced
   setting (p1 = 0.5) at N in {10, 1e3, 1e6, 1e9} and K in {10, 1e3, 1e6}, at Q = 0 and at a
   trained-looking state (A = 8, B spread of 8), measured inside a numba loop (no Python
   overhead), for this tree's ``reduced_kernel`` and the reference commit's, both at their
   default step h (best of interleaved rounds), then this tree's ``reduced_terms`` (every part,
   the query feature's absence split off) and its Python API ``reduced_loss_grad`` (which
   returns the parts);
3. the analytic Jacobian of the class-reduced gradient (``jacobian.reduced_jacobian``) against
   one gradient evaluation at the same states;
4. the time of a full K x K gradient for general p (Dirichlet) at K in {10, 30, 100, 200, 400,
   1000}, N = 1e6: this tree on one thread, on all threads and with its automatic choice
   (``work`` is its estimate, threads from ``PARALLEL_MIN_WORK`` on), and the reference commit on
   one thread and on all threads (its only choice), first as the machine is and then with one
   busy-looping process per core minus one (``--no-load`` skips the second pass).

The reference kernels (``quadrature.py`` and ``_kernels.py`` of ``--ref``, default the commit
before the cancellation-free re-derivation) are read with ``git show`` into a temporary folder.

Run: python benchmarks/bench_engine.py [--ref COMMIT] [--no-load] [--only accuracy|reduced|jacobian|general]
"""
from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # this tree's package, not an installed one

import dynamics  # noqa: E402
import dynamics.models.huang2024.engine  # noqa: E402,F401
from dynamics.core.jit import jit  # noqa: E402
from dynamics.models.huang2024 import jacobian as jacmod  # noqa: E402
from dynamics.models.huang2024 import quadrature as quad  # noqa: E402
from dynamics.models.huang2024.classes import ClassStructure  # noqa: E402

REF_DEFAULT = "1b1acef"


def load_reference(commit: str):
    """The reference commit's ``quadrature`` module (with its own generated kernels)."""
    tmp = tempfile.mkdtemp(prefix="bench_ref_")
    for name, dest in (("_kernels.py", "ref_kernels.py"), ("quadrature.py", "ref_quadrature.py")):
        src = subprocess.run(["git", "-C", REPO, "show", f"{commit}:dynamics/models/huang2024/{name}"],
                             check=True, capture_output=True, text=True).stdout
        src = src.replace("from dynamics.models.huang2024 import _kernels as kern", "import ref_kernels as kern")
        with open(os.path.join(tmp, dest), "w") as fh:
            fh.write(src)
    sys.path.insert(0, tmp)
    spec = importlib.util.spec_from_file_location("ref_quadrature", os.path.join(tmp, "ref_quadrature.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_loop(kernel, tails):
    @jit(cache=False)
    def loop(reps, coords, p_col, m_col, N, h, grad, L_f, attn):
        wt = tails(h)
        for _ in range(reps):
            kernel(coords, p_col, m_col, N, 0.0, h, wt, grad, L_f, attn)
    return loop


@jit
def _loop_split(reps, coords, p_col, m_col, N, h, gp, gn, attn, parts):
    wt = quad.tail_weights(h)
    for _ in range(reps):
        quad.reduced_terms(coords, p_col, m_col, N, 0.0, h, wt, gp, gn, attn, parts)


def _best(fn, repeat=5):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def reduced_table(ref):
    loops = {"this tree": make_loop(quad.reduced_kernel, quad.tail_weights),
             "reference": make_loop(ref.reduced_kernel, ref.tail_weights)}
    steps = {"this tree": quad.DEFAULT_H, "reference": ref.DEFAULT_H}  # each at its own default
    print("Class-reduced exact gradient, imbalanced p1 = 0.5, both query classes (F = 2), one core, us per call")
    print(f"{'state':>8} {'K':>9} {'N':>12} {'this tree':>10} {'reference':>10} {'ratio':>6} {'split':>8} {'API':>8}")
    states = {"Q=0": np.zeros((2, 3)), "trained": np.array([[8.0, 0.0, 0.0], [8.0, 2.0, -6.0]])}
    h = quad.DEFAULT_H
    for label, coords in states.items():
        for K in (10, 10**3, 10**6):
            s = ClassStructure.imbalanced(K, 0.5)
            p_col, m_col = s.column_tables()
            for N in (10, 10**3, 10**6, 10**9):
                grad, L_f, attn = np.empty((2, 3)), np.empty(2), np.empty((2, 3))
                t = {}
                for name, loop in loops.items():
                    loop(1, coords, p_col, m_col, float(N), steps[name], grad, L_f, attn)
                reps = 500
                for _ in range(8):  # interleaved rounds, best of all (the machine is shared)
                    for name, loop in loops.items():
                        dt = _best(lambda: loop(reps, coords, p_col, m_col, float(N), steps[name], grad, L_f, attn), 2) / reps
                        t[name] = min(t.get(name, np.inf), dt)
                gp, gn, parts = np.empty((2, 3)), np.empty((2, 3)), np.empty((2, quad.N_PARTS))
                _loop_split(1, coords, p_col, m_col, float(N), h, gp, gn, attn, parts)
                t_split = _best(lambda: _loop_split(reps, coords, p_col, m_col, float(N), h, gp, gn, attn, parts), 8) / reps
                t_api = _best(lambda: [dynamics.reduced_loss_grad(coords, s, N) for _ in range(200)]) / 200
                a, b = t["this tree"], t["reference"]
                print(f"{label:>8} {K:>9} {N:>12} {a * 1e6:>10.2f} {b * 1e6:>10.2f} {a / b:>6.2f} "
                      f"{t_split * 1e6:>8.2f} {t_api * 1e6:>8.1f}")


@jit
def _loop_jac(reps, coords, p_col, m_col, N, h, jp, jn):
    wt = quad.tail_weights(h)
    for _ in range(reps):
        jacmod.reduced_jacobian(coords, p_col, m_col, N, 0.0, h, wt, jp, jn)


def jacobian_table():
    print("\nAnalytic Jacobian of the class-reduced gradient (both query classes, 3 x 3 blocks), one core, us per call;")
    print("a forward-difference Jacobian costs 6 gradients (central: 12)")
    print(f"{'state':>8} {'K':>9} {'N':>12} {'jacobian':>10} {'gradient':>10} {'ratio':>6}")
    states = {"Q=0": np.zeros((2, 3)), "trained": np.array([[8.0, 0.0, 0.0], [8.0, 2.0, -6.0]])}
    h = quad.DEFAULT_H
    loop = make_loop(quad.reduced_kernel, quad.tail_weights)
    for label, coords in states.items():
        for K, N in ((10, 10), (10**3, 10**6), (10**6, 10**9)):
            s = ClassStructure.imbalanced(K, 0.5)
            p_col, m_col = s.column_tables()
            jp, jn = np.empty((2, 3, 3)), np.empty((2, 3, 3))
            grad, L_f, attn = np.empty((2, 3)), np.empty(2), np.empty((2, 3))
            _loop_jac(1, coords, p_col, m_col, float(N), h, jp, jn)
            loop(1, coords, p_col, m_col, float(N), h, grad, L_f, attn)
            reps = 300
            tj = _best(lambda: _loop_jac(reps, coords, p_col, m_col, float(N), h, jp, jn), 8) / reps
            tg = _best(lambda: loop(reps, coords, p_col, m_col, float(N), h, grad, L_f, attn), 8) / reps
            print(f"{label:>8} {K:>9} {N:>12} {tj * 1e6:>10.2f} {tg * 1e6:>10.2f} {tj / tg:>6.2f}")


def accuracy_table(ref, cases=60):
    """Worst errors of this tree and of the reference on random small problems (K <= 4, N <= 10,
    theta in [-30, 30], label noise in half of them) against the 50-digit brute force."""
    import mpmath as mp

    from tests.huang2024 import mp_oracle

    rng = np.random.default_rng(11)
    worst = {name: {"abs L_k": 0.0, "rel L_k": 0.0, "rel 1-E[Attn_k]": 0.0, "abs grad": 0.0, "min L_k": np.inf}
             for name in ("this tree", "reference")}
    for i in range(cases):
        K, N = int(rng.integers(2, 5)), int(rng.integers(1, 11))
        p = rng.dirichlet(np.ones(K))
        theta = rng.uniform(-30, 30, size=(K, K))
        sigma2 = float(rng.uniform(0, 1)) if i % 2 else 0.0
        T = dynamics.models.huang2024.engine.population_terms(theta, p, N, sigma2)
        g, Lk, at = np.empty((K, K)), np.empty(K), np.empty((K, K))
        ref.general_kernel(theta, p, float(N), sigma2, ref.DEFAULT_H, g, Lk, at)
        got = {"this tree": (T.L_k, T.grad, T.attn_rest), "reference": (Lk, g, 1.0 - np.diag(at))}
        for k in range(K):
            o = mp_oracle.column(theta[:, k], p, k, N, sigma2)
            L, rest = o["ell"] / 2, o["rest"]
            gk = [mp.mpf(float(p[k])) / 2 * (a - b) for a, b in zip(o["grad_pos"], o["grad_neg"])]
            for name, (L_k, grad, attn_rest) in got.items():
                w = worst[name]
                w["abs L_k"] = max(w["abs L_k"], float(abs(L_k[k] - L)))
                w["rel L_k"] = max(w["rel L_k"], float(abs(L_k[k] - L) / L))
                w["rel 1-E[Attn_k]"] = max(w["rel 1-E[Attn_k]"], float(abs(attn_rest[k] - rest) / rest))
                w["abs grad"] = max(w["abs grad"], max(float(abs(grad[n, k] - gk[n])) for n in range(K)))
                w["min L_k"] = min(w["min L_k"], float(L_k[k]))
    print(f"\nAccuracy on {cases} random problems against the 50-digit brute force (worst over all entries)")
    print(f"{'':>10} " + " ".join(f"{key:>16}" for key in worst["this tree"]))
    for name, w in worst.items():
        print(f"{name:>10} " + " ".join(f"{v:>16.2e}" for v in w.values()))
    theta = 40.0 * np.eye(2)
    g, Lk, at = np.empty((2, 2)), np.empty(2), np.empty((2, 2))
    ref.general_kernel(theta, np.array([0.5, 0.5]), 100.0, 0.0, ref.DEFAULT_H, g, Lk, at)
    exact = mp_oracle.binomial_column(40.0, 0.0, 0.5, 100)["ell"] / 2
    print(f"theta = 40 I, p = (.5, .5), N = 100: L_k = {dynamics.population_loss_grad(theta, [0.5, 0.5], 100)[2][0]:.6e} "
          f"(this tree), {Lk[0]:.6e} (reference), exact {mp.nstr(exact, 7)}")


def _one_thread(fn, *args):
    n = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        fn(*args)
    finally:
        numba.set_num_threads(n)


def _burn(stop):
    x = 0.0
    while not stop.is_set():
        for i in range(100000):
            x += i * 1e-9


def general_table(ref, load):
    rng = np.random.default_rng(0)
    title = "with the other core(s) busy" if load else "idle"
    print(f"\nFull K x K exact gradient, general p (Dirichlet), N = 1e6, {numba.get_num_threads()} threads available, {title}; ms")
    print(f"{'K':>6} {'work':>9} {'serial':>9} {'parallel':>9} {'auto':>9} {'ref 1 thr':>10} {'ref all':>10}")
    procs, stop = [], None
    if load:
        stop = mp.Event()
        procs = [mp.Process(target=_burn, args=(stop,)) for _ in range(max(1, (os.cpu_count() or 2) - 1))]
        for pr in procs:
            pr.start()
    try:
        for K in (10, 30, 100, 200, 400, 1000):
            p = rng.dirichlet(np.ones(K))
            theta = rng.normal(scale=2.0, size=(K, K))
            N, h = 1e6, quad.DEFAULT_H
            gp, gn, at, parts = np.empty((K, K)), np.empty((K, K)), np.empty((K, K)), np.empty((K, quad.N_PARTS))
            g, Lk = np.empty((K, K)), np.empty(K)
            runs = {
                "serial": lambda: quad.general_terms(theta, p, N, 0.0, h, gp, gn, at, parts, 0, False),
                "parallel": lambda: quad.general_terms(theta, p, N, 0.0, h, gp, gn, at, parts, 1, False),
                "auto": lambda: quad.general_kernel(theta, p, N, 0.0, h, g, Lk, at),
                "ref 1 thread": lambda: _one_thread(ref.general_kernel, theta, p, N, 0.0, h, g, Lk, at),
                "reference": lambda: ref.general_kernel(theta, p, N, 0.0, h, g, Lk, at),
            }
            row = []
            for name, fn in runs.items():
                fn()
                row.append(_best(fn, repeat=7 if K <= 200 else 3) * 1e3)
            work = quad.general_work(theta)
            print(f"{K:>6} {work:>9.2e} " + " ".join(f"{v:>9.3f}" for v in row[:3]) + f" {row[3]:>10.3f} {row[4]:>10.3f}")
    finally:
        if load:
            stop.set()
            for pr in procs:
                pr.join()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default=REF_DEFAULT, help="git commit of the reference kernels")
    ap.add_argument("--no-load", action="store_true", help="skip the general-kernel pass under load")
    ap.add_argument("--only", choices=("accuracy", "reduced", "jacobian", "general"), help="run one table")
    args = ap.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"numba {numba.__version__} ({numba.config.THREADING_LAYER} threading layer requested), numpy {np.__version__}")
    print(f"this tree: {os.path.dirname(dynamics.__file__)}; reference: {args.ref}\n")
    ref = load_reference(args.ref)
    if args.only in (None, "accuracy"):
        accuracy_table(ref)
    if args.only in (None, "reduced"):
        reduced_table(ref)
    if args.only in (None, "jacobian"):
        jacobian_table()
    if args.only in (None, "general"):
        general_table(ref, load=False)
        if not args.no_load:
            general_table(ref, load=True)
