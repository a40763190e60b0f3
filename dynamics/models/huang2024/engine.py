"""Public front end of the exact engine: the paper's population loss and its gradient.

Huang, Cheng, Liang (ICML 2024): ``L(Q) = 1/2 E[(yhat - <w, x_q>)^2]``, which depends on ``Q``
only through ``theta[n, k] = v_n^T Q v_k`` (MODEL.md section 2).  Everything here is exact in
the counts (no sampling): MODEL.md section 3, with the quadrature of
:mod:`dynamics.models.huang2024.quadrature`.  Every fixed-sign quantity is accurate relative to
itself (about 1e-13, at any magnitude down to the float64 underflow), every gradient entry to
about 1e-13 of ``grad_scale`` (the sum of the magnitudes of its positive and negative parts).
"""
from __future__ import annotations

import functools

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from dynamics.core import validate
from dynamics.core.jit import jit
from dynamics.models.huang2024.classes import ClassStructure
from dynamics.models.huang2024.general_m import general_m_kernel
from dynamics.models.huang2024.geometry import psd_matrix
from dynamics.models.huang2024.jacobian import reduced_jacobian
from dynamics.models.huang2024.quadrature import (DEFAULT_H, MAX_SPREAD, N_PARTS, general_kernel, general_terms,
                                                  reduced_terms, tail_weights)


@functools.lru_cache(maxsize=16)
def _tail_weights(h: float) -> np.ndarray:
    """:func:`.quadrature.tail_weights`, computed once per step ``h`` (a read-only array)."""
    wt = tail_weights(h)
    wt.setflags(write=False)
    return wt


@jit
def _scan(cols, occurs):
    """``(all finite, largest spread of the entries that occur within a row)`` in one pass."""
    finite = True
    spread = 0.0
    for r in range(cols.shape[0]):
        lo, hi = np.inf, -np.inf
        for j in range(cols.shape[1]):
            x = cols[r, j]
            if not np.isfinite(x):
                finite = False
            if occurs[r, j]:
                lo = min(lo, x)
                hi = max(hi, x)
        if hi >= lo:
            spread = max(spread, hi - lo)
    return finite, spread


@jit
def _assemble(gp, gn, parts, sizes, probs):
    """``(L, grad, scale, parts by row, L_f)`` from the kernel's same-signed parts (one call)."""
    rows = np.ascontiguousarray(parts.T)  # L_present, L_absent, 1 - E[Attn_k], (1 - p_k)^N
    L_f = rows[0] + rows[1]
    L = 0.0
    for f in range(L_f.shape[0]):
        L += sizes[f] * (probs[f] * L_f[f])
    return L, gp - gn, gp + gn, rows, L_f


@jit
def _finite(a, b, c):
    return np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(np.isfinite(c))


def _spread_check(cols, occurs, name):
    """Within each column, the spread of the scores of features that occur (``p > 0``) must stay
    within :data:`.quadrature.MAX_SPREAD`: the value exists at any spread, but where a feature
    may be absent from the prompt the quadrature needs ~ spread / h nodes (about 1 us per unit of
    spread here), so beyond it one evaluation would take seconds."""
    if occurs.shape != cols.shape:
        occurs = np.ascontiguousarray(np.broadcast_to(occurs, cols.shape))
    finite, spread = _scan(cols, occurs)
    if not finite:
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if not spread <= MAX_SPREAD:
        raise ValueError(f"{name} scores of the features that occur (p > 0) must differ by at most {MAX_SPREAD:g} "
                         f"within a column (the quadrature's node count grows with the spread); got {spread:g}")


def _general_inputs(theta, p, N, sigma2, h):
    p = validate.probabilities(p)
    K = p.shape[0]
    theta = validate.square_theta(theta, K)
    _spread_check(np.ascontiguousarray(theta.T), (p > 0)[None, :], "theta")
    return theta, p, validate.prompt_length(N), validate.nonnegative(sigma2, "sigma2"), validate.positive(h, "h")


def _reduced_inputs(coords, structure, N, sigma2, h):
    if not isinstance(structure, ClassStructure):
        raise ValueError("structure must be a dynamics.ClassStructure")
    coords = np.ascontiguousarray(coords, dtype=np.float64)
    if coords.shape != (structure.F, structure.F + 1):
        raise ValueError(f"coords must have shape (F, F + 1) = ({structure.F}, {structure.F + 1}), got {coords.shape}")
    p_col, m_col = structure.column_tables()
    occurs = structure.__dict__.get("_occurs")
    if occurs is None:
        occurs = structure.__dict__["_occurs"] = (m_col > 0) & (p_col > 0)
    _spread_check(coords, occurs, "coords")
    return (coords, p_col, m_col, validate.prompt_length(N), validate.nonnegative(sigma2, "sigma2"),
            validate.positive(h, "h"))


