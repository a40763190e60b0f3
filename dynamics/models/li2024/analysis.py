"""Mechanism analyses of a trained state (H. Li et al., ICML 2024; slides p. 19-20).

- :func:`projections` (Proposition 1: "W_Q and W_K mainly project context inputs to the IDR or ODR
  pattern"): for test columns, the norm of ``W_Q p_query`` and ``W_K p_i``, the component along
  the column's own relevant pattern ``e = (xdr; 0) / |xdr|`` (``xdr`` = its IDR or ODR pattern;
  the slides' Figure 8) and the norm of the remainder.
- :func:`embedding` (Proposition 2): row ``i`` of ``W_O W_V`` splits into a feature part ``f_i``
  (the ``d_x`` feature coordinates) and a label part ``g_i`` (the label coordinates); "the
  feature embedding of rows of W_O W_V approximate mu_bar ... the label embedding approximate q
  for positive neurons and -q for negative neurons".  Reported as ``cos(f_i, mu_bar)``,
  ``cos(g_i, sign(a_i) q)``, their norms and the neuron magnitude ``|W_O(i, .)|`` (a zero vector
  has cosine 0).

The attention mass on same-pattern contexts is an evaluation observable
(:mod:`dynamics.models.li2024.evaluation`).
"""
from __future__ import annotations

import numpy as np

from dynamics.core.stats import mean_se

PARTS = ("norm", "along_pattern", "orthogonal")


def _cos(rows, direction) -> np.ndarray:
    num = rows @ direction
    den = np.linalg.norm(rows, axis=-1) * np.linalg.norm(direction)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def embedding(model, state: dict) -> dict:
    """Proposition 2 quantities of every neuron (module docstring); arrays of length ``m``."""
    d_x = model.data.d_x
    ov = state["W_O"] @ state["W_V"]
    f, g = ov[:, :d_x], ov[:, d_x:]
    sign = np.sign(state["a"])
    label_cos = np.einsum("ij,j->i", g, model.data.q) * sign
    gn = np.linalg.norm(g, axis=1)
    label_cos = np.divide(label_cos, gn, out=np.zeros_like(label_cos), where=gn > 0)
    return {"neuron_norm": np.linalg.norm(state["W_O"], axis=1), "feature_cos": _cos(f, model.data.mu_bar),
            "label_cos": label_cos, "feature_norm": np.linalg.norm(f, axis=1), "label_norm": gn,
            "label_q": np.einsum("ij,j->i", g, model.data.q)}


def projections(model, state: dict, rng: np.random.Generator, n: int, domain: str = "id", data=None) -> dict:
    """Proposition 1 quantities on ``n`` test prompts of ``domain``: ``{"W_Q_norm": (mean, se), ...}``
    for ``W_Q`` on query columns and ``W_K`` on context columns, parts :data:`PARTS`."""
    data = model.data if data is None else data
    length = model.config["l_test"]
    pr, info = data.sample(rng, int(n), length, model.config["alpha_test"], domain, with_patterns=True)
    rel_vecs = data.domain(domain)[0]
    d = data.d
    xdr = np.zeros(info["rel"].shape + (d,))
    xdr[..., :data.d_x] = rel_vecs[info["rel"]]
    xdr /= np.linalg.norm(xdr, axis=-1, keepdims=True)
    out = {}
    for mat, cols, dirs in (("W_Q", pr.P[:, -1], xdr[:, -1]), ("W_K", pr.P[:, :-1].reshape(-1, d),
                                                                  xdr[:, :-1].reshape(-1, d))):
        img = cols @ state[mat].T
        along = np.einsum("ij,ij->i", img, dirs)
        rest = np.linalg.norm(img - along[:, None] * dirs, axis=1)
        out[f"{mat}_norm"] = mean_se(np.linalg.norm(img, axis=1))
        out[f"{mat}_along_pattern"] = mean_se(along)
        out[f"{mat}_orthogonal"] = mean_se(rest)
    return out
