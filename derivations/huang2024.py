"""Exact expectation of the per-prompt loss and gradient over multinomial counts (sympy),
written so that every integrated term is a sum of same-signed pieces.

MODEL.md sections 2 and 3, step by step, for the query feature ``k`` with
``x_i = c_i a_i``, ``a_i = exp(theta[i, k])``, ``Z = sum_n x_n``:

1. *Per-prompt quantities over a power of Z.*  With ``R = sum_{n != k} x_n`` (so that
   ``1 - Attn_k = R / Z`` exactly), ``D = sum_{n != k} x_n^2`` and ``W = sum_{n != k} c_n a_n^2``::

       ell_k = [R^2 + D + sigma2 (c_k a_k^2 + W)] / Z^2          (= (1 - Attn_k)^2 + sum_{n != k} Attn_n^2 + noise)
       1 - Attn_k = R / Z,     Attn_i = x_i / Z

   No ``1 - ...`` is ever formed: the loss is a ratio of positive polynomials.
2. *Derivatives* with respect to ``theta[i, k]`` at fixed counts: ``d(num / Z^r) =
   (num' Z - r num x_i) / Z^(r+1)`` with ``num' = a_i d num / d a_i``; the numerator is expanded
   with ``Z`` written out, so terms that cancel *per prompt* cancel symbolically (for example the
   ``R^2`` terms of ``d ell_k / d B_{k,m}``).  What is left is split by the sign of each monomial
   into a positive and a negative part, e.g. ``d ell_k / d A_k = -2 x_k (R^2 + D) / Z^3`` =
   ``-2 Attn_k [(1 - Attn_k)^2 + sum_{n != k} Attn_n^2]`` (no positive part without noise) and
   ``d ell_k / d B_{k,m} = 2 x_m [2 x_m x_k + x_k R' + x_m R'] / Z^3 - 2 x_m D' / Z^3``
   (``R'``, ``D'``: sums over ``n`` not in ``{k, m}``).
3. *Laplace*: ``1/Z^r = 1/(r-1)! int_0^inf t^(r-1) e^{-tZ} dt``; with ``t = e^x`` the integrand
   is ``prod u^b`` (``u_i = t a_i``; scale invariance ``sum b = r`` is asserted) times the tilted
   moment ``E[prod c^e e^{-tZ}]``.
4. *Tilted moments*: ``c^e = sum_j S(e, j) c^(j)`` (Stirling numbers of the second kind, falling
   factorials) and ``E[prod_i c_i^(j_i) e^{-tZ}] = N_(J) prod_i q_i^(j_i) phi^(N-J)``,
   ``J = sum j_i``, ``q_i = p_i e^{-u_i}``, ``phi = sum_n q_n`` (MODEL.md section 3): every
   coefficient is positive.  ``P_J = N_(J) phi^(N-J)``.
5. *Sums over the other features* ``O``: a product of two sums over ``O`` is split into its
   diagonal (one generic feature ``n``) and off-diagonal part (``n != o``); the latter is
   ``sum_{n != o} f(n) g(o) = S_f S_g - S_{fg}`` with power sums ``S_{a,b} = sum_{n in O} u_n^a q_n^b``.
   The subtracted ``S_{fg}`` cancels symbolically against the diagonal (e.g.
   ``E[R^2 e^{-tZ}] t^2 = P_2 S_{1,1}^2 + P_1 S_{2,1}``).
6. *Present and absent query feature*: ``E[f] = E[f 1{c_k >= 1}] + E[f 1{c_k = 0}]``.  The
   absent event has the generating function ``phi_{-k}^N`` (``phi_{-k} = phi - q_k``): its
   moments are ``Pa_J = N_(J) phi_{-k}^(N-J)``, and with ``c_k = 0`` one has ``Z = R``, so
   ``R^2 / Z^2 = 1`` and ``R / Z = 1`` become the exact constant ``(1 - p_k)^N``.  The present
   event's moments of ``c_k``-free terms are ``Pp_J = N_(J) (phi^(N-J) - phi_{-k}^(N-J))``
   (computed without cancellation by the quadrature); terms carrying ``c_k`` vanish when
   ``c_k = 0`` and keep ``P_J``.

The derivation asserts that every integrand it prints is a polynomial with *positive*
coefficients in non-negative node quantities: the trapezoid sum of such an integrand has the
relative accuracy of the quadrature at every magnitude (no cancellation anywhere).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import sympy as sp
from sympy.functions.combinatorial.numbers import stirling

from derivations.printer import REPO, jit_function

# ---------------------------------------------------------------------------------------
# Symbols.  Roles: k (query's own feature), m and l (differentiated features), o1..o3 (generic
# other features, distinct from one another and from the roles).
ROLES = ("k", "m", "l", "o1", "o2", "o3")
GENERIC = ("o1", "o2", "o3")
"""Generic other features: the distinct features of a product of sums over O."""
c = {r: sp.Symbol(f"c_{r}", nonnegative=True) for r in ROLES}
a = {r: sp.Symbol(f"a_{r}", positive=True) for r in ROLES}
u = {r: sp.Symbol(f"u_{r}", nonnegative=True) for r in ROLES}
q = {r: sp.Symbol(f"q_{r}", nonnegative=True) for r in ROLES}
R, D, W = sp.symbols("R D W", nonnegative=True)  # sums over the other features O (see module doc)
Z = sp.Symbol("Z", positive=True)
sigma2 = sp.Symbol("sigma2", nonnegative=True)
MODES = ("total", "present", "absent")
PREFIX = {"total": "P", "present": "Pp", "absent": "Pa"}
PJ = {(mode, j): sp.Symbol(f"{PREFIX[mode]}{j}", nonnegative=True) for mode in MODES for j in range(8)}
O_SUMS = {R: (1, 1), D: (2, 2), W: (1, 2)}
"""Each sum over O as (exponent of c_n, exponent of a_n) of its summand."""


def power_sum(prefix: str, alpha: int, beta: int) -> sp.Symbol:
    """``S_{alpha,beta} = sum_{n in O} u_n^alpha q_n^beta`` (a per-node sum; ``prefix`` names O)."""
    return sp.Symbol(f"{prefix}_{alpha}_{beta}", nonnegative=True)


# ---------------------------------------------------------------------------------------
# Steps 1-2: per-prompt quantities num / Z^r and their derivatives.
@dataclass(frozen=True)
class Ratio:
    """``num / Z^r`` with ``Z = sum_{roles} c_i a_i + R``; ``num`` is a polynomial."""

    num: sp.Expr
    r: int


def z_of(roles) -> sp.Expr:
    return sum(c[i] * a[i] for i in roles) + R


def differentiate(f: Ratio, wrt: str, roles) -> Ratio:
    """``d f / d theta[wrt, k]`` at fixed counts (``d a_wrt / d theta = a_wrt``)."""
    dnum = a[wrt] * sp.diff(f.num, a[wrt])
    num = sp.expand(dnum * z_of(roles) - f.r * f.num * c[wrt] * a[wrt])
    return Ratio(num, f.r + 1)


def split_sign(f: Ratio):
    """``(positive part, negative part)`` of ``f``, each with a numerator of positive monomials."""
    pos, neg = sp.Integer(0), sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(f.num)):
        coef, _ = term.as_coeff_Mul()
        if coef > 0:
            pos += term
        elif coef < 0:
            neg -= term
    return Ratio(pos, f.r), Ratio(neg, f.r)


def loss_ratio(roles) -> Ratio:
    """``ell_k`` as ``num / Z^2``; the terms of the roles other than ``k`` are written out of R, D, W."""
    xs = [c[r] * a[r] for r in roles if r != "k"]
    num = (sum(xs) + R) ** 2 + sum(x**2 for x in xs) + D + sigma2 * (sum(c[r] * a[r] ** 2 for r in roles) + W)
    return Ratio(sp.expand(num), 2)


# ---------------------------------------------------------------------------------------
# Steps 3-6: expectation of num / Z^r as an integrand in x = log t.
def tilted_moment(exps: dict, mode: str) -> sp.Expr:
    """``E[prod_i c_i^{e_i} e^{-tZ}]`` (distinct features ``i``) in ``q_i`` and ``P_J``."""
    terms = {(): sp.Integer(1)}  # falling-factorial orders per role -> coefficient
    for role, e in exps.items():
        new = {}
        for key, coef in terms.items():
            for j in range(1, e + 1):
                new[key + ((role, j),)] = coef * stirling(e, j)
        terms = new
    out = sp.Integer(0)
    for key, coef in terms.items():
        J = sum(j for _, j in key)
        assert J <= 7, f"moment of order {J}: extend P_J"
        out += coef * PJ[mode, J] * sp.Mul(*[q[role] ** j for role, j in key])
    return out


def _set_partitions(items):
    """Every set partition of the list ``items`` (as lists of blocks)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        yield [[first]] + part
        for i in range(len(part)):
            yield part[:i] + [[first] + part[i]] + part[i + 1:]


