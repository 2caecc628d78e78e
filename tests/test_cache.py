"""Tests of the derivative-module cache (s2sgrad/cache.py).

Most tests replace the compiler with a fake ``s2sgrad.pipeline`` that returns a
fixed, hand-written derivative module, so the cache is tested on its own: keys,
file names, atomic writes, corrupt files, permissions, binding of free names,
the in-process memo. Two tests run fresh Python processes to prove the point
of the cache: the second process loads the file without importing the
compiler, libcst or black. One of them uses the fake compiler (always runs),
the other the real one through the public API (runs once the core exists).

The "faults" and "the key" sections (issue 14) each reproduce a fault of the
cache before that issue: a FIFO entry that hung, entries raising SystemExit or
KeyboardInterrupt that escaped, temporary files nothing removed, a load right
after a write that could fail, 8 compilations for 8 threads, and a key that
missed most of the package's files and the NumPy/JAX versions. The security
tests (symlink races, ownership, modes) are in test_cache_security.py.
"""

from __future__ import annotations

import _io
import errno
import importlib.util
import io
import json
import linecache
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad import cache, memos
from s2sgrad.errors import S2SGradError, SourceUnavailableError
from tests.oracles import assert_close

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- fixtures

USER_SOURCE = """\
import numpy as np

scale = 3.0


def f(x):
    return scale * x * x
"""

# What a compiler might emit for f above, in reverse mode: entry(x, g) -> (out, grads).
FAKE_DERIVATIVE = '''\
"""Derivative of {qualname} (reverse mode), written by the fake compiler in test_cache.py."""


def {entry}(x, g):
    out = scale * x * x
    return out, (g * 2.0 * scale * x,)


__s2sgrad_entry__ = "{entry}"
__s2sgrad_free_names__ = ("scale",)
'''


@dataclass(frozen=True)
class FakeGenerated:
    source: str
    entry: str
    free_names: tuple[str, ...]


class FakePipeline(types.ModuleType):
    """Stands in for s2sgrad.pipeline: records calls, returns FAKE_DERIVATIVE."""

    def __init__(self):
        super().__init__("s2sgrad.pipeline")
        self.calls: list[tuple] = []

    def generate(self, fn, *, mode, wrt, backend="numpy"):
        self.calls.append((fn.__qualname__, mode, wrt, backend))
        entry = f"{fn.__name__}_vjp"
        source = FAKE_DERIVATIVE.format(qualname=fn.__qualname__, entry=entry)
        return FakeGenerated(source=source, entry=entry, free_names=("scale",))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A fresh, private cache directory and a clean in-process state."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV_VAR, str(directory))
    memos.clear_all()
    cache._SOURCES.clear()
    cache._warned.clear()
    monkeypatch.setattr(cache, "stats", {"generated": 0, "loaded": 0, "memo": 0})
    return directory


