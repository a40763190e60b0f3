"""The model of Yang, Huang, Liang, Chi (2024) on the contract of :mod:`dynamics.core.contract`.

One-layer multi-head softmax attention learning ridge regression in context (MODEL.md section 7).
The population loss has an exact closed form (:mod:`.closed_form`), so all three methods run:

- ``gd``: exact GD with two step sizes, ``eta_Q`` on ``theta_h`` (or ``Q_h``) and
  ``eta_w = gamma^2 eta_Q`` on ``w_h`` (the paper's eq. 16); ``optimizer = adam`` runs Adam on the
  exact gradient of the full ``Q_h`` (the paper's experiments use Adam);
- ``flow``: its gradient flow (small problems: see :data:`FLOW_MAX`);
- ``mc``: SGD or Adam on minibatches of sampled prompts, training the paper's ``Q_h`` and ``w_h``.

Every method records the same exact observables of its state (the loss, its gap to ``L*``, the
distance of each ``a_k`` to ``A_{:,k}``, ``min_k sigma_min(B_k)``, in- and out-of-domain inference
losses); Monte Carlo adds a held-out estimate of the loss with its standard error.  The initial
``Q_h^(0)`` is drawn from the run's seed (stream ``yang2024.init``) and is the same for every
method and every Monte Carlo replica, so exact and Monte Carlo runs start together.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from dynamics.core.contract import Block, Evaluation, ExactLoss, Model, Observable, SampledLoss
from dynamics.methods import declare
from dynamics.core.params import Param, ParamError, ParamSet, nonnegative_float, positive_float, positive_int
from dynamics.core.rng import model_rng
from dynamics.models.yang2024 import closed_form as cf
from dynamics.models.yang2024 import ridge, sampling
from dynamics.models.yang2024.data import Problem, draw_dictionary, load_dictionary
from dynamics.models.yang2024.stability import smoothness

ADAM_LR = 1e-4
"""The paper's Adam learning rate (its experiments: Adam, lr 1e-4, batch 256)."""
FLOW_MAX = 5000
"""Most coordinates the gradient flow integrates: scipy's LSODA switches to a stiff method that
forms a dense finite-difference Jacobian (one gradient per coordinate, n^2 memory)."""


def _task_pair(v):
    return "a pair (mu, var) with var >= 0" if v[1] < 0 else None


PARAMS = ParamSet([
    positive_int("N", 30, "number of labelled prompt tokens N (the prompt is v_1..v_N with labels y_1..y_N; N <= K)"),
    positive_int("K", 200, "dictionary size K: tokens v_1..v_K, the model predicts all K labels (from the data "
                           "file when data is set)"),
    positive_int("d", 100, "token dimension d (v_k in R^d, unit norm; K > d allowed)"),
    positive_int("m", 20, "representation dimension m: number of basis functions z_k = f(v_k) in R^m"),
    positive_int("H", 64, "number of attention heads H (Theorem 1 needs H >= N)"),
    nonnegative_float("tau", 0.01, "label-noise level tau: eps_k ~ N(0, tau I_m), y_k = lambda^T (z_k + eps_k) "
                                   "(not stated for the paper's Fig 2; choice 0.01, Fig 3's value)"),
    Param("data_seed", "int", None, "seed of the dictionary V_all and representations Zhat (default: the run's "
                                    "seed; set it to vary Q_h^(0) over seeds on fixed data)", low=0),
    Param("data", "path", None, ".npz with arrays V_all (d, K) and Zhat (m, K): a user's dictionary and "
                                "representations (then K, d, m come from the file)"),
    Param("normalize_tokens", "bool", True, "scale the data file's tokens to unit norm (the paper's v_k are unit "
                                            "vectors); only with data"),
    nonnegative_float("beta", 1.0, "scale of the initial Q_h: entries i.i.d. N(0, beta^2) (Proposition 1; the "
                                   "paper's experiments: standard Gaussian, beta = 1); w_h^(0) = 0"),
    positive_float("eta_Q", None, "step size eta_Q of Q_h (theta_h); w_h moves with eta_w = gamma^2 eta_Q. "
                                  "Default: with plain steps eta_fraction x 2/ell_0 (the stability limit of GD "
                                  "at the initial state); with optimizer = adam 1e-4 (the paper's learning rate)"),
    Param("eta_fraction", "float", 0.5, "without eta_Q, plain steps use eta_Q = eta_fraction x 2/ell_0, a "
                                        "fraction of the stability limit at the initial state (0.5: 1/ell_0)",
          low=0.0, high=1.0, low_open=True, high_open=True),
    positive_float("gamma", 1.0, "ratio of the step sizes: eta_w = gamma^2 eta_Q (the paper's eq. 16)"),
    Param("parameterisation", "str", "auto", "exact methods: reduced trains theta_h = V^T Q_h V_all (N x K) with "
          "the step (V^T V) dL/dtheta_h (V_all^T V_all), the same trajectory as GD on Q_h; full trains Q_h "
          "(d x d); auto: reduced, or full with optimizer = adam (Adam acts entry-wise on Q_h)",
          choices=("auto", "reduced", "full"), methods=("gd", "flow")),
    Param("check_step", "bool", True, "refuse a plain step eta_Q beyond the stability limit 2/ell_0 at the "
                                      "initial state (false: run it anyway, e.g. to watch the instability)",
          methods=("gd", "mc")),
    Param("tasks", "str", "gaussian", "law of the training tasks lambda: gaussian N(0, I_m) or rademacher "
                                      "(+-1 entries; the same E[lambda lambda^T] = I)",
          choices=sampling.TASKS, methods=("mc",)),
    Param("id_tasks", "floats", [0.0, 1.0], "in-domain test tasks lambda ~ N(mu 1_m, var I_m): mu, var",
          length=2, check=_task_pair),
    Param("ood_tasks", "floats", [1.0, 4.0], "out-of-domain test tasks lambda ~ N(mu 1_m, var I_m): mu, var "
                                              "(the paper: N(1_m, 4 I_m))", length=2, check=_task_pair),
])


