"""Zhang, Frei, Bartlett (JMLR 2024) on the contract of :mod:`dynamics.core.contract`: the worked example.

One linear self-attention layer learns linear regression in context.  The exact methods (``gd``,
``flow``) train the paper's invariant parameters ``(U, u) = (W^{KQ}_{11}, w^{PV}_{22})`` on the
closed-form population loss (:mod:`.population`); Monte Carlo (``mc``) trains the full matrices
``W^{PV}``, ``W^{KQ}`` of the real network on sampled prompts (:mod:`.lsa`), from the same
initialisation.  The mathematics: ``docs/models/zhang2024.md``.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from dynamics.core.contract import Block, Evaluation, ExactLoss, Model, Observable, SampledLoss
from dynamics.core.params import Param, ParamError, ParamSet, positive_float, positive_int
from dynamics.core.rng import model_rng
from dynamics.core.stats import mean_se
from dynamics.methods import declare
from dynamics.models.zhang2024 import figures, lsa
from dynamics.models.zhang2024.population import Problem, covariance

# Rule 3: every parameter once, with its paper symbol.
PARAMS = ParamSet([
    positive_int("d", 5, "dimension d of the inputs x_i, x_q and of the task w"),
    positive_int("N", 20, "prompt length N: labelled examples (x_i, y_i) per prompt"),
    Param("kappa", "float", 1.0, "condition number of the input covariance Lambda: eigenvalues "
                                 "kappa^{-(j-1)/(d-1)}, j = 1..d (1: Lambda = I_d)", low=1.0),
    Param("rotate", "bool", False, "eigenbasis of Lambda Haar-random from the seed (scipy ortho_group), else "
                                   "the coordinate axes; needs kappa > 1"),
    positive_float("sigma", 0.1, "initialisation scale sigma: W^{PV}(0) = sigma e_{d+1} e_{d+1}^T, "
                                 "W^{KQ}_{11}(0) = sigma Theta Theta^T (Section 3.3; small sigma in Theorem 4.1)"),
    Param("theta", "str", "identity", "Theta of the initialisation, |Theta Theta^T|_F = 1: identity "
                                     "(Theta Theta^T = I_d / sqrt(d)) or random (Gaussian Theta from the seed)",
          choices=("identity", "random")),
    positive_float("eta", None, "step size eta of every block (flow: time t = tau / eta).  Default 1/ell, "
                                "half the stability limit 2/ell of the real network at the limit point (ell: "
                                "the curvature scale of docs/models/zhang2024.md, eq. (Z7))"),
])


class Zhang2024(Model, ExactLoss, SampledLoss):
    """Linear self-attention learning linear regression in context.

    Exact state: ``U`` (d, d) and ``u`` (scalar).  Monte Carlo state: ``W_PV``, ``W_KQ``
    (d + 1, d + 1).
    """

    # Rules 1, 2, 4: registry name, reference, methods; rule 3: parameters with this model's method
    # defaults; rule 9: the claims ledger's rows.
    name = "zhang2024"
    reference = ("R. Zhang, S. Frei, P. L. Bartlett, Trained Transformers Learn Linear Models In-Context, "
                 "JMLR 25(49), 2024")
    methods = ("gd", "flow", "mc")
    params = declare(PARAMS, methods, {"steps": 2000, "snapshots": 100, "n_eval": 2000})
    claims = "dynamics.models.zhang2024.claims:CLAIMS"

    @classmethod
    def check(cls, values, given):
        """Rule 3's rules between parameters."""
        if values["rotate"] and values["kappa"] == 1.0:
            raise ParamError("rotate", "rotate = true needs kappa > 1 (a rotation of Lambda = I_d is I_d)")
        if values["d"] == 1 and values["kappa"] > 1.0:
            raise ParamError("kappa", "kappa > 1 needs d >= 2 (with d = 1, Lambda has one eigenvalue, 1)")

    def __init__(self, **params):
        super().__init__(**params)
        c = self.config
        self.d = int(c["d"])
        Lam = covariance(self.d, float(c["kappa"]), bool(c["rotate"]), model_rng(c["seed"], "zhang2024.lambda"))
        self.problem = Problem(Lam, int(c["N"]))
        self.Lam_sqrt = np.linalg.cholesky(Lam)

    @cached_property
    def U0(self) -> np.ndarray:
        """``W^{KQ}_{11}(0) = sigma Theta Theta^T`` (d, d), with ``|Theta Theta^T|_F = 1``."""
        if self.config["theta"] == "identity":
            TT = np.eye(self.d) / np.sqrt(self.d)
        else:
            Theta = model_rng(self.config["seed"], "zhang2024.init").standard_normal((self.d, self.d))
            TT = Theta @ Theta.T
            TT /= np.linalg.norm(TT)
        return float(self.config["sigma"]) * TT

    # ---- rule 5: state ---------------------------------------------------------------------
    def blocks(self, method):
        d = self.d
        if method == "mc":
            return {"W_PV": Block((d + 1, d + 1), "W^{PV}", "eta"), "W_KQ": Block((d + 1, d + 1), "W^{KQ}", "eta")}
        return {"U": Block((d, d), "U = W^{KQ}_{11}", "eta"), "u": Block((), "u = w^{PV}_{22}", "eta")}

    def initial_state(self, method, rng=None):
        """The paper's initialisation (from the seed, not ``rng``: every method and replica starts
        together)."""
        sigma = float(self.config["sigma"])
        if method != "mc":
            return {"U": self.U0.copy(), "u": np.array(sigma)}
        W_PV, W_KQ = np.zeros((self.d + 1, self.d + 1)), np.zeros((self.d + 1, self.d + 1))
        W_PV[self.d, self.d] = sigma
        W_KQ[:self.d, :self.d] = self.U0
        return {"W_PV": W_PV, "W_KQ": W_KQ}

    def learning_rates(self, method):
        eta = self.config["eta"]
        eta = 1.0 / self.problem.curvature() if eta is None else float(eta)
        return {b: eta for b in self.blocks(method)}

    # ---- rule 6: observables ---------------------------------------------------------------
    def dim_labels(self):
        return {"row": np.arange(1, self.d + 1), "col": np.arange(1, self.d + 1)}

    def observables(self, method):
        obs = {
            "loss": Observable((), "L", "population loss 1/2 E (yhat - w^T x_q)^2 of the (U, u) part (closed form)"),
            "gap": Observable((), "L - L*", "distance of the loss to its global minimum"),
            "U": Observable(("row", "col"), "U = W^{KQ}_{11}", "the key-query block of the prediction"),
            "u": Observable((), "u = w^{PV}_{22}", "the value entry of the prediction"),
            "G_err": Observable((), "|u U^T - Gamma^{-1}|_F / |Gamma^{-1}|_F",
                                "relative distance of the prediction's matrix to the optimum Gamma^{-1}"),
        }
        if method != "mc":  # SGD's noise moves it at second order (along the valley of minima)
            obs["balance"] = Observable((), "u^2 - |U|_F^2", "conserved by the gradient flow (0 at the paper's init)")
        else:
            obs["loss_heldout"] = Observable((), "L (held-out)", "the network's loss on n_eval fresh prompts (with _se)")
            obs["off_span"] = Observable((), "|(w^{PV}_{21}, w^{KQ}_{21})|",
                                         "norm of the entries outside (U, u) that reach the prediction (0 in the "
                                         "population dynamics)")
        return obs

    @staticmethod
    def _Uu(state):
        if "U" in state:
            return state["U"], float(state["u"])
        d = state["W_PV"].shape[0] - 1
        return state["W_KQ"][:d, :d], float(state["W_PV"][d, d])

    def observe(self, state, method, rng=None):
        U, u = self._Uu(state)
        ev = self.problem.evaluate(U, u)
        g = self.problem.Gam_inv
        out = {"loss": ev.loss, "gap": ev.gap, "U": U, "u": u, "G_err": float(np.linalg.norm(ev.G - g) / np.linalg.norm(g))}
        if method != "mc":
            out["balance"] = u * u - float(np.sum(U * U))
        else:
            d = self.d
            X, y, xq, yq = lsa.sample(rng, int(self.config["n_eval"]), self.problem.N, self.Lam_sqrt)
            err = 0.5 * (lsa.predict(state["W_PV"], state["W_KQ"], X, y, xq) - yq) ** 2
            out["loss_heldout"], out["loss_heldout_se"] = mean_se(err)
            out["off_span"] = float(np.hypot(np.linalg.norm(state["W_PV"][d, :d]), np.linalg.norm(state["W_KQ"][d, :d])))
        return out

    def references(self):
        pr = self.problem
        U_lim, u_lim = pr.limit(0.0)
        return {
            "L_star": (np.float64(pr.L_star), (), "L*", "global minimum of the population loss"),
            "G_star": (pr.Gam_inv, ("row", "col"), "Gamma^{-1}", "the optimal u U^T (Theorem 4.1)"),
            "U_limit": (U_lim, ("row", "col"), "|Gamma^{-1}|_F^{-1/2} Gamma^{-1}", "the flow's limit of U (Theorem 4.1)"),
            "u_limit": (np.float64(u_lim), (), "|Gamma^{-1}|_F^{1/2}", "the flow's limit of u (Theorem 4.1)"),
            "Lambda": (pr.Lam, ("row", "col"), "Lambda", "covariance of the inputs x_i, x_q"),
            "eta": (np.float64(next(iter(self.learning_rates("gd").values()))), (), "eta", "the step size"),
        }

    # ---- rule 7: exact methods -------------------------------------------------------------
    def loss_grad(self, state):
        ev = self.problem.evaluate(state["U"], float(state["u"]))
        return Evaluation(ev.loss, {"U": ev.grad_U, "u": np.asarray(ev.grad_u)}, np.array([ev.gap]))

    # ---- rule 8: Monte Carlo ---------------------------------------------------------------
    def sample(self, rng, size):
        return lsa.sample(rng, size, self.problem.N, self.Lam_sqrt)

    def batch_loss_grad(self, state, batch):
        return lsa.batch_loss_grad(state["W_PV"], state["W_KQ"], batch)

    # ---- rule 9: optional ------------------------------------------------------------------
    def figures(self, result, outdir):
        return [figures.convergence(result, outdir)]

    @classmethod
    def crosscheck_defaults(cls, given):
        """The learning phase only: ``steps = 100`` unless given.  Once the exact gap falls to SGD's
        noise floor (of order ``eta / B``), the replicas' ``loss``, ``gap`` and ``G_err`` exceed it at
        second order by construction (docs/models/zhang2024.md, "Cross-check")."""
        return {} if "steps" in given else {"steps": 100}
