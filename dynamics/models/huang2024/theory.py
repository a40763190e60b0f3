"""What the theory of Huang, Cheng, Liang (ICML 2024) says, as numbers: the optimum ``L_k^*`` of
each query class and the shapes of the convergence-time bounds (MODEL.md section 4)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from dynamics.models.huang2024.quadrature import column_expectations, tail_weights


def optimum(structure, N: int, sigma2: float, h: float) -> np.ndarray:
    """``L_k^*``: the infimum of ``L_k`` over its column ``theta[:, k]``, per query class (noise-free).

    Without label noise, prompts containing ``v_k`` reach zero error as ``A_k -> inf`` and prompts
    without it do not depend on ``A_k``, so
    ``L_k^* = 1/2 (1 - p_k)^N min_B E[1 + sum_n Attn_n^2 | c_k = 0]``: the paper's
    ``Theta(exp(-poly K))`` optimum (MODEL.md section 4).  The minimum over the off-target
    weights ``B`` is taken numerically with the exact engine on the features other than k.
    With label noise the infimum is not of this form: NaN is returned.
    """
    if sigma2 > 0:
        return np.full(structure.F, np.nan)
    p_tab, m_tab = structure.column_tables()
    out = np.empty(structure.F)
    for f in range(structure.F):
        p_col, m_col = p_tab[f].copy(), m_tab[f].copy()
        pk = p_col[0]
        absent = np.exp(N * np.log1p(-pk)) if pk < 1 else 0.0
        if absent == 0.0:
            out[f] = 0.0
            continue
        # Condition on c_k = 0: the own feature gets probability 0, the rest renormalise.
        p_col[0] = 0.0
        p_col[1:] = p_col[1:] / (1.0 - pk)
        free = np.flatnonzero(m_col[1:] > 0) + 1
        grad, attn = np.empty_like(p_col), np.empty_like(p_col)
        wt = tail_weights(h)

        def ell(b):
            th = np.zeros_like(p_col)
            th[free[1:]] = b
            return column_expectations(th, p_col, m_col, 0, float(N), 0.0, h, wt, grad, attn)

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


def theorem_T1(eps, eta=1.0):
    """The shape of the paper's bound ``T_1 = O(log(eps^-1/2) / (eta eps))`` (constant 1)."""
    eps = np.asarray(eps, dtype=np.float64)
    return np.log(eps ** -0.5) / (eta * eps)


def theorem_Tk(K, eps, eta=1.0):
    """The shape of the paper's bound ``T_k = O(K^2 log K / eta + K log(K eps^-1/2) / (eps eta))``."""
    K, eps = np.asarray(K, dtype=np.float64), np.asarray(eps, dtype=np.float64)
    return K ** 2 * np.log(K) / eta + K * np.log(K * eps ** -0.5) / (eps * eta)
