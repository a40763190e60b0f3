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
``label_vector(dim, norm=1.0) -> (dim,)``
    The label embedding ``q``: ``norm`` times the first unit vector of the label coordinates.
``groups(n_base, count) -> list of index arrays``
    The ``count`` consecutive groups of base patterns that ``"disjoint"`` coefficients use.
``sum_norm_coefficients(count, n_base, total, norm) -> (count, n_base)``
    Disjoint-group coefficient rows with sum ``total`` and Euclidean norm ``norm``, exactly.
``vector_coefficients(count, n_base, vector, norm=None) -> (count, n_base)``
    The same coefficient vector on every group, rescaled to ``norm`` or left as it is.
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
        c = np.zeros((count, n_base))
        for j, g in enumerate(groups(n_base, count)):
            c[j, g] = total / g.size
        return c
    if spread == "dirichlet":
        if rng is None:
            raise ValueError("dirichlet spread needs a random generator rng")
        return total * rng.dirichlet(np.ones(n_base), size=count)
    raise ValueError(f"spread must be one of {', '.join(SPREADS)}, got {spread!r}")


def groups(n_base: int, count: int) -> list:
    """The ``count`` consecutive groups of ``range(n_base)`` with sizes differing by at most one
    (the first ``n_base mod count`` groups one larger): the supports of ``"disjoint"`` rows."""
    count, n_base = int(count), int(n_base)
    if count < 1 or count > n_base:
        raise ValueError(f"disjoint groups need 1 <= count <= n_base, got count {count}, n_base {n_base}")
    sizes = [n_base // count + (1 if j < n_base % count else 0) for j in range(count)]
    ends = np.cumsum(sizes)
    return [np.arange(e - s, e) for s, e in zip(sizes, ends)]


def sum_norm_coefficients(count: int, n_base: int, total: float, norm: float) -> np.ndarray:
    """Coefficient rows on disjoint groups with ``sum_i c_{j,i} = total`` and ``|c_j| = norm``.

    On group ``G`` (size ``g``, :func:`groups`) the row is ``c = (total / g) 1 + r e`` with
    ``e`` the fixed unit vector ``(g - 1, -1, ..., -1) / sqrt(g (g - 1))`` orthogonal to ``1``
    and ``r = sqrt(norm^2 - total^2 / g) >= 0``: the sum and the norm are set separately
    (the ODR patterns ``c @ mu`` of orthonormal ``mu`` then have norm ``norm`` and are mutually
    orthogonal).  ``g = 2``: ``c = (total/2 + r/sqrt(2), total/2 - r/sqrt(2))``.

    Parameters
    ----------
    count, n_base : int
        Rows (ODR patterns) and base patterns (IDR patterns), ``count <= n_base``.
    total : float
        The coefficient sum ``S_1`` (any sign, 0 included).
    norm : float
        The norm ``|c_j| > 0``.

    Returns
    -------
    (count, n_base) array

    Raises ValueError (naming ``S1`` or ``odr_norm``) if ``norm <= 0`` or a group cannot reach
    the pair: ``|total| > sqrt(g) norm`` (Cauchy-Schwarz), or ``g = 1`` with ``|total| != norm``.
    """
    total, norm = float(total), float(norm)
    if not np.isfinite(total):
        raise ValueError(f"S1 must be finite, got {total}")
    if not (np.isfinite(norm) and norm > 0):
        raise ValueError(f"odr_norm must be a finite number > 0, got {norm}")
    gs = groups(n_base, count)
    c = np.zeros((int(count), int(n_base)))
    for j, g in enumerate(gs):
        k = g.size
        r2 = norm ** 2 - total ** 2 / k
        if r2 < -1e-12 * norm ** 2 or (k == 1 and abs(r2) > 1e-12 * norm ** 2):
            raise ValueError(f"S1 must satisfy |S1| <= sqrt(g) odr_norm = {np.sqrt(k) * norm:.6g} for a group of "
                             f"g = {k} IDR patterns{' (g = 1: |S1| = odr_norm)' if k == 1 else ''}, got S1 {total:g}")
        e = np.full(k, -1.0)
        e[0] = k - 1.0
        e = e / np.linalg.norm(e) if k > 1 else np.zeros(1)
        c[j, g] = total / k + np.sqrt(max(r2, 0.0)) * e
    return c


def vector_coefficients(count: int, n_base: int, vector, norm: float | None = None) -> np.ndarray:
    """Coefficient rows that put the same ``vector`` on every disjoint group (:func:`groups`),
    rescaled to Euclidean norm ``norm`` when given, left as it is otherwise.

    ``vector`` must have one entry per pattern of a group (all groups of one size:
    ``n_base`` divisible by ``count``), be finite and not all zero.  Its sum (times the rescaling)
    is the ``S_1`` of every row.  Raises ValueError naming ``odr_coeffs`` or ``odr_norm``.
    """
    v = np.asarray(vector, dtype=np.float64).ravel()
    gs = groups(n_base, count)
    sizes = {g.size for g in gs}
    if len(sizes) != 1:
        raise ValueError(f"odr_coeffs needs groups of one size: M1 = {n_base} must be divisible by M1_test = "
                         f"{count}")
    k = sizes.pop()
    if v.size != k:
        raise ValueError(f"odr_coeffs must have {k} entries (one per IDR pattern of a group, M1 / M1_test), "
                         f"got {v.size}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"odr_coeffs must be finite, got {v.tolist()}")
    if not np.any(v != 0):
        raise ValueError("odr_coeffs must not be all zero (the ODR pattern would be the zero vector)")
    if norm is not None:
        norm = float(norm)
        if not (np.isfinite(norm) and norm > 0):
            raise ValueError(f"odr_norm must be a finite number > 0, got {norm}")
        v = v * (norm / np.linalg.norm(v))
    c = np.zeros((int(count), int(n_base)))
    for j, g in enumerate(gs):
        c[j, g] = v
    return c


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


def label_vector(dim: int, norm: float = 1.0) -> np.ndarray:
    """The label embedding ``q``: ``norm`` times the unit vector ``e_1`` of the ``dim`` label
    coordinates (``y = +q`` for label +1, ``-q`` for -1; slides: "y_i = q if f(x_i) = +1")."""
    dim = int(dim)
    if dim < 1:
        raise ValueError(f"label dimension must be an integer >= 1, got {dim}")
    norm = float(norm)
    if not (np.isfinite(norm) and norm > 0):
        raise ValueError(f"q_norm must be a finite number > 0, got {norm}")
    q = np.zeros(dim)
    q[0] = norm
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
