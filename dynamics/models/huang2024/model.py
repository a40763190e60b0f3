"""Models the simulator can run.  Today: the one-layer softmax-attention model of Huang, Cheng
and Liang (ICML 2024) on reduced coordinates.  The multi-head model of Yang et al. and the
attention-plus-MLP classifier of H. Li et al. (MODEL.md section 6) are meant to join as further
classes with the same methods, so the driver, cross-check and sweeps never assume this one.

A model provides: ``initial_state()``, ``evaluate(state)``, ``gd_segment(...)`` (a numba loop of
exact gradient-descent steps), ``flow_rhs(state)`` for the gradient flow, ``optimum()`` and the
labels of its per-part losses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from dynamics.core import validate
from dynamics.core.jit import jit
from dynamics.models.huang2024.classes import ClassStructure
from dynamics.models.huang2024.engine import ReducedEvaluation, reduced_loss_grad
from dynamics.models.huang2024.quadrature import DEFAULT_H, column_expectations, reduced_kernel, tail_weights

OK, STOPPED, NONFINITE, RISING = 0, 1, 2, 3
"""Status codes of :func:`gd_loop`."""


@jit
def gd_loop(coords, p_col, m_col, N, sigma2, h, eta, start, stop, rec_steps, rec_pos,
            rec_coords, rec_L_f, rec_attn, L_star, eps, patience, L_prev, rising):
    """Exact population GD on reduced coordinates, ``theta <- theta - eta dL/dtheta`` (paper's GD on Q).

    Evaluates the state at steps ``start..stop`` and updates it after each step ``< stop``;
    records at the steps ``rec_steps[rec_pos:]``.  Stops early when every ``L_f - L_star <= eps``
    (``eps > 0``), on a non-finite value, or after ``patience`` rises of ``L`` in the run.
    Returns ``(status, step, rec_pos, L_prev, rising)``; ``coords`` holds the state at ``step``.
    """
    F, J = coords.shape
    grad = np.empty((F, J))
    L_f = np.empty(F)
    attn = np.empty((F, J))
    wt = tail_weights(h)
    t = start
    while True:
        reduced_kernel(coords, p_col, m_col, N, sigma2, h, wt, grad, L_f, attn)
        L = 0.0
        finite = True
        done = eps > 0.0
        for f in range(F):
            # sizes[f] * probs[f] * L_f: sizes[f] is m_col[f, 1 + f] + 1
            L += (m_col[f, 1 + f] + 1.0) * p_col[f, 0] * L_f[f]
            if not np.isfinite(L_f[f]):
                finite = False
            if L_f[f] - L_star[f] > eps:
                done = False
            for j in range(J):
                if not np.isfinite(grad[f, j]) or not np.isfinite(coords[f, j]):
                    finite = False
        if rec_pos < rec_steps.shape[0] and rec_steps[rec_pos] == t:
            rec_coords[rec_pos] = coords
            rec_L_f[rec_pos] = L_f
            rec_attn[rec_pos] = attn
            rec_pos += 1
        if not finite:
            return NONFINITE, t, rec_pos, L_prev, rising
        if L > L_prev + 1e-13 * max(1.0, abs(L_prev)):
            rising += 1  # exact GD with a small enough step never raises L: count every rise
        L_prev = L
        if rising >= patience:
            return RISING, t, rec_pos, L_prev, rising
        if done:
            return STOPPED, t, rec_pos, L_prev, rising
        if t >= stop:
            return OK, t, rec_pos, L_prev, rising
        for f in range(F):
            for j in range(J):
                if m_col[f, j] > 0:
                    coords[f, j] -= eta * grad[f, j]
        t += 1


@dataclass
class SoftmaxICL:
    """One-layer softmax attention learning linear functions in context (Huang, Cheng, Liang 2024).

    State: the reduced coordinates ``coords[f, 0] = A_k``, ``coords[f, 1 + g] = B_{k,n}`` of
    :mod:`dynamics.classes`; loss parts: ``L_k`` of a query of each feature class.

    Parameters
    ----------
    structure : ClassStructure
        Feature classes (balanced, imbalanced, general).
    N : int
        Prompt length.  ``sigma2``: label-noise variance; ``h``: quadrature step.
    """

    structure: ClassStructure
    N: int
    sigma2: float = 0.0
    h: float = DEFAULT_H
    name: str = field(default="softmax_icl", init=False)

    def __post_init__(self):
        self.N = int(validate.prompt_length(self.N))
        self.sigma2 = validate.nonnegative(self.sigma2, "sigma2")
        self.h = validate.positive(self.h, "h")
        self._p_col, self._m_col = self.structure.column_tables()

    @property
    def part_labels(self):
        """Names of the loss parts (query classes)."""
        return tuple(self.structure.names)

    @property
    def part_weights(self):
        """``L = sum_f weight_f L_f`` with ``weight_f = sizes[f] * probs[f]``."""
        return self.structure.sizes * self.structure.probs

    def initial_state(self, A0: float = 0.0, B0: float = 0.0) -> np.ndarray:
        """``Q^(0)``: every ``A_k = A0`` and ``B_{k,n} = B0`` (the paper: ``Q^(0) = 0``)."""
        c = np.full((self.structure.F, self.structure.F + 1), float(B0))
        c[:, 0] = float(A0)
        return c

    def check_state(self, state, name="init") -> np.ndarray:
        return self.structure.check_coords(state, name)

    def evaluate(self, state) -> ReducedEvaluation:
        """Exact ``L``, ``dL/dtheta``, ``L_k`` and ``E[Attn]`` at ``state`` (MODEL.md sections 2-3)."""
        return reduced_loss_grad(state, self.structure, self.N, self.sigma2, h=self.h)

    def movable(self) -> np.ndarray:
        """Mask of the coordinates that exist (non-empty column classes)."""
        return self._m_col > 0

    def gd_segment(self, state, eta, start, stop, rec_steps, rec_pos, records, L_star, eps, patience, L_prev, rising):
        """Run :func:`gd_loop` in place on ``state`` and the record arrays."""
        return gd_loop(state, self._p_col, self._m_col, float(self.N), self.sigma2, self.h, float(eta),
                       int(start), int(stop), rec_steps, int(rec_pos), records["coords"], records["L_f"],
                       records["attn"], L_star, float(eps), int(patience), float(L_prev), int(rising))

    def record_shapes(self):
        F = self.structure.F
        return {"coords": (F, F + 1), "L_f": (F,), "attn": (F, F + 1)}

    def flow_rhs(self, state) -> np.ndarray:
        """``d theta / d tau = -dL/dtheta`` (gradient flow), zero on empty classes."""
        return -self.evaluate(state).grad

    # ---- Monte Carlo counterpart (MODEL.md section 5), for the cross-check -------------------
    def monte_carlo(self, replicas, eta, steps, record_at, *, d=None, random_state=0, **kwargs):
        """``replicas`` Monte Carlo trainings of the full ``d x d`` matrix ``Q`` of this model.

        Returns ``(coords, L_f, off_span)``: the replicas' reduced coordinates (class averages of
        ``theta = V^T Q V``, shape ``(R, T, F, F + 1)``), their per-class ``L_k`` estimates
        ``(R, T, F)`` and the norm of ``Q`` outside ``span{v_n v_k^T}`` ``(R, T)``.  Averaging
        over the members of a class is unbiased for the class coordinate by symmetry.
        """
        from dynamics.models.huang2024.montecarlo import run_replicas

        K = self.structure.K
        if K > 2000:
            raise ValueError(f"Monte Carlo of the full model needs a modest K (<= 2000), got K = {K}")
        mc = run_replicas(replicas, K, K if d is None else d, self.structure.p, self.N, eta, steps,
                          sigma2=self.sigma2, record_at=record_at, random_state=random_state, **kwargs)
        coords = np.stack([np.stack([self.reduce_full(th) for th in rep]) for rep in mc.theta])
        own = self.structure.owner()
        if mc.L_k is None:  # n_eval = 0: no evaluation set
            L_f = np.full(coords.shape[:2] + (self.structure.F,), np.nan)
        else:
            L_f = np.stack([mc.L_k[..., own == f].mean(axis=-1) for f in range(self.structure.F)], axis=-1)
        return coords, L_f, mc.off_span

    def reduce_full(self, theta) -> np.ndarray:
        """Class averages of a full ``K x K`` ``theta``: ``[A_k, B_{k,n} per class]`` per query class."""
        own = self.structure.owner()
        F = self.structure.F
        out = np.zeros((F, F + 1))
        diag = np.diagonal(theta)
        for f in range(F):
            qk = own == f
            out[f, 0] = diag[qk].mean()
            for g in range(F):
                block = theta[np.ix_(own == g, qk)]  # rows n in class g, columns k in class f
                if f == g:
                    m = block.shape[0]
                    if m > 1:
                        out[f, 1 + g] = (block.sum() - np.trace(block)) / (m * (m - 1))
                else:
                    out[f, 1 + g] = block.mean()
        return out

    def optimum(self) -> np.ndarray:
        """``L_k^*``: the infimum of ``L_k`` over its column ``theta[:, k]`` (noise-free case).

        Without label noise, prompts containing ``v_k`` reach zero error as ``A_k -> inf`` and
        prompts without it do not depend on ``A_k``, so
        ``L_k^* = 1/2 (1 - p_k)^N min_B E[1 + sum_n Attn_n^2 | c_k = 0]``: the paper's
        ``Theta(exp(-poly K))`` optimum (MODEL.md section 4).  The minimum over the off-target
        weights ``B`` is taken numerically with the exact engine on the features other than k.
        With label noise the infimum is not of this form: NaN is returned.
        """
        if self.sigma2 > 0:
            return np.full(self.structure.F, np.nan)
        out = np.empty(self.structure.F)
        for f in range(self.structure.F):
            p_col, m_col = self._p_col[f].copy(), self._m_col[f].copy()
            pk = p_col[0]
            absent = np.exp(self.N * np.log1p(-pk)) if pk < 1 else 0.0
            if absent == 0.0:
                out[f] = 0.0
                continue
            # Condition on c_k = 0: the own feature gets probability 0, the rest renormalise.
            p_col[0] = 0.0
            p_col[1:] = p_col[1:] / (1.0 - pk)
            free = np.flatnonzero(m_col[1:] > 0) + 1
            grad, attn = np.empty_like(p_col), np.empty_like(p_col)
            wt = tail_weights(self.h)

            def ell(b):
                th = np.zeros_like(p_col)
                th[free[1:]] = b
                return column_expectations(th, p_col, m_col, 0, float(self.N), 0.0, self.h, wt, grad, attn)

            def jac(b):
                ell(b)
                return grad[free[1:]] * m_col[free[1:]]

            if free.size <= 1:
                best = ell(np.zeros(0))
            else:
                res = minimize(ell, np.zeros(free.size - 1), jac=jac, method="L-BFGS-B")
                best = min(res.fun, ell(np.zeros(free.size - 1)))
            out[f] = 0.5 * absent * best
        return out
