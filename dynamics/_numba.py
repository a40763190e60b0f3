"""The project's one numba wrapper: ``jit`` with a cache that cannot go stale.

Numba's own cache key is the content hash of the *one* file that defines a
function.  A jitted function that calls a kernel from another module (the
simulator calling the generated kernels) would then be served from cache after
that other module changed.  Here every function defined in the ``dynamics``
package is keyed by the hash of *all* ``.py`` files of the package, so editing
or regenerating any kernel invalidates every cached compilation.

Caching is on by default; set ``ICL_DYNAMICS_NUMBA_CACHE=0`` to turn it off
(numba then compiles afresh in every process).
"""
from __future__ import annotations

import hashlib
import os

import numba
from numba.core import caching

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def cache_enabled() -> bool:
    """True unless the environment variable ``ICL_DYNAMICS_NUMBA_CACHE`` is ``0``/``false``/``no``."""
    return os.environ.get("ICL_DYNAMICS_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def package_source_hash() -> bytes:
    """SHA-256 over the names and contents of every ``.py`` file of the package (sorted)."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(_PKG_DIR)):
        if name.endswith(".py"):
            h.update(name.encode())
            with open(os.path.join(_PKG_DIR, name), "rb") as fh:
                h.update(fh.read())
    return h.digest()


class _PackageHashLocator(caching.UserWideCacheLocator):
    """Cache locator for functions compiled through :func:`jit` (in the package or outside it,
    e.g. a benchmark calling our kernels): stamp = hash of the whole package and of the file."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        if numba.config.CACHE_DIR:  # respect NUMBA_CACHE_DIR when the user set it
            self._cache_path = os.path.join(numba.config.CACHE_DIR, self.get_suitable_cache_subpath(py_file))

    def get_source_stamp(self):
        with open(self._py_file, "rb") as fh:
            own = hashlib.sha256(fh.read()).digest()
        return package_source_hash() + own

    @classmethod
    def from_function(cls, py_func, py_file):
        inside = os.path.dirname(os.path.abspath(py_file)) == _PKG_DIR
        if not (inside or getattr(py_func, "_icl_dynamics_jit", False)):
            return None
        return super().from_function(py_func, py_file)


if _PackageHashLocator not in caching.CacheImpl._locator_classes:
    # Before numba's own locators, after a user-provided NUMBA_CACHE_DIR is not
    # needed: ours keys by content, so wherever it stores, it cannot go stale.
    caching.CacheImpl._locator_classes.insert(0, _PackageHashLocator)


def jit(*args, parallel: bool = False, **kwargs):
    """``numba.njit`` with the project's cache policy (float64 code, no fastmath).

    Use as ``@jit`` or ``@jit(parallel=True)``.
    """
    opts = dict(cache=cache_enabled(), parallel=parallel, fastmath=False, error_model="numpy")
    opts.update(kwargs)
    if args and callable(args[0]) and len(args) == 1:
        args[0]._icl_dynamics_jit = True
        return numba.njit(**opts)(args[0])

    def decorate(fn):
        fn._icl_dynamics_jit = True
        return numba.njit(*args, **opts)(fn)

    return decorate
