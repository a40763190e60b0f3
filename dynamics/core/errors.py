"""The project's exceptions and the exit status each one means on the command line.

- :class:`UsageError` (and :class:`~dynamics.core.params.ParamError`, any ``ValueError`` raised
  while checking input): bad input, exit status 2 and one line, nothing computed or written.
- :class:`SimulationDiverged`: a run that produced non-finite values or a rising loss; exit
  status 1, the snapshots so far are kept (``.result``).
"""
from __future__ import annotations


class UsageError(ValueError):
    """Bad command line, configuration, spec or path: exit status 2, one line."""


class SimulationDiverged(RuntimeError):
    """A run that diverged; ``.result`` holds the snapshots up to the failure."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result
