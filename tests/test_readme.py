"""Every code block of README.md runs as written (in a scratch folder): the Python blocks in a
fresh interpreter, the shell commands one by one -- except the install and the test command
itself, which CI runs (.ci/run)."""
import os
import re
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
TEXT = open(README).read()
PYTHON = re.findall(r"```python\n(.*?)```", TEXT, re.S)
BLOCKS = [[line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
          for block in re.findall(r"```bash\n(.*?)```", TEXT, re.S)]
SHELL = [line for block in BLOCKS for line in block]
SKIP = ("python -m pip install", "python -m pytest")


def _commands(block):
    """The block's commands in order (a line's ``&&`` parts one by one), install and tests left out."""
    return [cmd for line in block for cmd in line.split(" && ") if not cmd.startswith(SKIP)]


def test_readme_has_the_two_commands():
    assert any(line.startswith("python -m pip install -e") for line in SHELL)
    assert "python -m pytest -q" in SHELL and len(PYTHON) >= 1


@pytest.mark.parametrize("block", PYTHON, ids=[f"python{i}" for i in range(len(PYTHON))])
def test_python_blocks_run(block, tmp_path):
    r = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("block", [b for b in BLOCKS if _commands(b)],
                         ids=lambda b: _commands(b)[0][:60])
def test_shell_blocks_run(block, tmp_path):
    """A block's commands run in order in one folder (a later one may read what an earlier wrote)."""
    for cmd in _commands(block):
        r = subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (cmd, r.stderr[-3000:])
