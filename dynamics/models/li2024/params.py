"""The parameters of H. Li et al.'s system (ICML 2024; MODEL.md section 8), declared once.

Every choice the slides leave open is a parameter here; its help text says which sentence of the
slides (``shared/papers/li2024_nonlinear_icl_and_cot_slides.txt``) it interprets, and
``docs/models/li2024.md`` gives the reasons for each default.
"""
from __future__ import annotations

from dynamics.core.params import Param, ParamSet, positive_float, positive_int

CONSTRUCTIONS = ("sum_norm", "tied", "vector", "dirichlet")
"""How the ODR patterns are built (``odr_construction``; docs/models/li2024.md, "Out of domain")."""
TASK_SETS = ("balanced", "cover")


def _fraction(name, default, help):
    return Param(name, "float", default, help, low=0.0, low_open=True, high=1.0)


PARAMS = ParamSet([
    # ---- in-domain data (slides p. 17: "Given {mu_j} as IDR patterns, each x = mu_j + noise")
    Param("M1", "int", 6, "number of in-domain-relevant (IDR) patterns M_1 (experiments: 6)", low=2),
    positive_int("M2", 24, "number of in-domain-irrelevant (IDI) patterns M_2 (experiments: 24)"),
    Param("d_x", "int", None, "feature dimension d_X of x (not set: M1 + M2, the smallest that holds the "
          "orthonormal IDR and IDI patterns)", low=2),
    positive_int("label_dim", 4, "dimension d_Y of the label embedding; q is q_norm times its first unit "
                 "vector (slides: y_i = q if f(x_i) = +1, -q if -1)"),
    positive_float("q_norm", 1.0, "norm |q| of the label embedding (the slides leave it open; 1 = the norm of "
                   "the IDR patterns)"),
    Param("pattern_basis", "str", "standard", "standard: IDR and IDI patterns are standard basis vectors; "
          "random: the same blocks of a Haar-random rotation drawn from the seed (the dynamics is "
          "rotation-equivariant in distribution: identity and isotropic Gaussian initialisations)",
          choices=("standard", "random")),
    Param("kappa_low", "float", -0.4, "lower end of kappa ~ U[kappa_low, kappa_high], the weight of the IDI "
          "pattern in x = mu_j + kappa nu_k (slides' example: kappa in {0.2, -0.3})"),
    Param("kappa_high", "float", 0.4, "upper end of the kappa distribution"),
    Param("other_label", "str", "example", "label of an example whose pattern is neither mu_a nor mu_b "
          "(slides: 'f(x) is a random label in other cases'): example = a fresh fair sign per example, "
          "prompt = one fair sign per prompt and pattern", choices=("example", "prompt")),
    _fraction("alpha", 0.8, "training fraction alpha: each example has pattern mu_a or mu_b with probability "
              "alpha/2 each (experiments: 0.8)"),
    positive_int("l_train", 20, "training prompt length l_tr (experiments: 20)"),
    Param("task_set", "str", "balanced", "how T_tr is drawn from the seed (slides: 'the training tasks "
          "uniformly cover all the IDR patterns and labels'): balanced = every IDR pattern exactly k times as a "
          "and k times as b (|T_tr| = k M1); cover = a uniformly random smallest subset covering every pattern "
          "and label", choices=TASK_SETS),
    Param("task_fraction", "float", None, "|T_tr| / |T| (not set: the smallest size >= Theorem 1's "
          "(M1 - 1)^(-1/2) |T| that the task_set allows, 18 of 30 balanced, 14 of 30 cover); balanced needs "
          "ceil(task_fraction |T|) to be a multiple of M1", low=0.0, low_open=True, high=1.0),
    # ---- network (slides p. 13-14)
    Param("mlp_width", "int", 40, "MLP width m (rows of W_O); a = +1/m on the first m/2 neurons, -1/m on the rest",
          low=2),
    positive_float("init_qkv", 0.3, "W_Q, W_K, W_V start as init_qkv * I (slides: 'initialized from a small "
                   "scaling of identity matrices'); 0.3 gives the initial same-pattern attention ~0.42 of "
                   "the slides' Figure 9 at alpha = 0.8"),
    positive_float("init_o", 0.01, "standard deviation of the i.i.d. Gaussian entries of W_O at initialisation "
                   "(slides: 'W_O initialized from Gaussian distribution')"),
    Param("train_a", "bool", False, "also train the output weights a (MODEL.md choice: a is fixed)"),
    Param("attend_query", "bool", False, "include the query column in the softmax (slides' backup gradients "
          "sum s = 1..l+1; slide 13 and MODEL.md: over the l context columns)"),
    positive_float("eta", 1.0, "SGD step size eta for W_Q, W_K, W_V, W_O (and a)"),
    # ---- out of domain and testing (slides p. 17, 21)
    Param("M1_test", "int", 3, "number M_1' of out-of-domain-relevant (ODR) patterns (experiments: 3)", low=2),
    Param("M2_test", "int", None, "number M_2' of ODI patterns, orthonormal in the span of the IDI patterns "
          "(not set: M2)", low=1),
    Param("odr_construction", "str", "sum_norm", "how ODR patterns mu'_j = sum_i c_{j,i} mu_i are built, each on "
          "its own group G_j of M1/M1_test consecutive IDR patterns (ODR patterns orthogonal): sum_norm = "
          "coefficients with sum S1 and norm odr_norm set separately; tied = S1/|G_j| on each pattern of G_j (the "
          "norm is then |S1|/sqrt(|G_j|), tied to S1); vector = the coefficients odr_coeffs on every group, "
          "rescaled to odr_norm if given; dirichlet = S1 * Dirichlet(1) over all IDR patterns, drawn from the seed",
          choices=CONSTRUCTIONS),
    Param("S1", "float", 1.4, "sum S_1 of the coefficients of each ODR pattern (Theorem 2 needs S_1 >= 1); with "
          "sum_norm |S1| <= sqrt(|G_j|) odr_norm; not used by vector (the sum of odr_coeffs).  Default 1.4: with "
          "pairs of IDR patterns at unit norm the coefficients are (0.8, 0.6), a genuine mixture (S1 = 1 at unit "
          "norm is an IDR pattern itself, (1, 0))"),
    Param("odr_norm", "float", None, "norm |mu'_j| of each ODR pattern (not set: 1 with sum_norm (|S1| when M1 = M1_test: groups of one "
          "pattern cannot separate sum and norm), the "
          "vector's own norm with vector; refused by tied and dirichlet, whose norm follows from S1)",
          low=0.0, low_open=True),
    Param("odr_coeffs", "floats", None, "coefficients c_{j,i} of an ODR pattern on its group, one per IDR "
          "pattern of the group (odr_construction = vector only; any signs, not all zero)"),
    _fraction("alpha_test", 0.8, "testing fraction alpha' (slides: 'Replace alpha with alpha' if it is a "
              "testing task'), for in-domain and out-of-domain test prompts"),
    positive_int("l_test", 20, "testing prompt length l_ts"),
])
"""The model's parameters."""

METHOD_DEFAULTS = {"steps": 1500, "batch": 64, "snapshots": 40, "n_eval": 1000}
"""Defaults of the Monte Carlo method's parameters for this model (see docs/models/li2024.md)."""
