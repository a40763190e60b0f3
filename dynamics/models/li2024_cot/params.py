"""The parameters of H. Li et al.'s chain-of-thought system (ICLR 2025; MODEL.md section 9),
declared once.

Every choice the slides (``shared/papers/li2024_nonlinear_icl_and_cot_slides.txt``, p. 27-36)
leave open is a parameter here; its help text names the sentence it interprets, and
``docs/models/li2024_cot.md`` gives the reasons for each default.  No parameter name is a prefix
of ``--model`` or ``--method`` (argparse abbreviations).
"""
from __future__ import annotations

from dynamics.core.params import Param, ParamSet, nonnegative_float, positive_float, positive_int

SPREADS = ("disjoint", "dirichlet")
TRAIN_TASKS = ("permutation", "random_map")


FRACTION = dict(low=0.0, low_open=True, high=1.0)
"""The rule of a fraction in (0, 1]."""


PARAMS = ParamSet([
    # ---- training data (slides p. 28, 30)
    Param("M", "int", 6, "number of training-relevant (TRR) patterns M, orthonormal in R^d_x", low=2),
    positive_int("K", 3, "number of reasoning steps K of every task f = f_K o ... o f_1"),
    Param("d_x", "int", None, "dimension d_x of x and of y (a column is (x; y) in R^(2 d_x)); not set: M + K, the "
          "smallest that holds the orthonormal TRR patterns and the K positional encodings orthogonal to them",
          low=2),
    Param("pattern_basis", "str", "standard", "standard: TRR patterns and positional encodings are standard basis "
          "vectors; random: the same blocks of a Haar-random rotation drawn from the seed",
          choices=("standard", "random")),
    positive_float("pe_scale", 1.0, "norm of the periodic positional encodings c_(i mod K), added to the x half of "
                   "column i (slides: p~_i = p_i + c_(i mod K))"),
    Param("train_task", "str", "permutation", "training step functions f_k, drawn afresh for every prompt: permutation "
          "= uniform random permutations of the M TRR patterns (Theorem 4: 'every TRR pattern is equally likely in "
          "every inference step'); random_map = each f_k(mu_j) uniform and independent", choices=TRAIN_TASKS),
    Param("alpha", "float", 0.8, "training fraction alpha of context examples whose input shares the query's TRR "
              "pattern (slides: 'the fraction of context examples with input sharing the same TRR pattern as the "
              "query input'); the others take one of the other M - 1 patterns uniformly", **FRACTION),
    positive_int("l_train", 10, "training prompt length l_tr, in examples of K columns each (Theorem 4: l_tr >= "
                 "Omega(1/alpha))"),
    nonnegative_float("noise_train", 0.0, "radius of the noise added to every pattern of a training prompt (uniform "
                      "in the ball of R^d_x); 0: TRR patterns exactly"),
    # ---- testing data (slides p. 29-30)
    Param("M_test", "int", 3, "number M' of test-relevant (TSR) patterns mu'_j = sum_i c_(j,i) mu_i", low=2),
    Param("tsr_spread", "str", "disjoint", "how a TSR pattern's coefficients spread over the TRR patterns: disjoint = "
          "S1/|G_j| on each of a group G_j, the groups partitioning the M TRR patterns (TSR patterns orthogonal, "
          "needs M_test <= M); dirichlet = S1 * Dirichlet(1) over all TRR patterns, drawn from the seed",
          choices=SPREADS),
    Param("S1", "float", 1.0, "coefficient sum sum_i c_(j,i) of every TSR pattern (as S_1 of the ICML 2024 paper; "
          "slides: 'each TSR pattern is a linear combination of the TRR patterns')"),
    nonnegative_float("noise", 0.0, "radius of the bounded noise added to every TSR pattern occurrence of a test "
                      "prompt (one draw per token, uniform in the ball of R^d_x; decoded steps are clean)"),
    Param("tau_f", "float", 0.6, "requested min-max trajectory transition probability tau^f of the test task's "
          "step transition matrices A_k^f (generator: identical circulant steps, correct entry tau_f^(1/K))",
          low=0.0, low_open=True, high=1.0),
    Param("rho_f", "float", None, "requested step margin rho^f (correct entry minus largest wrong entry of each "
          "row); not set: evenly spread errors with condition1, halfway to the Condition 1 boundary without it",
          low=0.0, low_open=True, high=1.0),
    Param("condition1", "bool", True, "whether the generated test task satisfies Condition 1 (the correct final "
          "output is the most probable under B^f = prod_k A_k^f)"),
    Param("A_f", "floats", None, "explicit test transition matrices A_1^f..A_K^f, K*M_test^2 numbers row-major, "
          "each row stochastic with a unique largest entry (the correct step); replaces tau_f, rho_f, condition1",
          low=0.0),
    Param("task", "str", None, "a named built-in test task instead of the generator: slides = the slides' worked "
          "example (K = 2, M_test = 2; B = [[0.56, 0.44], [0.64, 0.36]]), near-half-2 / near-half-3 = trap tasks "
          "with tau^f = 0.495 failing Condition 1 (K = M_test = 2 / 3); replaces tau_f, rho_f, condition1",
          choices=("slides", "near-half-2", "near-half-3")),
    Param("task_family", "str", "auto", "generator of test tasks: circulant = identical circulant steps, every start "
          "alike; trap = one failing start and an absorbing decoy, steps relabelled per step, reaching tau^f up to "
          "1/2 without Condition 1; auto = circulant where it meets the request, trap otherwise",
          choices=("auto", "circulant", "trap")),
    Param("trap_stay", "float", 1.0, "trap family: probability that an example in the decoy pattern keeps it at "
          "each step (1: an example that errs into the decoy stays there)", low=0.5, low_open=True, high=1.0),
    Param("tau_def", "str", "viterbi", "reading of tau^f ('min-max trajectory transition probability'): viterbi = "
          "min over starts of the most probable K-step path's probability; correct = of the correct path's",
          choices=("viterbi", "correct")),
    Param("rho_def", "str", "margin", "reading of rho^f (the poster's 'normalized gap'): margin = smallest "
          "correct-minus-largest-wrong entry along the correct paths (unnormalised); normalized = that margin "
          "divided by the correct entry", choices=("margin", "normalized")),
    Param("correct_step", "str", "argmax", "reading of 'the correct step': argmax = the largest entry of each row, "
          "step by step; viterbi = the query follows the most probable K-step path from its start",
          choices=("argmax", "viterbi")),
    Param("alpha_test", "float", 0.8, "testing fraction alpha' of context examples whose input shares the query's TSR "
              "pattern", **FRACTION),
    positive_int("l_test", 20, "testing prompt length l_ts in examples"),
    # ---- network and training (slides p. 28, 31)
    positive_float("init_qk", 0.3, "W_Q and W_K start as init_qk * I (as in the ICML 2024 system: 'a small scaling "
                   "of identity matrices')"),
    Param("train_value", "bool", False, "also train W_V (default: W_V = (0 I) fixed, reading the y half, so the "
          "output is a softmax-weighted sum of labels, MODEL.md section 3's structure)"),
    Param("record", "str", "all", "what a snapshot records: all = errors, attention and loss on n_eval test and "
          "training prompts; loss = only the held-out training loss (cheap dense snapshots for training times)",
          choices=("all", "loss")),
    positive_float("eta", 1.0, "SGD step size eta of W_Q, W_K (and W_V with train_value)"),
])
"""The model's parameters."""

METHOD_DEFAULTS = {"steps": 1000, "batch": 64, "snapshots": 30, "n_eval": 500}
"""Defaults of the Monte Carlo method's parameters for this model (see docs/models/li2024_cot.md)."""
