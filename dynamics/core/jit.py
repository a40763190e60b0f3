"""The project's one numba wrapper: ``jit`` with a cache that cannot go stale.

Numba's own cache key is the content hash of the *one* file that defines a function.  A
jitted function that calls a kernel from another module (the GD loop of
:mod:`dynamics.models.huang2024.model` calling the generated kernels of
:mod:`dynamics.models.huang2024._kernels`) would then be served from cache after that other
module changed.  Here every function compiled through :func:`jit` is keyed by the hash of
*every* ``.py`` file of the ``dynamics`` package, found recursively (the core, the methods and
every model's subpackage), plus its own file: editing or regenerating any kernel anywhere in
the package invalidates every cached compilation.

Caching is on by default; set ``ICL_DYNAMICS_NUMBA_CACHE=0`` to turn it off (numba then
compiles afresh in every process).
"""
from __future__ import annotations

import functools
import hashlib
import os

import numba
from numba.core import caching

PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The ``dynamics`` package folder: every ``.py`` file below it enters the cache key."""
CACHE_ENV = "ICL_DYNAMICS_NUMBA_CACHE"


def cache_enabled() -> bool:
    """True unless the environment variable ``ICL_DYNAMICS_NUMBA_CACHE`` is ``0``/``false``/``no``/``off``."""
    return os.environ.get(CACHE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def source_hash(root: str) -> bytes:
    """SHA-256 over the relative paths and contents of every ``.py`` file below ``root`` (sorted walk)."""
    h = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                h.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as fh:
                    h.update(fh.read())
    return h.digest()


@functools.lru_cache(maxsize=1)
def package_source_hash() -> bytes:
    """:func:`source_hash` of the installed ``dynamics`` package, computed once per process."""
    return source_hash(PKG_DIR)


def _inside_package(py_file: str) -> bool:
    path = os.path.abspath(py_file)
    return os.path.commonpath([path, PKG_DIR]) == PKG_DIR


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
        if not (_inside_package(py_file) or getattr(py_func, "_icl_dynamics_jit", False)):
            return None
        return super().from_function(py_func, py_file)


if _PackageHashLocator not in caching.CacheImpl._locator_classes:
    # First in the list: ours keys by content, so wherever it stores, it cannot go stale.
    caching.CacheImpl._locator_classes.insert(0, _PackageHashLocator)


def jit(*args, parallel: bool = False, **kwargs):
    """``numba.njit`` with the project's cache policy (float64 code, no fastmath).

    Kernels release the GIL (``nogil=True``): a compiled loop running in a worker thread never
    keeps the main thread from handling Ctrl-C or from serving other threads (sweeps with
    ``--threads``).  Use as ``@jit`` or ``@jit(parallel=True)``.
    """
    opts = dict(cache=cache_enabled(), parallel=parallel, fastmath=False, error_model="numpy", nogil=True)
    opts.update(kwargs)
    if args and callable(args[0]) and len(args) == 1:
        args[0]._icl_dynamics_jit = True
        return numba.njit(**opts)(args[0])

    def decorate(fn):
        fn._icl_dynamics_jit = True
        return numba.njit(*args, **opts)(fn)

    return decorate


PARALLEL_MIN_WORK = 2_000_000
"""Work (a kernel's own count, e.g. batch x columns x dimension for the attention kernels) from
which :func:`call_parallel` lets a ``parallel=True`` kernel use every numba thread.  Below it the
kernel runs on one thread: waking threads costs 3-4 ms per call on a 2-core machine whose other
core is busy (measured for Huang's Monte Carlo kernel), and a step of the H. Li kernels at
B = 256 is 0.5 ms of work; at 2e6 (H. Li's kernels at B = 4096) a serial call is about 7 ms."""


def call_parallel(kernel, work: int, *args, min_work: int = PARALLEL_MIN_WORK):
    """``kernel(*args)``, on one numba thread when ``work < min_work`` (see :data:`PARALLEL_MIN_WORK`).

    The thread count is restored afterwards; the kernel's results do not depend on it when the
    kernel writes each parallel iteration's own outputs only.
    """
    n = numba.get_num_threads()
    if work >= min_work or n == 1:
        return kernel(*args)
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(n)
