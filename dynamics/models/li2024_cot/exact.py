"""The exact population training loss of the chain-of-thought model and its gradient, for small
instances (H. Li et al., ICLR 2025; the slides' eq. 11 and Theorem 4's training distribution).

Conditioning.  A training prompt draws the query's start ``z_0`` (uniform over the ``M`` TRR
patterns), the task ``f = (f_1..f_K)`` (each ``f_k`` a uniform permutation, or a uniform map
with ``train_task = random_map``) and the step ``k`` (uniform in ``[K]``).  Given ``(z_0, f,
k)`` the ``l`` examples are i.i.d. over ``M`` *types*, the example's start ``x``: probability
``p_x = alpha`` for ``x = z_0`` and ``(1 - alpha)/(M - 1)`` otherwise (the alpha-fraction rule);
the start fixes the example's whole chain ``s_{x,0} = x``, ``s_{x,j+1} = f_{j+1}(s_{x,j})``.
There are ``C = M K |F|^K`` conditionings (``|F| = M!`` or ``M^M``), all equally likely: 16 at
``M = K = 2``, 1,944 at ``M = K = 3``.  The sum over them does not factor (a task changes every
column).  :data:`MAX_CONDITIONINGS` bounds the instances this module accepts.

Per prompt.  With ``G = W_K^T W_Q`` every column's score is ``s_c = p~_c^T G p~_q``; column ``j``
of an example of type ``x`` has weight ``w_{xj} = e^{s_c}`` and label ``mu_{s_{x,j+1}}``; the
query block's attended columns ``(z_j; z_{j+1})``, ``j < k - 1``, weights ``w_{qj}``.  With
``W_V = (0 I)`` the output is ``F = N / Z``, ``N = sum_c w_c y_c``, ``Z = sum_c w_c``, and with
the counts ``c_x`` of the types, in pattern coordinates (``e_b`` for ``mu_b``),

    U = Z z - N = sum_x c_x u_x + u_q,   u_x = sum_j w_{xj} (e_{z_k} - e_{s_{x,j+1}}),
    Z = sum_x c_x a_x + Z_q,              a_x = sum_j w_{xj},
    l(P) = 1/2 |z - F|^2 = |U|^2 / (2 Z^2).

Expectation over the counts (multinomial ``(l, p)``).  ``1/Z^r = 1/(r-1)! int_0^inf t^(r-1)
e^{-tZ} dt`` and the generating function ``E[prod_x s_x^{c_x}] = phi^n``, ``s_x = e^{-t a_x}``,
``phi = sum_x p_x s_x``, give, with ``W = sum_x p_x s_x u_x``, ``S_2 = sum_x p_x s_x |u_x|^2``,

    E_n[|sum_x c_x u_x + u_0|^2 e^{-t a.c}] = Q_n(u_0)
        = n(n-1) phi^{n-2} |W|^2 + n phi^{n-1} S_2 + 2 n phi^{n-1} <W, u_0> + phi^n |u_0|^2,
    E_n[(sum_x c_x u_x + u_0) e^{-t a.c}] = R_n(u_0) = n phi^{n-1} W + phi^n u_0,
    E[c_x h(c)] = l p_x E_{l-1}[h(c + e_x)]           (the multinomial's size-biasing identity),

so that, with ``E_q = e^{-t Z_q}`` (the query block's own columns),

    L(z_0, f, k)     = 1/2 int t E_q Q_l(u_q) dt,
    dL/dw_{xj}       = l p_x int t E_q s_x <R_{l-1}(u_q + u_x), d_{xj}> dt
                       - l p_x int t^2/2 E_q s_x Q_{l-1}(u_q + u_x) dt,     d_{xj} = e_{z_k} - e_{s_{x,j+1}},
    dL/dw_{qj}       = int t E_q <R_l(u_q), d_{qj}> dt - int t^2/2 E_q Q_l(u_q) dt,

``dL/ds_c = w_c dL/dw_c``, ``dL/dG = sum_c dL/ds_c p~_c p~_q^T``, ``dL/dW_Q = W_K dL/dG``,
``dL/dW_K = W_Q (dL/dG)^T``.  Scores are shifted by their maximum within a conditioning (the
loss and ``dL/ds`` do not change).

Quadrature.  In ``x = log t`` the trapezoid rule with step :data:`H` on ``[log(T_LO / Z_max),
log(T_HI / Z_min)]`` (``Z_min``, ``Z_max``: the smallest and largest ``Z`` any count vector can
give).  Each integrand is a mixture over count vectors of ``(t Z)^r e^{-tZ}`` (``r`` = 2, 3),
whose trapezoid error relative to its integral is at most ``2 |Gamma(r + 2 pi i / h)| / Gamma(r)``
(Poisson summation): 2e-19 and 5e-18 at ``h = 0.2``.  Below ``T_LO`` the integrand is
``~ t^(r-1)`` (added in closed form, ``f(t_lo) t_lo / r``; what remains is ``O(T_LO^(r+1))``
relative); beyond ``T_HI`` every ``e^{-tZ} < e^{-60}``.  ``phi^n`` is ``exp(n log1p(-U))``,
``U = sum_x p_x (1 - e^{-t a_x})`` (MODEL.md section 3).  Cost: ``C x nodes x M^2``, about
``C x 200 x M^2`` multiply-adds.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from dynamics.core.jit import jit
from dynamics.core.params import ParamError

H = 0.2
"""Trapezoid step in ``log t``."""
T_LO = 1e-9
"""Left end: ``t Z_max = T_LO``."""
T_HI = 60.0
"""Right end: ``t Z_min = T_HI``."""
MAX_CONDITIONINGS = 50_000
"""Largest number of conditionings ``M K |F|^K`` the exact route accepts (about 0.5 s for the loss
and gradient at ``M = 4``; ``M = 4, K = 3`` has 165,888 and is refused)."""


def step_functions(M: int, train_task: str) -> np.ndarray:
    """``(|F|, M)``: every step function ``f_k`` of the training distribution (permutations of
    ``[M]`` for ``permutation``, every map for ``random_map``), each equally likely."""
    if train_task == "permutation":
        return np.array(list(itertools.permutations(range(M))), dtype=np.int64)
    return np.array(list(itertools.product(range(M), repeat=M)), dtype=np.int64)


def n_conditionings(M: int, K: int, train_task: str = "permutation") -> int:
    """``M K |F|^K``: query starts x tasks x steps."""
    F = math.factorial(M) if train_task == "permutation" else M ** M
    return int(M) * int(K) * F ** int(K)


def check_cost(M: int, K: int, train_task: str, noise_train: float, train_value: bool) -> None:
    """Refuse an instance the exact route cannot take, in one line stating the cost."""
    C = n_conditionings(M, K, train_task)
    if C > MAX_CONDITIONINGS:
        raise ParamError("M", f"the exact population loss (method gd) sums over M K |F|^K = {C:,} conditionings at "
                              f"M = {M}, K = {K}, train_task = {train_task} (each ~200 quadrature nodes x M^2), above "
                              f"the bound {MAX_CONDITIONINGS:,}: use method mc or smaller M, K")
    if noise_train != 0.0:
        raise ParamError("noise_train", "the exact population loss (method gd) needs noise_train = 0 (noise-free "
                                        f"patterns: examples are i.i.d. over M types), got {noise_train:g}")
    if train_value:
        raise ParamError("train_value", "the exact population loss (method gd) needs train_value = false (W_V = (0 I) "
                                        "fixed)")


def conditionings(M: int, K: int, train_task: str = "permutation") -> tuple:
    """Every conditioning: ``(z0 (C,), k (C,), chains (C, M, K + 1), query path (C, K + 1))``;
    ``chains[c, x]`` is the chain of an example of type ``x`` under the task of ``c``."""
    funcs = step_functions(M, train_task)
    nF = funcs.shape[0]
    tasks = np.array(list(itertools.product(range(nF), repeat=K)), dtype=np.int64)   # (nF^K, K)
    T = tasks.shape[0]
    chains = np.empty((T, M, K + 1), dtype=np.int64)
    chains[:, :, 0] = np.arange(M)
    for j in range(K):
        f = funcs[tasks[:, j]]                                   # (T, M)
        chains[:, :, j + 1] = np.take_along_axis(f, chains[:, :, j], axis=1)
    z0 = np.repeat(np.arange(M), K * T)
    k = np.tile(np.repeat(np.arange(1, K + 1), T), M)
    t_idx = np.tile(np.arange(T), M * K)
    ch = chains[t_idx]
    path = ch[np.arange(ch.shape[0]), z0]                        # the query follows its own chain
    return z0, k, np.ascontiguousarray(ch), np.ascontiguousarray(path)


def column_vectors(mu, pe):
    """Column vectors ``(M, M, K, d)``: ``p~(a, b, j) = (mu_a + pe_j; mu_b)``, and query vectors
    ``(M, K, d)``: ``q~(a, k) = (mu_a + pe_{k-1}; 0)``."""
    M, dx = mu.shape
    K = pe.shape[0]
    cols = np.zeros((M, M, K, 2 * dx))
    cols[..., :dx] = mu[:, None, None, :] + pe[None, None, :, :]
    cols[..., dx:] = mu[None, :, None, :]
    q = np.zeros((M, K, 2 * dx))
    q[..., :dx] = mu[:, None, :] + pe[None, :, :]
    return cols, q


@jit
def _kernel(S, z0s, ks, chains, paths, l, alpha, h, dS):
    """Mean loss over the conditionings; ``dS[a, b, j, qa, qk]`` += dL/d(score of that column
    type against that query) (module docstring).  ``S``: scores of the same shape."""
    C = z0s.shape[0]
    M = chains.shape[1]
    K = chains.shape[2] - 1
    inv = 1.0 / C
    total = 0.0
    w = np.empty((M, K))
    a = np.empty(M)
    u = np.empty((M, M))
    p = np.empty(M)
    uq = np.empty(M)
    wq = np.empty(K)
    gram = np.empty((M, M))
    uqu = np.empty(M)
    Wv = np.empty(M)
    I1 = np.empty((M, M))
    I2 = np.empty(M)
    I3 = np.empty(M)
    J1 = np.empty(M)
    sx = np.empty(M)
    for c in range(C):
        z0, k = z0s[c], ks[c]
        qa = paths[c, k - 1]
        zk = paths[c, k]
        # scores, shifted by their maximum
        smax = -np.inf
        for x in range(M):
            for j in range(K):
                v = S[chains[c, x, j], chains[c, x, j + 1], j, qa, k - 1]
                w[x, j] = v
                smax = max(smax, v)
        for j in range(k - 1):
            v = S[paths[c, j], paths[c, j + 1], j, qa, k - 1]
            wq[j] = v
            smax = max(smax, v)
        for x in range(M):
            a[x] = 0.0
            for m in range(M):
                u[x, m] = 0.0
            for j in range(K):
                e = math.exp(w[x, j] - smax)
                w[x, j] = e
                a[x] += e
                u[x, zk] += e
                u[x, chains[c, x, j + 1]] -= e
            p[x] = alpha if x == z0 else (1.0 - alpha) / (M - 1)
        Zq = 0.0
        for m in range(M):
            uq[m] = 0.0
        for j in range(k - 1):
            e = math.exp(wq[j] - smax)
            wq[j] = e
            Zq += e
            uq[zk] += e
            uq[paths[c, j + 1]] -= e
        for x in range(M):
            uqu[x] = 0.0
            for m in range(M):
                uqu[x] += u[x, m] * uq[m]
            for y in range(M):
                g = 0.0
                for m in range(M):
                    g += u[x, m] * u[y, m]
                gram[x, y] = g
        uq2 = 0.0
        for m in range(M):
            uq2 += uq[m] * uq[m]
        amin, amax = np.inf, 0.0
        for x in range(M):
            if p[x] > 0.0:
                amin = min(amin, a[x])
                amax = max(amax, a[x])
        Zmin, Zmax = l * amin + Zq, l * amax + Zq
        x_lo = math.log(1e-9 / Zmax)
        x_hi = math.log(60.0 / Zmin)
        n_nodes = int(math.ceil((x_hi - x_lo) / h)) + 1
        L = 0.0
        for x in range(M):
            I2[x] = 0.0
            I3[x] = 0.0
            for m in range(M):
                I1[x, m] = 0.0
        for m in range(M):
            J1[m] = 0.0
        J3 = 0.0
        for i in range(n_nodes):
            t = math.exp(x_lo + i * h)
            wt = h * t                        # dt = t dx
            if i == 0 or i == n_nodes - 1:
                wt *= 0.5
            if i == 0:
                wt += t / 2.0                 # left tail: integrand ~ t^(r-1), r >= 2 (a bound, see doc)
            Eq = math.exp(-t * Zq)
            Usum = 0.0
            phi = 0.0
            for x in range(M):
                sx[x] = math.exp(-t * a[x])
                Usum += p[x] * (-math.expm1(-t * a[x]))
                phi += p[x] * sx[x]
            if phi <= 0.0:
                continue
            lphi = math.log1p(-Usum) if Usum < 0.5 else math.log(phi)
            for m in range(M):
                Wv[m] = 0.0
            S2 = 0.0
            W2 = 0.0
            for x in range(M):
                ps = p[x] * sx[x]
                for m in range(M):
                    Wv[m] += ps * u[x, m]
                S2 += ps * gram[x, x]
            for m in range(M):
                W2 += Wv[m] * Wv[m]
            Wuq = 0.0
            for m in range(M):
                Wuq += Wv[m] * uq[m]
            n = l
            ph_n = math.exp(n * lphi)
            ph_n1 = math.exp((n - 1) * lphi)
            ph_n2 = math.exp((n - 2) * lphi) if n >= 2 else 0.0
            ph_n3 = math.exp((n - 3) * lphi) if n >= 3 else 0.0
            Ql = n * (n - 1) * ph_n2 * W2 + n * ph_n1 * S2 + 2.0 * n * ph_n1 * Wuq + ph_n * uq2
            L += wt * t * Eq * 0.5 * Ql
            J3 += wt * 0.5 * t * t * Eq * Ql
            for m in range(M):
                J1[m] += wt * t * Eq * (n * ph_n1 * Wv[m] + ph_n * uq[m])
            # the size-biased expectations with n - 1 other examples
            for x in range(M):
                if p[x] == 0.0:
                    continue
                base = wt * Eq * sx[x] * l * p[x]
                Wux = 0.0
                for y in range(M):
                    Wux += p[y] * sx[y] * gram[y, x]
                v2 = uq2 + 2.0 * uqu[x] + gram[x, x]
                Qm = (n - 1) * (n - 2) * ph_n3 * W2 + (n - 1) * ph_n2 * S2 + 2.0 * (n - 1) * ph_n2 * (Wuq + Wux) \
                    + ph_n1 * v2
                I3[x] += base * 0.5 * t * t * Qm
                I2[x] += base * t * ph_n1
                for m in range(M):
                    I1[x, m] += base * t * (n - 1) * ph_n2 * Wv[m]
        total += inv * L
        # dL/ds = w dL/dw, gathered by column type
        for x in range(M):
            if p[x] == 0.0:
                continue
            for j in range(K):
                b = chains[c, x, j + 1]
                # <R_{l-1}(u_q + u_x), e_zk - e_b> = (l-1) phi^(l-2) (W[zk] - W[b]) + phi^(l-1) (v[zk] - v[b])
                g = I1[x, zk] - I1[x, b] + I2[x] * (uq[zk] + u[x, zk] - uq[b] - u[x, b]) - I3[x]
                dS[chains[c, x, j], b, j, qa, k - 1] += inv * w[x, j] * g
        for j in range(k - 1):
            b = paths[c, j + 1]
            g = J1[zk] - J1[b] - J3
            dS[paths[c, j], b, j, qa, k - 1] += inv * wq[j] * g
    return total


def relabellings(mu) -> np.ndarray:
    """``(M!, d, d)``: for every permutation ``sigma`` of the patterns the orthogonal map of the
    column space ``R^(2 d_x)`` sending ``mu_a`` to ``mu_sigma(a)`` in both halves and fixing the
    orthogonal complement of the patterns (positional encodings included)."""
    M, dx = mu.shape
    base = np.eye(dx) - mu.T @ mu
    out = []
    for perm in itertools.permutations(range(M)):
        R = base + mu[list(perm)].T @ mu
        P = np.zeros((2 * dx, 2 * dx))
        P[:dx, :dx], P[dx:, dx:] = R, R
        out.append(P)
    return np.array(out)


ORBIT_TOL = 1e-12
"""``G`` counts as relabelling-invariant when ``|P G P^T - G| <= ORBIT_TOL |G|`` (max norms) for
every relabelling ``P``."""


class PopulationLoss:
    """The exact population training loss and its gradient for one instance (module docstring).

    Parameters
    ----------
    mu : (M, d_x)   TRR patterns.      pe : (K, d_x)   positional encodings.
    l : int         examples per training prompt ``l_tr``.
    alpha : float   the alpha-fraction.
    train_task : ``permutation`` or ``random_map``.
    """

    def __init__(self, mu, pe, l, alpha, train_task="permutation", h=H, orbit=True):
        self.mu, self.pe = np.asarray(mu, dtype=np.float64), np.asarray(pe, dtype=np.float64)
        M, K = self.mu.shape[0], self.pe.shape[0]
        C = n_conditionings(M, K, train_task)
        if C > MAX_CONDITIONINGS:
            raise ParamError("M", f"{C:,} conditionings exceed the bound {MAX_CONDITIONINGS:,}")
        if int(l) < 1:
            raise ParamError("l_train", f"l_train must be >= 1, got {l}")
        self.l, self.alpha, self.h = int(l), float(alpha), float(h)
        self.z0, self.k, self.chains, self.paths = conditionings(M, K, train_task)
        self.cols, self.q = column_vectors(self.mu, self.pe)
        self.orbit = bool(orbit)
        self.P = relabellings(self.mu) if self.orbit else None
        first = self.z0 == 0
        self.reduced = tuple(np.ascontiguousarray(a[first]) for a in (self.z0, self.k, self.chains, self.paths))
        self.last_reduced = False

    @property
    def n_conditionings(self) -> int:
        return int(self.z0.size)

    def invariant(self, G) -> bool:
        """Whether ``G`` is unchanged by every relabelling of the patterns (:data:`ORBIT_TOL`)."""
        scale = max(float(np.max(np.abs(G))), 1e-300)
        return bool(np.max(np.abs(np.einsum("sab,bc,sdc->sad", self.P, G, self.P) - G[None])) <= ORBIT_TOL * scale)

    def loss_grad_G(self, G):
        """``(L, dL/dG)`` at ``G = W_K^T W_Q`` ``(d, d)``.

        Orbit reduction (``orbit``, used when ``G`` is relabelling-invariant): relabelling the
        patterns by ``sigma`` maps the conditioning ``(z_0, f, k)`` to ``(sigma z_0, sigma f
        sigma^-1, k)`` and ``G`` to ``P G P^T``; the training distribution is invariant, so at an
        invariant ``G`` every ``z_0`` contributes the same loss and the sum is restricted to
        ``z_0 = 0`` (a factor ``M`` fewer conditionings), the gradient being the average of ``P dG
        P^T`` over the ``M!`` relabellings.  GD from an invariant state (``W_Q = W_K = c I``) stays
        invariant, so exact GD keeps the reduction at every step.  It covers permutation and
        random-map tasks, any alpha and either pattern basis; a state that is not invariant (a
        perturbed or Monte Carlo state) uses the full sum.
        """
        S = np.ascontiguousarray(np.einsum("abjd,de,qke->abjqk", self.cols, G, self.q))
        dS = np.zeros_like(S)
        self.last_reduced = self.orbit and self.invariant(G)
        if self.last_reduced:
            z0, k, ch, pa = self.reduced
            L = _kernel(S, z0, k, ch, pa, self.l, self.alpha, self.h, dS)
            dG = np.einsum("abjqk,abjd,qke->de", dS, self.cols, self.q)
            dG = np.einsum("sab,bc,sdc->ad", self.P, dG, self.P) / self.P.shape[0]
            return float(L), dG
        L = _kernel(S, self.z0, self.k, self.chains, self.paths, self.l, self.alpha, self.h, dS)
        dG = np.einsum("abjqk,abjd,qke->de", dS, self.cols, self.q)
        return float(L), dG

    def loss_grad(self, W_Q, W_K):
        """``(L, dL/dW_Q, dL/dW_K)``: the exact population loss ``1/2 E|z_k - F(P)|^2`` over the
        training distribution and its gradient (``d x d`` each)."""
        L, dG = self.loss_grad_G(W_K.T @ W_Q)
        return L, W_K @ dG, W_Q @ dG.T
