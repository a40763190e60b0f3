"""H. Li et al. (ICLR 2025) as a :class:`~dynamics.core.contract.Model`: a one-layer attention-only
transformer trained on K-step reasoning prompts, tested by greedy chain-of-thought decoding and
by one-step in-context learning (MODEL.md section 9).

Methods: Monte Carlo training of the real model (``mc``): minibatch SGD on fresh training prompts
(or a fixed training set of ``train_set`` prompts) with exact gradients (:mod:`.kernels`),
held-out evaluation with standard errors (:mod:`.decoding`); and, for small instances (at most
:data:`.exact.MAX_CONDITIONINGS` conditionings), exact population gradient descent (``gd``) on
the exact training loss of :mod:`.exact`, from the same initial state.

State blocks: ``W_Q``, ``W_K`` (``d x d``, ``d = 2 d_x``) and ``W_V`` (``d_x x d``; fixed to the
y-half read-out ``(0 I)`` unless ``train_value``).
"""
from __future__ import annotations

import numpy as np

from dynamics.core.contract import Block, Evaluation, ExactLoss, Model, Observable, SampledLoss
from dynamics.methods import declare
from dynamics.core.params import ParamError
from dynamics.core.rng import model_rng
from dynamics.models.shared import patterns
from dynamics.models.li2024_cot import exact, tasks, transitions
from dynamics.models.li2024_cot.data import DataModel
from dynamics.core.stats import mean_se
from dynamics.models.li2024_cot.decoding import COLUMN_TYPES, losses, per_prompt
from dynamics.models.li2024_cot.kernels import loss_grad_batch
from dynamics.models.li2024_cot.params import METHOD_DEFAULTS, PARAMS

TARGETS = ("cot-length", "cot-vs-icl", "cot-mechanism", "cot-training")
"""``python -m dynamics.reproduce`` targets, each the function of :mod:`.reproduce` of that name."""
TASK_PARAMS = ("tau_f", "rho_f", "condition1", "task_family", "trap_stay")
"""The generator's parameters, replaced by an explicit ``A_f`` or a named ``task``."""
DEFS = ("tau_def", "rho_def", "correct_step")
"""The declared readings of ``tau^f``, ``rho^f`` and the correct step (:func:`.transitions.statistics`)."""


def task_matrices(cfg: dict, rng: np.random.Generator | None = None) -> np.ndarray:
    """The test task's ``A_k^f`` ``(K, M', M')``: ``A_f`` reshaped and checked, or generated for
    ``tau_f``, ``rho_f``, ``condition1`` (:func:`.transitions.generate`; permutations from ``rng``)."""
    K, Mt = cfg["K"], cfg["M_test"]
    if cfg.get("task") is not None:
        A = tasks.named_task(cfg["task"])
        if A.shape[0] != K or A.shape[1] != Mt:
            raise ParamError("task", f"task = {cfg['task']} needs K = {A.shape[0]} and M_test = {A.shape[1]}, got "
                                     f"K = {K}, M_test = {Mt}")
        return A
    if cfg["A_f"] is not None:
        flat = np.asarray(cfg["A_f"], dtype=np.float64)
        if flat.size != K * Mt * Mt:
            raise ParamError("A_f", f"A_f must hold K * M_test^2 = {K * Mt * Mt} numbers (K = {K} matrices of "
                                    f"{Mt} x {Mt}, row-major), got {flat.size}")
        return transitions.check_transitions(flat.reshape(K, Mt, Mt), "A_f")
    return tasks.generate(Mt, K, cfg["tau_f"], cfg["rho_f"], cfg["condition1"], cfg["task_family"], cfg["trap_stay"],
                          rng, **{k: cfg[k] for k in DEFS})


