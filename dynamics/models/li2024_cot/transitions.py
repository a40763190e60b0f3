"""Step transition matrices of a chain-of-thought test task, their exact statistics, and a
generator for requested statistics (MODEL.md section 9; slides p. 30-33).

A K-step test task ``f`` over ``M'`` test-relevant (TSR) patterns is given by row-stochastic
matrices ``A_1^f .. A_K^f`` (slides: "Testing examples contain erroneous steps, and transition
matrices characterize the transition"): a context example in state ``j`` after step ``k - 1``
moves to ``u`` at step ``k`` with probability ``A_k^f[j, u]``.  The *correct* step from ``j`` is
the unique largest entry of row ``j`` (MODEL.md: "the correct step is the most likely"); the
query's reasoning follows the correct steps, so its label path ``z_0 .. z_K`` is the greedy
argmax path.

Statistics (exact, from the matrices):

- ``B^f = A_1^f A_2^f ... A_K^f``: ``B[i, u]`` is the probability that an example starting in
  ``i`` ends in ``u`` (the slides' ``K``-steps transition matrix).
- ``tau^f = min_i max_{j_1..j_K} prod_k A_k^f[j_{k-1}, j_k]`` with ``j_0 = i``: the "min-max
  trajectory transition probability", by a max-product (Viterbi) recursion.
- ``tau_o^f = min_i max_u B^f[i, u]``: the "min-max input-label transition probability".
- ``rho^f``: the smallest margin, over every start ``i`` and step ``k`` of ``i``'s correct path,
  between the correct step's probability and the largest wrong one in the same row of ``A_k^f``
  (**choice**: the slides name no ``rho``; MODEL.md's CoT bound ``(alpha' tau^f rho^f)^-2`` needs
  the gap that greedy decoding must resolve at every step it takes).
- ``rho_o^f = min_i (B^f[i, z_K(i)] - max_{u != z_K(i)} B^f[i, u])``: the same margin for the
  final output of the correct path in ``B^f``, signed.  Condition 1 ("the correct final output is
  the most probable output by ``B^f``") holds exactly when ``rho_o^f > 0``; then ``rho_o^f`` is the
  gap between the two largest entries of ``B^f``'s rows, the margin of MODEL.md's ICL bound.

Generator (**choice**, :func:`generate`): identical *circulant* steps in the frame of the correct
paths.  With correct step functions ``sigma_k`` (permutations) and ``Sigma_k = sigma_k o ... o
sigma_1``, a state ``j`` at step ``k - 1`` has frame coordinate ``w = Sigma_{k-1}^-1(j)`` and moves
to ``Sigma_k(w + r mod M')`` with probability ``pi[r]``, ``pi = (p, q, s, ..., s)``: ``p`` on the
correct step (``r = 0``), ``q`` on one *decoy* successor (``r = 1``), ``s = (1 - p - q)/(M' - 2)``
on the others.  Then every start is alike: ``tau^f = p^K``, ``rho^f = p - max(q, s)`` and
``B^f[i, Sigma_K(i + r)] = pi^{*K}[r]`` (the K-fold cyclic convolution).  ``q = s`` (spread
errors) keeps Condition 1; a heavy decoy makes wrong paths pile up on one wrong final output and
breaks it.  Any ``tau^f`` in ``(M'^-K, 1]`` is reachable with Condition 1; without it ``tau^f <
1/2`` is necessary for any matrices (:func:`tau_bounds`) and the family reaches a sub-range.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dynamics.core.params import ParamError

ROW_TOL = 1e-9
"""``|sum(row) - 1|`` allowed in a transition matrix (entries typed by hand have ~1e-16 errors)."""
MARGIN_TOL = 1e-12
"""The correct step must beat every other entry of its row by more than this."""
BISECT_STEPS = 100


class TaskStats(NamedTuple):
    """Exact statistics of a test task (module docstring).

    ``B``: ``(M', M')``.  ``paths``: ``(M', K + 1)`` the correct path from every start.
    ``tau``, ``tau_o``, ``rho``, ``rho_o``: floats.  ``condition1``: bool.
    ``failing``: ``(M',)`` bool, starts whose correct final output is not ``B``'s unique row
    maximum (so the large-``l`` ICL error with uniform query starts is ``failing.mean()``).
    ``path_tau``: ``(M',)`` the most probable path's probability from each start.
    ``path_correct``: ``(M',)`` the probability of the correct path from each start.
    ``tau_viterbi``, ``tau_correct``: both readings of ``tau^f`` (``tau`` is the declared one);
    ``rho_margin``, ``rho_normalized``: both readings of ``rho^f`` (``rho`` is the declared one).
    """

    B: np.ndarray
    paths: np.ndarray
    tau: float
    tau_o: float
    rho: float
    rho_o: float
    condition1: bool
    failing: np.ndarray
    path_tau: np.ndarray
    path_correct: np.ndarray
    tau_viterbi: float = float("nan")
    tau_correct: float = float("nan")
    rho_margin: float = float("nan")
    rho_normalized: float = float("nan")


def check_transitions(A, name: str = "A_f") -> np.ndarray:
    """``A`` as a float array ``(K, M', M')`` of row-stochastic matrices whose every row has a
    unique largest entry (the correct step), or a :class:`ParamError` naming ``name`` and the rule."""
    arr = np.asarray(A, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[0] < 1 or arr.shape[1] < 2:
        raise ParamError(name, f"{name} must be K >= 1 square transition matrices of size M' >= 2 (shape "
                               f"(K, M', M')), got shape {np.shape(A)}")
    if not np.all(np.isfinite(arr)):
        raise ParamError(name, f"{name} must have finite entries")
    if np.any(arr < 0):
        k, i, j = np.argwhere(arr < 0)[0]
        raise ParamError(name, f"{name} must be row-stochastic (entries >= 0), got A_{k + 1}[{i}, {j}] = "
                               f"{arr[k, i, j]:g}")
    sums = arr.sum(axis=2)
    bad = np.abs(sums - 1.0) > ROW_TOL
    if np.any(bad):
        k, i = np.argwhere(bad)[0]
        raise ParamError(name, f"{name} must be row-stochastic (every row sums to 1 within {ROW_TOL:g}), got row "
                               f"{i} of A_{k + 1} summing to {sums[k, i]!r}")
    top = np.sort(arr, axis=2)
    tie = top[..., -1] - top[..., -2] <= MARGIN_TOL
    if np.any(tie):
        k, i = np.argwhere(tie)[0]
        raise ParamError(name, f"{name} must give every row a unique largest entry (the correct step), got a tie "
                               f"in row {i} of A_{k + 1}")
    return arr


def product(A) -> np.ndarray:
    """``B^f = A_1^f A_2^f ... A_K^f`` (rows: start pattern, columns: final output)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.eye(A.shape[1])
    for Ak in A:
        B = B @ Ak
    return B


def correct_paths(A) -> np.ndarray:
    """``(M', K + 1)``: row ``i`` is the correct path ``z_0 = i, z_k = argmax_u A_k[z_{k-1}, u]``."""
    A = np.asarray(A)
    K, Mt = A.shape[0], A.shape[1]
    z = np.empty((Mt, K + 1), dtype=np.int64)
    z[:, 0] = np.arange(Mt)
    for k in range(K):
        z[:, k + 1] = np.argmax(A[k][z[:, k]], axis=1)
    return z


def max_path_probability(A) -> np.ndarray:
    """``(M',)``: the probability of the most probable K-step path from each start, by the
    max-product recursion ``v_K = 1``, ``v_{k-1}[j] = max_u A_k[j, u] v_k[u]``."""
    A = np.asarray(A, dtype=np.float64)
    v = np.ones(A.shape[1])
    for Ak in A[::-1]:
        v = np.max(Ak * v[None, :], axis=1)
    return v


def viterbi_paths(A) -> np.ndarray:
    """``(M', K + 1)``: the most probable K-step path from every start (max-product recursion;
    ties go to the lowest index)."""
    A = np.asarray(A, dtype=np.float64)
    K, Mt = A.shape[0], A.shape[1]
    v = np.ones(Mt)
    arg = np.empty((K, Mt), dtype=np.int64)
    for k in range(K - 1, -1, -1):
        W = A[k] * v[None, :]
        arg[k] = np.argmax(W, axis=1)
        v = W[np.arange(Mt), arg[k]]
    z = np.empty((Mt, K + 1), dtype=np.int64)
    z[:, 0] = np.arange(Mt)
    for k in range(K):
        z[:, k + 1] = arg[k][z[:, k]]
    return z


def statistics(A, name: str = "A_f", tau_def: str = "viterbi", rho_def: str = "margin",
               correct_step: str = "argmax") -> TaskStats:
    """Every statistic of the module docstring, from matrices checked by :func:`check_transitions`.

    Parameters
    ----------
    A : array_like, shape (K, M', M')
    name : str
        The parameter named in errors.
    tau_def : {"viterbi", "correct"}
        ``tau^f`` as the most probable path's probability (min over starts) or as the correct
        path's (**choice**, parameter ``tau_def``; they differ only when a path with a wrong step
        is more probable than the correct one).
    rho_def : {"margin", "normalized"}
        ``rho^f`` as the smallest unnormalised margin ``c - w`` (correct entry minus the largest
        wrong entry of the row) along the correct paths, or the normalised ``(c - w) / c``.
    correct_step : {"argmax", "viterbi"}
        The query's correct path: the largest entry of each row, step by step (default), or the
        most probable K-step path from its start.
    """
    A = check_transitions(A, name)
    K, Mt = A.shape[0], A.shape[1]
    B = product(A)
    z = correct_paths(A) if correct_step == "argmax" else viterbi_paths(A)
    rows = np.arange(Mt)
    margins = np.empty((Mt, K))
    normed = np.empty((Mt, K))
    correct = np.ones(Mt)
    for k in range(K):
        R = A[k][z[:, k]]                                    # the rows the correct paths use
        c = R[rows, z[:, k + 1]]
        margins[:, k] = c - np.max(np.where(np.arange(Mt)[None, :] == z[:, k + 1][:, None], -np.inf, R), axis=1)
        normed[:, k] = margins[:, k] / c
        correct *= c
    final = B[rows, z[:, K]]
    others = np.max(np.where(np.arange(Mt)[None, :] == z[:, K][:, None], -np.inf, B), axis=1)
    gap = final - others
    path_tau = max_path_probability(A)
    tv, tc = float(path_tau.min()), float(correct.min())
    rm, rn = float(margins.min()), float(normed.min())
    # Condition 1 needs the correct final output to be the *unique* most probable: a tie (gap 0,
    # within MARGIN_TOL) counts as failing, so "Condition 1 iff rho_o^f > 0" holds at ties too.
    return TaskStats(B=B, paths=z, tau=tv if tau_def == "viterbi" else tc, tau_o=float(B.max(axis=1).min()),
                     rho=rm if rho_def == "margin" else rn, rho_o=float(gap.min()),
                     condition1=bool(np.all(gap > MARGIN_TOL)), failing=gap <= MARGIN_TOL, path_tau=path_tau,
                     path_correct=correct, tau_viterbi=tv, tau_correct=tc, rho_margin=rm, rho_normalized=rn)


# ---- the generator ---------------------------------------------------------------------------
def tau_bounds(M_test: int, K: int, condition1: bool) -> tuple:
    """``(low, high)``: every task with a unique correct step per row has ``low < tau^f <= high``
    (``high`` excluded without Condition 1).

    ``low = M'^-K``: each row's largest entry is ``>= 1/M'`` (equality only for a uniform row,
    which has no unique correct step).  Without Condition 1, ``high = 1/2``: a start whose
    correct final output is beaten by some ``u`` has ``P(end = z_K) < 1/2``; a path with a wrong
    step has probability ``< 1/2`` (the wrong entry is below the correct one in its row), so the
    most probable path from that start is either the correct one (probability ``<= P(end = z_K)``)
    or below 1/2: ``tau^f < 1/2``.  At a tie (the correct final output only *as* probable as
    another, which counts as failing Condition 1) the same argument gives ``tau^f <= 1/2``, and
    1/2 is attained: ``A_1 = [[a, 1 - a], [0.1, 0.9]]``, ``A_2 = [[a, 1 - a], [0, 1]]`` with
    ``a = 2^-1/2`` has ``B[0] = (1/2, 1/2)`` and ``tau^f = 1/2`` (a test).  The generators produce
    strict failures only, so their bound ``tau_f < 1/2`` is strict.
    """
    return float(M_test) ** (-int(K)), (1.0 if condition1 else 0.5)


def step_distribution(M_test: int, p: float, q: float) -> np.ndarray:
    """``pi = (p, q, s, ..., s)``, ``s = (1 - p - q) / (M' - 2)`` (for ``M' = 2``: ``(p, 1 - p)``)."""
    if M_test == 2:
        return np.array([p, 1.0 - p])
    return np.array([p, q] + [(1.0 - p - q) / (M_test - 2)] * (M_test - 2))


def cyclic_power(pi, K: int) -> np.ndarray:
    """The K-fold cyclic convolution ``pi^{*K}`` (the final frame offset after K steps)."""
    pi = np.asarray(pi, dtype=np.float64)
    idx = np.arange(pi.size)
    C = pi[(idx[None, :] - idx[:, None]) % pi.size]        # C[r, s] = pi[s - r]: one step of the offset
    return np.linalg.matrix_power(C, int(K))[0]


def _final_margin(M_test, K, p, rho) -> float:
    """``rho_o^f`` of the family at ``(p, rho)``: ``pi^{*K}[0] - max_{r != 0} pi^{*K}[r]``."""
    c = cyclic_power(step_distribution(M_test, p, p - rho), K)
    return float(c[0] - c[1:].max())


def rho_bounds(M_test: int, K: int, tau: float) -> tuple:
    """``(low, high)``: the family's ``rho^f`` at ``tau^f`` lies in ``(low, high]`` (``[low,
    high]`` when ``low > 0``).  ``high = p - (1 - p)/(M' - 1)`` (errors spread evenly: the largest
    margin any row with correct entry ``p`` can have); ``low = max(2p - 1, 0)`` (all the wrong mass
    on the decoy), ``p = tau^(1/K)``."""
    p = float(tau) ** (1.0 / int(K))
    high = p - (1.0 - p) / (M_test - 1)
    low = high if M_test == 2 else max(2.0 * p - 1.0, 0.0)
    return low, high


def condition1_boundary(M_test: int, K: int, tau: float) -> float | None:
    """The family's ``rho`` at which Condition 1 starts to hold (``rho_o`` crosses 0, found by
    bisection; ``rho_o`` grows with ``rho`` as the decoy weight falls), or None when Condition 1
    holds on the whole range of :func:`rho_bounds`."""
    low, high = rho_bounds(M_test, K, tau)
    p = float(tau) ** (1.0 / int(K))
    lo = low if low > 0 else 1e-12 * high
    if _final_margin(M_test, K, p, lo) > MARGIN_TOL:
        return None
    hi = high
    for _ in range(BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if _final_margin(M_test, K, p, mid) > MARGIN_TOL:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-15:
            break
    return hi


def failing_tau_limit(M_test: int, K: int) -> float:
    """The largest ``tau^f`` at which the family breaks Condition 1 (bisection over ``tau``;
    failing at the most decoy-heavy ``rho`` is monotone in ``tau``), or 0 when it never does."""
    low = float(M_test) ** (-int(K))
    if M_test < 3 or K < 2:
        return 0.0
    a, b = low * (1 + 1e-9), 0.5
    if condition1_boundary(M_test, K, a) is None:
        return 0.0
    for _ in range(60):
        mid = 0.5 * (a + b)
        if condition1_boundary(M_test, K, mid) is None:
            b = mid
        else:
            a = mid
    return a


def choose_rho(M_test: int, K: int, tau: float, rho: float | None, condition1: bool) -> float:
    """The step margin ``rho^f`` the generator uses, after checking the request (one-line
    :class:`ParamError` naming ``tau_f``, ``rho_f`` or ``condition1``).

    Not given: ``q = s`` (evenly spread errors, the largest margin) with Condition 1; without it
    the midpoint between the most decoy-heavy member and the boundary where Condition 1 starts to
    hold (**choice**: halfway, so that both the CoT margin ``rho^f`` and the ICL failure margin
    ``-rho_o^f`` stay away from 0).
    """
    M_test, K, tau = int(M_test), int(K), float(tau)
    if K < 1:
        raise ParamError("K", f"K must be an integer >= 1, got {K}")
    if M_test < 2:
        raise ParamError("M_test", f"M_test must be an integer >= 2, got {M_test}")
    low, high = tau_bounds(M_test, K, condition1)
    if not (low < tau <= 1.0):
        raise ParamError("tau_f", f"tau_f must be in ({low:.4g}, 1] for M_test = {M_test}, K = {K}: every row's "
                                  f"largest entry is >= 1/M_test and the correct step must be the unique largest, so "
                                  f"the most probable path has probability > M_test^-K; got {tau:g}")
    if not condition1:
        if K < 2:
            raise ParamError("condition1", "condition1 = false needs K >= 2: with one step B^f = A_1^f and the "
                                           "correct output is B^f's largest entry")
        if tau >= high:
            raise ParamError("tau_f", f"tau_f must be < 1/2 without Condition 1 (a start whose correct final output "
                                      f"is beaten has every path below probability 1/2), got {tau:g}")
        if M_test < 3:
            raise ParamError("condition1", "condition1 = false needs M_test >= 3 in the generator (identical circulant "
                                           "steps on 2 patterns always keep Condition 1; give A_f explicitly)")
    rlo, rhi = rho_bounds(M_test, K, tau)
    edge = condition1_boundary(M_test, K, tau)
    if rho is not None:
        rho = float(rho)
        if not ((rlo < rho <= rhi) or (rlo > 0 and abs(rho - rlo) <= 1e-12)):
            raise ParamError("rho_f", f"rho_f must be in ({rlo:.4g}, {rhi:.4g}] at tau_f = {tau:g}, M_test = "
                                      f"{M_test}, K = {K} (correct entry p = tau_f^(1/K) = "
                                      f"{tau ** (1 / K):.4g}; wrong entries >= 0 and below p), got {rho:g}")
        holds = edge is None or rho >= edge
        if holds != bool(condition1):
            where = "nowhere" if edge is None else f"only for rho_f < {edge:.6g}"
            raise ParamError("rho_f", f"rho_f = {rho:g} gives Condition 1 {'holding' if holds else 'failing'} at "
                                      f"tau_f = {tau:g} (it fails {where}); set condition1 = "
                                      f"{'true' if holds else 'false'} or another rho_f")
        return rho
    if condition1:
        return rhi
    if edge is None:
        lim = failing_tau_limit(M_test, K)
        raise ParamError("tau_f", f"tau_f must be < {lim:.4g} for the generator to break Condition 1 at M_test = "
                                  f"{M_test}, K = {K} (identical circulant steps; any matrices need tau_f < 1/2: "
                                  f"give A_f explicitly), got {tau:g}")
    return 0.5 * (max(rlo, 0.0) + edge)


def frame_matrices(pis, sigma) -> np.ndarray:
    """``A_k[j, Sigma_k(Sigma_{k-1}^-1(j) + r)] = pis[k][r]`` for permutations ``sigma`` ``(K, M')``
    (module docstring); correct step ``sigma_k(j)``."""
    sigma = np.asarray(sigma, dtype=np.int64)
    K, Mt = sigma.shape
    A = np.zeros((K, Mt, Mt))
    frame = np.arange(Mt)           # Sigma_{k-1}: frame coordinate -> state
    for k in range(K):
        nxt = sigma[k][frame]       # Sigma_k
        for w in range(Mt):
            for r in range(Mt):
                A[k, frame[w], nxt[(w + r) % Mt]] += pis[k][r]
        frame = nxt
    return A


def generate(M_test: int, K: int, tau: float, rho: float | None = None, condition1: bool = True,
             rng: np.random.Generator | None = None) -> np.ndarray:
    """Transition matrices ``(K, M', M')`` with ``tau^f = tau`` exactly, ``rho^f = rho`` (or the
    default of :func:`choose_rho`) and Condition 1 as requested (module docstring).

    The correct step functions ``sigma_k`` are uniformly random permutations from ``rng``
    (identities when ``rng`` is None).
    """
    rho = choose_rho(M_test, K, tau, rho, condition1)
    p = float(tau) ** (1.0 / int(K))
    pi = step_distribution(int(M_test), p, p - rho)
    if M_test > 2:
        pi[1] = max(pi[1], pi[2])   # q = s exactly when rho is the spread maximum (no rounding decoy)
        pi[2:] = (1.0 - p - pi[1]) / (M_test - 2)
    if rng is None:
        sigma = np.tile(np.arange(M_test), (K, 1))
    else:
        sigma = np.stack([rng.permutation(M_test) for _ in range(K)])
    return frame_matrices([pi] * int(K), sigma)
