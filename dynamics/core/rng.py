"""Seeds: every random draw of a run comes from its ``seed`` through ``numpy.random.SeedSequence``.

Two families of streams never overlap: the Monte Carlo replicas use ``SeedSequence(seed).spawn``
(spawn keys ``(0,)``, ``(1,)``, ...: :func:`dynamics.methods.montecarlo.replica_streams`); a model's
fixed data (Huang's features, Yang's dictionary, H. Li's patterns) use :func:`model_rng`, whose
spawn key starts with :data:`DATA_KEY` and a hash of the purpose's name.
"""
from __future__ import annotations

import hashlib

import numpy as np

DATA_KEY = 2**31 - 1


def model_rng(seed: int, purpose: str) -> np.random.Generator:
    """A Generator for the model's fixed data named ``purpose`` (e.g. ``"yang2024.dictionary"``)."""
    tag = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:4], "little")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(DATA_KEY, tag))))
