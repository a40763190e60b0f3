"""Extended-precision brute force (mpmath): the oracle of the relative-accuracy tests.

It enumerates every count vector ``c ~ Multinomial(N, p)`` (MODEL.md section 3, "brute-force
enumeration"), evaluates the per-prompt quantities of MODEL.md section 2 in ``dps``-digit
arithmetic (no underflow: mpmath exponents are unbounded) and weights them by the exact
multinomial probabilities.  It shares no code with the engine: the float64 inputs are taken
exactly, ``p`` is normalised by its exact sum.

Besides the plain quantities it returns the same-signed parts that the engine reports (the
query feature present or absent; positive and negative parts of each gradient entry), written
from their per-prompt definitions::

    ell_k = (R^2 + D + s2 (c_k a_k^2 + W)) / Z^2,   R = sum_{n != k} x_n,  D = sum_{n != k} x_n^2,
    d ell_k / d A_k      = [2 s2 x_k a_k R] / Z^3 - [2 x_k (R^2 + D) + 2 s2 x_k W] / Z^3,
    d ell_k / d B_{k,m}  = [2 x_m (2 x_m x_k + x_k R' + x_m R') + 2 s2 x_m a_m (x_k + R')] / Z^3
                           - [2 x_m D' + 2 s2 x_m (c_k a_k^2 + W')] / Z^3,

(``x_n = c_n a_n``, ``W = sum_{n != k} c_n a_n^2``, primes: sums over ``n`` not in ``{k, m}``),
and the plain formulas of MODEL.md section 2 (``1 - 2 Attn_k + S``; ``2 Attn_m (Attn_k + Attn_m
- S) - 2 Attn_k [m == k]`` plus the noise terms) so that a test can check the identities.
"""
from __future__ import annotations

import mpmath as mp

from dynamics.models.huang2024.bruteforce import count_vectors


def _mpf(x):
    """A float64 (taken exactly) or an mpf (kept) as an mpf."""
    return x if isinstance(x, mp.mpf) else mp.mpf(float(x))


def column(theta_col, p, k: int, N: int, sigma2: float = 0.0, dps: int = 50) -> dict:
    """Exact expectations for query feature ``k`` (column ``theta[:, k]``, floats or mpf) as mpf numbers.

    Keys: ``ell``, ``ell_present``, ``ell_absent``, ``rest`` (``1 - E[Attn_k]``), ``absent``
    (``P(c_k = 0)``), ``ell_plain``; lists over ``n``: ``attn``, ``grad_pos``, ``grad_neg``,
    ``grad_plain`` (each gradient entry ``E[d ell_k / d theta[n, k]]``, not yet times ``p_k / 2``).
    """
    K = len(p)
    with mp.workdps(dps):
        th = [_mpf(x) for x in theta_col]
        pm = [_mpf(x) for x in p]
        tot = mp.fsum(pm)
        pm = [x / tot for x in pm]
        top = max(th)
        a = [mp.exp(x - top) for x in th]
        s2 = mp.mpf(float(sigma2))
        fact = [mp.factorial(i) for i in range(N + 1)]
        zero = mp.mpf(0)
        out = {key: zero for key in ("ell_present", "ell_absent", "rest", "absent", "ell_plain")}
        for key in ("attn", "grad_pos", "grad_neg", "grad_plain"):
            out[key] = [zero] * K
        for cv in count_vectors(K, N).tolist():
            w = fact[N]
            for i in range(K):
                if cv[i]:
                    w *= pm[i] ** cv[i] / fact[cv[i]]
            if w == 0:
                continue
            x = [cv[i] * a[i] for i in range(K)]
            Z = mp.fsum(x)
            others = [n for n in range(K) if n != k]
            Rs = mp.fsum(x[n] for n in others)
            Ds = mp.fsum(x[n] ** 2 for n in others)
            Ws = mp.fsum(cv[n] * a[n] ** 2 for n in others)
            noise_k = cv[k] * a[k] ** 2
            ell = (Rs**2 + Ds + s2 * (noise_k + Ws)) / Z**2
            if cv[k]:
                out["ell_present"] += w * ell
            else:
                out["ell_absent"] += w * ell
                out["absent"] += w
            out["rest"] += w * Rs / Z
            attn = [xi / Z for xi in x]
            S = mp.fsum(t**2 for t in attn)
            noise = (noise_k + Ws) / Z**2
            out["ell_plain"] += w * (1 - 2 * attn[k] + S + s2 * noise)
            Z3 = Z**3
            for m in range(K):
                out["attn"][m] += w * attn[m]
                if m == k:
                    pos = 2 * s2 * x[k] * a[k] * Rs / Z3
                    neg = (2 * x[k] * (Rs**2 + Ds) + 2 * s2 * x[k] * Ws) / Z3
                else:
                    rest = [n for n in others if n != m]
                    R1 = mp.fsum(x[n] for n in rest)
                    D1 = mp.fsum(x[n] ** 2 for n in rest)
                    W1 = mp.fsum(cv[n] * a[n] ** 2 for n in rest)
                    pos = (2 * x[m] * (2 * x[m] * x[k] + x[k] * R1 + x[m] * R1) + 2 * s2 * x[m] * a[m] * (x[k] + R1)) / Z3
                    neg = (2 * x[m] * D1 + 2 * s2 * x[m] * (noise_k + W1)) / Z3
                out["grad_pos"][m] += w * pos
                out["grad_neg"][m] += w * neg
                plain = 2 * attn[m] * (attn[k] + attn[m] - S) - (2 * attn[k] if m == k else 0)
                plain += s2 * (2 * cv[m] * a[m] ** 2 / Z**2 - 2 * attn[m] * noise)
                out["grad_plain"][m] += w * plain
        out["ell"] = out["ell_present"] + out["ell_absent"]
    return out


