"""H. Li et al. (ICML 2024) as a :class:`~dynamics.core.contract.Model`: softmax attention plus a
ReLU MLP classifying in context, in and out of domain (MODEL.md section 8).

There is no closed form for this network (ReLU and hinge loss after the attention), so the only
method is Monte Carlo training of the real network (``mc``): minibatch SGD on fresh prompts, or
on a fixed training set of ``train_set`` prompts (the slides' empirical risk, eq. 8).

State blocks: ``W_Q``, ``W_K``, ``W_V`` (``d x d``, ``d = d_x + label_dim``), ``W_O``
(``m x d``) and ``a`` (``m``; fixed unless ``train_a``).
"""
from __future__ import annotations

import numpy as np

from dynamics.core.contract import Block, Model, Observable, SampledLoss
from dynamics.methods import declare
from dynamics.core.params import ParamError
from dynamics.core.rng import model_rng
from dynamics.models.li2024 import analysis
from dynamics.models.shared import patterns
from dynamics.models.li2024.data import (DataModel, Prompts, all_tasks, balanced_count, balanced_tasks,
                                         training_tasks)
from dynamics.models.li2024.evaluation import evaluate
from dynamics.models.li2024.kernels import loss_grad_batch
from dynamics.models.li2024.params import METHOD_DEFAULTS, PARAMS

PROJ_PROMPTS = 200
"""Test prompts (of ``l_test`` columns each) behind the ``qk_proj`` observable."""


def build_data(cfg: dict) -> DataModel:
    """The :class:`DataModel` of a resolved configuration.

    Its fixed draws come from the run's ``seed`` through :func:`dynamics.core.rng.model_rng`, one
    independent stream per purpose (basis, training tasks, ODR coefficients, ODI rotation), apart
    from the Monte Carlo replica streams: every replica of a run shares them, and changing e.g.
    ``S1`` or ``odr_construction`` never changes ``T_tr``.
    """
    M1, M2 = cfg["M1"], cfg["M2"]
    d_x = cfg["d_x"] if cfg["d_x"] is not None else M1 + M2
    g_basis, g_tasks, g_odr, g_odi = (model_rng(cfg["seed"], f"li2024.{purpose}")
                                      for purpose in ("basis", "tasks", "odr", "odi"))
    mu, nu = patterns.orthonormal_sets(d_x, (M1, M2), None if cfg["pattern_basis"] == "standard" else g_basis)
    q = patterns.label_vector(cfg["label_dim"], cfg["q_norm"])
    tasks = all_tasks(M1)
    if cfg["task_set"] == "balanced":
        tr = balanced_tasks(M1, balanced_count(M1, cfg["task_fraction"]), g_tasks)
    else:
        frac = cfg["task_fraction"] if cfg["task_fraction"] is not None else (M1 - 1) ** -0.5
        tr = training_tasks(M1, frac, g_tasks)
    trset = {tuple(t) for t in tr.tolist()}
    unseen = np.array([t for t in tasks.tolist() if tuple(t) not in trset], dtype=np.int64).reshape(-1, 2)
    if unseen.shape[0] == 0:
        unseen = tasks
    coeffs = odr_coefficients(cfg, g_odr)
    M2t = cfg["M2_test"] if cfg["M2_test"] is not None else M2
    return DataModel(mu=mu, nu=nu, q=q, odr=patterns.combine(coeffs, mu), odr_coeffs=coeffs,
                     odi=patterns.span_patterns(nu, M2t, g_odi), tasks=tasks, train_tasks=tr, unseen_tasks=unseen,
                     ood_tasks=all_tasks(cfg["M1_test"]), kappa_low=cfg["kappa_low"], kappa_high=cfg["kappa_high"],
                     other_label=cfg["other_label"])


def odr_coefficients(cfg: dict, rng: np.random.Generator | None = None) -> np.ndarray:
    """``(M1', M1)``: the coefficients ``c_{j,i}`` of the ODR patterns under
    ``cfg["odr_construction"]`` (:data:`~.params.CONSTRUCTIONS`; docs/models/li2024.md).

    ``sum_norm``: :func:`patterns.sum_norm_coefficients` (sum ``S1``, norm ``odr_norm``, default 1,
    or ``|S1|`` when every group is a single IDR pattern and sum and norm cannot be separated);
    ``tied``: :func:`patterns.coefficients` ``"disjoint"`` (``S1 / |G_j|`` each, norm
    ``|S1| / sqrt(|G_j|)``); ``vector``: :func:`patterns.vector_coefficients` of ``odr_coeffs``;
    ``dirichlet``: ``S1 * Dirichlet(1)`` rows drawn from ``rng``.  Raises ValueError naming the
    parameter whose rule is broken.
    """
    how, M1, M1t = cfg["odr_construction"], cfg["M1"], cfg["M1_test"]
    if how == "sum_norm":
        norm = cfg["odr_norm"]
        if norm is None:  # unit norm; groups of one IDR pattern cannot separate sum and norm: |S1|
            norm = abs(cfg["S1"]) if M1 // M1t == 1 and M1 % M1t == 0 and cfg["S1"] != 0 else 1.0
        return patterns.sum_norm_coefficients(M1t, M1, cfg["S1"], norm)
    if how == "tied":
        return patterns.coefficients(M1t, M1, cfg["S1"], "disjoint")
    if how == "vector":
        return patterns.vector_coefficients(M1t, M1, cfg["odr_coeffs"], cfg["odr_norm"])
    return patterns.coefficients(M1t, M1, cfg["S1"], "dirichlet", rng)


