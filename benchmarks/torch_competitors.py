"""One training step of each workload of ``bench_vs_torch.py``: the package's, and a PyTorch
competitor written the way a strong PyTorch user would write it (float64, batched matrix
products, gathers instead of materialised inputs where the model allows, autograd, the package's
own sampler so both sides train on the same prompts).

``make_step(side, workload)`` returns a function of no arguments that runs one step.  torch is
imported only for ``side == "torch"``.
"""
from __future__ import annotations

import numpy as np


def _package_mc_step(model, batch, seed=0):
    """sample + batch_loss_grad + finiteness check + update, as ``run_mc`` runs a step."""
    from dynamics.methods.gd import plain_step
    from dynamics.methods.montecarlo import _finite

    rng = np.random.default_rng(seed)
    state = model.initial_state("mc", rng)
    lrs = model.learning_rates("mc")

    def step():
        b = model.sample(rng, batch)
        loss, grads = model.batch_loss_grad(state, b)
        if not _finite(loss, grads, state):
            raise FloatingPointError("non-finite")
        plain_step(state, grads, lrs)
    return step


def _sgd(torch, loss, W, trained, eta):
    """``loss.backward()`` and ``W[k] -= eta * grad`` for the trained blocks."""
    loss.backward()
    with torch.no_grad():
        for k in trained:
            W[k] -= eta * W[k].grad
            W[k].grad = None


def _torch_li_step(model, batch, seed=0):
    import torch

    rng = np.random.default_rng(seed)
    st = model.initial_state("mc", rng)
    W = {k: torch.tensor(v, dtype=torch.float64, requires_grad=(k != "a")) for k, v in st.items()}
    trained = ("W_Q", "W_K", "W_V", "W_O")
    eta = model.config["eta"]
    ncols = model.ncols(model.config["l_train"])

    def step():
        b = model.sample(rng, batch)
        P, z = torch.from_numpy(b.P), torch.from_numpy(b.z)
        cols, pq = P[:, :ncols], P[:, -1]
        u = (pq @ W["W_Q"].T) @ W["W_K"]                        # u_b = W_K^T W_Q p_q
        attn = torch.softmax(torch.bmm(cols, u.unsqueeze(2)).squeeze(2), dim=1)
        pbar = torch.bmm(attn.unsqueeze(1), cols).squeeze(1)
        F = torch.relu(pbar @ W["W_V"].T @ W["W_O"].T) @ W["a"]
        loss = torch.clamp(1.0 - z * F, min=0.0).mean()
        _sgd(torch, loss, W, trained, eta)
    return step


def _torch_cot_step(model, batch, seed=0):
    import torch

    rng = np.random.default_rng(seed)
    st = model.initial_state("mc", rng)
    trained = ("W_Q", "W_K") + (("W_V",) if model.config["train_value"] else ())
    W = {k: torch.tensor(v, dtype=torch.float64, requires_grad=(k in trained)) for k, v in st.items()}
    eta = model.config["eta"]

    def step():
        P, n, target = model.sample(rng, batch)
        P, n, target = torch.from_numpy(P), torch.from_numpy(np.asarray(n, dtype=np.int64)), torch.from_numpy(target)
        rows = torch.arange(P.shape[0])
        pq = P[rows, n]                                          # the query column of each prompt
        u = (pq @ W["W_Q"].T) @ W["W_K"]
        s = torch.bmm(P, u.unsqueeze(2)).squeeze(2)
        s = s.masked_fill(torch.arange(P.shape[1])[None, :] >= n[:, None], float("-inf"))
        attn = torch.softmax(s, dim=1)
        pbar = torch.bmm(attn.unsqueeze(1), P).squeeze(1)
        F = pbar @ W["W_V"].T
        loss = 0.5 * ((F - target) ** 2).sum(dim=1).mean()
        _sgd(torch, loss, W, trained, eta)
    return step


def make_step(side: str, workload: str):
    """The step function of ``side`` (``numba`` = the package, ``torch``) for ``workload``."""
    if workload.startswith("li"):
        from dynamics.models.li2024.model import Li2024
        model, batch = Li2024.create(), int(workload[2:])
        return _package_mc_step(model, batch) if side == "numba" else _torch_li_step(model, batch)
    if workload.startswith("cot"):
        from dynamics.models.li2024_cot.model import Li2024CoT
        model, batch = Li2024CoT.create(), int(workload[3:])
        return _package_mc_step(model, batch) if side == "numba" else _torch_cot_step(model, batch)
    raise ValueError(f"workload {workload!r} has no step yet")