def _expand_other_sums(monomial: sp.Expr):
    """Replace a product of sums over O by explicit generic features ``o1, o2, ...``.

    ``prod_i sum_{n_i in O} f_i(n_i)`` is the sum over set partitions of the factors of the
    sums over *distinct* features, one per block.  Returns ``[(expr, blocks)]``: ``expr`` is a
    monomial in role symbols and ``blocks`` the number of generic features ``o1..o_blocks``
    (distinct from one another) it involves.
    """
    powers = monomial.as_powers_dict()
    factors = []
    rest = sp.Integer(1)
    for base, e in powers.items():
        if base in O_SUMS:
            factors += [O_SUMS[base]] * int(e)
        else:
            rest *= base**e
    assert len(factors) <= len(GENERIC), f"more than {len(GENERIC)} sums over the other features: {monomial}"
    out = []
    for part in _set_partitions(list(range(len(factors)))):
        expr = rest
        for b, block in enumerate(part):
            role = GENERIC[b]
            expr *= c[role] ** sum(factors[i][0] for i in block) * a[role] ** sum(factors[i][1] for i in block)
        out.append((expr, len(part)))
    return out


def _sum_over_others(expr: sp.Expr, blocks: int, prefix: str) -> sp.Expr:
    """Sum a polynomial in ``(u_o, q_o)`` of ``blocks`` distinct generic features over O.

    Moebius inversion on set partitions: ``sum_{distinct o_1..o_B} prod_b f_b(o_b) =
    sum_sigma mu(sigma) prod_{C in sigma} S(prod_{b in C} f_b)`` with
    ``mu = prod_C (-1)^(|C|-1) (|C|-1)!`` and power sums ``S_{a,b} = sum_{n in O} u_n^a q_n^b``.
    """
    roles = GENERIC[:blocks]
    gens = [x for role in roles for x in (u[role], q[role])]
    if not gens:
        return expr
    poly = sp.Poly(sp.expand(expr), *gens)
    out = sp.Integer(0)
    for exps, coef in poly.terms():
        per_role = [(exps[2 * b], exps[2 * b + 1]) for b in range(blocks)]
        assert all(e != (0, 0) for e in per_role), f"a generic feature without u, q: {expr}"
        for sigma in _set_partitions(list(range(blocks))):
            term = coef
            for block in sigma:
                term *= (-1) ** (len(block) - 1) * sp.factorial(len(block) - 1)
                term *= power_sum(prefix, sum(per_role[b][0] for b in block), sum(per_role[b][1] for b in block))
            out += term
    return out


