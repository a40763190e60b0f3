"""The package's layers only point down: core <- methods <- models <- front ends.

- ``dynamics.core`` imports nothing of the package outside ``core``;
- ``dynamics.methods`` imports only ``core`` and ``methods``;
- ``dynamics.models.shared`` (machinery several models use) imports ``core``, ``methods`` and itself;
- a model ``dynamics.models.<name>`` imports ``core``, ``methods``, ``models.shared`` and its own
  package: never another model, the registry, a front end or the sweep;
- the registry ``dynamics.models`` (its ``__init__``) imports only ``core``;
- the front ends (``dynamics.simulate``, ``crosscheck``, ``reproduce``, ``sweep``, ``claims`` and the
  package root) may import anything.

Every ``import`` statement counts, at module level or inside a function; registries that name
modules as strings (``"module:Class"``) are lookups, not imports.  The fixture at the end shows the
check rejecting deliberately added upward imports.
"""
from __future__ import annotations

import ast
import os

import dynamics

ROOT = os.path.dirname(os.path.abspath(dynamics.__file__))


def module_sources(root: str = ROOT) -> dict:
    """``{dotted module name: source}`` of every ``.py`` file of the package."""
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, os.path.dirname(root))[:-3].replace(os.sep, ".")
                name = rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
                with open(path, encoding="utf-8") as fh:
                    out[name] = fh.read()
    return out


def imported(module: str, source: str) -> set:
    """The ``dynamics`` modules that ``source`` imports (``from dynamics import x`` names
    ``dynamics.x``; relative imports are resolved against ``module``)."""
    out = set()
    package = module.rsplit(".", 1)[0]  # (an __init__'s own relative imports would resolve one level up)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "dynamics")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "dynamics":
                continue
            if base == "dynamics" or base == "dynamics.models":
                out.update(f"{base}.{a.name}" for a in node.names)
            else:
                out.add(base)
    return out


def layer(module: str) -> str:
    """The layer of a dotted module name (see the module docstring)."""
    parts = module.split(".")
    if parts[:2] == ["dynamics", "core"]:
        return "core"
    if parts[:2] == ["dynamics", "methods"]:
        return "methods"
    if parts[:2] == ["dynamics", "models"]:
        if len(parts) == 2:
            return "registry"
        return "shared" if parts[2] == "shared" else f"model:{parts[2]}"
    return "front"


ALLOWED = {
    "core": {"core"},
    "methods": {"core", "methods"},
    "shared": {"core", "methods", "shared"},
    "registry": {"core"},
}


def violations(sources: dict) -> list:
    """``[(module, imported module)]`` for every import that points up or sideways."""
    bad = []
    for module, source in sorted(sources.items()):
        mine = layer(module)
        if mine == "front":
            continue
        for target in sorted(imported(module, source)):
            theirs = layer(target)
            if target == "dynamics":
                ok = False
            elif mine.startswith("model:"):
                ok = theirs in ("core", "methods", "shared", mine)
            else:
                ok = theirs in ALLOWED[mine]
            if not ok:
                bad.append((module, target))
    return bad


def test_the_package_layers_only_point_down():
    sources = module_sources()
    assert "dynamics.core.contract" in sources and "dynamics.methods.gd" in sources
    assert any(layer(m).startswith("model:") for m in sources)
    assert violations(sources) == []


def test_the_check_rejects_upward_and_sideways_imports():
    fixture = {
        "dynamics.core.fine": "import numpy\nfrom dynamics.core import params\n",
        "dynamics.core.bad": "def f():\n    from dynamics.simulate import simulate\n    return simulate\n",
        "dynamics.methods.bad": "from dynamics.models import REGISTRY\n",
        "dynamics.methods.ok": "from dynamics.core.errors import UsageError\nfrom . import gd\n",
        "dynamics.models.alpha.model": "from dynamics.methods import declare\nfrom dynamics.models.shared import patterns\n",
        "dynamics.models.alpha.bad": "from dynamics.models.beta.model import Beta\nimport dynamics.sweep\n",
        "dynamics.models.shared.bad": "from dynamics.models.alpha import model\n",
        "dynamics.models": "from dynamics.models.alpha.model import Alpha\n",
        "dynamics.simulate": "from dynamics import models\nfrom dynamics.models.alpha.model import Alpha\n",
    }
    assert violations(fixture) == [
        ("dynamics.core.bad", "dynamics.simulate"),
        ("dynamics.methods.bad", "dynamics.models.REGISTRY"),
        ("dynamics.models", "dynamics.models.alpha.model"),
        ("dynamics.models.alpha.bad", "dynamics.models.beta.model"),
        ("dynamics.models.alpha.bad", "dynamics.sweep"),
        ("dynamics.models.shared.bad", "dynamics.models.alpha"),
    ]
