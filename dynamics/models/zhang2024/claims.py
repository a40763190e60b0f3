"""Theorem 4.1 of Zhang, Frei, Bartlett on the claims ledger (:mod:`dynamics.core.claims`).

Both rows measure one exact gradient flow from the paper's initialisation (method ``flow``, the
theorem's dynamics), recorded at equally spaced times; every number of the rules below is fixed
here, before the run.  Our choices: the sizes, the horizon (:data:`STEPS` flow time in GD steps of
the default ``eta``) and the fitting window (:data:`WINDOW`).
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from dynamics.core.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Claim, Decision, geometric_or_power
from dynamics.core.report import plt, save_figure
from dynamics.methods.run import run
from dynamics.models.zhang2024.model import Zhang2024
from dynamics.models.zhang2024.population import Problem

SIZES = {True: dict(d=3, N=8, kappa=4.0, rotate=True), False: dict(d=8, N=16, kappa=10.0, rotate=True)}
"""Quick and full settings (``Lambda`` rotated and ill-conditioned, so that ``Gamma`` is not a multiple
of ``Lambda`` and the finite-``N`` correction is visible)."""
STEPS = {True: 5_000, False: 200_000}
WINDOW = (1e-10, 1e-2)
"""The gap's fitting window, relative to ``L(0) - L*``: above the saddle's plateau, below rounding."""
MARGIN = 10.0
"""RSS ratio the geometric law needs to win (:func:`dynamics.core.claims.geometric_or_power`)."""
TOL, FAR = 1e-4, 1e-2
"""Relative distance of the final state to a limit: within ``TOL`` it is the limit, beyond ``FAR`` it is not."""
CONVERGED = 1e-12
"""Gap at the horizon, relative to ``L(0) - L*``, below which the flow counts as converged."""
CLOCK = 20
"""Negative control: ``t0 = s_w / CLOCK`` in the decaying step ``eta t0 / (t0 + t)``, with ``s_w`` the
first time in the window (so that the window lies where that clock is logarithmic)."""


@lru_cache(maxsize=2)
def _flow(quick: bool):
    """The exact gradient flow's :class:`~dynamics.core.trajectory.Result` at 401 equally spaced times."""
    save_at = np.linspace(0, STEPS[quick], 401).astype(np.int64)
    return run(Zhang2024.create("flow", **SIZES[quick]), "flow", steps=STEPS[quick], save_at=save_at)


def limit_rule(err: float, gap_rel: float) -> str:
    """The final state against a closed-form limit: ``reproduced`` if the flow has converged (gap
    below :data:`CONVERGED`) and lies within :data:`TOL` of it; ``not reproduced`` if converged and
    beyond :data:`FAR`; ``inconclusive`` otherwise."""
    if not (np.isfinite(err) and gap_rel <= CONVERGED):
        return INCONCLUSIVE
    return REPRODUCED if err <= TOL else NOT_REPRODUCED if err >= FAR else INCONCLUSIVE


def decide_rate(quick: bool, out: str | None = None, negative: bool = False) -> Decision:
    """Geometric against power-law decay of ``L - L*`` in the window (negative: on the clock of a
    step decaying like ``1/t``, i.e. ``t = t0 (exp(s / t0) - 1)`` for the flow's time ``s``)."""
    res = _flow(quick)
    s, gap = res.t, res.ds["gap"].values
    rel = gap / gap[0]
    keep = (rel >= WINDOW[0]) & (rel <= WINDOW[1]) & (s > 0)
    t0 = s[keep][0] / CLOCK if keep.any() else 1.0
    t, gap = (t0 * np.expm1(s[keep] / t0) if negative else s[keep]), gap[keep]
    verdict, ratio, geo, pw = geometric_or_power(t, gap, "geometric", MARGIN)
    detail = (f"{int(keep.sum())} points with (L - L*)/(L(0) - L*) in [{WINDOW[0]:g}, {WINDOW[1]:g}]: RSS(power)/"
              f"RSS(geometric) = {ratio:.3g} (margin {MARGIN:g}); geometric rate per step {-geo.slope:.4g}"
              + (" on the 1/t-step clock" if negative else ""))
    figure = None
    if out:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.semilogy(t, gap, ".", ms=3, color="0.4", label="L - L* (window)")
        ax.semilogy(t, np.exp(geo.intercept + geo.slope * t), "-", label="geometric fit")
        ax.set_xlabel("t (GD steps)" if not negative else "t (1/t-step clock)")
        ax.legend()
        figure = save_figure(fig, os.path.join(out, "zhang-rate" + ("-negative" if negative else "") + ".png"))
    return Decision(ratio, float("nan"), verdict, detail, figure,
                    {"ratio": ratio, "rate": -geo.slope, "points": int(keep.sum())})