def expectation(f: Ratio, roles, mode: str, prefix: str):
    """``E[f]`` (``mode`` total), ``E[f 1{c_k >= 1}]`` (present) or ``E[f 1{c_k = 0}]`` (absent).

    Returns ``(constant, {r: integrand})``: ``E = constant * W0 + sum_r int integrand_r dx``
    where ``W0`` is ``(1 - p_k)^N`` in absent mode (and 1, always with constant 0, otherwise).
    """
    num, r = sp.expand(f.num), f.r
    if mode == "absent":
        num = sp.expand(num.subs(c["k"], 0))
    const = sp.Integer(0)
    parts: dict = {}
    for term in sp.Add.make_args(num):
        if term == 0:
            continue
        rr = r
        if mode == "absent":
            # Z = R when c_k = 0: R^alpha / Z^r = 1 / Z^(r - alpha), with Z = R = sum over O.
            alpha = int(term.as_powers_dict().get(R, 0))
            take = min(alpha, rr)
            term, rr = term / R**take, rr - take
            if rr == 0:
                assert not term.free_symbols - {sigma2}, f"absent constant with counts: {term}"
                const += term
                continue
        for mono, blocks in _expand_other_sums(term):
            powers = mono.as_powers_dict()
            ce = {i: int(powers.get(c[i], 0)) for i in ROLES}
            ae = {i: int(powers.get(a[i], 0)) for i in ROLES}
            coef = mono / sp.Mul(*[c[i] ** ce[i] * a[i] ** ae[i] for i in ROLES])
            assert not coef.free_symbols - {sigma2}, mono
            assert sum(ae.values()) == rr, f"not scale invariant: {mono} / Z^{rr}"
            mom_mode = "total" if mode == "total" or ce["k"] > 0 else mode
            mom = tilted_moment({i: e for i, e in ce.items() if e}, mom_mode)
            weight = sp.Mul(*[u[i] ** b for i, b in ae.items()])
            integrand = _sum_over_others(coef / sp.factorial(rr - 1) * weight * mom, blocks, prefix)
            parts[rr] = parts.get(rr, 0) + integrand
    return const, {rr: sp.expand(v) for rr, v in parts.items() if sp.expand(v) != 0}


