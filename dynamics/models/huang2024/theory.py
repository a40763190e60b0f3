"""What the theory of Huang, Cheng, Liang (ICML 2024) says, as numbers: the optimum ``L_k^*`` of
each query class and the shapes of the convergence-time bounds (MODEL.md section 4).

``L_k^*`` is the infimum of ``L_k`` over the column ``theta[:, k]`` (``A_k`` and the ``B_{k,n}``);
``L_k - L_k^*`` is the gap the paper's theorems bound, and the ``eps`` stopping rule and every
convergence time compare with it, so it is solved to rounding: a quasi-Newton search with tight
tolerances, then Newton steps on the exact gradient (Hessian by central differences) until the
gradient stops shrinking.
"""
from __future__ import annotations

import numpy as np

from dynamics.models.huang2024.quadrature import column_expectations, tail_weights

NEWTON_MAX_DIM = 64
"""Newton polish up to this many free coordinates (beyond, the quasi-Newton result stands)."""


def _polish(fg, x, steps=8):
    """Newton steps on ``fg(x) -> (f, g)`` while the gradient norm shrinks."""
    n = x.size
    if n == 0 or n > NEWTON_MAX_DIM:
        return x
    f, g = fg(x)
    for _ in range(steps):
        H = np.empty((n, n))
        for i in range(n):
            d = 1e-5 * max(1.0, abs(x[i]))
            xp, xm = x.copy(), x.copy()
            xp[i] += d
            xm[i] -= d
            H[:, i] = (fg(xp)[1] - fg(xm)[1]) / (2 * d)
        H = 0.5 * (H + H.T)
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            return x
        x_new = x - step
        f_new, g_new = fg(x_new)
        if not (np.isfinite(f_new) and f_new <= f and np.linalg.norm(g_new) < np.linalg.norm(g)):
            return x
        x, f, g = x_new, f_new, g_new
    return x


def _minimum(fg, n, x0=None):
    """``min_x f(x)`` over ``n`` free coordinates, to rounding (module docstring)."""
    x0 = np.zeros(n) if x0 is None else np.asarray(x0, dtype=np.float64)
    if n == 0:
        return fg(x0)[0]
    from scipy.optimize import minimize  # lazy: scipy.optimize costs 0.7 s to import (issue 21)

    res = minimize(fg, x0, jac=True, method="L-BFGS-B",
                   options={"ftol": 0.0, "gtol": 1e-15, "maxiter": 20_000, "maxcor": 30})
    x = _polish(fg, res.x)
    return min(fg(x)[0], res.fun, fg(x0)[0])


def _column(structure, f):
    p_tab, m_tab = structure.column_tables()
    return p_tab[f].copy(), m_tab[f].copy()


def optimum(structure, N: int, sigma2: float, h: float) -> np.ndarray:
    """``L_k^*``: the infimum of ``L_k`` over its column ``theta[:, k]``, per query class.

    Without label noise, prompts containing ``v_k`` reach zero error as ``A_k -> inf`` and prompts
    without it do not depend on ``A_k``, so
    ``L_k^* = 1/2 (1 - p_k)^N min_B E[1 + sum_n Attn_n^2 | c_k = 0]``: the paper's
    ``Theta(exp(-poly K))`` optimum (MODEL.md section 4); the minimum over the off-target weights
    ``B`` uses the exact engine on the features other than ``k``.  With label noise
    (``sigma2 > 0``) more attention on ``v_k`` also averages fewer noisy labels, the infimum is
    attained at a finite column, and it is found by minimising the exact ``L_k`` over ``A_k`` and
    the ``B_{k,n}`` (one class held at 0: the softmax is shift invariant); for large ``N`` it
    approaches ``sigma^2 / (2 N p_k)``.
    """
    wt = tail_weights(h)
    out = np.empty(structure.F)
    for f in range(structure.F):
        p_col, m_col = _column(structure, f)
        grad, attn = np.empty_like(p_col), np.empty_like(p_col)
        if sigma2 > 0:
            free = np.flatnonzero(m_col > 0)
            move = free[free != free[-1]]  # the last occupied class is the reference (shift invariance)

            def fg(x, p_col=p_col, m_col=m_col, move=move, grad=grad, attn=attn):
                th = np.zeros_like(p_col)
                th[move] = x
                ell = column_expectations(th, p_col, m_col, 0, float(N), sigma2, h, wt, grad, attn)
                return 0.5 * ell, 0.5 * grad[move] * m_col[move]

            out[f] = _minimum(fg, move.size)
            continue
        pk = p_col[0]
        absent = np.exp(N * np.log1p(-pk)) if pk < 1 else 0.0
        if absent == 0.0:
            out[f] = 0.0
            continue
        # Condition on c_k = 0: the own feature gets probability 0, the rest renormalise.
        p_col[0] = 0.0
        p_col[1:] = p_col[1:] / (1.0 - pk)
        free = np.flatnonzero(m_col[1:] > 0) + 1
        move = free[1:]

        def fg(x, p_col=p_col, m_col=m_col, move=move, grad=grad, attn=attn):
            th = np.zeros_like(p_col)
            th[move] = x
            ell = column_expectations(th, p_col, m_col, 0, float(N), 0.0, h, wt, grad, attn)
            return ell, grad[move] * m_col[move]

        out[f] = 0.5 * absent * _minimum(fg, move.size)
    return out