def decide_limit(quick: bool, out: str | None = None, negative: bool = False) -> Decision:
    """The flow's final ``(U, u)`` against Theorem 4.1's limit (negative: against the same formula
    with ``Gamma`` replaced by its infinite-prompt limit ``Lambda``)."""
    res = _flow(quick)
    pr = res.model.problem
    target = Problem(pr.Lam, 10 ** 12) if negative else pr  # N -> infinity: Gamma -> Lambda
    U_lim, u_lim = target.limit(0.0)
    U, u = res.state["U"], float(res.state["u"])
    err = max(float(np.linalg.norm(U - U_lim) / np.linalg.norm(U_lim)), abs(u - u_lim) / u_lim)
    gap = res.ds["gap"].values
    gap_rel = float(gap[-1] / gap[0])
    verdict = limit_rule(err, gap_rel)
    detail = (f"max relative distance of (U, u) at t = {int(res.t[-1])} to the "
              f"{'infinite-N ' if negative else ''}limit: {err:.3g} (within {TOL:g}: the limit, beyond {FAR:g}: "
              f"not); (L - L*)/(L(0) - L*) = {gap_rel:.3g} (converged below {CONVERGED:g})")
    return Decision(err, float("nan"), verdict, detail, None, {"err": err, "gap_rel": gap_rel})


_SOURCE = "Zhang, Frei, Bartlett, JMLR 2024, Theorem 4.1"
CLAIMS = (
    Claim(id="zhang-rate", model="zhang2024", source=_SOURCE + " (its proof: a PL inequality along the flow, Section 5.3)",
          claim="Gradient flow from the paper's initialisation reaches the global minimum of the population loss, "
                "at a linear (geometric) rate once it has left the saddle at 0.",
          quantity="L(t) - L* of the exact flow (closed form, no sampling) at 401 equally spaced times",
          rule=f"geometric_or_power on the points with (L - L*)/(L(0) - L*) in [{WINDOW[0]:g}, {WINDOW[1]:g}], "
               f"expect geometric, margin {MARGIN:g}",
          control="window above the saddle's plateau and below rounding (the gap is computed without "
                  "cancellation); Lambda rotated and ill-conditioned",
          negative="the same flow on the clock of a step decaying like 1/t (its gap falls as a power of t)",
          decide="dynamics.models.zhang2024.claims:decide_rate"),
    Claim(id="zhang-limit", model="zhang2024", source=_SOURCE,
          claim="The flow converges to W^{KQ}_{11} = |Gamma^{-1}|_F^{-1/2} Gamma^{-1}, w^{PV}_{22} = "
                "|Gamma^{-1}|_F^{1/2} with Gamma = (1 + 1/N) Lambda + tr(Lambda)/N I_d: the trained prediction is "
                "x_q^T Gamma^{-1} (1/N) sum_i y_i x_i.",
          quantity="max relative distance of the flow's final (U, u) to that point",
          rule=f"converged (gap below {CONVERGED:g} of its initial value) and distance <= {TOL:g}: reproduced; "
               f">= {FAR:g}: not reproduced; otherwise inconclusive",
          control="the global minima form a valley (u U^T = Gamma^{-1}); only the conserved u^2 - |U|_F^2 = 0 picks "
                  "this point, so the rule tests the dynamics, not the loss",
          negative="the same point with Gamma replaced by its N -> infinity limit Lambda",
          decide="dynamics.models.zhang2024.claims:decide_limit"),
)