class Yang2024(Model, ExactLoss, SampledLoss):
    """One-layer multi-head softmax attention learning ridge regression in context.

    Exact state: ``theta`` (H, N, K) (``theta_h = V^T Q_h V_all``) or ``Q`` (H, d, d), and ``w``
    (H, K).  Monte Carlo state: ``Q`` and ``w``.
    """

    name = "yang2024"
    reference = ("T. Yang, Y. Huang, Y. Liang, Y. Chi, In-Context Learning with Representations: Contextual "
                 "Generalization of Trained Transformers, NeurIPS 2024")
    methods = ("gd", "flow", "mc")
    params = declare(PARAMS, methods, {"steps": 20_000, "snapshots": 100, "n_eval": 2000})
    reproduce_targets = {name: f"dynamics.models.yang2024.reproduce:{name.replace('-', '_')}"
                         for name in ("yang-convergence", "yang-ridge", "yang-fig2", "yang-fig3", "yang-heads")}

    # ---- parameters -----------------------------------------------------------------------
    @classmethod
    def crosscheck_defaults(cls, given: dict) -> dict:
        """A small plain step for the cross-check (``eta_fraction = 0.1``) unless a step is given.

        SGD's mean loss exceeds population GD's by a term of order ``eta_Q / B`` (the spread of the
        replicas' states raises the loss at second order), while the replicas' standard error falls
        only like ``1/sqrt(R B)``: at ``tau = 0.01`` and the default step ``1/ell_0`` the loss leaves
        the band (|z| = 12 at N = 4, K = 12, H = 8, 300 steps, batch 2000); at a tenth of the
        stability limit the same run gives |z| ~ 2.5 (z scales linearly with the step)."""
        if {"eta_Q", "eta_fraction"} & set(given) or given.get("optimizer") == "adam":
            return {}
        return {"eta_fraction": 0.1}

    @classmethod
    def check(cls, values, given):
        if values["data"] is not None:
            V_all, Zhat = load_dictionary(values["data"], values["normalize_tokens"])
            shape = {"K": V_all.shape[1], "d": V_all.shape[0], "m": Zhat.shape[0]}
            for name, v in shape.items():
                if name in given and values[name] != v:
                    raise ParamError(name, f"{name} = {values[name]} contradicts the data file, whose arrays give "
                                           f"{name} = {v} (leave {name} out with data)")
            K, m = shape["K"], shape["m"]
            if "data_seed" in given:
                raise ParamError("data_seed", "data_seed draws the dictionary, which the data file replaces; give one "
                                              "of data and data_seed")
        else:
            if not values["normalize_tokens"]:
                raise ParamError("normalize_tokens", "normalize_tokens = false is used only with data (a user's "
                                                     ".npz); drawn tokens are unit vectors")
            K, m = values["K"], values["m"]
        if values["N"] > K:
            raise ParamError("N", f"N must be <= K = {K} (the prompt's tokens are the first N of the dictionary), "
                                  f"got {values['N']}")
        if values["tau"] == 0 and values["N"] > m:
            raise ParamError("tau", f"tau = 0 needs N <= m (G = Z^T Z + m tau I_N is singular otherwise); got "
                                    f"N = {values['N']}, m = {m}")
        if "eta_fraction" in given and values["eta_Q"] is not None:
            raise ParamError("eta_fraction", "eta_fraction sets the default eta_Q; give one of eta_Q and eta_fraction")
        if "eta_fraction" in given and values.get("optimizer") == "adam":
            raise ParamError("eta_fraction", "eta_fraction is a fraction of the stability limit of plain steps; Adam's "
                                             "default learning rate is 1e-4 (set eta_Q)")
        if "check_step" in given and values.get("optimizer") == "adam":
            raise ParamError("check_step", "check_step applies to plain steps; Adam's steps are not bounded by the "
                                           "GD stability limit")
        if values.get("optimizer") == "adam" and values.get("parameterisation") == "reduced":
            raise ParamError("parameterisation", "parameterisation = reduced is for plain GD and the flow: Adam acts "
                                                 "entry-wise on the paper's Q_h (use full or auto)")

    def __init__(self, **params):
        super().__init__(**params)
        c = self.config
        if c["data"] is not None:
            V_all, Zhat = load_dictionary(c["data"], c["normalize_tokens"])
            c["K"], c["d"], c["m"] = V_all.shape[1], V_all.shape[0], Zhat.shape[0]
        else:
            seed = c["seed"] if c["data_seed"] is None else c["data_seed"]
            V_all, Zhat = draw_dictionary(model_rng(seed, "yang2024.dictionary"), c["d"], c["K"], c["m"])
        self.problem = Problem(V_all, Zhat, c["N"], c["tau"])
        self.H = int(c["H"])
        self._last_state = None

    @property
    def full(self) -> bool:
        """Exact methods train ``Q_h`` (else ``theta_h``)."""
        p = self.config.get("parameterisation", "auto")
        return p == "full" or (p == "auto" and self.config.get("optimizer") == "adam")

    # ---- state ----------------------------------------------------------------------------
    def _qblock(self, method):
        return "Q" if (method == "mc" or self.full) else "theta"

    def _check_flow(self, method):
        pr = self.problem
        if method == "flow":
            n = self.H * (pr.N * pr.K if not self.full else pr.d * pr.d) + self.H * pr.K
            if n > FLOW_MAX:
                raise ParamError("method", f"the gradient flow integrates {n} coordinates, more than {FLOW_MAX}: "
                                           "scipy's LSODA allocates and forms a dense n x n finite-difference "
                                           "Jacobian (use method gd, or smaller H, N, K)")

    def blocks(self, method):
        self._check_flow(method)
        pr = self.problem
        w = Block((self.H, pr.K), "w_h (steps gamma^2 eta_Q)", "eta_Q")
        if self._qblock(method) == "Q":
            return {"Q": Block((self.H, pr.d, pr.d), "Q_h", "eta_Q"), "w": w}
        return {"theta": Block((self.H, pr.N, pr.K), "theta_h = V^T Q_h V_all", "eta_Q"), "w": w}

    @cached_property
    def Q0(self) -> np.ndarray:
        """``Q_h^(0)``: i.i.d. ``N(0, beta^2)`` entries from the seed's ``yang2024.init`` stream."""
        rng = model_rng(self.config["seed"], "yang2024.init")
        pr = self.problem
        return float(self.config["beta"]) * rng.standard_normal((self.H, pr.d, pr.d))

    def initial_state(self, method, rng=None):
        """``Q_h^(0)`` (from the seed, not from ``rng``: every method and replica starts together)
        and ``w_h^(0) = 0``."""
        self._check_flow(method)
        w = np.zeros((self.H, self.problem.K))
        if self._qblock(method) == "Q":
            return {"Q": self.Q0.copy(), "w": w}
        return {"theta": cf.theta_of_Q(self.problem, self.Q0), "w": w}

    @cached_property
    def ell0(self) -> float:
        """Smoothness ``ell_0`` at the initial state (:func:`.stability.smoothness`)."""
        return smoothness(self.problem, cf.theta_of_Q(self.problem, self.Q0), np.zeros((self.H, self.problem.K)),
                          self.config["gamma"])

    @property
    def adam(self) -> bool:
        return self.config.get("optimizer") == "adam"

    def learning_rates(self, method):
        """``{theta or Q: eta_Q, w: gamma^2 eta_Q}``; resolves the default ``eta_Q`` and refuses a
        plain step beyond the stability limit ``2/ell_0`` (``check_step``)."""
        self._check_flow(method)
        eta = self.config["eta_Q"]
        if eta is None:
            eta = ADAM_LR if self.adam else float(self.config["eta_fraction"]) * 2.0 / self.ell0
        eta = float(eta)
        if method in ("gd", "mc") and not self.adam and self.config.get("check_step", True) \
                and self.config["eta_Q"] is not None and eta >= 2.0 / self.ell0:
            raise ParamError("eta_Q", f"eta_Q = {eta:g} is beyond the stability limit 2/ell_0 = {2 / self.ell0:.4g} "
                                      f"of GD at the initial state (ell_0 = {self.ell0:.4g}: the largest eigenvalue of "
                                      f"the Hessian scaled by the step sizes, gamma = {self.config['gamma']:g}); use "
                                      f"eta_Q < {2 / self.ell0:.4g}, or check_step = false to run it anyway")
        self.eta_Q = eta
        return {self._qblock(method): eta, "w": float(self.config["gamma"]) ** 2 * eta}

    # ---- observables ----------------------------------------------------------------------
    def dim_labels(self):
        pr = self.problem
        return {"token": np.arange(1, pr.K + 1), "prompt_token": np.arange(1, pr.N + 1)}

    def observables(self, method):
        id_mu, id_var = self.config["id_tasks"]
        ood_mu, ood_var = self.config["ood_tasks"]
        obs = {
            "loss": Observable((), "L", "exact population loss 1/2 sum_k E (yhat_k - y_k)^2 at the state"),
            "gap": Observable((), "L - L*",
                              "distance of the loss to its optimum, 1/2 sum_k (a_k - A_k)^T G (a_k - A_k)"),
            "loss_per_token": Observable((), "L/K", "population loss per token"),
            "a_dist": Observable(("token",), "|a_k - A_{:,k}|", "Euclidean distance of a_k to the ridge target"),
            "a_dist_max": Observable((), "max_k |a_k - A_{:,k}|", "largest distance of a_k to the ridge target"),
            "sigma_min_B": Observable((), "min_k sigma_min(B_k)",
                                      "B_k = Zbar C_k with Zbar^T Zbar = G and C_k = (s_k^1..s_k^H): its N-th "
                                      "singular value (0 when H < N), the constant of the PL argument"),
            "inference_id": Observable((), "(1/K) E|yhat - yhat*|^2",
                                       f"in-domain inference loss, lambda ~ N({id_mu:g} 1_m, {id_var:g} I_m)"),
            "inference_ood": Observable((), "(1/K) E|yhat - yhat*|^2",
                                        f"out-of-domain inference loss, lambda ~ N({ood_mu:g} 1_m, {ood_var:g} I_m)"),
        }
        if method == "mc":
            obs["loss_heldout"] = Observable((), "L (held-out)",
                                             "Monte Carlo estimate of L on n_eval fresh prompts (with _se)")
        return obs

    @cached_property
    def factors(self) -> tuple:
        """Moment factors of the in- and out-of-domain test tasks (:func:`.ridge.moment_factor`)."""
        return tuple(ridge.moment_factor(self.problem, *self.config[k]) for k in ("id_tasks", "ood_tasks"))

    def theta_of(self, state) -> np.ndarray:
        """``theta_h`` (H, N, K) of a state in either parameterisation."""
        return state["theta"] if "theta" in state else cf.theta_of_Q(self.problem, state["Q"])

    def observe(self, state, method, rng=None):
        pr = self.problem
        ev = cf.evaluate(pr, self.theta_of(state), state["w"], grad=False)
        dist = np.linalg.norm(ev.D, axis=0)
        B = np.matmul(pr.G_chol, ev.S.transpose(2, 1, 0))  # (K, N, H): R S_k, S_k = (s_k^1..s_k^H)
        sv = np.linalg.svd(B, compute_uv=False)
        smin = float(sv[:, pr.N - 1].min()) if self.H >= pr.N else 0.0
        out = {"loss": ev.loss, "gap": ev.gap, "loss_per_token": ev.loss / pr.K, "a_dist": dist,
               "a_dist_max": float(dist.max()), "sigma_min_B": smin,
               "inference_id": ridge.expected_sq_diff(pr, ev.D, self.factors[0]),
               "inference_ood": ridge.expected_sq_diff(pr, ev.D, self.factors[1])}
        if method == "mc":
            Y = sampling.sample_labels(pr, rng, int(self.config["n_eval"]), self.config["tasks"])
            out["loss_heldout"], out["loss_heldout_se"] = sampling.heldout_loss(ev.a, Y, pr.N)
        return out

    def references(self):
        pr = self.problem
        out = {
            "L_star": (np.float64(pr.L_star), (), "L*", "optimum of the population loss, attained at a_k = A_{:,k}"),
            "L_star_k": (pr.L_star_k, ("token",), "L*_k", "optimum of each token's loss (0 for the N prompt tokens)"),
            "A": (pr.A, ("prompt_token", "token"), "A = G^{-1} C", "the ridge target of a_k (columns)"),
        }
        if "eta_Q" in self.__dict__:
            out["eta_Q"] = (np.float64(self.eta_Q), (), "eta_Q", "the step size of Q_h (theta_h) used by the run; "
                                                               "eta_w = gamma^2 eta_Q")
        if "ell0" in self.__dict__:
            out["eta_limit0"] = (np.float64(2.0 / self.ell0), (), "2/ell_0",
                                 "stability limit of eta_Q for plain GD at the initial state")
        return out

    # ---- exact methods --------------------------------------------------------------------
    def loss_grad(self, state):
        self._last_state = state
        pr = self.problem
        if "theta" in state:
            ev = cf.evaluate(pr, state["theta"], state["w"])
            grads = {"theta": ev.grad_theta, "w": ev.grad_w}
        else:
            ev = cf.evaluate(pr, cf.theta_of_Q(pr, state["Q"]), state["w"])
            grads = {"Q": cf.grad_Q(pr, ev.grad_theta), "w": ev.grad_w}
        return Evaluation(ev.loss, grads, np.array([ev.gap]), {"closed_form": ev})

    def direction(self, state, grads):
        if "theta" in grads:
            return {"theta": cf.precondition(self.problem, grads["theta"]), "w": grads["w"]}
        return grads

    def divergence_hint(self, method):
        eta = getattr(self, "eta_Q", self.config["eta_Q"])
        hint = f"try a smaller eta_Q (eta_Q = {eta:g} now"
        if not self.adam:
            hint += f"; the stability limit 2/ell_0 was {2 / self.ell0:.4g} at the initial state"
            st = self._last_state
            if st is not None and all(np.all(np.isfinite(a)) for a in st.values()):
                try:
                    ell = smoothness(self.problem, self.theta_of(st), st["w"], self.config["gamma"])
                    hint += f" and 2/ell = {2 / ell:.4g} where the run stopped"
                except (ArithmeticError, ValueError, RuntimeError):
                    pass
        return hint + ")"

    # ---- Monte Carlo ----------------------------------------------------------------------
    def sample(self, rng, size):
        return (sampling.sample_labels(self.problem, rng, size, self.config["tasks"]),)

    def batch_loss_grad(self, state, batch):
        self._last_state = state
        pr = self.problem
        loss, gw, gt = sampling.batch_loss_grad(pr, cf.theta_of_Q(pr, state["Q"]), state["w"], batch[0])
        return loss, {"Q": cf.grad_Q(pr, gt), "w": gw}

    # ---- optional -------------------------------------------------------------------------
    def figures(self, result, outdir):
        from dynamics.models.yang2024 import figures

        return figures.run_figures(result, outdir)

    def summary(self, result):
        ds = result.ds
        last = ds.isel(t=-1)
        if "replica" in ds.dims:
            last = last.mean("replica")
        L_star = float(ds["L_star"])
        lines = [f"  L = {float(last['loss']):.6e}   L* = {L_star:.6e}   L - L* = {float(last['gap']):.3e} "
                 f"({float(last['gap']) / L_star:.2e} L*)" if L_star > 0 else
                 f"  L = {float(last['loss']):.6e}   L* = 0",
                 f"  max_k |a_k - A_k| = {float(last['a_dist_max']):.3e}   min_k sigma_min(B_k) = "
                 f"{float(last['sigma_min_B']):.3e}",
                 f"  inference loss: in-domain {float(last['inference_id']):.3e}, out-of-domain "
                 f"{float(last['inference_ood']):.3e}"]
        if "eta_Q" in ds:
            line = f"  eta_Q = {float(ds['eta_Q']):.4g}"
            if "eta_limit0" in ds:
                line += f" (stability limit of plain GD at the initial state 2/ell_0 = {float(ds['eta_limit0']):.4g})"
            lines.append(line)
        return lines
