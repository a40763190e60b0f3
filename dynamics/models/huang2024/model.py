"""The model of Huang, Cheng, Liang (ICML 2024) on the contract of :mod:`dynamics.core.contract`.

One-layer softmax attention learning linear functions in context (MODEL.md section 1).  Exact
methods (``gd``, ``flow``) move the reduced coordinates ``A_k = theta[k, k]`` and
``B_{k,n} = theta[n, k]`` on symmetry classes (MODEL.md section 2; :mod:`.classes`), with the
exact population loss of :mod:`.engine`; the Monte Carlo method (``mc``) trains the full
``d x d`` matrix ``Q`` on sampled prompts (MODEL.md section 5; :mod:`.montecarlo`) and records
the same observables, so the two can be cross-checked.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from dynamics.core import validate
from dynamics.core.contract import Block, Evaluation, ExactLoss, Model, Observable, SampledLoss
from dynamics.methods import declare
from dynamics.core.jit import jit
from dynamics.core.params import Param, ParamError, ParamSet, nonnegative_float, positive_float, positive_int
from dynamics.core.rng import model_rng
from dynamics.methods.gd import NONFINITE, OK, RISE_TOL, RISING, STOPPED
from dynamics.models.huang2024 import mc_kernels as mc
from dynamics.models.huang2024.classes import ClassStructure
from dynamics.models.huang2024.engine import ReducedEvaluation
from dynamics.models.huang2024.jacobian import reduced_jacobian
from dynamics.models.huang2024.quadrature import DEFAULT_H, reduced_kernel, tail_weights
from dynamics.models.huang2024.phases import SWEEP_OUTPUTS
from dynamics.models.huang2024.result import HuangResult
from dynamics.models.huang2024.theory import optimum

PARAMS = ParamSet([
    Param("K", "int", 10, "number of features K (orthonormal v_1..v_K; MODEL.md s.1)", low=2),
    positive_int("N", 100, "prompt length N (labelled tokens per prompt)"),
    Param("preset", "str", "imbalanced", "feature probabilities: balanced (p_k = 1/K), imbalanced (a dominant "
          "v_1 with p_1, the rest (1 - p_1)/(K - 1)), general (p given, or Dirichlet(1) drawn from seed)",
          choices=("balanced", "imbalanced", "general")),
    Param("p1", "float", 0.5, "dominant-feature probability p_1 (preset imbalanced)", low=0.0, high=1.0,
          low_open=True, high_open=True),
    Param("p", "floats", None, "feature probabilities p_1..p_K, summing to 1 (preset general)", low=0.0),
    nonnegative_float("sigma2", 0.0, "label-noise variance sigma^2 on the prompt labels (0 in the paper)"),
    positive_float("eta", 1.0, "GD step size eta (the paper's Q <- Q - eta grad L)"),
    Param("A0", "float", 0.0, "initial A_k = v_k^T Q v_k (the paper: Q^(0) = 0)", low=-700.0, high=700.0),
    Param("B0", "float", 0.0, "initial B_{k,n} = v_n^T Q v_k (the paper: Q^(0) = 0)", low=-700.0, high=700.0),
    Param("h", "float", DEFAULT_H, "trapezoid step in log t of the exact quadrature (MODEL.md s.3; the default "
          "7/32 keeps its error below 3e-16 relative)", low=0.0, high=0.5, low_open=True, methods=("gd", "flow")),
    Param("attention_at", "ints", None, "iterations shown in attention_map.png (default: four log-spaced "
          "snapshots)", low=0, methods=("gd", "flow")),
    Param("d", "int", None, "embedding dimension d >= K of the Monte Carlo model (default K)", low=2,
          methods=("mc",)),
    Param("task", "str", "gaussian", "law of the task w: gaussian N(0, I_d) or rademacher (same covariance)",
          choices=("gaussian", "rademacher"), methods=("mc",)),
    Param("features", "str", "random", "Monte Carlo features V: random (Haar, from seed) or standard basis",
          choices=("random", "standard"), methods=("mc",)),
])
MC_MAX_K = 2000
"""The Monte Carlo model keeps K x K scores: modest K only."""


class Huang2024(Model, ExactLoss, SampledLoss):
    """One-layer softmax attention learning linear functions in context (Huang, Cheng, Liang 2024).

    Exact state: ``coords`` (F, F + 1), ``coords[f, 0] = A_k`` and ``coords[f, 1 + g] =
    B_{k,n}`` for a query ``k`` of feature class ``f`` and a key ``n`` of class ``g``
    (:class:`.classes.ClassStructure`).  Monte Carlo state: ``Q`` (d, d).
    """

    name = "huang2024"
    reference = "Y. Huang, Y. Cheng, Y. Liang, In-Context Convergence of Transformers, ICML 2024"
    methods = ("gd", "flow", "mc")
    result_type = HuangResult
    params = declare(PARAMS, methods, {"steps": 100_000, "batch": 1000, "snapshots": 200})
    reproduce_targets = {name: f"dynamics.models.huang2024.reproduce:{name}"
                         for name in ("stagewise", "attention", "phases", "scaling", "empirical")}
    claims = "dynamics.models.huang2024.claims:CLAIMS"

    # ---- parameters -----------------------------------------------------------------------
    @classmethod
    def check(cls, values, given):
        preset = values["preset"]
        if "p" in given and preset != "general":
            raise ParamError("p", f"p is used only with preset = general (got preset = {preset})")
        if "p1" in given and preset != "imbalanced":
            raise ParamError("p1", f"p1 is used only with preset = imbalanced (got preset = {preset})")
        if preset == "general" and values["p"] is not None:
            if "K" in given and values["K"] != len(values["p"]):
                raise ParamError("p", f"p must have K = {values['K']} entries, got {len(values['p'])}")
            validate.probabilities(values["p"], "p")
        if values["d"] is not None and values["d"] < values["K"]:
            raise ParamError("d", f"d must be >= K = {values['K']} (K orthonormal features), got {values['d']}")

    def __init__(self, **params):
        super().__init__(**params)
        c = self.config
        if c["preset"] == "balanced":
            self.structure = ClassStructure.balanced(c["K"])
        elif c["preset"] == "imbalanced":
            self.structure = ClassStructure.imbalanced(c["K"], c["p1"])
        else:
            if c["p"] is None:  # documented default: a Dirichlet(1) draw from the seed
                c["p"] = model_rng(c["seed"], "huang2024.p").dirichlet(np.ones(c["K"])).tolist()
            c["K"] = len(c["p"])
            self.structure = ClassStructure.general(c["p"])
        self.N = int(c["N"])
        self.sigma2 = float(c["sigma2"])
        self.h = float(c["h"])
        self._p_col, self._m_col = self.structure.column_tables()
        self._wt = tail_weights(self.h)
        self._weights = self.structure.sizes * self.structure.probs

    @cached_property
    def L_star(self) -> np.ndarray:
        """``L_k^*`` of each query class (:func:`.theory.optimum`)."""
        return optimum(self.structure, self.N, self.sigma2, self.h)

    # ---- state and observables ------------------------------------------------------------
    def blocks(self, method):
        F = self.structure.F
        if method == "mc":
            return {"Q": Block((self.d, self.d), "Q", "eta")}
        return {"coords": Block((F, F + 1), "[A_k, B_{k,n} per class]", "eta")}

    @property
    def d(self) -> int:
        return int(self.config["d"] or self.structure.K)

    def initial_state(self, method, rng=None):
        c = np.full((self.structure.F, self.structure.F + 1), float(self.config["B0"]))
        c[:, 0] = float(self.config["A0"])
        if method != "mc":
            return {"coords": c}
        V = self.features
        return {"Q": V @ self.structure.expand(c) @ V.T}

    def movable(self, method):
        return {"coords": self._m_col > 0} if method != "mc" else {}

    def dim_labels(self):
        names = np.array(self.structure.names)
        return {"query_class": names, "key_class": names}

    def observables(self, method):
        obs = {
            "A": Observable(("query_class",), "A_k", "attention weight of a query on its own feature, v_k^T Q v_k"),
            "B": Observable(("query_class", "key_class"), "B_{k,n}",
                            "attention weight of a query k on a key n != k of the key class, v_n^T Q v_k"),
            "L_k": Observable(("query_class",), "L_k", "per-feature prediction error 1/2 E[(yhat - y_q)^2 | x_q = v_k]"),
            "L": Observable((), "L", "population loss sum_k p_k L_k"),
        }
        if method in ("gd", "flow"):
            obs.update(
                gap=Observable(("query_class",), "L_k - L_k^*", "distance of L_k to its optimum"),
                attn_own=Observable(("query_class",), "E[Attn_k]", "expected attention on the query's own feature"),
                attn=Observable(("query_class", "key_class"), "E[Attn_n]",
                                "expected attention on one key n != k of the key class"),
            )
        else:
            obs["off_span"] = Observable((), "|Q - P Q P|_F", "norm of Q outside span{v_n v_k^T} (stays 0)")
        return obs

    def references(self):
        s = self.structure
        return {
            "L_star": (self.L_star, ("query_class",), "L_k^*", "optimum of L_k (NaN with label noise)"),
            "p_k": (s.probs, ("query_class",), "p_k", "probability of one feature of the class"),
            "class_size": (s.sizes.astype(np.float64), ("query_class",), "m", "features in the class"),
        }

    def _masked(self, block):
        out = np.array(block, dtype=np.float64)
        out[self._m_col[:, 1:] <= 0] = np.nan
        return out

    def observe(self, state, method, rng=None):
        if method == "mc":
            return self._observe_mc(state, rng)
        coords = state["coords"]
        ev = self.evaluate(coords)
        return {"A": coords[:, 0].copy(), "B": self._masked(coords[:, 1:]), "L_k": ev.L_f,
                "L": ev.L, "gap": ev.L_f - self.L_star, "attn_own": ev.attn[:, 0].copy(),
                "attn": self._masked(ev.attn[:, 1:])}

    # ---- exact methods --------------------------------------------------------------------
    def evaluate(self, coords) -> ReducedEvaluation:
        """The exact ``L``, ``dL/dtheta``, ``L_k`` and ``E[Attn]`` on the reduced coordinates
        (:func:`.engine.reduced_loss_grad` without re-validating the model's fixed inputs on every
        call: the structure, ``N``, ``sigma2`` and ``h`` were checked once, when the model was made).
        """
        coords = np.ascontiguousarray(coords, dtype=np.float64)
        F = self.structure.F
        grad, L_f, attn = np.empty((F, F + 1)), np.empty(F), np.empty((F, F + 1))
        reduced_kernel(coords, self._p_col, self._m_col, float(self.N), self.sigma2, self.h, self._wt, grad, L_f,
                       attn)
        validate.finite_result("the exact Huang gradient (reduced coordinates)", L_f=L_f, grad=grad)
        return ReducedEvaluation(float(self._weights @ L_f), grad, L_f, attn)

    def direction_jacobian(self, state):
        """``d grad / d coords`` (flattened ``(F (F + 1))^2``, block diagonal per query class) from
        the exact Jacobian of :mod:`.jacobian`: the flow's integrator needs no finite differences."""
        coords = np.ascontiguousarray(state["coords"], dtype=np.float64)
        F, J = coords.shape
        jp, jn = np.empty((F, J, J)), np.empty((F, J, J))
        reduced_jacobian(coords, self._p_col, self._m_col, float(self.N), self.sigma2, self.h, self._wt, jp, jn)
        H = np.zeros((F * J, F * J))
        for f in range(F):
            H[f * J:(f + 1) * J, f * J:(f + 1) * J] = jp[f] - jn[f]
        return H

    def loss_grad(self, state):
        ev = self.evaluate(state["coords"])
        return Evaluation(ev.L, {"coords": ev.grad}, ev.L_f - self.L_star, {"reduced": ev})

    def advance(self, state, lrs, start, stop, monitor):
        """Exact GD in a compiled loop (:func:`gd_loop`), same semantics as the Python loop."""
        first = monitor.ensure(self.structure.F)
        status, t, monitor.L_prev, monitor.rising = gd_loop(
            state["coords"], self._p_col, self._m_col, float(self.N), self.sigma2, self.h, float(lrs["coords"]),
            int(start), int(stop), self.L_star, monitor.eps, monitor.patience, monitor.levels, first,
            float(monitor.L_prev), int(monitor.rising))
        return int(status), int(t)

    def divergence_hint(self, method):
        return f"try a smaller eta (eta = {self.config['eta']:g} now)"

    # ---- Monte Carlo (MODEL.md section 5) -------------------------------------------------
    @cached_property
    def features(self) -> np.ndarray:
        """The orthonormal features ``V`` (d x K) of the Monte Carlo model, fixed by the seed."""
        if self.structure.K > MC_MAX_K:
            raise ParamError("K", f"K must be <= {MC_MAX_K} for the Monte Carlo model (it keeps K x K scores), "
                                  f"got {self.structure.K}")
        return mc.make_features(self.structure.K, self.d, kind=self.config["features"],
                                random_state=model_rng(self.config["seed"], "huang2024.features"))

    @cached_property
    def sampler(self):
        return mc.Sampler(self.features, self.structure.p, self.N, self.sigma2, self.config["task"])

    def sample(self, rng, size):
        return self.sampler.draw(rng, size)

    def batch_loss_grad(self, state, batch):
        V = self.features
        theta = V.T @ state["Q"] @ V
        feats, z, noise = batch
        loss, g = mc.prompt_losses_grads(theta, feats, z, noise)
        G = mc.mean_grad_theta(g, np.ascontiguousarray(feats[:, self.N]), self.structure.K)
        return float(loss.mean()), {"Q": V @ G @ V.T}

    def reduce_full(self, theta) -> np.ndarray:
        """Class averages of a full ``K x K`` ``theta``: ``[A_k, B_{k,n} per class]`` per query class.

        Averaging over the members of a class is unbiased for the class coordinate by symmetry.
        """
        own = self.structure.owner()
        F = self.structure.F
        out = np.full((F, F + 1), np.nan)
        diag = np.diagonal(theta)
        for f in range(F):
            qk = own == f
            out[f, 0] = diag[qk].mean()
            for g in range(F):
                block = theta[np.ix_(own == g, qk)]  # rows n in class g, columns k in class f
                if f == g:
                    m = block.shape[0]
                    if m > 1:
                        out[f, 1 + g] = (block.sum() - np.trace(block)) / (m * (m - 1))
                else:
                    out[f, 1 + g] = block.mean()
        return out

    def _observe_mc(self, state, rng):
        V = self.features
        Q = state["Q"]
        theta = V.T @ Q @ V
        red = self.reduce_full(theta)
        L_feat, se_feat, L, L_se = mc.evaluate_L_k(theta, self.sampler, rng, self.structure.p,
                                                   int(self.config["n_eval"]))
        own = self.structure.owner()
        F = self.structure.F
        L_k = np.array([L_feat[own == f].mean() for f in range(F)])
        L_k_se = np.array([np.sqrt(np.sum(se_feat[own == f] ** 2)) / np.sum(own == f) for f in range(F)])
        return {"A": red[:, 0], "B": red[:, 1:], "L_k": L_k, "L_k_se": L_k_se, "L": L, "L_se": L_se,
                "off_span": mc.frobenius(Q - V @ theta @ V.T)}

    # ---- optional -------------------------------------------------------------------------
    def figures(self, result, outdir):
        from dynamics.models.huang2024 import figures

        return figures.all_figures(result, outdir, self.config.get("attention_at"))

    def summary(self, result):
        ds = result.ds
        lines = []
        last = ds.isel(t=-1)
        if "replica" in ds.dims:
            last = last.mean("replica")
        for f, name in enumerate(self.structure.names):
            line = f"  L_k (query in '{name}') = {float(last['L_k'][f]):.6e}   L_k^* = {self.L_star[f]:.6e}" \
                   f"   A_k = {float(last['A'][f]):.4f}"
            if "attn_own" in last:
                line += f"   E[Attn_k] = {float(last['attn_own'][f]):.4f}"
            lines.append(line)
        return lines

    @classmethod
    def sweep_outputs(cls):
        return SWEEP_OUTPUTS


