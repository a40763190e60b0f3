"""Test oracle of the exact population loss: enumeration of every conditioning (query start, task,
step) and every count vector of the example types, each prompt built by the data model's own column
builder and evaluated by the Monte Carlo kernel (an independent route to the Laplace integral)."""
import itertools
import math

import numpy as np

from dynamics.models.li2024_cot.data import Chains
from dynamics.models.li2024_cot.kernels import loss_grad_batch


def compositions(n, parts):
    """Every count vector of ``n`` examples over ``parts`` types."""
    if parts == 1:
        yield (n,)
        return
    for first in range(n + 1):
        for rest in compositions(n - first, parts - 1):
            yield (first,) + rest


def brute_force(model, state):
    """``(L, dL/dW_Q, dL/dW_K)`` of ``model`` (a Li2024CoT) at ``state`` by enumeration."""
    data = model.data
    M, K, l, alpha = data.mu.shape[0], data.K, int(model.config["l_train"]), float(model.config["alpha"])
    if model.config["train_task"] == "permutation":
        funcs = list(itertools.permutations(range(M)))
    else:
        funcs = list(itertools.product(range(M), repeat=M))
    L, gQ, gK = 0.0, np.zeros_like(state["W_Q"]), np.zeros_like(state["W_K"])
    tQ, tK, tV = np.empty_like(gQ), np.empty_like(gK), np.empty_like(state["W_V"])
    n_cond = M * K * len(funcs) ** K
    for z0 in range(M):
        p = np.full(M, (1 - alpha) / (M - 1))
        p[z0] = alpha
        for task in itertools.product(funcs, repeat=K):
            chain = np.empty((M, K + 1), dtype=np.int64)
            chain[:, 0] = np.arange(M)
            for j in range(K):
                chain[:, j + 1] = np.array(task[j])[chain[:, j]]
            for k in range(1, K + 1):
                for counts in compositions(l, M):
                    prob = math.factorial(l) * np.prod([p[x] ** c / math.factorial(c) for x, c in enumerate(counts)])
                    if prob == 0.0:
                        continue
                    starts = np.repeat(np.arange(M), counts)
                    ch = Chains(chain[starts][None], chain[z0][None], None, None)
                    P = data.cot_columns(ch, data.mu, k)
                    n = np.array([l * K + k - 1], dtype=np.int64)
                    target = data.mu[chain[z0, k]][None]
                    loss = loss_grad_batch(state["W_Q"], state["W_K"], state["W_V"], P, n, target, tQ, tK, tV)
                    w = prob / n_cond
                    L += w * loss
                    gQ += w * tQ
                    gK += w * tK
    return L, gQ, gK