def population_loss_grad(theta, p, N, M=None, sigma2=0.0, *, h=DEFAULT_H, return_attention=False):
    """Population loss ``L``, gradient ``dL/dtheta`` and per-feature errors ``L_k`` (paper's eq. for ``L``, ``L_k``).

    Parameters
    ----------
    theta : array (K, K)
        ``theta[n, k] = v_n^T Q v_k``: ``A_k = theta[k, k]``, ``B_{k,n} = theta[n, k]``.
    p : array (K,)
        Feature probabilities ``p_k`` (a probability vector).
    N : int
        Prompt length (number of labelled tokens), any ``N >= 1``.
    M : array (K, K) or None
        Label covariance ``M = V^T Sigma V`` of correlated features ``V`` and task covariance
        ``Sigma`` (symmetric positive semi-definite; :mod:`.general_m`, issue 20).  ``None``: the
        paper's orthonormal features and isotropic tasks (``M = I``), computed by the orthonormal
        engine bit for bit as before; an ``M`` exactly equal to ``I`` takes the same route.
    sigma2 : float
        Label-noise variance (0 in the paper).
    h : float
        Trapezoid step in ``log t`` (MODEL.md section 3); at the default every fixed-sign output
        is accurate to ~1e-13 relative (and each gradient entry to ~1e-13 of the sum of its
        parts' magnitudes, see :func:`population_terms`).
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
    if M is not None and np.ndim(M) == 0:
        raise ValueError("M must be a (K, K) label covariance or None (pass the noise variance as sigma2=...)")
    theta, p, N, sigma2, h = _general_inputs(theta, p, N, sigma2, h)
    K = p.shape[0]
    if M is not None:
        M = psd_matrix(M, (K, K), "M")
        if np.array_equal(M, np.eye(K)):
            M = None
    grad = np.empty((K, K))
    L_k = np.empty(K)
    attn = np.empty((K, K))
    if M is None:
        general_kernel(theta, p, N, sigma2, h, grad, L_k, attn)
    else:
        general_m_kernel(theta, p, M, N, sigma2, h, grad, L_k, attn)
    validate.finite_result("population_loss_grad", L_k=L_k, grad=grad)
    L = float(p @ L_k)
    if return_attention:
        return L, grad, L_k, attn
    return L, grad, L_k


@dataclass(frozen=True)
class PopulationTerms:
    """The exact population quantities of :func:`population_terms`, each in same-signed parts.

    Attributes
    ----------
    L, grad, L_k, attn
        As returned by :func:`population_loss_grad` (``grad = grad_pos - grad_neg``).
    grad_pos, grad_neg : arrays (K, K)
        Positive and negative parts of ``dL/dtheta`` (both >= 0, each to ~1e-13 relative);
        without label noise ``grad_pos`` is 0 on the diagonal (``dL/dA_k <= 0``).
    L_present, L_absent : arrays (K,)
        ``L_k = L_present + L_absent``: the parts with the query's feature present in the prompt
        (``c_k >= 1``) and absent (``c_k = 0``, probability ``(1 - p_k)^N``).
    attn_rest : array (K,)
        ``1 - E[Attn_k | x_q = v_k]``, computed as ``E[sum_{n != k} Attn_n]`` (no cancellation).
    absent : array (K,)
        ``(1 - p_k)^N``.
    """

    L: float
    grad: np.ndarray
    L_k: np.ndarray
    attn: np.ndarray
    grad_pos: np.ndarray
    grad_neg: np.ndarray
    L_present: np.ndarray
    L_absent: np.ndarray
    attn_rest: np.ndarray
    absent: np.ndarray

    @property
    def grad_scale(self) -> np.ndarray:
        """``grad_pos + grad_neg``: the scale to which each gradient entry is accurate (~1e-13 of it)."""
        return self.grad_pos + self.grad_neg


def population_terms(theta, p, N, sigma2=0.0, *, h=DEFAULT_H) -> PopulationTerms:
    """:func:`population_loss_grad` with every quantity in its same-signed parts (MODEL.md s.2-3).

    Same arguments and checks; see :class:`PopulationTerms`.
    """
    theta, p, N, sigma2, h = _general_inputs(theta, p, N, sigma2, h)
    K = p.shape[0]
    gp, gn, attn = np.empty((K, K)), np.empty((K, K)), np.empty((K, K))
    parts = np.empty((K, N_PARTS))
    general_terms(theta, p, N, sigma2, h, gp, gn, attn, parts, -1, True)
    validate.finite_result("population_terms", parts=parts, grad_pos=gp, grad_neg=gn)
    L_present, L_absent = 0.5 * parts[:, 0], 0.5 * parts[:, 1]
    L_k = L_present + L_absent
    return PopulationTerms(float(p @ L_k), gp - gn, L_k, attn, gp, gn, L_present, L_absent,
                           parts[:, 2].copy(), parts[:, 3].copy())


class ReducedEvaluation(NamedTuple):
    """The exact population quantities on reduced coordinates (see :mod:`.classes`); a named
    tuple (cheap to make: the flow builds one per right-hand-side evaluation).

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
    grad_scale : array (F, F + 1) or None
        Sum of the magnitudes of the positive and negative parts of each ``grad`` entry: the
        scale to which the entry is accurate (~1e-13 of it; a fixed-sign entry to ~1e-13 of itself).
    L_present, L_absent : arrays (F,) or None
        ``L_f = L_present + L_absent``: query feature present in the prompt / absent (``c_k = 0``).
    attn_rest : array (F,) or None
        ``1 - E[Attn_k]`` for the query's own feature, without cancellation.
    absent : array (F,) or None
        ``(1 - p_k)^N``, the probability that the query's feature is absent from the prompt.
    """

    L: float
    grad: np.ndarray
    L_f: np.ndarray
    attn: np.ndarray
    grad_scale: Optional[np.ndarray] = None
    L_present: Optional[np.ndarray] = None
    L_absent: Optional[np.ndarray] = None
    attn_rest: Optional[np.ndarray] = None
    absent: Optional[np.ndarray] = None


def reduced_loss_grad(coords, structure: ClassStructure, N, sigma2=0.0, *, h=DEFAULT_H) -> ReducedEvaluation:
    """Exact loss, gradient, ``L_k`` and attention on symmetry classes (MODEL.md sections 2-3).

    Cost O(F^2 x quadrature nodes), independent of K and N, so K = 10^6 and N = 10^9 cost the
    same as K = 10.  ``coords[f, 0] = A_k``, ``coords[f, 1 + g] = B_{k,n}`` (n in class g).
    """
    coords, p_col, m_col, N, sigma2, h = _reduced_inputs(coords, structure, N, sigma2, h)
    F = structure.F
    gp, gn, attn = np.empty((F, F + 1)), np.empty((F, F + 1)), np.empty((F, F + 1))
    parts = np.empty((F, N_PARTS))
    reduced_terms(coords, p_col, m_col, N, sigma2, h, _tail_weights(h), gp, gn, attn, parts)
    if not _finite(parts, gp, gn):
        validate.finite_result("reduced_loss_grad", parts=parts, grad_pos=gp, grad_neg=gn)
    L, grad, scale, rows, L_f = _assemble(gp, gn, parts, structure.sizes, structure.probs)
    return ReducedEvaluation(L, grad, L_f, attn, scale, rows[0], rows[1], rows[2], rows[3])


@dataclass(frozen=True)
class ReducedJacobian:
    """``d grad / d coords`` of :func:`reduced_loss_grad`'s gradient, block diagonal in the query class.

    Attributes
    ----------
    jac : array (F, F + 1, F + 1)
        ``jac[f, j, i] = d grad[f, j] / d coords[f, i]`` (``grad[f]`` does not depend on
        ``coords[f']``, ``f' != f``); rows and columns of empty classes are 0.  The gradient
        flow ``d coords / dt = -grad`` has the Jacobian ``-jac``.
    scale : array (F, F + 1, F + 1)
        Sum of the magnitudes of the positive and negative parts of each entry: the scale to
        which it is accurate (~1e-13 of it).
    """

    jac: np.ndarray
    scale: np.ndarray


def reduced_grad_jacobian(coords, structure: ClassStructure, N, sigma2=0.0, *, h=DEFAULT_H) -> ReducedJacobian:
    """Exact Jacobian of the class-reduced gradient (MODEL.md sections 2-3; :mod:`dynamics.models.huang2024.jacobian`).

    Same arguments and checks as :func:`reduced_loss_grad`.  Cost O(F^3 x nodes) per query
    class, independent of K and N.
    """
    coords, p_col, m_col, N, sigma2, h = _reduced_inputs(coords, structure, N, sigma2, h)
    F = structure.F
    jp, jn = np.empty((F, F + 1, F + 1)), np.empty((F, F + 1, F + 1))
    reduced_jacobian(coords, p_col, m_col, N, sigma2, h, _tail_weights(h), jp, jn)
    validate.finite_result("reduced_grad_jacobian", jac_pos=jp, jac_neg=jn)
    return ReducedJacobian(jp - jn, jp + jn)
