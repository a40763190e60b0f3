"""Public front end of the exact engine: the paper's population loss and its gradient.

Huang, Cheng, Liang (ICML 2024): ``L(Q) = 1/2 E[(yhat - <w, x_q>)^2]``, which depends on ``Q``
only through ``theta[n, k] = v_n^T Q v_k`` (MODEL.md section 2).  Everything here is exact in
the counts (no sampling): MODEL.md section 3, with the quadrature of :mod:`dynamics.exact`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynamics.core import validate
from dynamics.models.huang2024.classes import ClassStructure
from dynamics.models.huang2024.quadrature import DEFAULT_H, general_kernel, reduced_kernel, tail_weights


def population_loss_grad(theta, p, N, sigma2=0.0, *, h=DEFAULT_H, return_attention=False):
    """Population loss ``L``, gradient ``dL/dtheta`` and per-feature errors ``L_k`` (paper's eq. for ``L``, ``L_k``).

    Parameters
    ----------
    theta : array (K, K)
        ``theta[n, k] = v_n^T Q v_k``: ``A_k = theta[k, k]``, ``B_{k,n} = theta[n, k]``.
    p : array (K,)
        Feature probabilities ``p_k`` (a probability vector).
    N : int
        Prompt length (number of labelled tokens), any ``N >= 1``.
    sigma2 : float
        Label-noise variance (0 in the paper).
    h : float
        Trapezoid step in ``log t`` (MODEL.md section 3); the default gives ~1e-14.
    return_attention : bool
        Also return ``attn[n, k] = E[Attn_n | x_q = v_k]``.

    Returns
    -------
    L : float
        ``L = sum_k p_k L_k``.
    grad : array (K, K)
        ``grad[n, k] = dL / dtheta[n, k]``; each column sums to 0 (softmax shift invariance).
    L_k : array (K,)
        ``L_k = 1/2 E[(yhat - <w, x_q>)^2 | x_q = v_k]``.
    attn : array (K, K), only with ``return_attention``.
    """
    p = validate.probabilities(p)
    K = p.shape[0]
    theta = validate.square_theta(theta, K)
    validate.column_spread(theta, "theta", axis=0)
    N = validate.prompt_length(N)
    sigma2 = validate.nonnegative(sigma2, "sigma2")
    h = validate.positive(h, "h")
    grad = np.empty((K, K))
    L_k = np.empty(K)
    attn = np.empty((K, K))
    general_kernel(theta, p, N, sigma2, h, grad, L_k, attn)
    validate.finite_result("population_loss_grad", L_k=L_k, grad=grad)
    L = float(p @ L_k)
    if return_attention:
        return L, grad, L_k, attn
    return L, grad, L_k


@dataclass(frozen=True)
class ReducedEvaluation:
    """The exact population quantities on reduced coordinates (see :mod:`dynamics.classes`).

    Attributes
    ----------
    L : float
        Population loss ``L = sum_f sizes[f] probs[f] L_f``.
    grad : array (F, F + 1)
        ``dL/dtheta[n, k]`` for one member ``(n, k)`` of each column class (GD moves each
        member, hence the reduced coordinate, by ``-eta * grad``); 0 for empty classes.
    L_f : array (F,)
        Per-feature prediction error ``L_k`` of a query of class ``f``.
    attn : array (F, F + 1)
        ``E[Attn_n | x_q = v_k]`` for one member ``n`` of each column class.
    """

    L: float
    grad: np.ndarray
    L_f: np.ndarray
    attn: np.ndarray


def reduced_loss_grad(coords, structure: ClassStructure, N, sigma2=0.0, *, h=DEFAULT_H) -> ReducedEvaluation:
    """Exact loss, gradient, ``L_k`` and attention on symmetry classes (MODEL.md sections 2-3).

    Cost O(F^2 x quadrature nodes), independent of K and N, so K = 10^6 and N = 10^9 cost the
    same as K = 10.  ``coords[f, 0] = A_k``, ``coords[f, 1 + g] = B_{k,n}`` (n in class g).
    """
    if not isinstance(structure, ClassStructure):
        raise ValueError("structure must be a dynamics.ClassStructure")
    coords = structure.check_coords(coords)
    validate.column_spread(coords, "coords", axis=1)
    N = validate.prompt_length(N)
    sigma2 = validate.nonnegative(sigma2, "sigma2")
    h = validate.positive(h, "h")
    p_col, m_col = structure.column_tables()
    F = structure.F
    grad = np.empty((F, F + 1))
    L_f = np.empty(F)
    attn = np.empty((F, F + 1))
    reduced_kernel(coords, p_col, m_col, N, sigma2, h, tail_weights(h), grad, L_f, attn)
    validate.finite_result("reduced_loss_grad", L_f=L_f, grad=grad)
    L = float(np.sum(structure.sizes * structure.probs * L_f))
    return ReducedEvaluation(L, grad, L_f, attn)