def build_data(cfg: dict) -> DataModel:
    """The :class:`~.data.DataModel` of a resolved configuration; its fixed draws (random basis,
    dirichlet coefficients, the test task's correct steps) come from the run's ``seed`` through
    :func:`dynamics.core.rng.model_rng`, one stream each, shared by the replicas of a run."""
    M, K = cfg["M"], cfg["K"]
    d_x = cfg["d_x"] if cfg["d_x"] is not None else M + K
    g_basis, g_tsr, g_task = (model_rng(cfg["seed"], f"li2024_cot.{p}") for p in ("basis", "tsr", "task"))
    mu, c = patterns.orthonormal_sets(d_x, (M, K), None if cfg["pattern_basis"] == "standard" else g_basis)
    coeffs = patterns.coefficients(cfg["M_test"], M, cfg["S1"], cfg["tsr_spread"], g_tsr)
    A = task_matrices(cfg, g_task)
    return DataModel(mu=mu, pe=cfg["pe_scale"] * c, tsr=patterns.combine(coeffs, mu), tsr_coeffs=coeffs, A=A,
                     stats=transitions.statistics(A, **{k: cfg[k] for k in DEFS}), train_task=cfg["train_task"],
                     noise_train=cfg["noise_train"], noise=cfg["noise"])