def theorem_T1(eps, eta=1.0):
    """The shape of the paper's bound ``T_1 = O(log(eps^-1/2) / (eta eps))`` (constant 1)."""
    eps = np.asarray(eps, dtype=np.float64)
    return np.log(eps ** -0.5) / (eta * eps)


def theorem_Tk(K, eps, eta=1.0):
    """The shape of the paper's bound ``T_k = O(K^2 log K / eta + K log(K eps^-1/2) / (eps eta))``."""
    K, eps = np.asarray(K, dtype=np.float64), np.asarray(eps, dtype=np.float64)
    return K ** 2 * np.log(K) / eta + K * np.log(K * eps ** -0.5) / (eps * eta)


def optimum_general(structure, N: int, M, sigma2: float, h: float) -> np.ndarray:
    """``L_k^*`` for the label covariance ``M`` (correlated features, anisotropic tasks; issue 20), per query class.

    The infimum of ``L_k`` over the column ``theta[:, k]``, for one member ``k`` of each class.
    Without label noise ``ell_k = (Attn - e_k)^T M (Attn - e_k) >= 0`` vanishes on every prompt
    that contains ``v_k`` as ``A_k -> inf``, and the prompts without ``v_k`` do not depend on
    ``A_k``, so, as for orthonormal features, ``L_k^* = 1/2 (1 - p_k)^N min_B E[ell_k | c_k = 0]``,
    approached only as ``A_k -> inf``.  What changes is the minimiser over the off-target weights
    ``B``: with ``M = I`` it spreads the attention evenly over the features present, with general
    ``M`` it weights the features whose labels predict ``<w, v_k>`` best (the minimum is the
    error of the best attention-weighted predictor of ``<w, v_k>`` from the other labels, which
    tends to 0 as features become collinear with ``v_k``).  The minimum over ``B`` (one weight held
    at 0: shift invariance) uses the exact general-``M`` engine with ``p_k = 0``; quasi-Newton then
    Newton polish as :func:`optimum`.  With label noise the infimum is attained at a finite column
    and is found by minimising the whole column.
    """
    from dynamics.models.huang2024.general_m import column_loss_grad

    M = np.asarray(M, dtype=np.float64)
    p = structure.p
    own = structure.owner()
    out = np.empty(structure.F)
    for f in range(structure.F):
        k = int(np.flatnonzero(own == f)[0])
        pk = p[k]
        if sigma2 > 0:
            pc = p.copy()
            ref = k + 1 if k + 1 < p.size else k - 1
            move = np.array([n for n in range(p.size) if n != ref])
            scale = 1.0
        else:
            scale = np.exp(N * np.log1p(-pk)) if pk < 1 else 0.0
            if scale == 0.0:
                out[f] = 0.0
                continue
            pc = p.copy()
            pc[k] = 0.0
            others = [n for n in range(p.size) if n != k]
            move = np.array(others[1:], dtype=np.int64)
        if move.size and np.all(pc[move] == 0):
            move = move[:0]

        def fg(x, pc=pc, k=k, move=move):
            th = np.zeros(p.size)
            th[move] = x
            L, g = column_loss_grad(th, pc, M, k, N, sigma2, h)
            return L, g[move]

        out[f] = scale * _minimum(fg, move.size)
    return out