@jit
def gd_loop(coords, p_col, m_col, N, sigma2, h, eta, start, stop, L_star, eps, patience, levels, first, L_prev,
            rising):
    """Exact population GD on reduced coordinates, ``theta <- theta - eta dL/dtheta`` (paper's GD on Q).

    The compiled twin of :func:`dynamics.methods.gd.advance_python` (same checks in the same
    order, :class:`dynamics.methods.gd.Monitor`): evaluates the state at steps ``start..stop``
    and updates it after each step ``< stop``; records in ``first[f, j]`` the first step with
    ``L_f - L_star <= levels[j]``; stops early when every ``L_f - L_star <= eps`` (``eps > 0``),
    on a non-finite value, or after ``patience`` rises of ``L``.
    Returns ``(status, step, L_prev, rising)``; ``coords`` holds the state at ``step``.
    """
    F, J = coords.shape
    grad = np.empty((F, J))
    L_f = np.empty(F)
    attn = np.empty((F, J))
    wt = tail_weights(h)
    t = start
    while True:
        reduced_kernel(coords, p_col, m_col, N, sigma2, h, wt, grad, L_f, attn)
        L = 0.0
        finite = True
        done = eps > 0.0
        for f in range(F):
            # sizes[f] * probs[f] * L_f: sizes[f] is m_col[f, 1 + f] + 1
            L += (m_col[f, 1 + f] + 1.0) * p_col[f, 0] * L_f[f]
            if not np.isfinite(L_f[f]):
                finite = False
            gap = L_f[f] - L_star[f]
            if gap > eps:
                done = False
            for j in range(levels.shape[0]):
                if np.isnan(first[f, j]) and gap <= levels[j]:
                    first[f, j] = t
            for j in range(J):
                if not np.isfinite(grad[f, j]) or not np.isfinite(coords[f, j]):
                    finite = False
        if not finite or not np.isfinite(L):
            return NONFINITE, t, L_prev, rising
        if L > L_prev + RISE_TOL * max(1.0, abs(L_prev)):
            rising += 1  # exact GD with a small enough step never raises L: count every rise
        L_prev = L
        if rising >= patience:
            return RISING, t, L_prev, rising
        if done:
            return STOPPED, t, L_prev, rising
        if t >= stop:
            return OK, t, L_prev, rising
        for f in range(F):
            for j in range(J):
                if m_col[f, j] > 0:
                    coords[f, j] -= eta * grad[f, j]
        t += 1