@pytest.fixture
def fake_pipeline(monkeypatch) -> FakePipeline:
    fake = FakePipeline()
    monkeypatch.setitem(sys.modules, "s2sgrad.pipeline", fake)
    monkeypatch.setattr(s2sgrad, "pipeline", fake, raising=False)
    return fake


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write source to ``<tmp>/<name>.py`` and import it as module ``name``."""
    directory = tmp_path / "user"
    directory.mkdir()

    def load(source: str, name: str = "usermod") -> types.ModuleType:
        path = directory / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        linecache.clearcache()  # same path, new text: do not let inspect read the old one
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load


# ----------------------------------------------------------------------------- keys


def test_key_is_stable_for_the_same_source(user_module):
    first = cache.cache_key(user_module(USER_SOURCE).f, "reverse", (0,))
    second = cache.cache_key(user_module(USER_SOURCE).f, "reverse", (0,))
    assert first == second
    assert len(first) == 64 and int(first, 16) >= 0


def test_key_changes_when_the_source_changes(user_module):
    before = cache.cache_key(user_module(USER_SOURCE).f, "reverse", (0,))
    edited = USER_SOURCE.replace("scale * x * x", "scale * x * x * x")
    after = cache.cache_key(user_module(edited).f, "reverse", (0,))
    assert before != after


def test_key_changes_when_the_compiler_changes(user_module, monkeypatch):
    """A fixed compiler must not reuse what an earlier one wrote under the same version."""
    fn = user_module(USER_SOURCE).f
    before = cache.cache_key(fn, "reverse", (0,))
    monkeypatch.setattr(cache, "_compiler_fingerprint", lambda: "a different compiler")
    assert cache.cache_key(fn, "reverse", (0,)) != before


def test_the_compiler_fingerprint_covers_the_passes_without_importing_them():
    script = (
        "import sys; from s2sgrad import cache; f = cache._compiler_fingerprint(); "
        "assert len(f) == 64; "
        "assert not [m for m in sys.modules if m.startswith(('s2sgrad.transforms', 'libcst'))]"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_key_changes_with_mode_wrt_backend_and_options(user_module):
    fn = user_module("def f(x, y):\n    return x * y\n").f
    keys = {
        cache.cache_key(fn, "reverse", (0,)),
        cache.cache_key(fn, "forward", (0,)),
        cache.cache_key(fn, "reverse", (1,)),
        cache.cache_key(fn, "reverse", (0, 1)),
        cache.cache_key(fn, "reverse", (0,), backend="jax"),
        cache.cache_key(fn, "reverse", (0,), options=(("checkpoint", True),)),
    }
    assert len(keys) == 6
    # Mappings and tuples of the same options are the same key.
    assert cache.cache_key(fn, "reverse", (0,), options={"b": 1, "a": 2}) == cache.cache_key(
        fn, "reverse", (0,), options=(("a", 2), ("b", 1))
    )


def test_key_follows_user_helpers_and_what_names_denote(user_module):
    source = """\
        import numpy as np

        act = np.tanh
        bias = 1.0


        def helper(x):
            return act(x) + bias


        def f(x):
            return helper(x).sum()
        """
    base = cache.cache_key(user_module(source).f, "reverse", (0,))
    # The helper's body is part of f's derivative.
    edited_helper = source.replace("act(x) + bias", "act(x) * bias")
    assert cache.cache_key(user_module(edited_helper).f, "reverse", (0,)) != base
    # Same source for both functions, but `act` now denotes another primitive.
    other_primitive = source.replace("act = np.tanh", "act = np.sin")
    assert cache.cache_key(user_module(other_primitive).f, "reverse", (0,)) != base
    # Data is bound at load time, not compiled in: its value is not in the key.
    other_data = source.replace("bias = 1.0", "bias = 2.0")
    assert cache.cache_key(user_module(other_data).f, "reverse", (0,)) == base


def test_key_ignores_library_functions(user_module):
    mod = user_module("import numpy as np\n\ndef f(x):\n    return np.linalg.norm(x)\n")
    functions, _ = cache._reachable_functions(mod.f)
    assert functions == [mod.f]


def test_key_follows_helpers_in_user_modules_and_closures(user_module):
    user_module("def g(x):\n    return x * 2\n", name="helpers_a")
    mod = user_module(
        """\
        import helpers_a

        def make():
            def inner(x):
                return x + 1
            def f(x):
                return helpers_a.g(inner(x))
            return f
        """,
        name="outer_a",
    )
    functions, _ = cache._reachable_functions(mod.make())
    assert [f.__qualname__ for f in functions] == ["make.<locals>.f", "g", "make.<locals>.inner"]


def test_key_and_memo_follow_user_registered_rules(
    cache_dir, fake_pipeline, user_module, monkeypatch
):
    from s2sgrad.rules import registry

    # A private copy of the registry, so the rule registered here leaves no trace.
    monkeypatch.setattr(registry, "_RULES", dict(registry._RULES))
    monkeypatch.setattr(registry, "_KEEP", list(registry._KEEP))
    monkeypatch.setattr(registry, "_GENERATION", [registry._GENERATION[0]])
    mod = user_module(USER_SOURCE + "\n\ndef h(x):\n    return x\n")
    before = cache.cache_key(mod.f, "reverse", (0,))
    cache.load_or_generate(mod.f, "reverse", (0,))

    @registry.defvjp(mod.h)
    def h_vjp(g, ans, x):
        return 3.0 * g

    assert cache.cache_key(mod.f, "reverse", (0,)) != before
    cache.load_or_generate(mod.f, "reverse", (0,))
    assert cache.stats["memo"] == 0 and cache.stats["generated"] == 2


def test_source_unavailable_is_a_clear_error():
    namespace: dict = {}
    exec("def f(x):\n    return x\n", namespace)
    with pytest.raises(SourceUnavailableError, match="cannot read the source of f"):
        cache.cache_key(namespace["f"], "reverse", (0,))


def test_decorated_function_stands_for_the_wrapper_that_runs(cache_dir, fake_pipeline, user_module):
    """Issue 14: what runs is what is differentiated, so a ``functools.wraps`` decorator's
    wrapper is the function keyed, compiled and bound (``running.function_that_runs``)."""
    user_module(
        """\
        import functools

        scale = 100.0  # the `scale` the wrapper's module holds


        def deco(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return fn(*args)

            return wrapper
        """,
        name="decos",
    )
    mod = user_module("from decos import deco\n\nscale = 3.0\n\n@deco\ndef f(x):\n    return x\n")
    assert cache.cache_key(mod.f, "reverse", (0,)) != cache.cache_key(
        mod.f.__wrapped__, "reverse", (0,)
    )
    assert cache.load_or_generate(mod.f, "reverse", (0,))(1.0, 1.0)[1] == (200.0,)
    # The wrapper carries f's names (functools.wraps): the file is still named after f.
    assert [e.label for e in cache.list_entries()] == ["usermod_f"]


def test_not_a_python_function_is_a_clear_error():
    with pytest.raises(SourceUnavailableError, match="not a Python function"):
        cache.cache_key(np.tanh, "reverse", (0,))


# ----------------------------------------------------------------------------- files


def test_file_name_is_identifier_safe(user_module):
    mod = user_module(
        "def make():\n    def f(x):\n        return x\n    return f\n", name="pkg_mod"
    )
    name = cache.cache_filename(mod.make(), "reverse", "0123456789abcdef" * 4)
    assert name == "pkg_mod_make__locals__f_reverse_0123456789ab.py"
    assert name[: -len(".py")].isidentifier()


def test_cache_dir_is_created_private(cache_dir):
    assert not cache_dir.exists()
    assert cache.cache_dir() == cache_dir
    assert cache_dir.stat().st_mode & 0o777 == 0o700


def test_atomic_write_leaves_old_file_or_new_file(cache_dir, monkeypatch):
    with cache._open_cache_dir(create=True) as directory:
        cache._write_entry(directory, "m.py", b"x = 1\n")
        target = cache_dir / "m.py"
        assert target.read_text() == "x = 1\n"
        assert target.stat().st_mode & 0o077 == 0  # private, like the directory

        def crash(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="disk full"):
            cache._write_entry(directory, "m.py", b"x = 2\n")
    assert target.read_text() == "x = 1\n"
    assert sorted(p.name for p in cache_dir.iterdir()) == ["m.py"]  # no temp file left


# ----------------------------------------------------------------------------- loading


def test_miss_then_memo_then_disk_hit(cache_dir, fake_pipeline, user_module):
    mod = user_module(USER_SOURCE)
    vjp = cache.load_or_generate(mod.f, "reverse", (0,))
    out, (grad,) = vjp(np.array([1.0, 2.0]), 1.0)
    np.testing.assert_allclose(out, [3.0, 12.0])
    np.testing.assert_allclose(grad, [6.0, 12.0])
    assert cache.stats == {"generated": 1, "loaded": 0, "memo": 0}
    [entry] = cache.list_entries()
    assert entry.mode == "reverse" and entry.label == "usermod_f"
    assert entry.path.name == cache.cache_filename(
        mod.f, "reverse", cache.cache_key(mod.f, "reverse", (0,))
    )

    assert cache.load_or_generate(mod.f, "reverse", (0,)) is vjp
    assert cache.stats["memo"] == 1

    memos.clear_all()  # as in a new process
    again = cache.load_or_generate(mod.f, "reverse", (0,))
    assert again is not vjp and again.__code__.co_filename == str(entry.path)
    assert cache.stats == {"generated": 1, "loaded": 1, "memo": 1}
    assert len(fake_pipeline.calls) == 1


def test_free_names_are_bound_from_current_globals_and_closures(
    cache_dir, fake_pipeline, user_module
):
    mod = user_module(USER_SOURCE)
    vjp = cache.load_or_generate(mod.f, "reverse", (0,))
    assert vjp(2.0, 1.0)[0] == 12.0
    mod.scale = 10.0  # data: same derivative code, new value
    vjp = cache.load_or_generate(mod.f, "reverse", (0,))
    assert vjp(2.0, 1.0)[0] == 40.0
    assert cache.stats["generated"] == 1

    factory = user_module(
        "def make(scale):\n    def f(x):\n        return scale * x * x\n    return f\n", name="fac"
    )
    two, five = factory.make(2.0), factory.make(5.0)
    assert cache.load_or_generate(two, "reverse", (0,))(1.0, 1.0)[1] == (4.0,)
    assert cache.load_or_generate(five, "reverse", (0,))(1.0, 1.0)[1] == (10.0,)
    # One file serves both closures.
    assert len([e for e in cache.list_entries() if e.label.startswith("fac_")]) == 1


def test_memo_notices_a_redefined_helper(cache_dir, fake_pipeline, user_module):
    mod = user_module("scale = 1.0\n\ndef h(x):\n    return x\n\ndef f(x):\n    return h(x)\n")
    cache.load_or_generate(mod.f, "reverse", (0,))
    exec("def h(x):\n    return 2 * x\n", mod.__dict__)  # a notebook cell redefining h
    cache.load_or_generate(mod.f, "reverse", (0,))
    assert cache.stats["memo"] == 0
    assert len(fake_pipeline.calls) == 2  # different key: the old file does not match


_LOWERED_SOURCE = """
import numpy as np

scale = 2.0

def h(x):
    return np.sin(x)

def cube(x):
    return x ** 3

def f(x, y, z):
    return np.sum(h(x) * y * z) * scale
"""


def test_lowering_is_reused_only_while_what_it_read_holds(cache_dir, user_module, monkeypatch):
    """Forward mode compiles one module per argument; the function and its callees are
    lowered once for all of them (the "lowered" memo), and lowered again when a name they
    read is rebound, a rule is registered, or their source changes."""
    from s2sgrad import frontend, pipeline

    parsed = []
    real = frontend.parse_function
    monkeypatch.setattr(pipeline, "parse_function", lambda fn: parsed.append(fn) or real(fn))
    mod = user_module(_LOWERED_SOURCE, "lowered_memo")
    x, y, z = np.array([0.3, -0.4]), np.array([1.5, 0.5]), np.array([0.2, 0.7])
    grads = s2sgrad.grad(mod.f, wrt=(0, 1, 2), mode="forward")(x, y, z)
    want = jax.grad(lambda x, y, z: jnp.sum(jnp.sin(x) * y * z) * 2.0, argnums=(0, 1, 2))
    assert_close(grads, want(x, y, z))
    assert sorted(f.__name__ for f in parsed) == ["f", "h"]  # three modules, one lowering each

    mod.h = mod.cube  # a notebook cell rebinding the helper
    grads = s2sgrad.grad(mod.f, wrt=(0, 1, 2), mode="forward")(x, y, z)
    want = jax.grad(lambda x, y, z: jnp.sum(x**3 * y * z) * 2.0, argnums=(0, 1, 2))
    assert_close(grads, want(x, y, z))
    assert sorted(f.__name__ for f in parsed) == ["cube", "f", "f", "h"]

    mod.scale = 3.0  # data: read when the module runs, not compiled in
    grads = s2sgrad.grad(mod.f, wrt=0, mode="forward")(x, y, z)
    assert_close(grads, 3.0 * 3 * x**2 * y * z)
    assert len(parsed) == 4


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_a_dropped_function_and_its_derivative_are_freed(cache_dir, tmp_path, backend):
    """A notebook redefining a function, or a program making many, must not keep every old
    function, its module and its compiled derivative (XLA executables) alive."""
    import gc
    import weakref

    path = tmp_path / "dropped_module.py"
    path.write_text(_LOWERED_SOURCE)
    spec = importlib.util.spec_from_file_location("dropped_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = np.array([0.3, -0.4])
    s2sgrad.grad(module.f, backend=backend)(x, x, x)
    alive = weakref.ref(module.f)
    del module, spec
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize(
    "content",
    [
        "def f_vjp(x, g):\n    return (\n",  # truncated: syntax error
        "def f_vjp(x, g):\n    return x, (g,)\n",  # no dunders
        '__s2sgrad_entry__ = "missing"\n__s2sgrad_free_names__ = ()\n',  # entry not defined
        "raise RuntimeError('boom')\n",
        "",
    ],
)
def test_corrupt_file_is_a_miss_and_is_replaced(cache_dir, fake_pipeline, user_module, content):
    mod = user_module(USER_SOURCE)
    key = cache.cache_key(mod.f, "reverse", (0,))
    path = cache.cache_dir() / cache.cache_filename(mod.f, "reverse", key)
    path.write_text(content)
    os.chmod(path, 0o600)
    vjp = cache.load_or_generate(mod.f, "reverse", (0,))
    assert vjp(1.0, 1.0)[1] == (6.0,)
    assert cache.stats["generated"] == 1
    assert '__s2sgrad_entry__ = "f_vjp"' in path.read_text()


def test_bytecode_of_a_replaced_file_is_not_reused(
    cache_dir, fake_pipeline, user_module, monkeypatch
):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    # A corrupt file that compiles, exactly as long as the real one: its bytecode
    # would pass the import system's (mtime in seconds, size) check.
    mod = user_module(USER_SOURCE)
    expected = FAKE_DERIVATIVE.format(qualname="f", entry="f_vjp")
    key = cache.cache_key(mod.f, "reverse", (0,))
    path = cache.cache_dir() / cache.cache_filename(mod.f, "reverse", key)
    path.write_text("#" * (len(expected) - 1) + "\n")
    os.chmod(path, 0o600)
    assert cache.load_or_generate(mod.f, "reverse", (0,))(1.0, 1.0)[1] == (6.0,)
    assert path.read_bytes() == cache._seal(key, expected)
    assert not (cache_dir / "__pycache__").exists()  # no bytecode is written, or read


def test_unsafe_directory_is_refused(cache_dir, fake_pipeline, user_module):
    cache_dir.mkdir(mode=0o700)
    os.chmod(cache_dir, 0o777)
    with pytest.raises(cache.UnsafeCacheDirError, match="writable by others") as info:
        cache.cache_dir()
    assert isinstance(info.value, S2SGradError)
    assert "chmod go-w" in str(info.value)  # the user's own directory: chmod is the fix

    # A file planted there is never imported; the derivative is made in memory.
    mod = user_module(USER_SOURCE)
    planted = cache_dir / cache.cache_filename(
        mod.f, "reverse", cache.cache_key(mod.f, "reverse", (0,))
    )
    planted.write_text("raise SystemExit('planted code ran')\n")
    with pytest.warns(cache.S2SGradCacheWarning, match="not using the disk cache"):
        vjp = cache.load_or_generate(mod.f, "reverse", (0,))
    assert vjp(1.0, 1.0)[1] == (6.0,)
    assert cache.stats == {"generated": 1, "loaded": 0, "memo": 0}
    assert planted.read_text().startswith("raise SystemExit")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_directory_owned_by_another_user_is_refused(cache_dir):
    cache_dir.mkdir(mode=0o700)
    os.chown(cache_dir, 65534, -1)
    with pytest.raises(cache.UnsafeCacheDirError, match=r"owned by .*uid 65534") as info:
        cache.cache_dir()
    # Another user's directory: the user cannot chmod it, so the hint must not say so.
    assert "chmod" not in str(info.value)
    assert cache.ENV_VAR in info.value.hint


def test_file_writable_by_others_is_not_imported(cache_dir, fake_pipeline, user_module):
    mod = user_module(USER_SOURCE)
    cache.load_or_generate(mod.f, "reverse", (0,))
    [entry] = cache.list_entries()
    os.chmod(entry.path, 0o666)
    memos.clear_all()
    cache.load_or_generate(mod.f, "reverse", (0,))
    # Not loaded; rewritten from this process's source (one compilation per key).
    assert cache.stats["loaded"] == 0 and cache.stats["generated"] == 1
    assert len(fake_pipeline.calls) == 1
    assert entry.path.stat().st_mode & 0o077 == 0  # replaced by a private file


def test_clear_removes_only_cache_files(cache_dir, fake_pipeline, user_module):
    mod = user_module(USER_SOURCE)
    cache.load_or_generate(mod.f, "reverse", (0,))
    cache.load_or_generate(mod.f, "forward", (0,))
    keep = cache_dir / "notes.txt"
    keep.write_text("mine")
    assert len(cache.list_entries()) == 2
    assert cache.clear() == 2
    assert cache.list_entries() == []
    assert keep.exists()
    assert cache.clear() == 0


def test_list_and_clear_do_not_create_the_directory(cache_dir):
    assert cache.list_entries() == [] and cache.clear() == 0
    assert not cache_dir.exists()


# ----------------------------------------------------------------------------- processes


def _run(code: str, env: dict, cwd: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _env(cache_directory: Path, *paths: Path) -> dict:
    env = dict(os.environ)
    env[cache.ENV_VAR] = str(cache_directory)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in paths] + [str(REPO)])
    return env


REPORT = (
    "import json, sys; "
    "from s2sgrad import cache; "
    "print(json.dumps({'grad': [float(v) for v in grad], 'stats': cache.stats, "
    "'heavy': sorted(m for m in ('s2sgrad.pipeline', 's2sgrad.transforms', 'libcst', 'black') "
    "if m in sys.modules)}))"
)


def test_second_process_loads_the_file_without_the_compiler_fake(tmp_path):
    (tmp_path / "usermod.py").write_text(USER_SOURCE)
    (tmp_path / "fake_pipeline_setup.py").write_text(textwrap.dedent(f"""\
            import sys, types
            FAKE_DERIVATIVE = {FAKE_DERIVATIVE!r}
            def generate(fn, *, mode, wrt, backend="numpy"):
                entry = fn.__name__ + "_vjp"
                source = FAKE_DERIVATIVE.format(qualname=fn.__qualname__, entry=entry)
                return types.SimpleNamespace(source=source, entry=entry, free_names=("scale",))
            module = types.ModuleType("s2sgrad.pipeline")
            module.generate = generate
            sys.modules["s2sgrad.pipeline"] = module
            """))
    env = _env(tmp_path / "cache", tmp_path)
    call = (
        "import numpy as np, usermod; from s2sgrad.cache import load_or_generate; "
        "out, (grad,) = load_or_generate(usermod.f, 'reverse', (0,))(np.array([1.0, 2.0]), 1.0); "
    )
    first = _run("import fake_pipeline_setup; " + call + REPORT, env, tmp_path)
    second = _run(call + REPORT, env, tmp_path)
    assert first["stats"]["generated"] == 1
    assert second["stats"] == {"generated": 0, "loaded": 1, "memo": 0}
    assert second["heavy"] == []
    assert second["grad"] == first["grad"] == [6.0, 12.0]


def _core_available() -> bool:
    return all(
        importlib.util.find_spec(name) is not None for name in ("s2sgrad.pipeline", "s2sgrad.api")
    )


@pytest.mark.skipif(not _core_available(), reason="the compiler core is not there yet")
def test_second_process_loads_the_file_without_the_compiler(tmp_path):
    (tmp_path / "usermod.py").write_text(textwrap.dedent("""\
            import numpy as np

            W = np.array([[1.0, -2.0], [0.5, 3.0]])


            def loss(x):
                h = np.tanh(x @ W)
                return np.sum(h * h)
            """))
    env = _env(tmp_path / "cache", tmp_path)
    code = (
        "import numpy as np, s2sgrad, usermod; "
        "grad = s2sgrad.grad(usermod.loss)(np.array([0.3, -0.7])); " + REPORT
    )
    first = _run(code, env, tmp_path)
    second = _run(code, env, tmp_path)
    assert first["stats"]["generated"] == 1
    assert second["stats"]["generated"] == 0 and second["stats"]["loaded"] == 1
    assert second["heavy"] == []
    assert second["grad"] == first["grad"]
    x = np.array([0.3, -0.7])
    W = np.array([[1.0, -2.0], [0.5, 3.0]])
    h = np.tanh(x @ W)
    np.testing.assert_allclose(second["grad"], W @ (2 * h * (1 - h**2)), rtol=1e-12)


# ----------------------------------------------------------------------------- faults
#
# Every fault below gives a correct derivative (generated in memory, the entry
# repaired) or a clear error, and nothing hangs. Each test failed on the cache
# before issue 14 (noted per test).


def _entry_path(mod, mode="reverse") -> Path:
    key = cache.cache_key(mod.f, mode, (0,))
    return cache.cache_dir() / cache.cache_filename(mod.f, mode, key)


def _call_with_timeout(fn, seconds=30.0):
    """Run ``fn()`` in a daemon thread; fail (not hang) if it does not return in time."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_entry_is_a_miss_and_does_not_hang(cache_dir, fake_pipeline, user_module):
    """Before: the import opened the FIFO for reading and waited forever for a writer."""
    mod = user_module(USER_SOURCE)
    path = _entry_path(mod)
    os.mkfifo(path, 0o600)
    vjp = _call_with_timeout(lambda: cache.load_or_generate(mod.f, "reverse", (0,)))
    assert vjp(1.0, 1.0)[1] == (6.0,)
    assert stat.S_ISREG(os.lstat(path).st_mode)  # replaced by the real entry


def test_other_odd_entries_are_misses(cache_dir, fake_pipeline, user_module):
    mod = user_module(USER_SOURCE)
    path = _entry_path(mod)
    path.mkdir()  # a directory where the entry should be: cannot be replaced, still right
    with pytest.warns(cache.S2SGradCacheWarning, match="cannot write"):
        assert cache.load_or_generate(mod.f, "reverse", (0,))(1.0, 1.0)[1] == (6.0,)


SEALABLE_RAISES = [
    "raise SystemExit('planted')\n",
    "import sys\nsys.exit(3)\n",
    "raise KeyboardInterrupt\n",
    "raise GeneratorExit\n",
]


@pytest.mark.parametrize("sealed", [False, True], ids=["unsealed", "sealed"])
@pytest.mark.parametrize("body", SEALABLE_RAISES)
def test_entry_raising_base_exceptions_is_corrupt_and_repaired(
    cache_dir, fake_pipeline, user_module, body, sealed
):
    """Before: SystemExit/KeyboardInterrupt from an entry escaped grad, and the entry
    stayed. Sealed: even an entry with a valid seal (bytes we did not write) that
    raises them is corrupt: generated modules only import, define and assign."""
    mod = user_module(USER_SOURCE)
    key = cache.cache_key(mod.f, "reverse", (0,))
    path = _entry_path(mod)
    content = FAKE_DERIVATIVE.format(qualname="f", entry="f_vjp") + body
    path.write_bytes(cache._seal(key, content) if sealed else content.encode())
    os.chmod(path, 0o600)
    vjp = cache.load_or_generate(mod.f, "reverse", (0,))
    assert vjp(1.0, 1.0)[1] == (6.0,)
    assert cache.stats["generated"] == 1 and cache.stats["loaded"] == 0
    assert body not in path.read_text()  # repaired
    memos.clear_all()
    assert cache.load_or_generate(mod.f, "reverse", (0,))(1.0, 1.0)[1] == (6.0,)
    assert cache.stats["loaded"] == 1


def test_a_real_ctrl_c_during_a_load_still_propagates(cache_dir, fake_pipeline, user_module):
    """A SIGINT that lands while an entry runs is the user's, not the entry's."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not handled by Python's default handler here")
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    mod = user_module(USER_SOURCE)
    key = cache.cache_key(mod.f, "reverse", (0,))
    path = _entry_path(mod)
    body = "import signal\nsignal.raise_signal(signal.SIGINT)\n"
    path.write_bytes(cache._seal(key, body + FAKE_DERIVATIVE.format(qualname="f", entry="f_vjp")))
    os.chmod(path, 0o600)
    with pytest.raises(KeyboardInterrupt):
        cache.load_or_generate(mod.f, "reverse", (0,))


def test_stale_temporary_files_are_removed_fresh_ones_kept(cache_dir, fake_pipeline, user_module):
    """Before: killed writers' .s2sgrad-tmp-* files stayed forever (clear() removed even
    a live writer's)."""
    cache_dir.mkdir(mode=0o700)
    stale = cache_dir / ".s2sgrad-tmp-4242-dead.tmp"
    fresh = cache_dir / ".s2sgrad-tmp-4243-live.tmp"
    for path in (stale, fresh):
        path.write_text("half a modu")
    old = time.time() - 2 * cache._STALE_TMP_AGE
    os.utime(stale, (old, old))
    mod = user_module(USER_SOURCE)
    cache.load_or_generate(mod.f, "reverse", (0,))  # a write sweeps the directory
    assert not stale.exists()
    assert fresh.exists()

    os.utime(fresh, (old, old))
    live = cache_dir / ".s2sgrad-tmp-4244-live.tmp"
    live.write_text("being written")
    assert cache.clear() == 1  # modules only: the temporaries are not counted
    assert not fresh.exists() and live.exists()


def _fail_reads_of_entries(monkeypatch, error: OSError):
    """Every read of a cache entry fails with ``error`` (the new code opens with os.open,
    the import system with io.open_code): a disk fault, or a file made unreadable."""
    real_os_open, real_open_code = os.open, io.open_code

    def os_open(path, flags, *args, **kwargs):
        is_read = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) == 0
        if is_read and cache._ENTRY_RE.match(os.path.basename(os.fspath(path))):
            raise error
        return real_os_open(path, flags, *args, **kwargs)

    def open_code(path):
        if cache._ENTRY_RE.match(os.path.basename(os.fspath(path))):
            raise error
        return real_open_code(path)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(io, "open_code", open_code)
    monkeypatch.setattr(_io, "open_code", open_code)  # what the import system calls


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(errno.EACCES, "Permission denied"),
        OSError(errno.EIO, "Input/output error"),
    ],
    ids=["EACCES", "EIO"],
)
def test_unreadable_entries_give_the_right_result(
    cache_dir, fake_pipeline, user_module, monkeypatch, error
):
    """Before: the load right after a fresh write re-read the file, and the
    PermissionError escaped grad."""
    mod = user_module(USER_SOURCE)
    _fail_reads_of_entries(monkeypatch, error)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            memos.clear_all()
            assert cache.load_or_generate(mod.f, "reverse", (0,))(1.0, 1.0)[1] == (6.0,)
    assert len(fake_pipeline.calls) == 1  # one compilation, then this process's copy
    assert len(caught) <= 1


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EROFS, "Read-only file system"),
        PermissionError(errno.EACCES, "Permission denied"),
        OSError(errno.EIO, "Input/output error"),
    ],
    ids=["ENOSPC", "EROFS", "EACCES", "EIO"],
)
@pytest.mark.parametrize("where", ["write", "rename", "mkdir"])
def test_write_faults_give_the_right_result_and_one_warning(
    cache_dir, fake_pipeline, user_module, monkeypatch, error, where
):
    mod = user_module(USER_SOURCE)
    if where == "write":
        real = os.fdopen

        def broken(fd, *args, **kwargs):
            handle = real(fd, *args, **kwargs)
            handle.write = lambda data: (_ for _ in ()).throw(error)
            return handle

        monkeypatch.setattr(os, "fdopen", broken)
    elif where == "rename":
        monkeypatch.setattr(os, "replace", lambda *a, **k: (_ for _ in ()).throw(error))
    else:

        def mkdir(*args, **kwargs):
            raise error

        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(os, "makedirs", mkdir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mode in ("reverse", "forward", "reverse"):
            memos.clear_all()
            assert cache.load_or_generate(mod.f, mode, (0,))(1.0, 1.0)[1] == (6.0,)
    assert [w.category for w in caught] == [cache.S2SGradCacheWarning]
    assert error.strerror in str(caught[0].message)
    if cache_dir.exists():
        assert [p.name for p in cache_dir.iterdir()] == []  # no entry, no temporary file
    assert len(fake_pipeline.calls) == 2  # one per key


def test_concurrent_first_calls_compile_once(cache_dir, fake_pipeline, user_module, monkeypatch):
    """Before: 8 threads calling a new function at once compiled it 8 times."""
    mod = user_module(USER_SOURCE)
    slow_generate = fake_pipeline.generate

    def generate(*args, **kwargs):
        time.sleep(0.2)  # a real compilation takes this long: the threads overlap
        return slow_generate(*args, **kwargs)

    monkeypatch.setattr(fake_pipeline, "generate", generate)
    barrier = threading.Barrier(8)
    results: list = []

    def first_call():
        barrier.wait()
        results.append(cache.load_or_generate(mod.f, "reverse", (0,))(2.0, 1.0))

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [(12.0, (12.0,))] * 8
    assert len(fake_pipeline.calls) == 1
    assert cache.stats["generated"] == 1


def test_one_compilation_per_key_even_without_a_disk_cache(
    cache_dir, fake_pipeline, user_module, monkeypatch
):
    mod = user_module(USER_SOURCE)
    monkeypatch.setattr(
        os, "mkdir", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "no"))
    )
    with pytest.warns(cache.S2SGradCacheWarning):
        for _ in range(3):
            memos.clear_all()
            cache.load_or_generate(mod.f, "reverse", (0,))
    assert len(fake_pipeline.calls) == 1


