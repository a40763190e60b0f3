"""The alpha-fraction rule of :func:`dynamics.models.shared.patterns.example_patterns` as a
compiled loop over the same numpy draws (issue 21: the numpy version's temporaries and
``take_along_axis``/``where`` passes were a third of a training step).

The random numbers are still drawn by the caller from its ``numpy.random.Generator``, by the same
calls in the same order as :func:`~dynamics.models.shared.patterns.example_patterns` makes them
(``u = rng.random((size, length))``, then ``rng.integers(0, max(n - r, 1), (size, length))``
only if some ``u >= alpha``), so the prompts, and every stream seeded from them, are unchanged
bit for bit; only the arithmetic that turns the draws into pattern indices moved here.

API
---
``check_rule(alpha, length, n_patterns, r)``
    The argument rules of ``example_patterns`` (a ValueError naming the argument), checked before
    anything is drawn.
``draws_need_other(u, alpha) -> bool``
    True when some example falls outside its prompt's relevant patterns (``u >= alpha``), i.e.
    when ``example_patterns`` draws the ``other`` array.
``alpha_patterns(rel, u, alpha, other, pat, roles)``
    Fills ``pat`` and ``roles`` ``(size, length)`` exactly as ``example_patterns`` returns them.
"""
from __future__ import annotations

import numpy as np

from dynamics.core.jit import jit


def check_rule(alpha: float, length: int, n_patterns: int, r: int) -> None:
    """``alpha`` in (0, 1], ``length >= 1``, and a pattern outside the ``r`` relevant ones when
    ``alpha < 1`` (the rules of ``example_patterns``)."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if length < 1:
        raise ValueError(f"length must be an integer >= 1, got {length}")
    if alpha < 1.0 and n_patterns <= r:
        raise ValueError(f"alpha < 1 needs a pattern outside the {r} relevant ones: n_patterns must be > {r}, "
                         f"got {n_patterns}")


@jit
def draws_need_other(u, alpha):
    """True if any entry of ``u`` is ``>= alpha`` (``not np.all(u < alpha)``)."""
    for x in u.flat:
        if not x < alpha:
            return True
    return False


@jit
def alpha_patterns(rel, u, alpha, other, pat, roles):
    """The alpha-fraction rule on given draws.

    Parameters
    ----------
    rel : (size, r) int, each prompt's distinct relevant patterns.
    u : (size, length) float, uniforms in [0, 1).
    alpha : float in (0, 1].
    other : (size, length) int, uniform in ``[0, n_patterns - r)``; read only where
        ``u >= alpha`` (any array of that shape otherwise).
    pat, roles : (size, length) int outputs: the example's pattern; ``k`` when it took
        ``rel[:, k]`` (probability ``alpha / r`` each), ``-1`` for a non-relevant pattern, which
        is the ``other``-th pattern of the complement of the prompt's relevant set.
    """
    size, length = u.shape
    r = rel.shape[1]
    srt = np.empty(r, dtype=np.int64)
    for b in range(size):
        for j in range(r):                     # insertion sort of the (few) relevant patterns
            x = rel[b, j]
            k = j
            while k > 0 and srt[k - 1] > x:
                srt[k] = srt[k - 1]
                k -= 1
            srt[k] = x
        for i in range(length):
            ui = u[b, i]
            if ui < alpha:
                k = min(np.int64(ui * r / alpha), r - 1)
                pat[b, i] = rel[b, k]
                roles[b, i] = k
            else:
                o = other[b, i]
                for j in range(r):
                    if o >= srt[j]:
                        o += 1
                pat[b, i] = o
                roles[b, i] = -1
