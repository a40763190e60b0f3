"""The package against PyTorch competitors, each side in its own process, interleaved (issue 21).

In one process numba's and torch's thread pools slow each other, so every figure here comes from
a fresh process that runs one side only, with the thread count fixed before numba or torch is
imported (``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``torch.set_num_threads``).  The driver runs the two sides in turn,
A B A B ..., ``--pairs`` times per thread count, and prints the median of the pair-by-pair ratios
(torch time / package time, > 1: the package is faster) with the load average beside it.

Workloads (one training step each, the package's step as :func:`dynamics.methods.montecarlo.run_mc`
runs it: sample, ``batch_loss_grad``, the finiteness check, the update):

``li64``, ``li256``       li2024 SGD step at B = 64 / 256 (default model: d = 34, l = 20, m = 40);
                          torch: the same numpy sampler, ``bmm`` forward, autograd, SGD.
``cot64``, ``cot256``     li2024_cot SGD step at B = 64 / 256 (d = 18, l = 10, K = 3); torch: the same
                          sampler, masked ``bmm`` attention, autograd.
(The issue's Huang Monte Carlo and Yang exact-step comparisons are not built here yet.)

Usage::

    python benchmarks/bench_vs_torch.py li64 li256 --pairs 5 --threads 1 2
    python benchmarks/bench_vs_torch.py --side numba --workload li64 --threads 1   (one side, one process)

torch is optional: without it the driver prints the package's figures only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKLOADS = ("li64", "li256", "cot64", "cot256")
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def one_side(side: str, workload: str, threads: int, seconds: float) -> dict:
    """Run one side of one workload in this process; median seconds per step over blocks."""
    import numpy as np

    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    import torch_competitors as tc

    if side == "torch":
        import torch
        torch.set_num_threads(threads)
    step = tc.make_step(side, workload)
    step()
    step()
    t0 = time.perf_counter()
    step()
    one = max(time.perf_counter() - t0, 1e-6)
    per_block = max(1, int(0.05 / one))          # blocks of about 50 ms
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t0 = time.perf_counter()
        for _ in range(per_block):
            step()
        times.append((time.perf_counter() - t0) / per_block)
    return {"side": side, "workload": workload, "threads": threads, "median_s": float(np.median(times)),
            "min_s": float(np.min(times)), "blocks": len(times)}


def run_side(side, workload, threads, seconds):
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(threads)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--workload", workload,
           "--threads", str(threads), "--seconds", str(seconds)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def have_torch() -> bool:
    try:
        import importlib.util
        return importlib.util.find_spec("torch") is not None
    except Exception:  # noqa: BLE001
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workloads", nargs="*", help=f"any of {', '.join(WORKLOADS)} (default: all)")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per process (after warm-up)")
    ap.add_argument("--side", choices=("numba", "torch"))
    ap.add_argument("--workload", choices=WORKLOADS)
    args = ap.parse_args(argv)
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        ap.error(f"workloads must be among {', '.join(WORKLOADS)}, got {', '.join(bad)}")
    if args.side:
        print(json.dumps(one_side(args.side, args.workload, args.threads[0], args.seconds)))
        return 0
    import numpy as np

    torch_ok = have_torch()
    if not torch_ok:
        print("torch is not installed (pip install torch): the package's figures only")
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores; medians of {args.pairs} interleaved pairs, each side in its "
          f"own process")
    print(f"{'workload':<10}{'threads':>8}{'package ms':>12}{'torch ms':>10}{'ratio':>8}{'min..max':>14}"
          f"{'load':>7}")
    for w in args.workloads or WORKLOADS:
        for th in args.threads:
            pk, tr, ratios, loads = [], [], [], []
            for _ in range(args.pairs):
                loads.append(os.getloadavg()[0])
                a = run_side("numba", w, th, args.seconds)["median_s"]
                pk.append(a)
                if torch_ok:
                    b = run_side("torch", w, th, args.seconds)["median_s"]
                    tr.append(b)
                    ratios.append(b / a)
            pkm = np.median(pk) * 1e3
            if torch_ok:
                print(f"{w:<10}{th:>8}{pkm:>12.3f}{np.median(tr) * 1e3:>10.3f}{np.median(ratios):>8.2f}"
                      f"{f'{min(ratios):.2f}..{max(ratios):.2f}':>14}{np.median(loads):>7.1f}", flush=True)
            else:
                print(f"{w:<10}{th:>8}{pkm:>12.3f}{'-':>10}{'-':>8}{'-':>14}{np.median(loads):>7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