def binomial_column(A: float, B: float, p_k: float, N: int, dps: int = 50) -> dict:
    """K = 2 at any N by a sum over ``c_k ~ Binomial(N, p_k)`` (N + 1 terms): the column
    ``(theta[k, k], theta[m, k]) = (A, B)``, no label noise.  Same keys as :func:`column`
    (lists indexed ``[k, m]``)."""
    with mp.workdps(dps):
        pk = mp.mpf(float(p_k))
        pm = 1 - pk
        top = max(mp.mpf(A), mp.mpf(B))
        ak, am = mp.exp(mp.mpf(A) - top), mp.exp(mp.mpf(B) - top)
        zero = mp.mpf(0)
        out = {key: zero for key in ("ell_present", "ell_absent", "rest", "absent", "ell_plain")}
        for key in ("attn", "grad_pos", "grad_neg", "grad_plain"):
            out[key] = [zero, zero]
        for ck in range(N + 1):
            cm = N - ck
            w = mp.binomial(N, ck) * pk**ck * pm**cm
            xk, xm = ck * ak, cm * am
            Z = xk + xm
            ell = 2 * xm**2 / Z**2  # R = D^(1/2) = x_m
            if ck:
                out["ell_present"] += w * ell
            else:
                out["ell_absent"] += w * ell
                out["absent"] += w
            out["rest"] += w * xm / Z
            out["attn"][0] += w * xk / Z
            out["attn"][1] += w * xm / Z
            out["grad_neg"][0] += w * 2 * xk * 2 * xm**2 / Z**3
            out["grad_pos"][1] += w * 2 * xm * 2 * xm * xk / Z**3
        out["ell"] = out["ell_present"] + out["ell_absent"]
    return out


def _weighted_counts(pm, N):
    """Every count vector with its exact multinomial probability (mpf), zero-probability ones left out."""
    fact = [mp.factorial(i) for i in range(N + 1)]
    for cv in count_vectors(len(pm), N).tolist():
        w = fact[N]
        for i in range(len(pm)):
            if cv[i]:
                w *= pm[i] ** cv[i] / fact[cv[i]]
        if w != 0:
            yield cv, w


def column_m(theta_col, p, k: int, N: int, M, sigma2: float = 0.0, dps: int = 50) -> dict:
    """Exact expectations for query feature ``k`` with the label covariance ``M`` (issue 20), as mpf.

    Per prompt, from the plain definitions: ``ell_k = r^T M r + s2 sum_n c_n a_n^2 / Z^2`` with
    ``r = Attn - e_k``, and ``d ell_k / d theta_j = 2 Attn_j [(M r)_j - Attn^T M r]`` plus the noise
    terms of :func:`column`.  ``M`` (float64 entries, taken exactly).  Keys: ``ell``; lists over
    ``n``: ``attn``, ``grad`` (not yet times ``p_k / 2``) and ``grad_abs`` (``E|d ell_k / d theta_n|``,
    the scale a gradient entry is compared at).
    """
    K = len(p)
    with mp.workdps(dps):
        th = [_mpf(x) for x in theta_col]
        pm = [_mpf(x) for x in p]
        tot = mp.fsum(pm)
        pm = [x / tot for x in pm]
        Mm = [[_mpf(M[i][j]) for j in range(K)] for i in range(K)]
        top = max(th[i] for i in range(K) if pm[i] > 0)
        a = [mp.exp(x - top) for x in th]
        s2 = mp.mpf(float(sigma2))
        zero = mp.mpf(0)
        out = {"ell": zero, "attn": [zero] * K, "grad": [zero] * K, "grad_abs": [zero] * K}
        for cv, w in _weighted_counts(pm, N):
            x = [cv[i] * a[i] for i in range(K)]
            Z = mp.fsum(x)
            attn = [xi / Z for xi in x]
            r = [attn[i] - (1 if i == k else 0) for i in range(K)]
            Mr = [mp.fsum(Mm[i][j] * r[j] for j in range(K)) for i in range(K)]
            rMr = mp.fsum(r[i] * Mr[i] for i in range(K))
            aMr = mp.fsum(attn[i] * Mr[i] for i in range(K))
            noise = mp.fsum(cv[i] * a[i] ** 2 for i in range(K)) / Z**2
            out["ell"] += w * (rMr + s2 * noise)
            for j in range(K):
                g = 2 * attn[j] * (Mr[j] - aMr) + s2 * (2 * cv[j] * a[j] ** 2 / Z**2 - 2 * attn[j] * noise)
                out["attn"][j] += w * attn[j]
                out["grad"][j] += w * g
                out["grad_abs"][j] += w * abs(g)
    return out
