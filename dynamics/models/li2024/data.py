"""The data model of H. Li et al. (ICML 2024; MODEL.md section 8): patterns, tasks, prompts.

In-domain: orthonormal IDR patterns ``mu_1..mu_M1`` and IDI patterns ``nu_1..nu_M2``; an input
is ``x = mu_j + kappa nu_k`` (slides: "each in-domain data x = mu_j + noise"; the slides' worked
example ``mu_1 + 0.2 nu_3``, ``mu_1 - 0.3 nu_5``).  A task is an ordered pair ``(a, b)``,
``a != b``: ``f(x) = +1`` if x's IDR pattern is ``mu_a``, ``-1`` if ``mu_b``, a random label
otherwise, so ``|T| = M1 (M1 - 1)``.  Training uses ``T_tr``, a subset covering every pattern as
``a`` and as ``b`` with ``|T_tr| / |T| >= (M1 - 1)^(-1/2)`` (Theorem 1, condition 1; the slides:
"the training tasks uniformly cover all the IDR patterns and labels").  By default ``T_tr`` is
*balanced* (:func:`balanced_tasks`: every pattern exactly ``k`` times as ``a`` and ``k`` times as
``b``, ``|T_tr| = k M1``); the random minimal cover (:func:`training_tasks`) is the option
``task_set = cover``.

Out of domain: ``M1'`` ODR patterns ``mu'_j = sum_i c_{j,i} mu_i`` with ``sum_i c_{j,i} = S1``
(slides: "Consider each ODR pattern as a linear combination of IDR patterns. Denote S_1 as the
summation of the linear coefficients"), ``M2'`` ODI patterns in the span of the IDI patterns,
tasks ``T'`` = ordered pairs of ODR patterns.

Prompt (slides eq. 6): ``l`` examples, each of pattern ``a`` or ``b`` with probability
``alpha/2`` each and of another pattern otherwise ("with a probability of alpha/2, select
examples of mu_a and mu_b ... Replace alpha with alpha' if it is a testing task"); the query's
pattern is ``a`` or ``b`` with probability 1/2 each and its label ``z = f(x_q)``.  Columns
``p_i = (x_i; y_i)`` with ``y_i = +q`` or ``-q``; the query column is ``(x_q; 0)``.

The pieces shared with the chain-of-thought system live in :mod:`.patterns`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dynamics.core.jit import jit
from dynamics.models.shared import patterns
from dynamics.models.shared.draws import alpha_patterns, check_rule, draws_need_other

DOMAINS = ("train", "id", "ood")
"""``train``: tasks ``T_tr``; ``id``: unseen in-domain tasks ``T \\ T_tr``; ``ood``: tasks ``T'``."""
COVER_TRIES = 10_000


@jit
def assemble(tasks, task_idx, qrole, pat, roles, rand, table, rel_vecs, irr_vecs, irr, kappa, q, P, z, same, rel,
             label):
    """The prompts of :meth:`DataModel.sample` from its draws, in one pass (no temporaries).

    ``task = tasks[task_idx]``; the query's pattern ``task[b, qrole[b]]``, label
    ``z = +1`` for ``qrole = 0``, ``-1`` otherwise; an example's label ``+1`` / ``-1`` for roles
    0 / 1, else the fair sign ``2 rand[b, i] - 1`` (``rand`` with ``other_label = example``) or
    ``2 table[b, pat] - 1`` (``table``, one sign per prompt and pattern, when ``rand`` has no
    columns).  ``P[b, i] = (rel_vecs[rel[b, i]] + kappa[b, i] irr_vecs[irr[b, i]]; label[b, i] q)``
    with the query's label part 0; ``rel`` (B, L + 1) and ``label`` (B, L + 1, the query's ``z``
    last) are filled for ``with_patterns``.
    """
    B, L = pat.shape
    dx = rel_vecs.shape[1]
    dy = q.shape[0]
    per_example = rand.shape[1] > 0
    for b in range(B):
        t = task_idx[b]
        qp = tasks[t, qrole[b]]
        zb = 1.0 if qrole[b] == 0 else -1.0
        z[b] = zb
        for i in range(L + 1):
            if i < L:
                p = pat[b, i]
                ro = roles[b, i]
                if ro == 0:
                    y = 1.0
                elif ro == 1:
                    y = -1.0
                elif per_example:
                    y = 2.0 * rand[b, i] - 1.0
                else:
                    y = 2.0 * table[b, p] - 1.0
                same[b, i] = p == qp
                label[b, i] = y
            else:
                p = qp
                y = 0.0
                label[b, i] = zb
            rel[b, i] = p
            k, w = irr[b, i], kappa[b, i]
            for j in range(dx):
                P[b, i, j] = rel_vecs[p, j] + w * irr_vecs[k, j]
            for j in range(dy):
                P[b, i, dx + j] = y * q[j]


