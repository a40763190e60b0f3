"""Held-out evaluation of a trained state: classification error, hinge loss and attention, with
standard errors (MODEL.md section 8).

For test prompts drawn from a domain (unseen in-domain tasks ``T \\ T_tr`` or out-of-domain tasks
``T'``) the network's output ``F`` gives

- the classification error ``P(sign F != z)``, estimated by the fraction of prompts with
  ``z F <= 0`` (a zero output counts as an error: it predicts no class);
- the hinge loss ``E max(0, 1 - z F)`` (the slides' generalization error, eq. 9 and 10);
- the attention mass on the context examples that share the query's relevant pattern
  (Proposition 1, the slides' Figure 9).

Each comes with the standard error of its mean over the ``n`` prompts (sample standard
deviation over ``sqrt(n)``).

:func:`evaluate_states` evaluates saved states on a grid of test settings (:data:`TEST_SETTINGS`:
``S1``, ``odr_norm``, ``odr_construction``, ``alpha_test``, ``l_test``, ``q_norm``) without retraining,
through the model-agnostic :func:`dynamics.models.shared.evaluate.evaluate_grid`.
"""
from __future__ import annotations

import numpy as np

from dynamics.core.stats import mean_se
from dynamics.core.validate import finite_result
from dynamics.models.li2024.kernels import forward_batch

CHUNK = 4096
"""Prompts per sampled chunk (bounds memory for large evaluations)."""


def forward(state: dict, prompts, ncols: int):
    """``(F, mass)``: outputs and same-pattern attention mass of a batch of prompts."""
    P, same = prompts.P, prompts.same
    F = np.empty(P.shape[0])
    mass = np.empty(P.shape[0])
    forward_batch(state["W_Q"], state["W_K"], state["W_V"], state["W_O"], state["a"], P, int(ncols), same, F, mass)
    finite_result("li2024 forward pass", F=F, attention=mass)
    return F, mass


def per_prompt(F, z, mass) -> dict:
    """Per-prompt error indicator ``1[z F <= 0]``, hinge loss and attention mass."""
    return {"error": (z * F <= 0.0).astype(np.float64), "hinge": np.maximum(0.0, 1.0 - z * F), "attn_same": mass}




TEST_SETTINGS = ("S1", "odr_norm", "odr_construction", "alpha_test", "l_test", "q_norm")
"""Parameters a trained state can be evaluated at (the training tasks, patterns and weights do not
depend on them).  All but ``q_norm`` enter only the test distribution; ``q_norm`` is also a training
parameter, and evaluating at another value scales the *test* prompts' label embedding ``+-q`` under
weights trained with the run's own ``q`` (a probe of the read-out, used by the pruning rows)."""


def rebuild(model, settings: dict):
    """``model`` at other test settings: the same given parameters with ``settings`` on top, built
    and checked by :meth:`Li2024.create` (a setting outside the model's rules raises its one-line
    :class:`~dynamics.core.params.ParamError`).  The data model's fixed draws (``T_tr``, basis,
    ODI rotation) come from the seed's own streams, so they are unchanged."""
    bad = sorted(set(settings) - set(TEST_SETTINGS))
    if bad:
        raise ValueError(f"{bad[0]} is not a test setting (these are {', '.join(TEST_SETTINGS)}): a trained state "
                         f"cannot be evaluated at another value of a training parameter")
    given = {k: model.config[k] for k in getattr(model, "given", ()) if k in model.config}
    return type(model).create(method="mc", **{**given, **settings})


def evaluate_states(members, grid: dict, *, n: int, seed: int = 0, domains=("id", "ood")):
    """Replicas ``members`` (list of ``(model, state)``) on the Cartesian ``grid`` of
    :data:`TEST_SETTINGS` (``{name: values}``): an :class:`xarray.Dataset` with dimensions
    ``(replica, *grid)`` and variables ``<quantity>_<domain>`` and ``..._se`` for ``error``,
    ``hinge`` and ``attn_same`` on ``n`` test prompts per point (common random numbers across the
    grid; :mod:`dynamics.models.shared.evaluate`).  Every point is checked before any is evaluated."""
    from dynamics.models.shared.evaluate import evaluate_grid

    n = int(n)
    if n < 2:
        raise ValueError(f"n must be an integer >= 2 (a standard error needs two prompts), got {n}")

    def point(m, state, rng):
        out = {}
        for dom in domains:
            for key, val in evaluate(m, state, rng, n, dom).items():
                out[f"{key}_{dom}"] = val
        return out

    model = members[0][0]
    return evaluate_grid(members, grid, rebuild, point, seed=seed,
                         attrs={"model": model.name, "n": n, "what": "held-out estimates at test settings; "
                                "_se = standard error over the point's n test prompts"})


def evaluate(model, state: dict, rng: np.random.Generator, n: int, domain: str, *, alpha: float | None = None,
             length: int | None = None, data=None) -> dict:
    """Estimates on ``n`` fresh test prompts of ``domain`` (``"id"`` or ``"ood"``, or ``"train"``).

    ``alpha`` and ``length`` default to the model's ``alpha_test`` and ``l_test``; ``data`` to the
    model's :class:`~dynamics.models.li2024.data.DataModel` (pass another to change ``S1`` and
    the like without retraining).  Returns ``{name: (mean, se)}`` for ``error``, ``hinge`` and
    ``attn_same``.
    """
    data = model.data if data is None else data
    alpha = model.config["alpha_test"] if alpha is None else alpha
    length = model.config["l_test"] if length is None else length
    parts = {"error": [], "hinge": [], "attn_same": []}
    left = int(n)
    while left > 0:
        k = min(left, CHUNK)
        pr = data.sample(rng, k, length, alpha, domain)
        F, mass = forward(state, pr, model.ncols(length))
        for key, val in per_prompt(F, pr.z, mass).items():
            parts[key].append(val)
        left -= k
    return {key: mean_se(np.concatenate(v)) for key, v in parts.items()}
