"""Orthonormal pattern sets and alpha-fraction prompts: the data-model pieces shared by both of
H. Li et al.'s systems (MODEL.md sections 8 and 9).

This module is the shared, stable API of the H. Li et al. data models.  The in-context
classifier (:mod:`dynamics.models.li2024`, ICML 2024) and the chain-of-thought model
(ICLR 2025) both build prompts from mutually orthonormal pattern sets, take test patterns as
linear combinations of training patterns, and choose each context example's pattern so that a
fraction ``alpha`` of them are *relevant* to the query.  Everything here is plain numpy, draws
only from the ``numpy.random.Generator`` it is given, and knows nothing of either network.

API (stable; both models depend on it)
--------------------------------------
``orthonormal_sets(dim, counts, rng=None) -> list of arrays``
    Mutually orthonormal pattern sets in ``R^dim``: set ``s`` has shape ``(counts[s], dim)``.
``haar_orthogonal(dim, rng) -> (dim, dim)``
    A Haar-distributed orthogonal matrix.
``coefficients(count, n_base, total, spread="disjoint", rng=None) -> (count, n_base)``
    Coefficient rows summing to ``total`` (the paper's ``S_1``), spread over the base patterns.
``combine(coeffs, base) -> (count, dim)``
    The combinations ``coeffs @ base`` (ODR patterns ``mu'_j = sum_i c_{j,i} mu_i``).
``span_patterns(base, count, rng) -> (count, dim)``
    Orthonormal patterns in the span of ``base`` (ODI patterns in the span of the IDI patterns).
``example_patterns(rng, relevant, alpha, n_patterns, length) -> (patterns, roles)``
    The alpha-fraction rule: each example takes one of its prompt's relevant patterns with
    probability ``alpha / r`` each, otherwise a uniformly random other pattern.
``mix(relevant_vectors, rel_idx, irrelevant_vectors, irr_idx, kappa) -> array``
    Inputs ``x = mu_j + kappa nu_k`` for index arrays of any shape.
``uniform_kappa(rng, shape, low, high) -> array``
    The irrelevant-pattern weights ``kappa ~ U[low, high]``.
``label_vector(dim) -> (dim,)``
    The label embedding ``q``: the first unit vector of the label coordinates.
``columns(x, y) -> array``
    Prompt columns ``p = (x; y)``: feature coordinates first, then label coordinates.
"""
from __future__ import annotations

import numpy as np

SPREADS = ("disjoint", "dirichlet")
"""How :func:`coefficients` spreads a coefficient sum over the base patterns."""