def _assert_positive(name: str, expr: sp.Expr):
    """Every coefficient of the printed integrand is positive (a sum of same-signed pieces)."""
    for term in sp.Add.make_args(sp.expand(expr)):
        if term == 0:
            continue
        coef, _ = term.as_coeff_Mul()
        assert coef > 0, f"{name}: a negative term {term} (cancellation)"


# ---------------------------------------------------------------------------------------
# The quantities the kernels integrate.
@dataclass(frozen=True)
class Quantity:
    """One integrand: ``E[...] = constant * (1 - p_k)^N + int integrand dx`` of order ``r``."""

    name: str
    doc: str
    constant: sp.Expr
    order: int
    integrand: sp.Expr


def _quantity(name, doc, f: Ratio, roles, mode, prefix):
    if mode == "both":  # present + absent: the whole expectation, absent constant kept exact
        const, parts = expectation(f, roles, "absent", prefix)
        _, present = expectation(f, roles, "present", prefix)
        for rr, v in present.items():
            parts[rr] = sp.expand(parts.get(rr, 0) + v)
    else:
        const, parts = expectation(f, roles, mode, prefix)
    assert len(parts) <= 1, f"{name}: mixed orders {sorted(parts)}"
    (order, integrand), = parts.items() if parts else ((f.r, sp.Integer(0)),)
    _assert_positive(name, integrand)
    _assert_positive(name + " (constant)", const)
    return Quantity(name, doc, const, order, integrand)


