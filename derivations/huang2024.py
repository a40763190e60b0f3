"""Exact expectation of the per-prompt loss and gradient over multinomial counts (sympy).

MODEL.md sections 2 and 3, step by step:

1. *Per-prompt loss* of query feature ``k`` (the paper's ``L_k`` before the expectation),
   with ``Attn_n = c_n a_n / Z``, ``Z = sum_n c_n a_n``, ``a_n = exp(theta[n, k])``::

       ell_k = (1 - Attn_k)^2 + sum_{n != k} Attn_n^2 + sigma2 * sum_n c_n a_n^2 / Z^2

   written with *roles*: the query's own feature ``k`` (coordinate ``A_k``), the feature ``m``
   whose coordinate is differentiated (``B_{k,m}``, ``m != k``), and a generic other feature
   ``n`` whose terms are summed.  sympy differentiates with respect to ``theta[m, k]`` (or
   ``A_k``), through ``Z``.
2. Each resulting term is a monomial ``coef * prod c^e * prod a^b / Z^r``.
3. *Laplace*: ``1/Z^r = 1/(r-1)! int_0^inf t^(r-1) e^{-tZ} dt``; with ``t = e^x`` the integrand
   is ``t^r prod a^b = prod u^b`` (``u_i = t a_i``; scale invariance requires ``sum b = r``,
   which is asserted), times the tilted moment ``E[prod c^e e^{-tZ}]``.
4. *Generating function*: ``E[prod_n s_n^{c_n}] = phi^N``, ``phi = sum_n p_n s_n``,
   ``s_n = e^{-u_n}``; the tilted moment is ``prod (s_i d/ds_i)^{e_i} phi^N``, expressed with
   ``q_i = p_i s_i`` and the factorial prefactors ``P_j = N (N-1) ... (N-j+1) phi^(N-j)``.
5. *Sums over the other features*: every term is a polynomial in ``(u_n, q_n)``;
   ``sum_{n not a role} u_n^a q_n^b = T_{a,b} - sum_{roles} u_i^a q_i^b`` with
   ``T_{a,b} = sum_g m_g u_g^a q_g^b`` over symmetry classes (MODEL.md section 2).

The result is, for each *case* and each ``r``, a closed-form integrand in ``x = log t``.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import sympy as sp

from derivations.printer import REPO, jit_function

# ---------------------------------------------------------------------------------------
# Symbols.  Roles: k (query's own feature), m (differentiated feature), n (generic other).
ROLES = ("k", "m", "n")
c = {r: sp.Symbol(f"c_{r}", nonnegative=True) for r in ROLES}
a = {r: sp.Symbol(f"a_{r}", positive=True) for r in ROLES}
s = {r: sp.Symbol(f"s_{r}", positive=True) for r in ROLES}
p = {r: sp.Symbol(f"p_{r}", positive=True) for r in ROLES}
u = {r: sp.Symbol(f"u_{r}", positive=True) for r in ROLES}
q = {r: sp.Symbol(f"q_{r}", positive=True) for r in ROLES}
Z, R, N, PHI, PREST, sigma2, theta = sp.symbols("Z R N phi P_rest sigma2 theta")
PJ = {j: sp.Symbol(f"P{j}") for j in range(4)}  # P_j = N_(j) phi^(N-j), P0 = phi^N


def T(alpha: int, beta: int) -> sp.Symbol:
    """``T_{alpha,beta} = sum over all features of u^alpha q^beta`` (a per-node sum)."""
    return sp.Symbol(f"T_{alpha}_{beta}")


# ---------------------------------------------------------------------------------------
# Step 1: per-prompt loss, split into role terms F0 and the generic-other term F1(n).
def _attn(r):
    return c[r] * a[r] / Z


def own_term():
    """Terms of ell_k that involve the query's own feature: (1 - Attn_k)^2 + noise_k."""
    return (1 - _attn("k")) ** 2 + sigma2 * c["k"] * a["k"] ** 2 / Z**2


def other_term(r):
    """Terms of ell_k contributed by a feature ``r != k``: Attn_r^2 + noise_r."""
    return _attn(r) ** 2 + sigma2 * c[r] * a[r] ** 2 / Z**2


@dataclass(frozen=True)
class Case:
    """One expectation to derive.

    ``roles``: the explicit features; ``f0``: their per-prompt terms; ``f1``: the per-prompt
    term of one generic other feature ``n`` (summed over every feature that is not a role).
    """

    name: str
    roles: tuple
    f0: sp.Expr
    f1: sp.Expr