class Prompts(NamedTuple):
    """A batch of prompts (a tuple of arrays whose first axis is the prompt).

    ``P``: ``(B, L + 1, d)`` columns ``p_i = (x_i; y_i)``, the query ``(x_q; 0)`` last.
    ``z``: ``(B,)`` the query's label ``+-1``.
    ``same``: ``(B, L)`` True where a context example shares the query's relevant pattern.
    """

    P: np.ndarray
    z: np.ndarray
    same: np.ndarray


def all_tasks(M: int) -> np.ndarray:
    """Every task ``(a, b)``, ``a != b``, of ``M`` patterns: shape ``(M (M - 1), 2)``."""
    return np.array([(a, b) for a, b in itertools.permutations(range(int(M)), 2)], dtype=np.int64)


def covers(tasks: np.ndarray, M: int) -> bool:
    """True if every pattern appears as ``a`` (label +1) and as ``b`` (label -1) in ``tasks``."""
    return len(set(tasks[:, 0].tolist())) == M and len(set(tasks[:, 1].tolist())) == M


def training_tasks(M: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``T_tr``: the smallest task subset with ``|T_tr| / |T| >= fraction`` covering every pattern
    and label, drawn uniformly among such subsets (rejection sampling; after
    :data:`COVER_TRIES` failures, a random cycle ``(s_i, s_{i+1})`` plus uniform extra tasks).

    The size is ``max(ceil(fraction |T|), M)`` (covering needs ``M`` tasks).  Rows are sorted.
    """
    T = all_tasks(M)
    n = max(int(np.ceil(fraction * len(T) - 1e-12)), M)
    n = min(n, len(T))
    for _ in range(COVER_TRIES):
        pick = T[np.sort(rng.choice(len(T), n, replace=False))]
        if covers(pick, M):
            return pick
    perm = rng.permutation(M)
    cycle = {(int(perm[i]), int(perm[(i + 1) % M])) for i in range(M)}
    rest = [i for i, (a, b) in enumerate(T.tolist()) if (a, b) not in cycle]
    extra = rng.choice(rest, n - M, replace=False) if n > M else []
    chosen = sorted(cycle | {tuple(T[i]) for i in extra})
    return np.array(chosen, dtype=np.int64)


def balanced_count(M: int, fraction: float | None) -> int:
    """``k``, the times each pattern is ``a`` (and ``b``) in a balanced ``T_tr`` of ``k M`` tasks.

    ``fraction`` not set: the smallest ``k`` with ``k M / |T| >= (M - 1)^(-1/2)`` (Theorem 1),
    i.e. ``k = ceil(sqrt(M - 1))`` (``M = 6``: ``k = 3``, 18 of 30 tasks).  Given: ``ceil(fraction
    |T|)`` must be a multiple ``k M`` of ``M`` (otherwise no balanced set of that size exists;
    ValueError naming ``task_fraction`` and the nearest balanced fractions).
    """
    M = int(M)
    nT = M * (M - 1)
    if fraction is None:
        return min(int(np.ceil(np.sqrt(M - 1) - 1e-12)), M - 1)
    n = max(int(np.ceil(float(fraction) * nT - 1e-12)), 1)
    if n % M:
        lo, hi = (n // M) * M, (n // M + 1) * M
        near = ", ".join(f"{v / nT:.4g} ({v} tasks)" for v in (lo, hi) if 0 < v <= nT)
        raise ValueError(f"task_fraction {float(fraction):g} gives |T_tr| = {n} of {nT} tasks, not a multiple of "
                         f"M1 = {M}: no balanced training set (each pattern equally often as a and as b) has that "
                         f"size; balanced fractions nearby: {near} (or task_set = cover)")
    return n // M


def balanced_tasks(M: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A balanced ``T_tr``: every pattern exactly ``k`` times as ``a`` (label +1) and ``k`` times
    as ``b`` (label -1), ``k M`` distinct tasks.

    Construction: a random permutation ``pi`` of the patterns and ``k`` distinct shifts ``s``
    drawn uniformly from ``1 .. M - 1``; the tasks are ``(pi_i, pi_{(i + s) mod M})`` for every
    ``i`` and shift (each shift puts every pattern once in each role).  ``k = M - 1`` gives every
    task.  Rows are sorted.
    """
    M, k = int(M), int(k)
    if not 1 <= k <= M - 1:
        raise ValueError(f"k must be an integer in [1, M - 1] = [1, {M - 1}], got {k}")
    perm = rng.permutation(M)
    shifts = np.sort(rng.choice(np.arange(1, M), k, replace=False))
    tasks = sorted({(int(perm[i]), int(perm[(i + s) % M])) for s in shifts for i in range(M)})
    return np.array(tasks, dtype=np.int64)


def role_counts(tasks: np.ndarray, M: int) -> np.ndarray:
    """``(2, M)``: how often each pattern is ``a`` (row 0) and ``b`` (row 1) in ``tasks``."""
    tasks = np.asarray(tasks, dtype=np.int64).reshape(-1, 2)
    return np.stack([np.bincount(tasks[:, 0], minlength=int(M)), np.bincount(tasks[:, 1], minlength=int(M))])


@dataclass
class DataModel:
    """Patterns, task sets and the prompt sampler (module docstring).

    Attributes
    ----------
    mu : (M1, d_x)        IDR patterns.          nu : (M2, d_x)   IDI patterns.
    q : (d_y,)            label embedding.
    odr : (M1', d_x)      ODR patterns ``mu'``.  odr_coeffs : (M1', M1) their ``c_{j,i}``.
    odi : (M2', d_x)      ODI patterns ``nu'``.
    tasks : (|T|, 2)      every in-domain task.  train_tasks : ``T_tr``.  unseen_tasks : ``T \\ T_tr``
                          (all of ``T`` when ``T_tr = T``).  ood_tasks : ``T'``.
    kappa_low, kappa_high : bounds of ``kappa ~ U[kappa_low, kappa_high]``.
    other_label : ``example`` (a fresh fair sign per example) or ``prompt`` (one fair sign per
                  prompt and non-task pattern).
    """

    mu: np.ndarray
    nu: np.ndarray
    q: np.ndarray
    odr: np.ndarray
    odr_coeffs: np.ndarray
    odi: np.ndarray
    tasks: np.ndarray
    train_tasks: np.ndarray
    unseen_tasks: np.ndarray
    ood_tasks: np.ndarray
    kappa_low: float
    kappa_high: float
    other_label: str = "example"

    @property
    def d_x(self) -> int:
        return self.mu.shape[1]

    @property
    def d(self) -> int:
        """Column dimension ``d_x + d_y``."""
        return self.mu.shape[1] + self.q.shape[0]

    @property
    def mu_bar(self) -> np.ndarray:
        """The mean IDR pattern ``mu_bar`` (Proposition 2)."""
        return self.mu.mean(axis=0)

    def domain(self, name: str):
        """``(relevant patterns, irrelevant patterns, tasks)`` of a domain (:data:`DOMAINS`)."""
        if name == "train":
            return self.mu, self.nu, self.train_tasks
        if name == "id":
            return self.mu, self.nu, self.unseen_tasks
        if name == "ood":
            return self.odr, self.odi, self.ood_tasks
        raise ValueError(f"domain must be one of {', '.join(DOMAINS)}, got {name!r}")

    def sample(self, rng: np.random.Generator, size: int, length: int, alpha: float, domain: str = "train",
               with_patterns: bool = False):
        """``size`` prompts of ``length`` examples from ``domain`` (module docstring).

        Returns :class:`Prompts`; with ``with_patterns`` also a dict of the draws (``task``,
        ``rel`` (B, L+1) relevant-pattern index of every column, the query last, ``irr``,
        ``kappa``, ``label`` (B, L+1) with the query's label last).
        """
        rel_vecs, irr_vecs, tasks = self.domain(domain)
        size, length = int(size), int(length)
        alpha = float(alpha)
        n_rel = rel_vecs.shape[0]
        check_rule(alpha, length, n_rel, 2)
        # The draws of patterns.example_patterns and of the rest, in the same calls and order as
        # before (the stream is unchanged); draws.alpha_patterns and assemble do the arithmetic.
        task_idx = rng.integers(0, len(tasks), size)
        u = rng.random((size, length))
        if draws_need_other(u, alpha):
            other = rng.integers(0, max(n_rel - 2, 1), size=(size, length))
        else:
            other = np.zeros((size, length), dtype=np.int64)
        pat = np.empty((size, length), dtype=np.int64)
        roles = np.empty((size, length), dtype=np.int64)
        task = tasks[task_idx]
        alpha_patterns(task, u, alpha, other, pat, roles)
        qrole = rng.integers(0, 2, size)
        irr = rng.integers(0, irr_vecs.shape[0], (size, length + 1))
        kappa = patterns.uniform_kappa(rng, (size, length + 1), self.kappa_low, self.kappa_high)
        if self.other_label == "example":
            rand, table = rng.integers(0, 2, (size, length)), np.empty((size, 0), dtype=np.int64)
        else:
            rand, table = np.empty((size, 0), dtype=np.int64), rng.integers(0, 2, (size, n_rel))
        P = np.empty((size, length + 1, self.d))
        z = np.empty(size)
        same = np.empty((size, length), dtype=np.bool_)
        rel = np.empty((size, length + 1), dtype=np.int64)
        label = np.empty((size, length + 1))
        assemble(tasks, task_idx, qrole, pat, roles, rand, table, rel_vecs, irr_vecs, irr, kappa, self.q, P, z, same,
                 rel, label)
        out = Prompts(P, z, same)
        if with_patterns:
            return out, dict(task=task, rel=rel, irr=irr, kappa=kappa, label=label)
        return out