def own_quantities():
    """Quantities of the query's own feature ``k`` (sums ``S`` over every ``n != k``)."""
    roles = ("k",)
    ell = loss_ratio(roles)
    rest = Ratio(R, 1)
    attn = Ratio(c["k"] * a["k"], 1)
    g_pos, g_neg = split_sign(differentiate(ell, "k", roles))
    return [
        _quantity("loss_present", "E[ell_k 1{c_k >= 1}] (2 L_k, query feature present)", ell, roles, "present", "S"),
        _quantity("loss_absent", "E[ell_k 1{c_k = 0}] (2 L_k, query feature absent)", ell, roles, "absent", "S"),
        _quantity("rest", "1 - E[Attn_k] = E[R / Z] (R = sum_{n != k} c_n a_n)", rest, roles, "both", "S"),
        _quantity("attn_own", "E[Attn_k]", attn, roles, "total", "S"),
        _quantity("grad_own_pos", "positive part of E[d ell_k / d A_k] (label noise only)", g_pos, roles, "total", "S"),
        _quantity("grad_own_neg", "negative part of E[d ell_k / d A_k]: E[2 Attn_k ell_k] without noise", g_neg, roles, "total", "S"),
    ]


def other_quantities():
    """Quantities of one feature ``m != k`` (sums ``Sm`` over ``n`` not in ``{k, m}``)."""
    roles = ("k", "m")
    g_pos, g_neg = split_sign(differentiate(loss_ratio(roles), "m", roles))
    attn = Ratio(c["m"] * a["m"], 1)
    return [
        _quantity("attn_other", "E[Attn_m]", attn, roles, "total", "Sm"),
        _quantity("grad_other_pos", "positive part of E[d ell_k / d B_{k,m}]", g_pos, roles, "total", "Sm"),
        _quantity("grad_other_neg", "negative part of E[d ell_k / d B_{k,m}]", g_neg, roles, "total", "Sm"),
    ]


def jacobian_quantities():
    """Second derivatives of ``ell_k`` for the Jacobian of the reduced gradient (each in parts).

    ``jac_kk``: ``d^2 / dA_k^2``; ``jac_km``: ``d^2 / dA_k dB_{k,m}``; ``jac_mm``: ``d^2 / dB_{k,m}^2``
    (sums ``Sm`` over ``n`` not in ``{k, m}``); ``jac_ml``: ``d^2 / dB_{k,m} dB_{k,l}``, ``l != m``
    (sums ``Sml`` over ``n`` not in ``{k, m, l}``).
    """
    out = []
    for name, roles, i, j, prefix in (("jac_kk", ("k",), "k", "k", "S"), ("jac_km", ("k", "m"), "k", "m", "Sm"),
                                      ("jac_mm", ("k", "m"), "m", "m", "Sm"), ("jac_ml", ("k", "m", "l"), "m", "l", "Sml")):
        second = differentiate(differentiate(loss_ratio(roles), i, roles), j, roles)
        pos, neg = split_sign(second)
        doc = f"d^2 ell_k / d theta[{i}, k] d theta[{j}, k]"
        out.append((_quantity(name + "_pos", "positive part of E[" + doc + "]", pos, roles, "total", prefix),
                    _quantity(name + "_neg", "negative part of E[" + doc + "]", neg, roles, "total", prefix)))
    return out


def input_hash() -> str:
    """SHA-256 of the symbolic inputs (the per-prompt expressions and their splits)."""
    h = hashlib.sha256()
    for roles in (("k",), ("k", "m")):
        h.update(sp.srepr(loss_ratio(roles).num).encode())
    h.update(sp.srepr(Ratio(R, 1).num).encode())
    with open(__file__, "rb") as fh:  # the derivation's own rules are inputs too
        h.update(fh.read())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# Printing: the generated module dynamics/models/huang2024/_kernels.py.
TARGET = os.path.join(REPO, "dynamics", "models", "huang2024", "_kernels.py")
"""Where :func:`render` goes (``python -m derivations.build``)."""

OWN_ARGS = ("u_k", "q_k", "S_1_1", "S_2_1", "S_2_2", "P1", "P2", "P3", "Pp1", "Pp2", "Pa1", "Pa2", "sigma2")
OTHER_ARGS = ("u_k", "q_k", "u_m", "q_m", "Sm_1_1", "Sm_2_1", "Sm_2_2", "P1", "P2", "P3", "sigma2")
JAC_SUMS = ((1, 1), (2, 1), (2, 2), (3, 1), (3, 2))
"""The power sums ``S_{a,b}`` every Jacobian kernel takes (in this order, after the roles' u, q)."""


