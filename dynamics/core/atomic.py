"""Run directories: atomic writes, manifests, checkpoints (nothing a user computed is lost)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata

import numpy as np


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write through a temporary file in the same folder, fsync, then ``os.replace``."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_savez(path: str, **arrays) -> None:
    """``numpy.savez`` that never leaves a half-written file at ``path``."""
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_json(path: str, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON at ``path`` atomically (numpy values through
    :func:`json_default`)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n").encode())


def json_default(x):
    """The package's one JSON encoder hook: numpy arrays as lists, numpy scalars as Python numbers;
    anything else raises ``TypeError`` (``json.dumps(..., default=json_default)``)."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def versions() -> dict:
    """Versions of Python, this package and its dependencies."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("icl-dynamics", "numpy", "numba", "scipy", "sympy", "matplotlib", "dask", "distributed"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    """The commit of the source tree, when it is a git checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