class Li2024CoT(Model, ExactLoss, SampledLoss):
    """One-layer attention-only transformer for chain of thought (H. Li et al., ICLR 2025)."""

    name = "li2024_cot"
    methods = ("mc", "gd")
    claims = "dynamics.models.li2024_cot.claims:CLAIMS"
    params = declare(PARAMS, methods, METHOD_DEFAULTS)
    reference = ("H. Li, M. Wang, S. Lu, X. Cui, P.-Y. Chen, Training nonlinear transformers for chain-of-thought "
                 "inference: a theoretical generalization analysis, ICLR 2025")
    reproduce_targets = {t: f"dynamics.models.li2024_cot.reproduce:{t.replace('-', '_')}" for t in TARGETS}

    def __init__(self, **params):
        super().__init__(**params)
        self.data = build_data(self.config)
        self.d_x, self.d = self.data.d_x, self.data.d

    @classmethod
    def check(cls, values: dict, given: set) -> None:
        """Rules between parameters, each a one-line :class:`ParamError` naming the parameter."""
        M, K = values["M"], values["K"]
        if values["tsr_spread"] == "disjoint" and values["M_test"] > M:
            raise ParamError("M_test", f"M_test must be <= M = {M} with tsr_spread = disjoint (each TSR pattern owns "
                                       f"a group of TRR patterns), got {values['M_test']}")
        if values["d_x"] is not None and values["d_x"] < M + K:
            raise ParamError("d_x", f"d_x must be >= M + K = {M + K} (orthonormal TRR patterns and positional "
                                    f"encodings orthogonal to them), got {values['d_x']}")
        if not np.isfinite(values["S1"]) or values["S1"] == 0.0:
            raise ParamError("S1", f"S1 must be a finite nonzero number (TSR patterns mu' = sum_i c_i mu_i with "
                                   f"sum_i c_i = S1), got {values['S1']}")
        if values["A_f"] is not None and values["task"] is not None:
            raise ParamError("task", "task and A_f both give the test matrices; give one")
        if values["A_f"] is not None or values["task"] is not None:
            which = "A_f" if values["A_f"] is not None else "task"
            clash = [p for p in TASK_PARAMS if p in given]
            if clash:
                raise ParamError(clash[0], f"{clash[0]} is not used when {which} gives the test matrices explicitly")
        elif "trap_stay" in given and values["task_family"] == "circulant":
            raise ParamError("trap_stay", "trap_stay is used only by the trap family (task_family = trap or auto)")
        task_matrices(values)

    @classmethod
    def resolve(cls, *layers: dict, method: str | None = None, origin=()) -> tuple:
        """As :meth:`Model.resolve`; method ``gd`` also refuses instances beyond the exact route's
        cost bound, with noise or a trained ``W_V`` (:func:`.exact.check_cost`), in one line."""
        values, names = super().resolve(*layers, method=method, origin=origin)
        if method == "gd":
            exact.check_cost(values["M"], values["K"], values["train_task"], values["noise_train"],
                             values["train_value"])
        return values, names

    @classmethod
    def crosscheck_defaults(cls, given: dict) -> dict:
        """A small instance the exact route takes (``M = 3``, ``K = 2``: 216 conditionings) unless
        given, and a step of 0.5 (SGD's O(eta^2 / B) bias stays inside the band)."""
        out = {"M": 3, "K": 2, "eta": 0.5}
        if "M" in given and "M_test" not in given:
            out["M_test"] = min(3, int(given["M"]))
        return {k: v for k, v in out.items() if k not in given}

    # ---- exact population loss (rule 7) ---------------------------------------------------
    def _exact(self):
        if getattr(self, "_exact_loss", None) is None:
            c = self.config
            exact.check_cost(c["M"], c["K"], c["train_task"], c["noise_train"], c["train_value"])
            self._exact_loss = exact.PopulationLoss(self.data.mu, self.data.pe, c["l_train"], c["alpha"], c["train_task"])
        return self._exact_loss

    def loss_grad(self, state: dict) -> Evaluation:
        """The exact population training loss ``1/2 E|z_k - F(P)|^2`` and its gradient in ``W_Q``,
        ``W_K`` (:class:`.exact.PopulationLoss`; ``W_V`` is fixed)."""
        L, gQ, gK = self._exact().loss_grad(state["W_Q"], state["W_K"])
        return Evaluation(L, {"W_Q": gQ, "W_K": gK})

    # ---- state --------------------------------------------------------------------------
    def blocks(self, method: str) -> dict:
        d, dx = self.d, self.d_x
        return {"W_Q": Block((d, d), "W_Q", "eta"), "W_K": Block((d, d), "W_K", "eta"),
                "W_V": Block((dx, d), "W_V", "eta" if self.config["train_value"] else None)}

    def initial_state(self, method: str, rng: np.random.Generator) -> dict:
        """``W_Q = W_K = init_qk I``, ``W_V = (0 I)`` (the y-half read-out); deterministic."""
        d, dx, c = self.d, self.d_x, self.config["init_qk"]
        W_V = np.zeros((dx, d))
        W_V[:, dx:] = np.eye(dx)
        return {"W_Q": c * np.eye(d), "W_K": c * np.eye(d), "W_V": W_V}

    # ---- Monte Carlo hooks --------------------------------------------------------------
    def sample(self, rng: np.random.Generator, size: int):
        """``size`` training prompts (:meth:`.data.DataModel.sample_train`)."""
        return self.data.sample_train(rng, size, self.config["l_train"], self.config["alpha"])

    def batch_loss_grad(self, state: dict, batch) -> tuple:
        """Mean squared loss of the batch and its exact gradient (:func:`.kernels.loss_grad_batch`)."""
        P, n, target = batch[0], batch[1], batch[2]
        g = {k: np.empty_like(v) for k, v in state.items()}
        loss = loss_grad_batch(state["W_Q"], state["W_K"], state["W_V"], P, np.ascontiguousarray(n, dtype=np.int64),
                               target, g["W_Q"], g["W_K"], g["W_V"])
        if not self.config["train_value"]:
            del g["W_V"]
        return loss, g

    # ---- observables --------------------------------------------------------------------
    def dim_labels(self) -> dict:
        return {"column_type": np.array(COLUMN_TYPES)}

    def observables(self, method: str) -> dict:
        if method == "gd":
            return {"loss": Observable((), "1/2 E|z_k - F(P)|^2", "the exact population training loss (exact.py)")}
        everything = {
            "error_cot": Observable((), "(1/K) sum_k 1[v_k != z_k]", "CoT error of greedy decoding on test prompts "
                                    "(TSR patterns, the test task A_k^f, alpha_test, l_test)"),
            "error_icl": Observable((), "1[v != z_K]", "ICL error on the same test draws, examples (x_i; y_i,K)"),
            "loss": Observable((), "1/2 E|z_k - F(P)|^2", "the training loss on n_eval fresh training prompts (the "
                               "population loss that SGD descends)"),
            "error_train": Observable((), "(1/K) sum_k 1[v_k != z_k]", "CoT error on training-distribution prompts "
                                      "(TRR patterns, fresh tasks, alpha, l_train)"),
            "attn": Observable(("column_type",), "sum_{i in type} attn_i", "attention mass by column type during "
                               "CoT decoding of test prompts, averaged over the K steps (slides' Figure 20)"),
            "attn_train": Observable(("column_type",), "sum_{i in type} attn_i", "the same on training-distribution "
                                     "prompts"),
        }
        return everything if self.config["record"] == "all" else {"loss": everything["loss"]}

    def observe(self, state: dict, method: str, rng: np.random.Generator | None = None) -> dict:
        if method == "gd":
            return {"loss": self.loss_grad(state).loss}
        rng = np.random.default_rng(0) if rng is None else rng
        n = int(self.config["n_eval"])
        batch = self.sample(rng, n)
        loss = losses(state, batch)
        out = {"loss": loss.mean(), "loss_se": loss.std(ddof=1) / np.sqrt(n)}
        if self.config["record"] == "loss":
            return out
        test = per_prompt(self, state, rng, n, domain="test")
        train = per_prompt(self, state, rng, n, domain="train", icl_too=False)
        for name, x in (("error_cot", test["cot"]), ("error_icl", test["icl"]), ("error_train", train["cot"]),
                        ("attn", test["attn"]), ("attn_train", train["attn"])):
            out[name], out[f"{name}_se"] = mean_se(x)
        return out

    def references(self) -> dict:
        st = self.data.stats
        return {
            "tau_f": (st.tau, (), "tau^f", "min over starts of the most probable K-step path's probability"),
            "tau_o_f": (st.tau_o, (), "tau_o^f", "min over starts of the largest entry of B^f's row"),
            "rho_f": (st.rho, (), "rho^f", "smallest margin of a correct step over the wrong ones along correct paths"),
            "rho_o_f": (st.rho_o, (), "rho_o^f", "smallest margin of the correct final output in B^f (< 0: "
                        "Condition 1 fails)"),
            "condition1": (float(st.condition1), (), "Condition 1", "1 if the correct final output is B^f's most "
                           "probable for every start"),
            "icl_limit": (float(st.failing.mean()), (), "lim ICL error", "fraction of starts whose correct final "
                          "output is not B^f's most probable: the ICL error of plurality copying as l -> infinity"),
        }

    # ---- run directory ------------------------------------------------------------------
    def summary(self, result) -> list:
        """The final scalar observables (replica means), the final attention masses and the test
        task's statistics."""
        lines = super().summary(result)
        ds = result.ds
        if "attn" in ds:
            last = ds["attn"].isel(t=-1).mean("replica").values
            lines += [f"  attn[{kind}] = {v:.4f}" for kind, v in zip(COLUMN_TYPES, last)]
        st = self.data.stats
        lines.append(f"  test task: tau^f = {st.tau:.4g}, tau_o^f = {st.tau_o:.4g}, rho^f = {st.rho:.4g}, "
                     f"rho_o^f = {st.rho_o:.4g}, Condition 1 {'holds' if st.condition1 else 'fails'}")
        return lines

    def figures(self, result, outdir: str) -> list:
        """``errors.png`` (CoT, ICL and training-distribution errors against iterations) and
        ``attention.png`` (the four attention masses), replica mean +- 2 SE."""
        from dynamics.models.li2024_cot import figures

        return figures.run_figures(result.ds, outdir)
