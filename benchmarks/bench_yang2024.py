"""Speed of exact GD for Yang, Huang, Liang, Chi (2024) at the paper's Fig 2 setting.

``python benchmarks/bench_yang2024.py [--steps 200] [--rounds 5] [--accuracy]``

Prints, side by side in one run (rounds interleaved, so that a change of load on the machine hits
every contender alike; medians over rounds):

- exact GD steps per second in the reduced parameterisation (``theta_h``, the preconditioned
  step) and in the full one (``Q_h``), through :meth:`Yang2024.advance` (what ``simulate`` runs);
- the same closed-form loss (MODEL.md section 7) written straightforwardly in PyTorch on the
  full ``Q_h`` and differentiated by autograd (``torch.softmax``, ``backward``), at PyTorch's
  default thread count and at one thread;
- Monte Carlo SGD steps per second (batch 256, full ``Q_h``);
- with ``--accuracy``: wall time of ``simulate`` to reach ``L - L* <= 1e-10 L*`` (eps rule).

N = 30, K = 200, d = 100, m = 20, H = 64 (652,800 parameters); the matrix products of one
reduced step are ~88 M multiply-adds (the K x K Gram on the (H N) x K gradient dominates).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from dynamics.methods.gd import Monitor
from dynamics.models.yang2024.model import Yang2024

FIG2 = dict(N=30, K=200, d=100, m=20, H=64, tau=0.01)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def ours(param: str, steps: int):
    """Seconds per exact GD step of :meth:`Yang2024.advance` in one parameterisation."""
    model = Yang2024.create("gd", parameterisation=param, eta_Q=0.02, check_step=False, **FIG2)
    state = model.initial_state("gd")
    lrs = model.learning_rates("gd")

    def run():
        mon = Monitor(patience=10 ** 9)
        t0 = time.perf_counter()
        model.advance(state, lrs, 0, steps, mon)
        return (time.perf_counter() - t0) / steps

    run()  # numba compilation, caches
    return run


def torch_autograd(steps: int, threads: int | None):
    """Seconds per step of the closed form differentiated by PyTorch autograd (full Q_h)."""
    import torch

    model = Yang2024.create("gd", **FIG2)
    pr = model.problem
    V, V_all = torch.tensor(pr.V), torch.tensor(pr.V_all)
    G, A, L_star = torch.tensor(pr.G), torch.tensor(pr.A), pr.L_star
    Q = torch.tensor(model.Q0.copy(), requires_grad=True)
    w = torch.zeros((model.H, pr.K), dtype=torch.float64, requires_grad=True)
    eta = 0.02

    def step():
        theta = V.T @ Q @ V_all                      # (H, N, K)
        S = torch.softmax(theta, dim=1)
        a = (S * w[:, None, :]).sum(0)               # (N, K)
        D = a - A
        loss = 0.5 * (D * (G @ D)).sum() + L_star
        loss.backward()
        with torch.no_grad():
            Q.sub_(eta * Q.grad)
            w.sub_(eta * w.grad)
            Q.grad = None
            w.grad = None
        return loss

    def run():
        old = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            step()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            return (time.perf_counter() - t0) / steps
        finally:
            torch.set_num_threads(old)

    return run, torch.get_num_threads() if threads is None else threads


def monte_carlo(steps: int):
    model = Yang2024.create("mc", eta_Q=1e-3, **FIG2)
    state = model.initial_state("mc")
    rng = np.random.default_rng(0)

    def run():
        t0 = time.perf_counter()
        for _ in range(steps):
            b = model.sample(rng, 256)
            _, g = model.batch_loss_grad(state, b)
            state["Q"] -= 1e-3 * g["Q"]
            state["w"] -= 1e-3 * g["w"]
        return (time.perf_counter() - t0) / steps

    run()
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200, help="steps per timing round (default 200)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are printed (default 5)")
    ap.add_argument("--accuracy", action="store_true", help="also time simulate to L - L* <= 1e-10 L*")
    args = ap.parse_args(argv)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; load average at start {load()}")
    print(f"setting: {FIG2} ({FIG2['H'] * (FIG2['d'] ** 2 + FIG2['K'])} parameters)")
    contenders = {"ours, reduced theta_h": ours("reduced", args.steps),
                  "ours, full Q_h": ours("full", args.steps),
                  "Monte Carlo SGD, batch 256 (full Q_h)": monte_carlo(max(1, args.steps // 4))}
    try:
        run, nt = torch_autograd(max(1, args.steps // 4), None)
        contenders[f"PyTorch autograd, full Q_h ({nt} threads)"] = run
        contenders["PyTorch autograd, full Q_h (1 thread)"] = torch_autograd(max(1, args.steps // 4), 1)[0]
    except ImportError:
        print("PyTorch not installed: no autograd reference")
    times = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for name, run in contenders.items():
            times[name].append(run())
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"{'contender':45s} {'ms/step':>9s} {'steps/s':>9s}")
    for name, s in med.items():
        print(f"{name:45s} {1e3 * s:9.2f} {1 / s:9.1f}")
    for ref in [k for k in med if k.startswith("PyTorch")]:
        for mine in ("ours, reduced theta_h", "ours, full Q_h"):
            print(f"speed-up of {mine} over {ref}: {med[ref] / med[mine]:.1f}x")
    if args.accuracy:
        from dynamics.simulate import simulate

        L_star = Yang2024.create("gd", **FIG2).problem.L_star
        t0 = time.perf_counter()
        r = simulate("yang2024", "gd", steps=400_000, snapshots=20, eps=1e-10 * L_star, **FIG2)
        print(f"simulate to L - L* <= 1e-10 L*: {r.status} at step {int(r.t[-1])} in {time.perf_counter() - t0:.1f} s "
              f"(eta_Q = {float(r.ds['eta_Q']):.4g} = 1/ell_0)")
    print(f"load average at end {load()}")


if __name__ == "__main__":
    main()
