"""The numba cache cannot serve a stale kernel, and an environment variable turns it off."""
import os
import subprocess
import sys
import textwrap

from dynamics.core import jit as _numba


def _helper_file(tmp_path):
    f = tmp_path / "user_kernels.py"
    f.write_text(textwrap.dedent("""
        from dynamics.core.jit import jit

        @jit
        def twice(x):
            return 2.0 * x
    """))
    return f


def test_stamp_follows_package_and_own_source(tmp_path, monkeypatch):
    import importlib.util

    f = _helper_file(tmp_path)
    spec = importlib.util.spec_from_file_location("user_kernels", f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    loc = _numba._PackageHashLocator.from_function(mod.twice.py_func, str(f))
    assert loc is not None  # functions compiled through our jit use our locator, even outside the package
    s1 = loc.get_source_stamp()
    monkeypatch.setattr(_numba, "package_source_hash", lambda: b"a regenerated kernel")
    s2 = loc.get_source_stamp()
    assert s1 != s2  # any change in the package invalidates cached callers
    f.write_text(f.read_text() + "\n# edited\n")
    assert loc.get_source_stamp() != s2  # and so does a change in the caller's own file


def test_plain_numba_functions_are_left_alone(tmp_path):
    f = tmp_path / "other.py"
    f.write_text("def g(x):\n    return x\n")
    ns = {}
    exec(compile(f.read_text(), str(f), "exec"), ns)
    assert _numba._PackageHashLocator.from_function(ns["g"], str(f)) is None


def test_environment_variable_turns_caching_off():
    code = "import dynamics.models.huang2024.quadrature as e; print(type(e.column_expectations._cache).__name__)"
    env = dict(os.environ)
    env["ICL_DYNAMICS_NUMBA_CACHE"] = "0"
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    env["ICL_DYNAMICS_NUMBA_CACHE"] = "1"
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert off.stdout.strip() == "NullCache"
    assert on.stdout.strip() != "NullCache"


def test_hash_covers_nested_subpackages(tmp_path):
    """A kernel edited (or regenerated) in a model's subpackage changes the key of every cached
    function: the hash walks the package recursively."""
    pkg = tmp_path / "dynamics"
    (pkg / "models" / "m").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    kern = pkg / "models" / "m" / "_kernels.py"
    kern.write_text("def k(x):\n    return x\n")
    (pkg / "models" / "m" / "notes.txt").write_text("not source")
    h1 = _numba.source_hash(str(pkg))
    (pkg / "models" / "m" / "notes.txt").write_text("still not source")
    assert _numba.source_hash(str(pkg)) == h1  # only .py files count
    kern.write_text("def k(x):\n    return 2 * x\n")
    assert _numba.source_hash(str(pkg)) != h1
    # The real package's hash includes the generated kernels of the Huang subpackage.
    assert os.path.exists(os.path.join(_numba.PKG_DIR, "models", "huang2024", "_kernels.py"))


def test_functions_in_subpackages_use_the_package_locator():
    from dynamics.models.huang2024 import quadrature

    f = quadrature.column_expectations.py_func
    assert _numba._PackageHashLocator.from_function(f, f.__code__.co_filename) is not None
