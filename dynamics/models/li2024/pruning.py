"""Pruning of the trained MLP layer (H. Li et al., ICML 2024, Theorem 3; slides p. 16 and 22).

"Pruning neurons in S: removing corresponding rows of the trained W_O."  A removed row
contributes ``a_i ReLU(0) = 0`` to ``F``, so pruning sets the rows to zero.  ``rate`` ``R`` in
``[0, 1)`` prunes ``round(R m)`` neurons (half-up rounding):

- ``magnitude``: the rows of smallest Euclidean norm ``|W_O(i, .)|`` first (ties by index);
- ``random``: rows drawn uniformly without replacement;
- ``largest``: the rows of *largest* norm first (the reverse of ``magnitude``; the ledger's
  negative control for Theorem 3).

:func:`sign_balance` counts, per prompt, the active neurons whose output weight has the sign of
the label and those of the other sign: pruning can flip ``sign F`` only where wrong-sign neurons
are active.

:func:`pruning_errors` evaluates every (rate, method) on the *same* test prompts, so the change in
error caused by pruning is a paired difference whose standard error is far smaller than that of
either error alone.
"""
from __future__ import annotations

import numpy as np

from dynamics.core.stats import mean_se
from dynamics.models.li2024.evaluation import forward

HOWS = ("magnitude", "random", "largest")
METRICS = ("error", "hinge")


def check_rate(rate) -> float:
    """A pruning rate in ``[0, 1)`` (ValueError naming ``prune_rate`` otherwise)."""
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"prune_rate must be a number in [0, 1), got {rate!r}") from None
    if not (np.isfinite(r) and 0.0 <= r < 1.0):
        raise ValueError(f"prune_rate must be a number in [0, 1), got {rate!r}")
    return r


def pruned_count(rate: float, m: int) -> int:
    """Neurons pruned at ``rate``: ``floor(rate m + 1/2)``."""
    return int(np.floor(check_rate(rate) * m + 0.5))


def prune(state: dict, rate: float, how: str = "magnitude", rng: np.random.Generator | None = None) -> dict:
    """A copy of ``state`` with ``round(rate m)`` rows of ``W_O`` set to zero (module docstring)."""
    if how not in HOWS:
        raise ValueError(f"how must be one of {', '.join(HOWS)}, got {how!r}")
    W_O = state["W_O"]
    k = pruned_count(rate, W_O.shape[0])
    if how == "magnitude":
        idx = np.argsort(np.linalg.norm(W_O, axis=1), kind="stable")[:k]
    elif how == "largest":
        idx = np.argsort(-np.linalg.norm(W_O, axis=1), kind="stable")[:k]
    else:
        if rng is None:
            raise ValueError("random pruning needs a random generator rng")
        idx = rng.choice(W_O.shape[0], k, replace=False)
    out = dict(state)
    out["W_O"] = W_O.copy()
    out["W_O"][idx] = 0.0
    return out


def pruning_errors(model, state: dict, rates, rng: np.random.Generator, n: int, domain: str = "ood",
                   draws: int = 10, data=None, length: int | None = None, alpha: float | None = None,
                   hows=("magnitude", "random")) -> dict:
    """Classification error after pruning, on one common set of ``n`` test prompts.

    Returns ``{(how, rate, metric): (value, se, change, change_se)}`` for ``metric`` in
    ``("error", "hinge")`` (classification error ``1[z F <= 0]`` and hinge loss, the slides'
    generalization error of eq. 10), where ``change`` is the paired mean difference from the
    unpruned value on the same prompts.  Random pruning averages the per-prompt values over
    ``draws`` independent random neuron subsets.  ``hows``: the methods (:data:`HOWS`).
    """
    rates = [check_rate(r) for r in rates]
    data = model.data if data is None else data
    length = model.config["l_test"] if length is None else int(length)
    alpha = model.config["alpha_test"] if alpha is None else float(alpha)
    prompts = data.sample(rng, int(n), length, alpha, domain)
    ncols = model.ncols(length)

    def values(st):
        F, _ = forward(st, prompts, ncols)
        zf = prompts.z * F
        return np.stack([(zf <= 0.0).astype(np.float64), np.maximum(0.0, 1.0 - zf)])

    base = values(state)
    out = {}
    for how in hows:
        if how not in HOWS:
            raise ValueError(f"how must be one of {', '.join(HOWS)}, got {how!r}")
    for rate in rates:
        got = {}
        for how in hows:
            if pruned_count(rate, state["W_O"].shape[0]) == 0:
                got[how] = base  # nothing pruned: the unpruned network
            elif how == "random":
                got[how] = np.mean([values(prune(state, rate, "random", rng)) for _ in range(int(draws))], axis=0)
            else:
                got[how] = values(prune(state, rate, how))
        for how, v in got.items():
            for k, metric in enumerate(METRICS):
                out[(how, rate, metric)] = mean_se(v[k]) + mean_se(v[k] - base[k])
    return out


def sign_balance(model, state: dict, prompts) -> dict:
    """Per prompt, the active neurons (``h_i = (W_O W_V pbar)_i > 0``) whose output weight has the
    sign of the label, ``sign(a_i) = z``, and those of the other sign.

    Parameters
    ----------
    model : Li2024
    state : dict
    prompts : Prompts, ``P`` of shape ``(B, L + 1, d)``

    Returns
    -------
    dict
        ``correct``, ``wrong``: ``(B,)`` integer counts; ``F``: ``(B,)`` the network output
        ``a^T ReLU(h)`` computed here in numpy (softmax with the maximum subtracted), which the
        tests compare with the kernels' forward pass; ``h_feature``, ``h_label``: ``(B, m)`` the
        two parts of ``h = W_O W_V pbar`` from the feature and the label coordinates of ``pbar``
        (``h = h_feature + h_label``).
    """
    P, z = prompts.P, prompts.z
    n = model.ncols(P.shape[1] - 1)
    cols, pq = P[:, :n], P[:, -1]
    u = (pq @ state["W_Q"].T) @ state["W_K"]  # (B, d): W_K^T W_Q p_q
    s = np.einsum("bid,bd->bi", cols, u)
    s -= s.max(axis=1, keepdims=True)
    w = np.exp(s)
    w /= w.sum(axis=1, keepdims=True)
    pbar = np.einsum("bi,bid->bd", w, cols)
    h = pbar @ (state["W_O"] @ state["W_V"]).T  # (B, m)
    act = h > 0
    good = np.sign(state["a"])[None, :] == z[:, None]
    d_x = model.data.d_x
    ov = state["W_O"] @ state["W_V"]
    return {"correct": (act & good).sum(1), "wrong": (act & ~good).sum(1), "F": np.maximum(h, 0.0) @ state["a"],
            "h_feature": pbar[:, :d_x] @ ov[:, :d_x].T, "h_label": pbar[:, d_x:] @ ov[:, d_x:].T}