def haar_orthogonal(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A ``dim x dim`` orthogonal matrix drawn from the Haar measure (QR of a Gaussian matrix
    with the signs of R's diagonal absorbed, Mezzadri 2007)."""
    dim = int(dim)
    if dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim}")
    g = rng.standard_normal((dim, dim))
    qm, r = np.linalg.qr(g)
    return qm * np.where(np.diagonal(r) < 0, -1.0, 1.0)[None, :]


def orthonormal_sets(dim: int, counts, rng: np.random.Generator | None = None) -> list:
    """Mutually orthonormal pattern sets in ``R^dim`` (rows are the patterns).

    Set ``s`` holds ``counts[s]`` patterns; every pattern of every set is orthogonal to every
    other and has unit norm.  With ``rng=None`` the sets are consecutive blocks of the standard
    basis (set 0 = ``e_0 .. e_{counts[0]-1}``, and so on); with a generator they are the same
    blocks of the columns of a Haar-random orthogonal matrix.

    Examples: ``mu, nu = orthonormal_sets(30, (6, 24))`` (IDR and IDI patterns, MODEL.md
    section 8); ``mu, c = orthonormal_sets(d, (M, K))`` (patterns and positional encodings
    orthogonal to them, section 9).

    Raises ValueError if ``sum(counts) > dim`` or a count is negative.
    """
    counts = [int(c) for c in counts]
    if any(c < 0 for c in counts):
        raise ValueError(f"counts must be integers >= 0, got {counts}")
    if sum(counts) > int(dim):
        raise ValueError(f"dim must be >= sum(counts) = {sum(counts)} for orthonormal patterns, got {dim}")
    basis = np.eye(int(dim)) if rng is None else haar_orthogonal(int(dim), rng).T
    out, start = [], 0
    for c in counts:
        out.append(np.ascontiguousarray(basis[start:start + c]))
        start += c
    return out


def coefficients(count: int, n_base: int, total: float, spread: str = "disjoint",
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Coefficient rows ``c_j`` (shape ``(count, n_base)``) with ``sum_i c_{j,i} = total``.

    ``spread``:

    - ``"disjoint"``: the base patterns are split into ``count`` consecutive groups of sizes
      differing by at most one (the first ``n_base mod count`` groups one larger), and row ``j``
      puts ``total / |G_j|`` on each pattern of group ``G_j``.  Rows of orthonormal base
      patterns then combine into *orthogonal* patterns of norm ``total / sqrt(|G_j|)``.
      Requires ``count <= n_base``.  Deterministic (``rng`` unused).
    - ``"dirichlet"``: row ``j`` is ``total * Dirichlet(1, ..., 1)`` over all ``n_base``
      patterns (non-negative, uniform on the scaled simplex), drawn from ``rng``.  The
      combinations overlap.

    ``total`` may be any finite number (the paper's ``S_1``; negative and zero are allowed).
    """
    count, n_base = int(count), int(n_base)
    total = float(total)
    if not np.isfinite(total):
        raise ValueError(f"total (S1) must be finite, got {total}")
    if count < 1 or n_base < 1:
        raise ValueError(f"count and n_base must be integers >= 1, got {count}, {n_base}")
    if spread == "disjoint":
        if count > n_base:
            raise ValueError(f"disjoint spread needs count <= n_base, got count {count} > n_base {n_base}")
        c = np.zeros((count, n_base))
        sizes = [n_base // count + (1 if j < n_base % count else 0) for j in range(count)]
        start = 0
        for j, s in enumerate(sizes):
            c[j, start:start + s] = total / s
            start += s
        return c
    if spread == "dirichlet":
        if rng is None:
            raise ValueError("dirichlet spread needs a random generator rng")
        return total * rng.dirichlet(np.ones(n_base), size=count)
    raise ValueError(f"spread must be one of {', '.join(SPREADS)}, got {spread!r}")


def combine(coeffs, base) -> np.ndarray:
    """Linear combinations of base patterns: row ``j`` is ``sum_i coeffs[j, i] base[i]``."""
    coeffs = np.asarray(coeffs, dtype=np.float64)
    base = np.asarray(base, dtype=np.float64)
    if coeffs.ndim != 2 or base.ndim != 2 or coeffs.shape[1] != base.shape[0]:
        raise ValueError(f"coeffs (count, n_base) and base (n_base, dim) must match, got {coeffs.shape} "
                         f"and {base.shape}")
    return coeffs @ base


def span_patterns(base, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` orthonormal patterns in the span of the orthonormal rows of ``base``: the first
    ``count`` rows of ``R base`` for a Haar-random rotation ``R`` of the span."""
    base = np.asarray(base, dtype=np.float64)
    count = int(count)
    if not 1 <= count <= base.shape[0]:
        raise ValueError(f"count must be between 1 and the number of base patterns {base.shape[0]}, got {count}")
    return haar_orthogonal(base.shape[0], rng)[:count] @ base


def example_patterns(rng: np.random.Generator, relevant, alpha: float, n_patterns: int, length: int):
    """Patterns of the context examples under the alpha-fraction rule.

    Parameters
    ----------
    rng : numpy.random.Generator
    relevant : int array (size, r)
        Each prompt's relevant patterns (distinct within a row): ICL uses ``r = 2``, the
        task's pair ``(a, b)`` ("with a probability of alpha/2, select examples of mu_a and
        mu_b"); chain of thought uses ``r = 1``, the query's pattern.
    alpha : float in (0, 1]
        Probability that an example takes a relevant pattern (then each with ``alpha / r``).
    n_patterns : int
        Number of patterns; a non-relevant example takes one of the ``n_patterns - r`` others
        uniformly.
    length : int
        Examples per prompt.

    Returns
    -------
    patterns : int array (size, length)
        The pattern index of every example.
    roles : int array (size, length)
        ``k`` when the example took ``relevant[:, k]``, ``-1`` when it took another pattern.
    """
    rel = np.asarray(relevant, dtype=np.int64)
    if rel.ndim != 2 or rel.shape[1] < 1:
        raise ValueError(f"relevant must be an integer array of shape (size, r), got shape {rel.shape}")
    alpha = float(alpha)
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    size, r = rel.shape
    length, n_patterns = int(length), int(n_patterns)
    if length < 1:
        raise ValueError(f"length must be an integer >= 1, got {length}")
    if rel.size and (rel.min() < 0 or rel.max() >= n_patterns):
        raise ValueError(f"relevant patterns must be indices in [0, {n_patterns}), got {rel.min()}..{rel.max()}")
    if alpha < 1.0 and n_patterns <= r:
        raise ValueError(f"alpha < 1 needs a pattern outside the {r} relevant ones: n_patterns must be > {r}, "
                         f"got {n_patterns}")
    u = rng.random((size, length))
    is_rel = u < alpha
    k = np.minimum((u * r / alpha).astype(np.int64), r - 1)  # uniform over r given is_rel
    pat = np.take_along_axis(rel, np.where(is_rel, k, 0), axis=1)
    roles = np.where(is_rel, k, -1)
    if not np.all(is_rel):
        other = rng.integers(0, max(n_patterns - r, 1), size=(size, length))
        srt = np.sort(rel, axis=1)
        for j in range(r):  # map 0..n-r-1 onto the complement of each row's relevant set
            other += other >= srt[:, j:j + 1]
        pat = np.where(is_rel, pat, other)
    return pat, roles


def mix(relevant_vectors, rel_idx, irrelevant_vectors, irr_idx, kappa) -> np.ndarray:
    """Inputs ``x = relevant_vectors[rel_idx] + kappa * irrelevant_vectors[irr_idx]``.

    Index arrays and ``kappa`` share one shape ``S``; the result has shape ``S + (dim,)``.
    """
    kappa = np.asarray(kappa, dtype=np.float64)
    return relevant_vectors[rel_idx] + kappa[..., None] * irrelevant_vectors[irr_idx]


def uniform_kappa(rng: np.random.Generator, shape, low: float, high: float) -> np.ndarray:
    """``kappa ~ U[low, high]`` of the given shape (``low == high`` gives the constant)."""
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise ValueError(f"kappa bounds must be finite with low <= high, got [{low}, {high}]")
    return low + (high - low) * rng.random(shape)


def label_vector(dim: int) -> np.ndarray:
    """The label embedding ``q``: the unit vector ``e_1`` of the ``dim`` label coordinates
    (``y = +q`` for label +1, ``-q`` for -1; slides: "y_i = q if f(x_i) = +1")."""
    dim = int(dim)
    if dim < 1:
        raise ValueError(f"label dimension must be an integer >= 1, got {dim}")
    q = np.zeros(dim)
    q[0] = 1.0
    return q


def columns(x, y) -> np.ndarray:
    """Prompt columns ``p = (x; y)`` (slides eq. 6): ``x`` shape ``S + (d_x,)``, ``y`` shape
    ``S + (d_y,)`` broadcast to a common ``S``; result ``S + (d_x + d_y,)``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    out = np.empty(shape + (x.shape[-1] + y.shape[-1],))
    out[..., :x.shape[-1]] = x
    out[..., x.shape[-1]:] = y
    return out
