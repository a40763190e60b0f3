"""Every file the README, the docs and the commands' help texts cite exists in the repository: no
``MODEL.md`` or slides a user does not have (outputs a command writes, under ``runs/`` or a run
directory, and URLs are not citations)."""
import glob
import io
import os
import re
from contextlib import redirect_stdout

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.(?:md|py|toml|cfg|txt|npz|ipynb))(?![\w/])")
OUTPUT = ("runs/", "RUN_DIR", "OUT", "SPEC", "FILE", "x.toml", "file.toml", "spec.toml", "sweep.toml", "config.toml",
          "my", "c.toml", "s.toml", "NAME")


def _cited(text):
    for m in PATH.finditer(text):
        p = m.group(1).strip(".")
        if "://" in text[max(0, m.start() - 80):m.start()].split()[-1:][0] if text[:m.start()].split() else False:
            continue
        if p.startswith(OUTPUT) or "/" not in p and p not in ("MODEL.md",) and not os.path.exists(os.path.join(ROOT, p)):
            if p == "MODEL.md" or p.endswith("slides.txt"):
                yield p
            continue
        yield p


FILES = [os.path.relpath(f, ROOT) for f in glob.glob(os.path.join(ROOT, "**", "*"), recursive=True)]


def _exists(p, doc):
    """``p`` names a file of the repository: from the root, the citing file's folder, or as the tail
    of a path (the layout trees of docs/ARCHITECTURE.md name ``core/params.py`` under ``dynamics/``)."""
    p = p.lstrip("./")
    if "NAME" in p or p.startswith(("dynamics.", "python")):
        return True
    here = os.path.dirname(doc) if doc else ROOT
    if os.path.exists(os.path.join(ROOT, p)) or os.path.exists(os.path.join(here, p)):
        return True
    return p != "MODEL.md" and any(f == p or f.endswith("/" + p) for f in FILES)


DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: os.path.relpath(d, ROOT))
def test_docs_cite_only_files_of_the_repository(doc):
    text = open(doc).read()
    missing = sorted({p for p in _cited(text) if not _exists(p, doc)})
    assert not missing, missing


def _help(main, argv):
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            main(argv)
        except SystemExit:
            pass
    return out.getvalue()


def test_help_texts_cite_only_files_of_the_repository():
    from dynamics import models
    from dynamics.crosscheck import main as crosscheck_main
    from dynamics.models.li2024.analyze import main as analyze_main
    from dynamics.reproduce import main as reproduce_main
    from dynamics.simulate import simulate_main
    from dynamics.sweep import main as sweep_main

    texts = [_help(simulate_main, ["--model", m, "--help"]) for m in models.names()]
    texts += [_help(f, ["--help"]) for f in (crosscheck_main, reproduce_main, sweep_main, analyze_main)]
    assert all(len(t) > 200 for t in texts)
    for text in texts:
        assert "MODEL.md" not in text and not re.search(r"\bthe slides\b|slides'|slides:|slides\.txt", text), text
        missing = sorted({p for p in _cited(text) if not _exists(p, None)})
        assert not missing, missing
