"""Yang, Huang, Liang, Chi (2024): one-layer multi-head softmax attention learns ridge regression
in context (docs/models/yang2024.md).  The population loss has an exact closed form, so exact GD,
gradient flow and Monte Carlo training all run on it (:mod:`.model`).

Public: :func:`population_loss_grad` (the counterpart of Huang's
:func:`dynamics.population_loss_grad`), the data model :class:`Problem`, and the ridge predictors
of :mod:`.ridge`.
"""
from dynamics.models.yang2024.closed_form import population_loss_grad
from dynamics.models.yang2024.data import Problem

__all__ = ["population_loss_grad", "Problem"]
