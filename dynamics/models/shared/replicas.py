"""A trained replica of a Monte Carlo model, as the reproduce targets and the ledger keep it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Replica:
    """One trained replica: its ``model`` (data model and configuration), the run's ``ds``
    (``t`` and the model's dimensions) and the final ``state`` (``{block: array}``)."""

    model: object
    ds: object
    state: dict


def from_result(res) -> Replica:
    """The single replica of a Monte Carlo :class:`~dynamics.core.trajectory.Result` run with
    ``replicas = 1``."""
    return Replica(res.model, res.ds.isel(replica=0), {k: v[0] for k, v in res.state.items()})
