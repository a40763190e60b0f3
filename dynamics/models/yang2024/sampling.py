"""Monte Carlo prompts and the minibatch loss of the multi-head model (the paper's experiments).

A prompt is the row ``Y[b] = (y_1..y_K)`` of labels of all K tokens for one task ``lambda`` and
noise draw: ``y_k = lambda^T (z_k + eps_k)``, ``eps_k ~ N(0, tau I_m)``; the model sees
``y = Y[b, :N]`` and is scored on every ``y_k``.  Given ``lambda``, the noise terms
``eps_k^T lambda`` are independent ``N(0, tau |lambda|^2)``, so they are drawn as
``sqrt(tau) |lambda| xi_k`` with ``xi_k ~ N(0, 1)``: the same distribution as drawing the m-vectors
``eps_k``, at 1/m of the cost.

Tasks: ``gaussian`` (``lambda ~ N(mu 1_m, var I_m)``) or ``rademacher`` (independent +-1 entries,
mean 0, variance 1: only ``E[lambda lambda^T] = I`` enters the population loss).

Minibatch loss ``1/B sum_b 1/2 sum_k (a_k^T y_b - y_{b,k})^2``: its gradient with respect to
``a`` is ``r = 1/B Y_N^T (Y_N a - Y)`` (N x K), an unbiased estimate of the exact ``G (a - A)``,
and the rest of the chain rule is the exact one (:func:`chain`).
"""
from __future__ import annotations

import numpy as np

from dynamics.models.yang2024.closed_form import chain, softmax_mix
from dynamics.models.yang2024.data import Problem

TASKS = ("gaussian", "rademacher")


def sample_tasks(rng: np.random.Generator, size: int, m: int, kind: str = "gaussian", mu: float = 0.0,
                 var: float = 1.0) -> np.ndarray:
    """``size`` tasks ``lambda`` (rows, ``size x m``)."""
    if kind == "gaussian":
        return mu + np.sqrt(var) * rng.standard_normal((int(size), m))
    if kind == "rademacher":
        if mu != 0.0 or var != 1.0:
            raise ValueError("rademacher tasks have mean 0 and variance 1; mu and var cannot be set")
        return rng.choice(np.array([-1.0, 1.0]), size=(int(size), m))
    raise ValueError(f"task distribution must be one of {', '.join(TASKS)}, got {kind!r}")


def sample_labels(prob: Problem, rng: np.random.Generator, size: int, kind: str = "gaussian", mu: float = 0.0,
                  var: float = 1.0) -> np.ndarray:
    """Labels ``Y`` (size x K) of ``size`` prompts (module docstring); tasks first, then noise."""
    lam = sample_tasks(rng, size, prob.m, kind, mu, var)
    Y = lam @ prob.Zhat
    if prob.tau > 0:
        scale = np.sqrt(prob.tau) * np.linalg.norm(lam, axis=1, keepdims=True)
        Y += scale * rng.standard_normal((int(size), prob.K))
    return Y


def per_prompt_loss(a: np.ndarray, Y: np.ndarray, N: int) -> np.ndarray:
    """``1/2 sum_k (a_k^T y_b - y_{b,k})^2`` for every prompt ``b`` (B,)."""
    resid = Y[:, :N] @ a - Y
    return 0.5 * np.einsum("bk,bk->b", resid, resid)


def batch_loss_grad(prob: Problem, theta: np.ndarray, w: np.ndarray, Y: np.ndarray) -> tuple:
    """``(mean loss, dL/dw, dL/dtheta)`` of one minibatch of prompts ``Y`` (B x K)."""
    S, a = softmax_mix(theta, w)
    YN = Y[:, :prob.N]
    resid = YN @ a - Y
    B = Y.shape[0]
    loss = 0.5 * float(np.einsum("bk,bk->", resid, resid)) / B
    r = (YN.T @ resid) / B
    gw, gt = chain(S, w, r)
    return loss, gw, gt


def heldout_loss(a: np.ndarray, Y: np.ndarray, N: int) -> tuple:
    """``(mean, standard error)`` of the per-prompt loss over held-out prompts ``Y``."""
    ell = per_prompt_loss(a, Y, N)
    return float(ell.mean()), float(ell.std(ddof=1) / np.sqrt(ell.size))