class Li2024(Model, SampledLoss):
    """One-layer transformer with softmax attention and a ReLU MLP (H. Li et al., ICML 2024)."""

    name = "li2024"
    reference = ("H. Li, M. Wang, S. Lu, X. Cui, P.-Y. Chen, How do nonlinear transformers learn and "
                 "generalize in in-context learning?, ICML 2024")
    params = declare(PARAMS, ("mc",), METHOD_DEFAULTS)
    methods = ("mc",)
    claims = "dynamics.models.li2024.claims:CLAIMS"
    reproduce_targets = {
        "li-ood": "dynamics.models.li2024.reproduce:li_ood",
        "li-alpha": "dynamics.models.li2024.reproduce:li_alpha",
        "li-mechanism": "dynamics.models.li2024.reproduce:li_mechanism",
        "li-pruning": "dynamics.models.li2024.reproduce:li_pruning",
        "li-baselines": "dynamics.models.li2024.reproduce:li_baselines",
    }

    def __init__(self, **params):
        super().__init__(**params)
        cfg = self.config
        self.data = build_data(cfg)
        self.d = self.data.d
        self.n_eval = int(cfg["n_eval"])

    @classmethod
    def check(cls, values: dict, given: set) -> None:
        """Rules between parameters, each a one-line :class:`ParamError` naming the parameter."""
        M1, M2 = values["M1"], values["M2"]
        if values["d_x"] is not None and values["d_x"] < M1 + M2:
            raise ParamError("d_x", f"d_x must be >= M1 + M2 = {M1 + M2} (orthonormal IDR and IDI patterns), "
                                    f"got {values['d_x']}")
        if values["mlp_width"] % 2:
            raise ParamError("mlp_width", f"mlp_width must be even (a = +1/m on half the neurons, -1/m on the "
                                          f"other half), got {values['mlp_width']}")
        if values["kappa_low"] > values["kappa_high"]:
            raise ParamError("kappa_low", f"kappa_low must be <= kappa_high = {values['kappa_high']:g}, "
                                          f"got {values['kappa_low']:g}")
        if values["alpha"] < 1 and M1 < 3:
            raise ParamError("alpha", f"alpha must be 1 when M1 = {M1}: an example outside the task's pair "
                                      f"needs a third IDR pattern (M1 >= 3), got alpha {values['alpha']:g}")
        if values["alpha_test"] < 1 and values["M1_test"] < 3:
            raise ParamError("alpha_test", f"alpha_test must be 1 when M1_test = {values['M1_test']}: an example "
                                           f"outside the task's pair needs M1_test >= 3, got {values['alpha_test']:g}")
        how = values["odr_construction"]
        if how != "dirichlet" and values["M1_test"] > M1:
            raise ParamError("M1_test", f"M1_test must be <= M1 = {M1} with odr_construction = {how} (each ODR "
                                        f"pattern owns a group of IDR patterns), got {values['M1_test']}")
        if how in ("tied", "dirichlet") and values["odr_norm"] is not None:
            raise ParamError("odr_norm", f"odr_norm is not used by odr_construction = {how} (its norm follows from "
                                         f"S1); use sum_norm or vector, got odr_norm {values['odr_norm']:g}")
        if how == "vector":
            if values["odr_coeffs"] is None:
                raise ParamError("odr_coeffs", "odr_coeffs must be given with odr_construction = vector")
            if "S1" in given:
                raise ParamError("S1", "S1 is not used by odr_construction = vector (the sum of odr_coeffs, "
                                       "rescaled to odr_norm, is the coefficient sum)")
        elif values["odr_coeffs"] is not None:
            raise ParamError("odr_coeffs", f"odr_coeffs is used only by odr_construction = vector, got "
                                           f"odr_construction = {how}")
        try:
            if values["task_set"] == "balanced":
                balanced_count(M1, values["task_fraction"])
            if how != "dirichlet" and values["M1_test"] <= M1:
                odr_coefficients(values)
        except ValueError as exc:
            msg = str(exc)
            raise ParamError(msg.split()[0], msg) from None
        if values["M2_test"] is not None and values["M2_test"] > M2:
            raise ParamError("M2_test", f"M2_test must be <= M2 = {M2} (orthonormal ODI patterns in the span of "
                                        f"the IDI patterns), got {values['M2_test']}")

    # ---- state --------------------------------------------------------------------------
    def ncols(self, length: int) -> int:
        """Columns attended in a prompt of ``length`` examples (``+ 1`` with ``attend_query``)."""
        return int(length) + (1 if self.config["attend_query"] else 0)

    def blocks(self, method: str) -> dict:
        d, m = self.d, self.config["mlp_width"]
        return {"W_Q": Block((d, d), "W_Q", "eta"), "W_K": Block((d, d), "W_K", "eta"),
                "W_V": Block((d, d), "W_V", "eta"), "W_O": Block((m, d), "W_O", "eta"),
                "a": Block((m,), "a", "eta" if self.config["train_a"] else None)}

    def initial_state(self, method: str, rng: np.random.Generator) -> dict:
        """``W_Q = W_K = W_V = init_qkv I``, ``W_O`` i.i.d. ``N(0, init_o^2)``, ``a = +-1/m``."""
        d, m, c = self.d, self.config["mlp_width"], self.config["init_qkv"]
        a = np.full(m, 1.0 / m)
        a[m // 2:] = -1.0 / m
        return {"W_Q": c * np.eye(d), "W_K": c * np.eye(d), "W_V": c * np.eye(d),
                "W_O": self.config["init_o"] * rng.standard_normal((m, d)), "a": a}

    # ---- Monte Carlo hooks --------------------------------------------------------------
    def sample(self, rng: np.random.Generator, size: int) -> Prompts:
        """``size`` training prompts: tasks from ``T_tr``, ``l_train`` examples, fraction ``alpha``."""
        return self.data.sample(rng, size, self.config["l_train"], self.config["alpha"], "train")

    def batch_loss_grad(self, state: dict, batch) -> tuple:
        """Mean hinge loss of the batch and its exact gradient (:func:`kernels.loss_grad_batch`)."""
        P, z = batch[0], batch[1]
        g = {k: np.empty_like(v) for k, v in state.items()}
        loss = loss_grad_batch(state["W_Q"], state["W_K"], state["W_V"], state["W_O"], state["a"], P, z,
                               self.ncols(P.shape[1] - 1), g["W_Q"], g["W_K"], g["W_V"], g["W_O"], g["a"])
        if not self.config["train_a"]:
            del g["a"]
        return loss, g

    # ---- observables --------------------------------------------------------------------
    def dim_labels(self) -> dict:
        return {"neuron": np.arange(self.config["mlp_width"]), "matrix": np.array(["W_Q", "W_K"]),
                "part": np.array(["norm", "along_pattern", "orthogonal"])}

    def observables(self, method: str) -> dict:
        out = {}
        for dom, what in (("id", "unseen in-domain tasks T \\ T_tr"), ("ood", "out-of-domain tasks T'")):
            out[f"error_{dom}"] = Observable((), "P(sign F != z)", f"classification error on {what}")
            out[f"hinge_{dom}"] = Observable((), "E max(0, 1 - z F)", f"hinge loss on {what}")
            out[f"attn_same_{dom}"] = Observable((), "sum_{i: same pattern} attn_i",
                                                 f"attention on contexts sharing the query's pattern, {what}")
        out["neuron_norm"] = Observable(("neuron",), "|W_O(i,.)|", "norm of each row of W_O (pruning magnitude)")
        out["feature_cos"] = Observable(("neuron",), "cos(f_i, mu_bar)", "cosine of the feature part of row i "
                                        "of W_O W_V with the mean IDR pattern (Proposition 2)")
        out["label_cos"] = Observable(("neuron",), "cos(g_i, sign(a_i) q)", "cosine of the label part of row i "
                                      "of W_O W_V with sign(a_i) q (Proposition 2)")
        out["qk_proj"] = Observable(("matrix", "part"), "W_Q p_q, W_K p_i", "mean norm of W_Q p_query and W_K "
                                    "p_i over in-domain test columns, their component along the column's IDR "
                                    "pattern and the norm of the rest (Proposition 1)")
        return out

    def observe(self, state: dict, method: str, rng: np.random.Generator | None = None) -> dict:
        rng = np.random.default_rng(0) if rng is None else rng
        out = {}
        for dom in ("id", "ood"):
            est = evaluate(self, state, rng, self.n_eval, dom)
            for key, (mean, se) in est.items():
                out[f"{key}_{dom}"] = mean
                out[f"{key}_{dom}_se"] = se
        emb = analysis.embedding(self, state)
        out["neuron_norm"] = emb["neuron_norm"]
        out["feature_cos"] = emb["feature_cos"]
        out["label_cos"] = emb["label_cos"]
        proj = analysis.projections(self, state, rng, min(self.n_eval, PROJ_PROMPTS), "id")
        out["qk_proj"] = np.array([[proj[f"{mat}_{part}"][0] for part in ("norm", "along_pattern", "orthogonal")]
                                   for mat in ("W_Q", "W_K")])
        return out

    # ---- run directory ------------------------------------------------------------------
    def figures(self, result, outdir: str) -> list:
        """``errors.png`` (in- and out-of-domain error and hinge loss against iterations) and
        ``attention.png`` (same-pattern attention), replica mean +- 2 SE."""
        from dynamics.models.li2024 import figures

        return figures.run_figures(result.ds, outdir)