def _differentiate(expr, wrt_role, roles):
    """d expr / d theta[wrt_role, k] at fixed counts, with Z = sum_roles c a + R."""
    zfull = sum(c[r] * a[r] for r in roles) + R
    e = expr.subs(Z, zfull).subs(a[wrt_role], sp.exp(theta))
    d = sp.diff(e, theta).subs(sp.exp(theta), a[wrt_role])
    return sp.expand(d.subs(zfull, Z).subs(R, Z - sum(c[r] * a[r] for r in roles if r != "n")))


def cases():
    """The per-prompt expressions whose expectations the kernels compute.

    - ``loss``:  E[ell_k]                                   (roles k; n ranges over n != k)
    - ``attn``:  E[Attn_k] = E[c_k a_k / Z]                 (roles k)
    - ``grad_own``:   E[d ell_k / d A_k]                    (roles k; n != k)
    - ``grad_other``: E[d ell_k / d B_{k,m}], m != k        (roles k, m; n not in {k, m})
    - ``attn_other``: E[Attn_m], m != k                     (roles k, m)
    """
    loss = Case("loss", ("k",), sp.expand(own_term()), sp.expand(other_term("n")))
    attn = Case("attn", ("k",), _attn("k"), sp.Integer(0))
    # For the derivative, Z must see every role explicitly; the generic n enters Z through R.
    g_own_f0 = _differentiate(own_term(), "k", ("k", "n"))
    g_own_f1 = _differentiate(other_term("n"), "k", ("k", "n"))
    grad_own = Case("grad_own", ("k",), g_own_f0, g_own_f1)
    f0_other = own_term() + other_term("m")
    g_oth_f0 = _differentiate(f0_other, "m", ("k", "m", "n"))
    g_oth_f1 = _differentiate(other_term("n"), "m", ("k", "m", "n"))
    grad_other = Case("grad_other", ("k", "m"), g_oth_f0, g_oth_f1)
    attn_other = Case("attn_other", ("k", "m"), _attn("m"), sp.Integer(0))
    return [loss, attn, grad_own, grad_other, attn_other]


# ---------------------------------------------------------------------------------------
# Steps 2-4: monomials -> Laplace -> generating function.
def tilted_moment(exps: dict) -> sp.Expr:
    """``E[prod_i c_i^{e_i} e^{-tZ}]`` for distinct features ``i`` (MODEL.md section 3).

    Applies ``(s_i d/ds_i)^{e_i}`` to ``phi^N`` with ``phi = P_rest + sum_i p_i s_i`` and
    returns the result in terms of ``q_i = p_i s_i`` and ``P_j = N_(j) phi^(N-j)``.
    """
    roles = tuple(exps)
    phi_f = sp.Function("Phi")(*[s[r] for r in roles])  # linear in each s_i, d phi/d s_i = p_i
    G = phi_f**N
    for r, e in exps.items():
        for _ in range(e):
            G = s[r] * sp.diff(G, s[r])

    def _deriv(d):
        (var, order), = d.variable_count if len(d.variable_count) == 1 else ((None, 2),)
        return p[ROLES[[s[x] for x in ROLES].index(var)]] if order == 1 else sp.Integer(0)

    G = G.replace(lambda e: isinstance(e, sp.Derivative), _deriv).subs(phi_f, PHI)
    G = sp.expand(G.subs({s[r]: q[r] / p[r] for r in roles}))
    # Group by the power of phi: coefficient of phi^(N-j) must be N_(j) times a constant.
    by_j: dict = {}
    for term in sp.Add.make_args(G):
        e_phi = sp.expand(term.as_powers_dict()[PHI])
        j = sp.simplify(N - e_phi)
        assert j.is_Integer and 0 <= j <= 3, (term, j)
        by_j[int(j)] = by_j.get(int(j), 0) + term / PHI**e_phi
    out = sp.Integer(0)
    for j, coef in by_j.items():
        rest = sp.factor(coef / sp.ff(N, j))
        assert not rest.has(N), (j, coef, rest)
        out += rest * PJ[j]
    return sp.expand(out)


def expectation_integrand(expr: sp.Expr, roles: tuple) -> dict:
    """Split ``E[expr]`` into ``{r: integrand in x}`` (``r = 0`` holds the constant part).

    ``E[coef c^e a^b / Z^r] = coef / (r-1)! int dx prod u^b E_t[c^e]`` with ``sum b = r``.
    """
    expr = sp.expand(expr)
    out: dict = {}
    poly = sp.Poly(expr.subs(Z, 1 / sp.Symbol("invZ")), *[c[r] for r in roles], *[a[r] for r in roles], sp.Symbol("invZ"))
    nroles = len(roles)
    for monom, coef in poly.terms():
        ce, ae, rr = monom[:nroles], monom[nroles:2 * nroles], monom[-1]
        assert sum(ae) == rr, f"not scale invariant: {monom}"
        if rr == 0:
            assert sum(ce) == 0, f"untilted moment with counts: {monom}"
            out[0] = out.get(0, 0) + coef
            continue
        mom = tilted_moment({r: e for r, e in zip(roles, ce) if e})
        weight = sp.Mul(*[u[r] ** b for r, b in zip(roles, ae)])
        out[rr] = out.get(rr, 0) + coef / sp.factorial(rr - 1) * weight * mom
    return {r: sp.expand(v) for r, v in out.items()}