# ----------------------------------------------------------------------------- the key


def _copy_package(tmp_path: Path) -> Path:
    """A copy of the s2sgrad package tree (with transforms/) to edit."""
    target = tmp_path / "pkg"
    shutil.copytree(Path(cache._PACKAGE_DIR), target / "s2sgrad", ignore=_no_bytecode)
    return target


def _no_bytecode(directory, names):
    return [n for n in names if n == "__pycache__"]


def test_the_key_covers_every_package_file():
    """Before: only transforms/*.py and four named files (not backends/jax.py, now backends/jax/lowering.py, not the
    rules, not the runtime), with the rules only through a hand-bumped version."""
    listed = {os.path.realpath(path) for _label, path in cache._package_files()}
    package = Path(s2sgrad.__file__).parent
    expected = {os.path.realpath(p) for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    spec = importlib.util.find_spec("s2sgrad.transforms")
    for location in spec.submodule_search_locations:
        expected |= {os.path.realpath(p) for p in Path(location).rglob("*.py")}
    assert expected <= listed
    for name in (
        "backends/jax/lowering.py",
        "rules/elementwise.py",
        "runtime/core.py",
        "codegen.py",
    ):
        assert os.path.realpath(package / name) in listed


@pytest.mark.parametrize(
    "edited",
    [
        "backends/jax/lowering.py",
        "rules/elementwise.py",
        "backends/jax/runtime.py",
        "rules/__init__.py",
    ],
)
def test_an_edit_to_any_package_file_changes_the_key(tmp_path, monkeypatch, user_module, edited):
    fn = user_module(USER_SOURCE).f
    copy = _copy_package(tmp_path) / "s2sgrad"
    monkeypatch.setattr(cache, "_PACKAGE_DIR", str(copy))
    cache._compiler_fingerprint.cache_clear()
    monkeypatch.setattr(cache, "_compiler_fingerprint", cache._compiler_fingerprint)
    try:
        before = cache.cache_key(fn, "reverse", (0,))
        with open(copy / edited, "a") as handle:
            handle.write("\n# a one-line change\n")
        cache._compiler_fingerprint.cache_clear()
        assert cache.cache_key(fn, "reverse", (0,)) != before
    finally:
        cache._compiler_fingerprint.cache_clear()


def test_key_follows_the_numpy_and_jax_versions(user_module, monkeypatch):
    fn = user_module(USER_SOURCE).f
    keys = {backend: cache.cache_key(fn, "reverse", (0,), backend) for backend in ("numpy", "jax")}
    monkeypatch.setattr(np, "__version__", "0.0.1-other")
    cache._library_versions.cache_clear()
    try:
        assert cache.cache_key(fn, "reverse", (0,)) != keys["numpy"]
        monkeypatch.undo()
        cache._library_versions.cache_clear()
        real = cache._installed_version
        monkeypatch.setattr(
            cache, "_installed_version", lambda name: real(name) if name == "numpy" else "other"
        )
        assert cache.cache_key(fn, "reverse", (0,), "jax") != keys["jax"]
        assert cache.cache_key(fn, "reverse", (0,)) == keys["numpy"]  # NumPy code: no JAX in it
    finally:
        cache._library_versions.cache_clear()


def test_the_jax_version_is_read_without_importing_jax():
    script = (
        "import sys; from s2sgrad import cache; "
        "v = cache._library_versions('jax'); "
        "assert 'jax=' in v and 'jaxlib=' in v, v; "
        "assert 'jax' not in sys.modules and 'jaxlib' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_loaded_module_shows_its_own_lines(cache_dir, fake_pipeline, user_module):
    """Entries run from the bytes read (no import by path), yet tracebacks, inspect and
    pdb see the file: ``__file__`` is set and linecache holds exactly those lines."""
    import inspect

    mod = user_module(USER_SOURCE)
    cache.load_or_generate(mod.f, "reverse", (0,))
    memos.clear_all()
    vjp = cache.load_or_generate(mod.f, "reverse", (0,))
    assert cache.stats["loaded"] == 1
    [entry] = cache.list_entries()
    assert vjp.__code__.co_filename == str(entry.path)
    assert sys.modules.get(vjp.__module__) is None  # a fresh module per closure, unregistered
    assert "def f_vjp(x, g):" in inspect.getsource(vjp)
    with pytest.raises(TypeError) as info:
        vjp(None, 1.0)
    assert "out = scale * x * x" in "".join(traceback.format_tb(info.tb))


def test_a_cache_path_through_a_file_is_a_warning_not_an_error(
    tmp_path, fake_pipeline, user_module, cache_dir, monkeypatch
):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv(cache.ENV_VAR, str(blocker / "cache"))
    mod = user_module(USER_SOURCE)
    with pytest.warns(cache.S2SGradCacheWarning, match="Not a directory"):
        assert cache.load_or_generate(mod.f, "reverse", (0,))(1.0, 1.0)[1] == (6.0,)
    assert cache.list_entries() == [] and cache.clear() == 0


SPECIAL_USER = """\
import numpy as np
import scipy.special


def f(x):
    return np.sum(scipy.special.erf(x) * scipy.special.expit(x))
"""


def test_scipy_rules_register_once_the_user_imports_scipy_and_keep_the_key(tmp_path):
    """``import s2sgrad`` never imports SciPy (a third of a second); its rules are there
    as soon as the user's code has imported scipy.special, a user's rule still replaces
    a built-in one, and the cache key is the same before and after they are registered."""
    (tmp_path / "specialmod.py").write_text(SPECIAL_USER)
    env = _env(tmp_path / "cache", tmp_path)
    code = (
        "import json, sys, numpy as np\n"
        "import s2sgrad\n"
        "from s2sgrad import cache\n"
        "from s2sgrad.api import _options\n"
        "scipy_at_import = 'scipy' in sys.modules\n"
        "import specialmod\n"
        "x = np.array([-0.5, 0.25, 1.5])\n"
        "key_before = cache._key_and_deps(specialmod.f, 'reverse', (0,), 'numpy', "
        "_options((x,), False, 'reverse'))[0]\n"
        "grad = s2sgrad.grad(specialmod.f)(x)\n"
        "key_after = cache._key_and_deps(specialmod.f, 'reverse', (0,), 'numpy', "
        "_options((x,), False, 'reverse'))[0]\n"
        "print(json.dumps({'scipy_at_import': scipy_at_import, 'grad': grad.tolist(), "
        "'same_key': key_before == key_after}))\n"
    )
    report = _run(code, env, tmp_path)
    assert report["scipy_at_import"] is False
    assert report["same_key"] is True

    def twin(x):
        return jnp.sum(jax.scipy.special.erf(x) * jax.nn.sigmoid(x))

    expected = jax.grad(twin)(jnp.array([-0.5, 0.25, 1.5]))
    assert_close(np.array(report["grad"]), np.asarray(expected))


def test_a_users_scipy_rule_is_not_replaced_by_the_built_in_ones_registered_later(tmp_path):
    code = (
        "import json, scipy.special, s2sgrad\n"
        "from s2sgrad.rules import lookup\n"
        "@s2sgrad.defjvp(scipy.special.erf)\n"
        "def my_erf_jvp(ans, x, *, dx):\n"
        "    return 7.0 * dx\n"
        "lookup(scipy.special.expit)  # the built-in SciPy rules are registered by now\n"
        "print(json.dumps({'erf': lookup(scipy.special.erf).origin, "
        "'expit': lookup(scipy.special.expit).origin}))\n"
    )
    report = _run(code, _env(tmp_path / "cache"), tmp_path)
    assert report == {"erf": "__main__", "expit": "s2sgrad.rules.special"}