def jac_args(roles, prefix):
    return tuple(x for r in roles for x in (f"u_{r}", f"q_{r}")) + tuple(
        f"{prefix}_{a_}_{b_}" for a_, b_ in JAC_SUMS) + ("P2", "P3", "P4", "sigma2")


def _kernel(name, args, quantities, summary):
    doc = [summary, ""]
    for i, qy in enumerate(quantities):
        doc.append(f"{i}. {qy.name} (order {qy.order}): {qy.doc}")
    doc += ["", "Each entry is a polynomial with positive coefficients in the (non-negative) arguments."]
    return jit_function(name, args, [qy.integrand for qy in quantities], doc)


def render() -> str:
    """The full text of ``dynamics/models/huang2024/_kernels.py``."""
    own, other = own_quantities(), other_quantities()
    head = [
        '"""GENERATED by `python -m derivations.build` from derivations/huang2024.py -- do not edit.',
        "",
        f"sympy {sp.__version__}; sha256 of the derivation: {input_hash()}",
        "",
        "Integrands in x = log t of the exact expectations over multinomial counts (MODEL.md",
        "section 3) of the per-prompt loss, gradient and attention for query feature k, each a sum",
        "of same-signed pieces (derivations/huang2024.py).  Arguments, at one quadrature node:",
        "u_i = t a_i, a_i = exp(theta[i, k] - max_n theta[n, k]); q_i = p_i exp(-u_i);",
        "S_a_b = sum_{n != k} u_n^a q_n^b and Sm_a_b = sum_{n not in {k, m}} u_n^a q_n^b;",
        "P_J = N (N-1) ... (N-J+1) phi^(N-J) with phi = sum_n q_n; Pa_J the same with",
        "phi_{-k} = phi - q_k (query feature absent) and Pp_J = P_J - Pa_J (present);",
        "sigma2 the label-noise variance.  The integral of a quantity of order r carries its",
        "1/(r-1)! already and behaves like exp(r x) as x -> -inf.",
        '"""',
        "from dynamics.core.jit import jit",
        "",
        f"OWN_NAMES = {tuple(qy.name for qy in own)!r}",
        f"OWN_ORDERS = {tuple(qy.order for qy in own)!r}",
        f"OWN_ABSENT_CONSTANTS = {tuple(float(qy.constant) for qy in own)!r}",
        '"""Multiples of (1 - p_k)^N added to each own quantity (the absent query feature, exactly)."""',
        f"OTHER_NAMES = {tuple(qy.name for qy in other)!r}",
        f"OTHER_ORDERS = {tuple(qy.order for qy in other)!r}",
    ]
    for qy in other:
        assert qy.constant == 0
    body = [
        _kernel("own_terms", OWN_ARGS, own, "Integrands of the query feature's own quantities at one node."),
        _kernel("other_terms", OTHER_ARGS, other, "Integrands of the quantities of one feature m != k at one node."),
    ]
    jac_roles = {"jac_kk": (("k",), "S"), "jac_km": (("k", "m"), "Sm"), "jac_mm": (("k", "m"), "Sm"),
                 "jac_ml": (("k", "m", "l"), "Sml")}
    for pos, neg in jacobian_quantities():
        name = pos.name[:-4]
        assert pos.order == neg.order == 4 and pos.constant == neg.constant == 0
        roles, prefix = jac_roles[name]
        body.append(_kernel(name, jac_args(roles, prefix), [pos, neg],
                            f"Integrands of the Jacobian entry {name} at one node (positive, negative part)."))
    head.append("JAC_ORDER = 4")
    head.append(f"JAC_SUMS = {JAC_SUMS!r}")
    return "\n".join(head) + "\n".join(body) + "\n"
