"""The methods' parameters, declared once.  A model includes the parameters of the methods it
supports and may change their defaults (``Model.method_defaults``); a parameter given for a
method that does not use it is refused (:attr:`Param.methods`)."""
from __future__ import annotations

from dynamics.core.params import Param, ParamSet, positive_float, positive_int

ADAM = (("optimizer", ("adam",)),)
"""The condition of use of Adam's parameters (:attr:`Param.when`)."""
DECADES = [10.0 ** -j for j in range(1, 13)]

STEPS = Param("steps", "int", 10_000, "number of iterations t, the horizon in GD steps (flow: t = tau / eta)", low=0)
SNAPSHOTS = positive_int("snapshots", 200, "number of log-spaced snapshots of the trajectory")
EPS = positive_float("eps", None, "stop once every part's gap to its optimum is <= eps (Huang: L_k - L_k^*; "
                     "Yang: L - L*)", methods=("gd", "flow"))
LEVELS = Param("levels", "floats", DECADES, "gap levels whose first crossing is located exactly (the paper's "
               "convergence times T(eps); GD: the first step, flow: root of the interpolant)", low=0.0,
               low_open=True, methods=("gd", "flow"))
PATIENCE = positive_int("patience", 50, "rises of the exact loss that count as divergence (exact GD with a stable "
                        "step never raises it)", methods=("gd",))
CHECKPOINT_EVERY = positive_int("checkpoint_every", None, "write checkpoint.npz every this many steps (resume "
                                "with --resume RUN_DIR)", methods=("gd", "mc"))
OPTIMIZER = Param("optimizer", "str", "plain", "plain: step = -lr x gradient (GD, or SGD for mc); adam: Adam "
                  "(Kingma & Ba) on the same gradients", choices=("plain", "adam"), methods=("gd", "mc"))
ADAM_BETA1 = Param("adam_beta1", "float", 0.9, "Adam's first-moment decay beta_1", low=0.0, high=1.0,
                   high_open=True, methods=("gd", "mc"), when=ADAM)
ADAM_BETA2 = Param("adam_beta2", "float", 0.999, "Adam's second-moment decay beta_2", low=0.0, high=1.0,
                   high_open=True, methods=("gd", "mc"), when=ADAM)
ADAM_EPS = positive_float("adam_eps", 1e-8, "Adam's denominator offset epsilon", methods=("gd", "mc"),
                          when=ADAM)
FLOW_RTOL = positive_float("flow_rtol", 1e-8, "relative tolerance of the gradient-flow integrator",
                           methods=("flow",))
FLOW_ATOL = positive_float("flow_atol", 1e-12, "absolute tolerance of the gradient-flow integrator",
                           methods=("flow",))
FLOW_INTEGRATOR = Param("flow_integrator", "str", "LSODA", "scipy solve_ivp method of the gradient flow (BDF and "
                        "Radau use the model's exact Jacobian where it has one; LSODA was fastest for Huang's "
                        "reduced flow: benchmarks/RESULTS.md)", choices=("LSODA", "BDF", "Radau", "RK45", "DOP853"),
                        methods=("flow",))
BATCH = positive_int("batch", 256, "prompts per Monte Carlo training step", methods=("mc",))
REPLICAS = positive_int("replicas", 1, "independent Monte Carlo trainings (seeds spawned from seed)",
                        methods=("mc",))
TRAIN_SET = Param("train_set", "int", 0, "0: fresh prompts every step (online SGD); M > 0: one fixed training set "
                  "of M prompts drawn once (empirical risk), each step on min(batch, M) of them", low=0,
                  methods=("mc",))
N_EVAL = Param("n_eval", "int", 500, "held-out evaluation prompts per snapshot (per query class where the model "
               "stratifies)", low=2, methods=("mc",))

PARAMS = {
    "gd": ParamSet([STEPS, SNAPSHOTS, EPS, LEVELS, PATIENCE, CHECKPOINT_EVERY, OPTIMIZER, ADAM_BETA1, ADAM_BETA2,
                    ADAM_EPS]),
    "flow": ParamSet([STEPS, SNAPSHOTS, EPS, LEVELS, FLOW_RTOL, FLOW_ATOL, FLOW_INTEGRATOR]),
    "mc": ParamSet([STEPS, SNAPSHOTS, CHECKPOINT_EVERY, OPTIMIZER, ADAM_BETA1, ADAM_BETA2, ADAM_EPS, BATCH,
                    REPLICAS, TRAIN_SET, N_EVAL]),
}
"""The parameters of each method."""


def method_params(methods, defaults: dict | None = None) -> ParamSet:
    """The union of the parameters of ``methods`` (each name once), with a model's defaults."""
    out = ParamSet()
    for m in methods:
        for p in PARAMS[m]:
            if p.name not in out:
                out.add(p)
    return out.with_defaults({k: v for k, v in (defaults or {}).items() if k in out}) if defaults else out
