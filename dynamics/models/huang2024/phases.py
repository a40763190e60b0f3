"""Operational phase detection on an exact trajectory (Huang, Cheng, Liang, ICML 2024).

What the paper says (our documents: abstract and slides in ``papers/``):

- *Balanced features*: "finite-time convergence guarantee with near-zero prediction error by
  navigating our analysis over **two phases** of the training dynamics of the attention map".
- *Imbalanced features*: "the transformer first converges to a near-zero prediction error for
  the query tokens of dominant features, and then converges later ... for under-represented
  features, respectively via **one and four** training phases"; "the competing strengths of
  two types of attention weights [``A_k`` on the target feature, ``B_{k,n}`` on off-target
  features], the change of which determines different training phases" (slides: "Four-phase
  learning dynamics of under-represented features").

The exact phase boundaries of the paper's proofs are *not* in our documents.  This module
therefore defines each boundary **operationally**, from quantities the simulator computes
exactly, and returns the first snapshot at which each boundary condition holds.  With the
imbalanced preset, feature ``1`` (class ``dominant``) has ``p_1 = Theta(1)``; ``k`` is a query
feature and ``n`` a third, under-represented feature (``n != 1, k``):

Under-represented query ``k`` (four phases)
    I.   ``[0, tau_1)``: the dominant feature's weight ``B_{k,1}`` is pushed down; the attention
         it releases goes to the target *and* to the other rare features, so ``B_{k,n}`` grows.
         ``tau_1``: the update of ``B_{k,n}`` changes sign, ``-dL/dB_{k,n} <= 0`` (exact
         population gradient at the snapshot; ``B_{k,n}`` is at its maximum).
    II.  ``[tau_1, tau_2)``: ``A_k`` grows, ``B_{k,n}`` now falls, but the dominant feature
         still receives more attention than the target.  ``tau_2``: the target overtakes the
         dominant feature, ``E[Attn_k] >= E[Attn_{k,1}]`` (attention on one dominant key
         feature; MODEL.md section 2's ``Attn_n`` with ``n = 1``).
    III. ``[tau_2, tau_3)``: ``A_k`` wins the competition; ``tau_3``: the target holds a constant
         fraction of the attention, ``E[Attn_k] >= attn_fraction`` (default 1/2).  Since the
         attentions sum to 1, ``E[Attn_k] >= 1/2`` implies ``E[Attn_k] >= E[Attn_{k,1}]``:
         ``tau_2 <= tau_3`` always holds for ``attn_fraction >= 1/2``.
    IV.  ``[tau_3, tau_4)``: convergence; ``tau_4``: ``L_k - L_k^* <= eps`` (the paper's ``T_k``).

Dominant query ``k = 1`` (one phase): ``tau_1`` = first ``L_1 - L_1^* <= eps`` (``T_1``).

Balanced features (two phases)
    I.   ``[0, tau_1)``: the attention is spread by frequency (``E[Attn_k] ~ 1/K`` at ``Q = 0``)
         and ``A_k`` grows slowly against the uniform ``B_{k,n}``; ``tau_1``: ``E[Attn_k] >=
         attn_fraction``.
    II.  ``[tau_1, tau_2)``: convergence; ``tau_2``: ``L_k - L_k^* <= eps``.

Times are exact: the snapshots bracket a boundary (:attr:`Phases.brackets` gives ``(last
snapshot before, first snapshot at or after)``), then GD is replayed step by step from the
recorded state (the first step where the condition holds) or, for the flow, the time is found by
bisection on re-integrations (to 1e-9 relative).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from dynamics.core.contract import SweepOutput

__all__ = ["Phases", "detect_phases", "all_phases", "phase_setting", "MAX_BOUNDARIES"]

MAX_BOUNDARIES = 4
"""The largest number of phase boundaries of any query class (the under-represented one)."""


@dataclass(frozen=True)
class Phases:
    """The phases of one query class on one trajectory.

    Attributes
    ----------
    query_class : str
        Class label of the query feature (``feature``, ``dominant`` or ``rest``).
    setting : str
        ``balanced`` (two phases), ``dominant`` (one) or ``under-represented`` (four).
    names : tuple of str
        Phase names (``I``, ``II``, ...), one per boundary: phase ``i`` ends at ``times[i]``.
    boundaries : tuple of str
        The operational condition that ends each phase (human-readable).
    times : float array (n,)
        First snapshot time at which each condition holds (NaN: not reached in the run).
    brackets : float array (n, 2)
        ``(previous snapshot, detection snapshot)``: the boundary lies in this interval.
    """

    query_class: str
    setting: str
    names: tuple
    boundaries: tuple
    times: np.ndarray
    brackets: np.ndarray

    def ordered(self) -> bool:
        """True when every boundary is reached and the times do not decrease."""
        return bool(np.all(np.isfinite(self.times)) and np.all(np.diff(self.times) >= 0))

    def bands(self):
        """``[(start, end, name), ...]``: the phase intervals for shading (NaN ends dropped)."""
        out, start = [], 0.0
        for name, end in zip(self.names, self.times):
            if not np.isfinite(end):
                break
            out.append((start, float(end), name))
            start = float(end)
        return out


def phase_setting(structure, f: int) -> str:
    """Which of the paper's settings the query class ``f`` of ``structure`` is in.

    ``balanced`` when there is one class, ``dominant`` / ``under-represented`` for the
    imbalanced preset (two classes, class 0 a single feature more frequent than the rest).
    Other structures have no phase description in the paper: ValueError.
    """
    F = structure.F
    if not (0 <= int(f) < F):
        raise ValueError(f"query_class must be in [0, F) = [0, {F}), got {f!r}")
    if F == 1:
        return "balanced"
    if F == 2 and structure.sizes[0] == 1 and structure.probs[0] > structure.probs[1]:
        return "dominant" if int(f) == 0 else "under-represented"
    raise ValueError("phases are defined for the paper's balanced preset (one feature class) and imbalanced "
                     "preset (a single dominant feature and the rest); got a structure with "
                     f"F = {F} classes of sizes {structure.sizes.tolist()}")


def _conditions(model, f, setting, eps, attn_fraction):
    """The boundary conditions of query class ``f`` as functions of ``(observation, gradient)``."""
    L_star = model.L_star[f]
    converged = (lambda o, g: o["L_k"][f] - L_star <= eps)
    conv_text = f"L_k - L_k^* <= {eps:g}"
    if setting == "dominant":
        return [converged], [conv_text]
    if setting == "balanced":
        return [lambda o, g: o["attn_own"][f] >= attn_fraction, converged], \
            [f"E[Attn_k] >= {attn_fraction:g}", conv_text]
    # Under-represented: the update of B_{k,n} (n a third rare feature) from the exact gradient.
    return [lambda o, g: -g[f, 2] <= 0, lambda o, g: o["attn_own"][f] >= o["attn"][f, 0],
            lambda o, g: o["attn_own"][f] >= attn_fraction, converged], \
        ["update of B_{k,n} <= 0 (B_{k,n} at its maximum)", "E[Attn_k] >= E[Attn_{k,1}]",
         f"E[Attn_k] >= {attn_fraction:g}", conv_text]


def _holds(model, coords, cond):
    state = {"coords": coords}
    return bool(cond(model.observe(state, "gd"), model.loss_grad(state).grads["coords"]))


def _refine(res, i, cond):
    """The exact boundary inside the snapshot bracket ``(t[i-1], t[i]]``.

    GD is deterministic, so replaying it step by step from the state recorded at ``t[i-1]`` finds
    the first *step* where the condition holds; for the flow, bisection on re-integrations from
    that state locates the time to 1e-9 relative.
    """
    model = res.model
    start = res.state_at(i - 1)
    a, b = float(res.t[i - 1]), float(res.t[i])
    if res.method == "gd":
        eta = model.config["eta"]
        c = start.copy()
        for step in range(int(a) + 1, int(b) + 1):
            c = c - eta * model.loss_grad({"coords": c}).grads["coords"]
            if _holds(model, c, cond):
                return float(step)
        return b
    from scipy.integrate import solve_ivp

    mask = model.movable("flow")["coords"]
    rtol, atol, eta = model.config["flow_rtol"], model.config["flow_atol"], model.config["eta"]

    def at(t):
        if t == a:
            return start
        c = start.copy()

        def rhs(_t, y):
            c[mask] = y
            return -eta * model.loss_grad({"coords": c}).grads["coords"][mask]

        sol = solve_ivp(rhs, (a, t), start[mask], method="LSODA", rtol=rtol, atol=atol)
        out = start.copy()
        out[mask] = sol.y[:, -1]
        return out

    lo, hi = a, b
    while hi - lo > 1e-9 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        if _holds(model, at(mid), cond):
            hi = mid
        else:
            lo = mid
    return hi


def detect_phases(res, query_class: int = None, *, eps: float = 1e-3, attn_fraction: float = 0.5) -> Phases:
    """Transition times of the paper's training phases for one query class (module docstring).

    Parameters
    ----------
    res : HuangResult
        An exact trajectory (``gd`` or ``flow``) of the balanced or imbalanced preset.
    query_class : int, optional
        Class of the query feature; default the last class (the under-represented one for the
        imbalanced preset, the only one for the balanced preset).
    eps : float
        Convergence threshold of the last boundary, ``L_k - L_k^* <= eps`` (the paper's
        ``T_1``, ``T_k`` theorem).  ``attn_fraction`` in ``(0, 1)``: the constant fraction of
        attention on the target that ends phase III (balanced: phase I).

    The snapshots bracket each boundary; :func:`_refine` then locates it exactly (GD: the first
    step; flow: the time, to 1e-9 relative).
    """
    eps = float(eps)
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    attn_fraction = float(attn_fraction)
    if not (0.0 < attn_fraction < 1.0):
        raise ValueError(f"attn_fraction must lie in (0, 1), got {attn_fraction!r}")
    if res.method not in ("gd", "flow"):
        raise ValueError(f"phases need an exact trajectory (method gd or flow), got method {res.method}")
    s = res.structure
    f = s.F - 1 if query_class is None else int(query_class)
    setting = phase_setting(s, f)
    if np.isnan(res.L_star[f]):
        raise ValueError("phases need L_k^* (noise-free model, sigma2 = 0) for the convergence boundary")
    if setting == "under-represented" and not res.model.movable("gd")["coords"][f, 2]:
        raise ValueError("the four phases need a third feature n != 1, k: K >= 3 in the imbalanced preset")
    conds, texts = _conditions(res.model, f, setting, eps, attn_fraction)
    t = np.asarray(res.t, dtype=np.float64)
    model = res.model
    evals = [(model.observe({"coords": res.state_at(i)}, "gd"),
              model.loss_grad({"coords": res.state_at(i)}).grads["coords"]) for i in range(t.size)]
    times, brackets = [], []
    for j, cond in enumerate(conds):
        hit = [i for i in range(t.size) if (j != 0 or setting != "under-represented" or t[i] > 0)
               and cond(*evals[i])]
        if not hit:
            times.append(np.nan)
            brackets.append((np.nan, np.nan))
            continue
        i = hit[0]
        times.append(float(t[i]) if i == 0 else _refine(res, i, cond))
        brackets.append((float(t[i - 1]) if i > 0 else float(t[i]), float(t[i])))
    names = ("I", "II", "III", "IV")[: len(conds)]
    return Phases(query_class=s.names[f], setting=setting, names=names, boundaries=tuple(texts),
                  times=np.array(times), brackets=np.array(brackets).reshape(-1, 2))


def all_phases(res, *, eps: float = 1e-3, attn_fraction: float = 0.5):
    """:func:`detect_phases` for every query class of ``res`` (list, class order)."""
    return [detect_phases(res, f, eps=eps, attn_fraction=attn_fraction) for f in range(res.structure.F)]


def phase_times(res, eps):
    """The phase boundaries of every query class at level ``eps`` (a sweep output).

    Returns
    -------
    xarray.DataArray, dims (query_class, boundary)
        Boundary times ``tau_1, tau_2, ...`` (exact GD steps, or flow time in GD steps), NaN-padded
        to ``MAX_BOUNDARIES``.
    """
    v = np.full((res.structure.F, MAX_BOUNDARIES), np.nan)
    for f, ph in enumerate(all_phases(res, eps=eps)):
        v[f, : ph.times.size] = ph.times
    return xr.DataArray(v, dims=("query_class", "boundary"),
                        coords={"query_class": np.array(res.structure.names),
                                "boundary": np.array([f"tau{i + 1}" for i in range(MAX_BOUNDARIES)])})


SWEEP_OUTPUTS = {"phase_times": SweepOutput("eps", phase_times, "exact phase boundaries (dynamics.models."
                                                                 "huang2024.phases) for this eps")}
