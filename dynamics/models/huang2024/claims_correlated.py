"""Ledger rows for Huang's model beyond the paper (issue 20): our measurements, not the paper's claims.

``CLAIMS_CORRELATED`` (to be joined to Huang's tuple of :class:`dynamics.core.claims.Claim`).  Each
row states its rule before the run; the settings are those of :mod:`.correlated` (our choices).
"""
from __future__ import annotations

import numpy as np

from dynamics.core.claims import Claim, Decision
from dynamics.models.huang2024 import correlated as corr

EPS = 1e-2
"""The gap level of the stage-wise rule (ours)."""
SCALE_TOL = 1e-8
"""Relative tolerance of the (1 - rho) identity: L_k^* is solved to ~1e-12, well inside it."""


def decide_order(quick: bool = False, out: str | None = None, negative: bool = False) -> Decision:
    """Stage-wise order under correlation: ``T_1(eps) < T_k(eps)`` at every ``rho`` of the grid.

    ``negative``: the same rule on equal probabilities (``p_1 = 1/K``: no dominant feature), where
    ``T_1 = T_k`` by symmetry, so the strict order must fail.
    """
    rhos = (0.0, 0.3) if quick else (0.0, 0.3, 0.6)
    p1 = 1.0 / corr.K if negative else corr.P1
    T1, Tk = [], []
    for rho in rhos:
        _, T, _, _ = corr.measure({"feature_corr": rho}, quick, (EPS,), p1=p1)
        T1.append(T[0, 0])
        Tk.append(T[0, 1])
    T1, Tk = np.array(T1), np.array(Tk)
    numbers = {"rho": list(rhos), "T_1": T1.tolist(), "T_k": Tk.tolist(), "p1": p1}
    detail = (f"K={corr.K}, N={corr.N}, p_1={p1:g}, eta={corr.ETA:g}, eps={EPS:g}: "
              + "; ".join(f"rho={r:g}: T_1={a:g}, T_k={b:g}" for r, a, b in zip(rhos, T1, Tk)))
    if np.any(np.isnan(T1) | np.isnan(Tk)):
        return Decision(np.nan, np.nan, "inconclusive", detail + " (a time beyond the horizon)", numbers=numbers)
    ratio = float(np.min(Tk / T1))
    verdict = "reproduced" if np.all(T1 < Tk) else "not reproduced"
    return Decision(ratio, np.nan, verdict, detail + f"; min T_k/T_1 = {ratio:.3g}", numbers=numbers)


def decide_scaling(quick: bool = False, out: str | None = None, negative: bool = False) -> Decision:
    """``L_k^*(rho) = (1 - rho) L_k^*(0)`` for equicorrelated unit features and ``Sigma = I``
    (``r^T G r = (1 - rho) |r|^2`` since ``r = Attn - e_k`` sums to 0), checked to ``SCALE_TOL``.

    ``negative``: an anisotropic task (``tau = (2, 0.5)``), where the identity has no reason to hold.
    """
    from dynamics.models.huang2024.model import Huang2024

    rho = 0.3
    extra = {"task_cov": [2.0, 0.5]} if negative else {}
    base = Huang2024.create("gd", K=corr.K, N=corr.N, p1=corr.P1, **extra).L_star
    ls = Huang2024.create("gd", K=corr.K, N=corr.N, p1=corr.P1, feature_corr=rho, **extra).L_star
    dev = float(np.max(np.abs(ls / ((1 - rho) * base) - 1)))
    verdict = "reproduced by construction" if dev <= SCALE_TOL else "not reproduced"
    detail = (f"K={corr.K}, N={corr.N}, p_1={corr.P1:g}, rho={rho:g}{', tau=(2, 0.5)' if negative else ''}: "
              f"max |L*_rho / ((1 - rho) L*_0) - 1| = {dev:.2e} (rule: <= {SCALE_TOL:g})")
    return Decision(dev, np.nan, verdict, detail, numbers={"L_star_rho": ls.tolist(), "L_star_0": base.tolist()})


CLAIMS_CORRELATED = (
    Claim(
        id="huang-corr-stagewise-order",
        model="huang2024",
        source="ours (issue 20), beyond Huang, Cheng, Liang ICML 2024 (stage-wise convergence theorem)",
        claim="With equicorrelated unit features the dominant feature still converges first: "
              "T_1(eps) < T_k(eps) at every correlation of the grid (a measurement, not the paper's claim).",
        quantity="first exact GD iteration T(eps) with L_k - L_k^* <= eps, dominant class (T_1) and the rest (T_k)",
        rule=f"T_1({EPS:g}) < T_k({EPS:g}) strictly at each rho in {{0, 0.3, 0.6}} (quick {{0, 0.3}}), "
             "K = 4, N = 20, p_1 = 1/2, eta = 1, horizon 10 000 steps (quick 2 000); a time beyond it: inconclusive",
        control="L_k^* of the same geometry (theory.optimum_general); rho = 0 is the paper's orthonormal setting",
        negative="equal probabilities p_1 = 1/K (no dominant feature): T_1 = T_k, the strict order must fail",
        decide="dynamics.models.huang2024.claims_correlated:decide_order",
    ),
    Claim(
        id="huang-corr-optimum-scaling",
        model="huang2024",
        source="ours (issue 20): algebra of the label covariance M = G",
        claim="For equicorrelated unit features and isotropic tasks the optimum is L_k^*(rho) = (1 - rho) L_k^*(0).",
        quantity="L_k^* per query class at rho = 0.3 against rho = 0 (exact engine, minimised to rounding)",
        rule=f"max over classes |L_k^*(rho) / ((1 - rho) L_k^*(0)) - 1| <= {SCALE_TOL:g}",
        control="both optima computed by the same minimiser from the exact engine",
        negative="an anisotropic task tau = (2, 0.5), where M = T^(1/2) G T^(1/2) breaks the identity",
        decide="dynamics.models.huang2024.claims_correlated:decide_scaling",
    ),
)
