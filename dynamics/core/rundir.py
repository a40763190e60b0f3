"""Run directories: checked before anything is computed, never overwritten unasked, with
checkpoints a killed run resumes from.

A run directory holds ``config.json`` (what was asked: model, method, the parameters given and
the resolved ones), ``results.nc``, ``state.nc``, ``manifest.json`` (versions, commit, timings,
status) and the model's figures; ``checkpoint.npz`` while a checkpointing run is going.
"""
from __future__ import annotations

import glob
import json
import os
import zipfile

import numpy as np

from dynamics.core.atomic import atomic_savez, atomic_write_bytes
from dynamics.core.errors import UsageError

OWN_FILES = ("config.json", "results.nc", "state.nc", "manifest.json", "checkpoint.npz")


def check_writable_dir(path: str, what: str = "--out") -> str:
    """Make sure ``path`` is (or can be made) a writable directory; one-line UsageError otherwise."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{what} {path} is an existing file, not a directory")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"{what} {path} lies under {parent}, which is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path} is not writable (no permission in {parent})")
    fs = _filesystem(parent)
    if fs in PSEUDO_FILESYSTEMS:
        raise UsageError(f"{what} {path} is not writable ({parent} is on the kernel's {fs} filesystem)")
    try:
        if os.statvfs(parent).f_flag & os.ST_RDONLY:
            raise UsageError(f"{what} {path} is not writable ({parent} is on a read-only filesystem)")
    except (OSError, AttributeError):
        pass
    return path


PSEUDO_FILESYSTEMS = ("proc", "sysfs", "cgroup", "cgroup2", "debugfs", "securityfs", "configfs", "devpts",
                      "tracefs", "pstore", "bpf")
"""Filesystems of the kernel where a user's files cannot be written (even root's access() says yes)."""


def _filesystem(path: str) -> str:
    """The type of the filesystem mounted at the longest prefix of ``path`` (``/proc/mounts``)."""
    best, kind = "", ""
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                    best, kind = mount, parts[2]
    except OSError:
        return ""
    return kind


def check_writable_file(path: str, what: str = "--out") -> str:
    """Make sure ``path`` can be written as a file (its folder exists or can be made)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise UsageError(f"{what} {path} is a directory, not a file")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"{what} {path} lies under {parent}, which is a file")
    check_writable_dir(os.path.dirname(path), what)
    return path


def clean_temporaries(folder: str) -> None:
    """Remove ``.tmp_*`` files an interrupted atomic write left behind."""
    for tmp in glob.glob(os.path.join(folder, ".tmp_*")):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def read_config(folder: str) -> dict | None:
    """The ``config.json`` of a run directory, or None."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as fh:
            cfg = json.load(fh)
    except (OSError, ValueError):
        raise UsageError(f"{path} is not a readable run configuration (JSON)") from None
    if not isinstance(cfg, dict) or "model" not in cfg or "given" not in cfg:
        raise UsageError(f"{path} is not an icl-dynamics run configuration")
    return cfg


def read_status(folder: str) -> str:
    """The ``status`` a finished run's ``manifest.json`` records (``unknown`` if unreadable)."""
    try:
        with open(os.path.join(folder, "manifest.json")) as fh:
            status = json.load(fh).get("status", "unknown")
    except (OSError, ValueError, AttributeError):
        return "unknown"
    return status if isinstance(status, str) else "unknown"


def prepare(folder: str, request: dict, overwrite: bool = False) -> str:
    """Check ``folder`` for the run ``request`` (``{model, method, given}``) before computing.

    A missing or empty folder is fine; so is the folder of the same request killed before it
    wrote any result (only its ``config.json``).  The same request's finished or checkpointed
    run, and any other non-empty folder, are refused unless ``overwrite``: then the files this
    project writes there are removed (never others).
    """
    folder = check_writable_dir(folder)
    if not os.path.isdir(folder) or not os.listdir(folder):
        return folder
    clean_temporaries(folder)
    old = read_config(folder) if os.path.exists(os.path.join(folder, "config.json")) else None
    same = old is not None and all(old.get(k) == request.get(k) for k in ("model", "method", "given"))
    if same and not overwrite:
        if os.path.exists(os.path.join(folder, "checkpoint.npz")):
            raise UsageError(f"--out {folder} holds this run, interrupted with a checkpoint; continue it with "
                             f"--resume {folder}, or add --overwrite to start again")
        if any(os.path.exists(os.path.join(folder, n)) for n in ("results.nc", "state.nc", "manifest.json")):
            raise UsageError(f"--out {folder} already holds this run (status {read_status(folder)}); nothing is "
                             "overwritten unasked: add --overwrite to compute it again")
        return folder  # only the config.json of a run killed before it wrote anything
    if not overwrite:
        why = "holds another run" if old is not None else "is not empty"
        raise UsageError(f"--out {folder} {why}; choose another folder or add --overwrite")
    remove_outputs(folder)
    return folder


def remove_outputs(folder: str) -> None:
    """Delete the files a previous run of this project wrote into ``folder`` (listed in its manifest)."""
    names = set(OWN_FILES)
    try:
        with open(os.path.join(folder, "manifest.json")) as fh:
            names.update(json.load(fh).get("files", []))
    except (OSError, ValueError):
        pass
    names.update(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.png")))
    for name in names:
        path = os.path.join(folder, os.path.basename(name))
        if os.path.isfile(path):
            os.unlink(path)


def write_json(path: str, obj) -> None:
    from dynamics.core.atomic import atomic_write_json

    atomic_write_json(path, obj)


# ---- checkpoints --------------------------------------------------------------------------
def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not v:
            out["e:" + key] = np.array(0)  # an empty dict (no replica finished yet) is kept, not dropped
        elif isinstance(v, dict):
            out.update(_flatten(v, key + "__"))
        elif isinstance(v, str):
            out["s:" + key] = np.array(v)
        else:
            out[key] = np.asarray(v)
    return out


def _unflatten(z) -> dict:
    out: dict = {}
    for key in z.files:
        val = z[key]
        if key.startswith("e:"):
            key, val = key[2:], {}
        elif key.startswith("s:"):
            key, val = key[2:], str(val)
        elif val.ndim == 0:
            val = val.item()
        parts = key.split("__")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if isinstance(val, dict):
            node.setdefault(parts[-1], {})
        else:
            node[parts[-1]] = val
    return out


def save_checkpoint(folder: str, ck: dict) -> None:
    """Write ``checkpoint.npz`` atomically (plain arrays and strings, no pickles)."""
    atomic_savez(os.path.join(folder, "checkpoint.npz"), **_flatten(ck))


def load_checkpoint(folder: str) -> dict | None:
    """The checkpoint of a run directory (None if it has none); a damaged one is a UsageError."""
    path = os.path.join(folder, "checkpoint.npz")
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            ck = _unflatten(z)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError):
        raise UsageError(f"--resume: {path} is damaged or not a checkpoint of this project "
                         "(remove it to start the run again)") from None
    return ck


def write_bytes(path: str, data: bytes) -> None:
    atomic_write_bytes(path, data)
