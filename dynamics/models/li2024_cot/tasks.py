"""Test tasks over the whole admissible range of ``tau^f`` and ``rho^f``, with and without
Condition 1, and named built-in tasks (H. Li et al., ICLR 2025, slides p. 30-33).

Two families of step matrices ``A_1^f .. A_K^f`` over ``M'`` TSR patterns:

``circulant`` (:func:`.transitions.generate`)
    identical circulant steps in the frame of the correct paths; every start alike.  With
    Condition 1 it reaches every ``tau^f`` in ``(M'^-K, 1]``; it breaks Condition 1 only for
    ``M' >= 3``, ``K >= 2`` and ``tau^f`` below 0.409 (``M' = 3, K = 3``) or 0.444 (``K = 2``).
``trap`` (:func:`trap_matrices`, **choice**)
    one *failing* start and one absorbing *decoy*.  In the frame where every correct step is the
    identity (relabelled by random permutations per step, so the matrices differ from step to
    step), row 0 of every ``A_k`` is ``(p, w, s, .., s)``: ``p`` on the correct step, ``w`` on
    the decoy pattern 1, ``s = (1 - p - w)/(M' - 2)`` on the others (``M' = 2``: ``w = 1 - p``);
    row 1 (the decoy) keeps its pattern with probability ``trap_stay`` (default 1, an example
    that errs into the decoy stays there) and spreads the rest evenly; rows ``j >= 2`` are
    ``p`` on ``j`` and ``(1 - p)/(M' - 1)`` elsewhere.  An example from start 0 that makes any
    wrong step ends, with ``trap_stay = 1``, at the decoy, so ``B^f[0, 1] = 1 - p^K`` for
    ``M' = 2`` and Condition 1 fails at start 0 for every ``tau^f = p^K < 1/2``: the family
    reaches the bound 1/2 of :func:`.transitions.tau_bounds` for every ``M' >= 2``, ``K >= 2``.
    The step margin is ``rho^f = p - w`` (from ``2p - 1``, all wrong mass on the decoy, up to the
    failure edge found by bisection); Condition 1 fails at start 0 only (``icl_limit = 1/M'``).

``auto`` (default of ``task_family``) uses ``circulant`` where it meets the request and ``trap``
otherwise (Condition 1 failing beyond the circulant family's reach, or ``M' = 2``).

The generator meets the request under the declared definitions (``tau_def``, ``rho_def``,
``correct_step``, :func:`.transitions.statistics`) and checks its result: the reported exact
statistics equal the targets to 1e-9, or the request is refused in one line.
"""
from __future__ import annotations

import numpy as np

from dynamics.core.params import ParamError
from dynamics.models.li2024_cot import transitions as T

FAMILIES = ("auto", "circulant", "trap")
TAU_DEFS = ("viterbi", "correct")
RHO_DEFS = ("margin", "normalized")
CORRECT_STEPS = ("argmax", "viterbi")
TARGET_TOL = 1e-9
"""How close the generated task's reported statistics must be to the request."""

SLIDES_EXAMPLE = np.array([[[0.6, 0.4], [0.4, 0.6]], [[0.4, 0.6], [0.8, 0.2]]])
"""The slides' worked example (K = 2, M' = 2): ``B = [[0.56, 0.44], [0.64, 0.36]]``, ``tau^f =
0.36``, ``tau_o^f = 0.56``, Condition 1 failing at the first start."""


def _named():
    return {
        "slides": ("the slides' worked example: B = [[0.56, 0.44], [0.64, 0.36]], tau = 0.36, tau_o = 0.56, "
                   "Condition 1 failing at mu'_1", lambda: SLIDES_EXAMPLE.copy()),
        "near-half-2": ("trap task, M' = 2, K = 2, tau = 0.495 without Condition 1 (identity correct steps)",
                        lambda: generate(2, 2, 0.495, None, False, family="trap")),
        "near-half-3": ("trap task, M' = 3, K = 3, tau = 0.495 without Condition 1 (identity correct steps)",
                        lambda: generate(3, 3, 0.495, None, False, family="trap")),
    }


NAMED = tuple(_named())
"""Names of the built-in tasks (parameter ``task``)."""


