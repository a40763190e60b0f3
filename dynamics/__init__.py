"""icl-dynamics: exact training dynamics of one-layer softmax attention learning linear
functions in context (Huang, Cheng, Liang, "In-Context Convergence of Transformers", ICML 2024).

The contract is ``MODEL.md``; public entry points:

- :func:`population_loss_grad` -- the paper's population loss ``L(Q)``, its gradient in the
  coordinates ``theta[n, k] = v_n^T Q v_k`` (``A_k = theta[k, k]``, ``B_{k,n} = theta[n, k]``),
  and the per-feature prediction errors ``L_k`` (MODEL.md sections 2-3).
- :func:`reduced_loss_grad` and :class:`ClassStructure` -- the same on symmetry classes.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "population_loss_grad": "dynamics.models.huang2024.engine",
    "reduced_loss_grad": "dynamics.models.huang2024.engine",
    "ClassStructure": "dynamics.models.huang2024.classes",
    "population_loss_grad_bruteforce": "dynamics.models.huang2024.bruteforce",
}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'dynamics' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)


__all__ = list(_LAZY)
