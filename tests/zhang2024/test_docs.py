"""docs/ARCHITECTURE.md walks through zhang2024 by line: each "`name` (`model.py:N`)" must point at the
line that defines ``name``, so that the walk-through cannot silently drift from the code."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_architecture_line_references_point_at_their_definitions():
    doc = open(os.path.join(ROOT, "docs", "ARCHITECTURE.md")).read()
    lines = open(os.path.join(ROOT, "dynamics", "models", "zhang2024", "model.py")).read().splitlines()
    refs = re.findall(r"`(?:Zhang2024\.)?(\w+)` \(`model\.py:(\d+)`\)", doc)
    assert len(refs) >= 8, refs
    for name, line in refs:
        assert re.search(rf"\b(def|class) {name}\b", lines[int(line) - 1]), (name, line, lines[int(line) - 1])
