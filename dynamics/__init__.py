"""icl-dynamics: how small transformers learn in context, simulated exactly where the population
loss has a closed form and by careful Monte Carlo where it has none.

Systems (``dynamics.models``): ``huang2024`` (Huang, Cheng, Liang, ICML 2024: one-layer softmax
attention learning linear functions, exact on reduced coordinates) and the models registered
beside it.  Front ends: :func:`dynamics.simulate.simulate` (``python -m dynamics.simulate``),
``dynamics.crosscheck``, ``dynamics.reproduce``, ``dynamics.sweep``.  ``docs/ARCHITECTURE.md``
describes the layout and the model contract (:mod:`dynamics.core.contract`).

:func:`load_state` reads the final state of a run directory (``state.nc``), the state a run can be
continued from with ``simulate(..., init=load_state(run_dir))``.

Shortcuts to the exact engine of Huang, Cheng, Liang (docs/models/huang2024.md):

- :func:`population_loss_grad` -- the population loss ``L``, its gradient in the coordinates
  ``theta[n, k] = v_n^T Q v_k`` (``A_k = theta[k, k]``, ``B_{k,n} = theta[n, k]``) and ``L_k``;
- :func:`reduced_loss_grad` and :class:`ClassStructure` -- the same on symmetry classes.
"""
from __future__ import annotations

__version__ = "0.2.0"

_LAZY = {
    "population_loss_grad": "dynamics.models.huang2024.engine",
    "reduced_loss_grad": "dynamics.models.huang2024.engine",
    "ClassStructure": "dynamics.models.huang2024.classes",
    "population_loss_grad_bruteforce": "dynamics.models.huang2024.bruteforce",
    "simulate": "dynamics.simulate",
    "load_state": "dynamics.core.trajectory",
}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'dynamics' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)


__all__ = list(_LAZY)