# ---------------------------------------------------------------------------------------
# Step 5: the sum over generic other features.
def sum_over_others(expr: sp.Expr, roles: tuple) -> sp.Expr:
    """Replace ``u_n^a q_n^b`` by ``T_{a,b} - sum_{i in roles} u_i^a q_i^b``."""
    poly = sp.Poly(sp.expand(expr), u["n"], q["n"])
    out = sp.Integer(0)
    for (al, be), coef in poly.terms():
        assert (al, be) != (0, 0), "a term of the other-feature sum without u_n, q_n"
        out += coef * (T(al, be) - sum(u[r] ** al * q[r] ** be for r in roles))
    return sp.expand(out)


def derive() -> dict:
    """All integrands: ``{case_name: {r: expr}}`` in the symbols u_k, q_k, u_m, q_m, P_j, T_ab, sigma2."""
    result = {}
    for case in cases():
        parts = expectation_integrand(case.f0, case.roles)
        if case.f1 != 0:
            others = expectation_integrand(case.f1, case.roles + ("n",))
            for r, v in others.items():
                assert r > 0
                parts[r] = parts.get(r, 0) + sum_over_others(v, case.roles)
        result[case.name] = {r: sp.expand(v) for r, v in sorted(parts.items()) if v != 0}
    return result


def input_hash() -> str:
    """SHA-256 of the symbolic inputs (the per-prompt expressions of every case)."""
    h = hashlib.sha256()
    for case in cases():
        h.update(sp.srepr((case.name, case.roles, case.f0, case.f1)).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# Printing: the generated module dynamics/models/huang2024/_kernels.py.
TARGET = os.path.join(REPO, "dynamics", "models", "huang2024", "_kernels.py")
"""Where :func:`render` goes (``python -m derivations.build``)."""

_DOCS = {
    "loss": "E[ell_k]: the per-feature prediction error times two, 2 L_k (MODEL.md s.2).",
    "attn": "E[Attn_k]: expected attention on the query's own feature.",
    "grad_own": "E[d ell_k / d A_k], A_k = theta[k, k] (own-feature attention weight).",
    "grad_other": "E[d ell_k / d B_{k,m}], B_{k,m} = theta[m, k], m != k.",
    "attn_other": "E[Attn_m] for a feature m != k.",
}
ARGS = ("u_k", "q_k", "u_m", "q_m", "P1", "P2", "P3", "T_2_1", "T_2_2", "sigma2")
"""One signature for every integrand: the node quantities the quadrature computes
(:mod:`dynamics.models.huang2024.quadrature`), so it can call any of them."""


def render() -> str:
    """The full text of ``dynamics/models/huang2024/_kernels.py``."""
    derived = derive()
    head = [
        '"""GENERATED by `python -m derivations.build` from derivations/huang2024.py -- do not edit.',
        "",
        f"sympy {sp.__version__}; sha256 of the symbolic inputs: {input_hash()}",
        "",
        "Integrands in x = log t of the exact expectations over multinomial counts (MODEL.md",
        "section 3) of the per-prompt loss, gradient and attention for query feature k.",
        "Arguments, at one quadrature node: u_i = t a_i = exp(x + theta[i, k] - max_n theta[n, k]);",
        "q_i = p_i exp(-u_i); P_j = N (N-1) ... (N-j+1) phi^(N-j) with phi = sum_n p_n exp(-u_n);",
        "T_a_b = sum_n u_n^a q_n^b over all features; sigma2 the label-noise variance.",
        '"""',
        "from dynamics.core.jit import jit",
        "",
        f"LOSS_CONSTANT = {float(derived['loss'].get(0, 0))!r}",
        '"""The r = 0 part of E[ell_k] (no integral)."""',
    ]
    doc_tail = ["", "Returns its three parts (r = 1, 2, 3), each to be integrated over x = log t; the part",
                "of order r carries 1/(r-1)! already and decays like exp(r x) as x -> -inf."]
    body = [jit_function(name, ARGS, [parts.get(r, 0) for r in (1, 2, 3)],
                         [f"Integrand of {_DOCS[name]}"] + doc_tail)
            for name, parts in derived.items()]
    return "\n".join(head) + "\n".join(body) + "\n"