def named_task(name: str) -> np.ndarray:
    """The matrices ``(K, M', M')`` of a built-in task (:data:`NAMED`)."""
    table = _named()
    if name not in table:
        raise ParamError("task", f"task must be one of {', '.join(table)}, got {name!r}")
    return table[name][1]()


def describe_named() -> dict:
    """``{name: one-line description}`` of the built-in tasks."""
    return {k: v[0] for k, v in _named().items()}


def trap_matrices(M_test: int, K: int, p: float, w: float, trap_stay: float = 1.0,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """The ``trap`` family (module docstring): ``(K, M', M')`` row-stochastic matrices.

    Parameters
    ----------
    M_test, K : int
        ``M' >= 2`` patterns, ``K >= 1`` steps.
    p : float
        Correct-step entry of the failing start's row and of rows ``j >= 2``.
    w : float
        Decoy entry of row 0 (``M' = 2``: must be ``1 - p``).
    trap_stay : float
        The decoy row's entry on itself.
    rng : numpy.random.Generator or None
        Random relabelling of the correct steps per step (None: identity correct steps).
    """
    Mt, K = int(M_test), int(K)
    A = np.empty((K, Mt, Mt))
    base = np.empty((Mt, Mt))
    base[0] = (1.0 - p - w) / (Mt - 2) if Mt > 2 else 0.0
    base[0, 0], base[0, 1] = p, w
    base[0] = np.maximum(base[0], 0.0)          # w = 1 - p up to rounding
    base[1] = (1.0 - trap_stay) / (Mt - 1)
    base[1, 1] = trap_stay
    for j in range(2, Mt):
        base[j] = (1.0 - p) / (Mt - 1)
        base[j, j] = p
    frame = np.arange(Mt)                       # frame coordinate -> state at step k - 1
    for k in range(K):
        nxt = frame if rng is None else rng.permutation(Mt)
        A[k][np.ix_(frame, nxt)] = base
        frame = nxt
    return A


def _reported(A, defs):
    return T.statistics(A, "A_f", **defs)


def _trap_for(Mt, K, tau, rho, stay, defs, rng):
    """Trap matrices meeting ``tau`` (and ``rho``) under ``defs``; ``rho = None``: the midpoint of
    the failing range.  Returns ``(A, stats)`` or raises ParamError."""
    norm = defs["rho_def"] == "normalized"

    def w_of(p, r):
        return (1.0 - p) if Mt == 2 else (p * (1.0 - r) if norm else p - r)

    def failing(p, r):
        return not _reported(trap_matrices(Mt, K, p, w_of(p, r), stay), defs).condition1

    def p_for(r):
        """The correct entry: ``p = tau^(1/K)``, the correct path being the most probable one;
        refused where a path into the decoy is more probable (Viterbi reading, small ``tau``)."""
        p = tau ** (1.0 / K)
        got = _reported(trap_matrices(Mt, K, p, w_of(p, r), stay), defs).tau
        if got > tau * (1.0 + TARGET_TOL):
            raise ParamError("tau_f", f"tau_f = {tau:g} is below the trap family's reach at M_test = {Mt}, K = {K} "
                                      f"(a path into the decoy has probability {got:.4g} > tau_f); give A_f "
                                      f"explicitly or use tau_def = correct")
        return p

    p0 = tau ** (1.0 / K)
    if Mt == 2:
        if rho is not None:
            raise ParamError("rho_f", f"rho_f is fixed by tau_f for M_test = 2 in the trap family (rho^f = 2 p - 1, "
                                      f"p = tau_f^(1/K) = {p0:.4g}); leave rho_f unset")
        p = p_for(None)
        A = trap_matrices(Mt, K, p, 1.0 - p, stay, rng)
        return A, _reported(A, defs)
    # rows j >= 2 have margin p - (1 - p)/(M' - 1); row 0 has p - max(w, s): w in [s, 1 - p]
    to_r = (lambda p, w: (p - w) / p) if norm else (lambda p, w: p - w)
    r_lo, r_hi = to_r(p0, 1.0 - p0), to_r(p0, (1.0 - p0) / (Mt - 1))
    if not failing(p0, r_lo):
        raise ParamError("tau_f", f"no trap task fails Condition 1 at tau_f = {tau:g}, M_test = {Mt}, K = {K}")
    a, b = r_lo, r_hi                        # failure edge in rho (failing for rho < edge)
    if failing(p0, b):
        edge = b
    else:
        for _ in range(100):
            mid = 0.5 * (a + b)
            a, b = (mid, b) if failing(p0, mid) else (a, mid)
        edge = a
    if rho is None:
        rho = 0.5 * (r_lo + edge)
    elif not (r_lo - 1e-12 <= rho <= r_hi and (rho < edge or failing(p0, rho))):
        raise ParamError("rho_f", f"rho_f must be in [{r_lo:.4g}, {edge:.4g}) for a trap task failing Condition 1 "
                                  f"at tau_f = {tau:g}, M_test = {Mt}, K = {K} (decoy entry w between the row's "
                                  f"wrong mass 1 - p and the failure edge), got {rho:g}")
    p = p_for(rho)
    A = trap_matrices(Mt, K, p, w_of(p, rho), stay, rng)
    return A, _reported(A, defs)


def generate(M_test: int, K: int, tau: float, rho: float | None = None, condition1: bool = True,
             family: str = "auto", trap_stay: float = 1.0, rng: np.random.Generator | None = None,
             tau_def: str = "viterbi", rho_def: str = "margin", correct_step: str = "argmax") -> np.ndarray:
    """Step matrices ``(K, M', M')`` whose reported ``tau^f``, ``rho^f`` and Condition 1 are the
    request (module docstring); a request no task of the family can have is refused in one line
    (:class:`ParamError` naming ``tau_f``, ``rho_f``, ``condition1`` or ``task_family``)."""
    Mt, K, tau = int(M_test), int(K), float(tau)
    defs = dict(tau_def=tau_def, rho_def=rho_def, correct_step=correct_step)
    low, high = T.tau_bounds(Mt, K, condition1)
    if not (low < tau <= 1.0):
        raise ParamError("tau_f", f"tau_f must be in ({low:.4g}, 1] for M_test = {Mt}, K = {K}: every row's largest "
                                  f"entry is >= 1/M_test, so the most probable path has probability > M_test^-K; "
                                  f"got {tau:g}")
    if not condition1 and K < 2:
        raise ParamError("condition1", "condition1 = false needs K >= 2: with one step B^f = A_1^f and the correct "
                                       "output is B^f's largest entry")
    if not condition1 and tau >= high:
        raise ParamError("tau_f", f"tau_f must be < 1/2 without Condition 1 (a start whose correct final output is "
                                  f"beaten has every path below probability 1/2), got {tau:g}")
    use = family
    if family == "auto":
        use = "circulant"
        if not condition1:
            try:
                T.choose_rho(Mt, K, tau, _margin_rho(rho, tau, K, rho_def), condition1)
            except ParamError:
                use = "trap"
    if use == "trap":
        if condition1:
            raise ParamError("task_family", "task_family = trap builds tasks failing Condition 1; use circulant (or "
                                            "auto) with condition1 = true")
        A, st = _trap_for(Mt, K, tau, rho, float(trap_stay), defs, rng)
    else:
        A = T.generate(Mt, K, tau, _margin_rho(rho, tau, K, rho_def), condition1, rng)
        st = _reported(A, defs)
    _verify(st, tau, rho, condition1)
    return A


def _margin_rho(rho, tau, K, rho_def):
    """A requested ``rho^f`` as the circulant family's unnormalised margin (its correct entry is
    ``p = tau^(1/K)``, so the normalised margin is ``rho / p``)."""
    if rho is None or rho_def == "margin":
        return rho
    return float(rho) * float(tau) ** (1.0 / int(K))


def _verify(st, tau, rho, condition1):
    if abs(st.tau - tau) > TARGET_TOL * max(1.0, tau):
        raise ParamError("tau_f", f"the generated task has tau^f = {st.tau:.6g} under these definitions, not the "
                                  f"requested {tau:g} (try tau_def = correct or task_family = trap)")
    if rho is not None and abs(st.rho - float(rho)) > TARGET_TOL:
        raise ParamError("rho_f", f"the generated task has rho^f = {st.rho:.6g}, not the requested {float(rho):g}")
    if st.condition1 != bool(condition1):
        raise ParamError("condition1", f"the generated task has Condition 1 {'holding' if st.condition1 else 'failing'}"
                                       f" under correct_step = these definitions; change tau_f or rho_f")
