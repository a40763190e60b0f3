"""One subpackage per paper's system; :data:`REGISTRY` maps the names used on the command line
(``--model``) and in sweep specs to the model classes (rule 1 of :mod:`dynamics.core.contract`)."""
from __future__ import annotations

import importlib

REGISTRY = {
    "huang2024": "dynamics.models.huang2024.model:Huang2024",
    "yang2024": "dynamics.models.yang2024.model:Yang2024",
    "li2024": "dynamics.models.li2024.model:Li2024",
    "li2024_cot": "dynamics.models.li2024_cot.model:Li2024CoT",
    "zhang2024": "dynamics.models.zhang2024.model:Zhang2024",
}
"""Model name -> ``"module:Class"``; adding a model adds one line here."""
DEFAULT = "huang2024"


def names() -> list:
    """The registered model names."""
    return list(REGISTRY)


def get(name: str):
    """The model class registered as ``name`` (ParamError naming ``model`` otherwise)."""
    from dynamics.core.params import ParamError

    if name not in REGISTRY:
        raise ParamError("model", f"model must be one of {', '.join(REGISTRY)}; got {name!r}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
