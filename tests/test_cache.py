"""Tests of the derivative-module cache (s2sgrad/cache.py).

Most tests replace the compiler with a fake ``s2sgrad.pipeline`` that returns a
fixed, hand-written derivative module, so the cache is tested on its own: keys,
file names, atomic writes, corrupt files, permissions, binding of free names,
the in-process memo. Two tests run fresh Python processes to prove the point
of the cache: the second process loads the file without importing the
compiler, libcst or black. One of them uses the fake compiler (always runs),
the other the real one through the public API (runs once the core exists).
"""

from __future__ import annotations

import importlib.util
import json
import linecache
import os
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import s2sgrad
from s2sgrad import cache
from s2sgrad.errors import S2SGradError, SourceUnavailableError

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
    cache._MEMO.clear()
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


def test_decorated_function_stands_for_the_function_underneath(
    cache_dir, fake_pipeline, user_module
):
    user_module(
        """\
        import functools

        scale = 100.0  # not the `scale` the decorated function reads


        def deco(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return fn(*args)

            return wrapper
        """,
        name="decos",
    )
    mod = user_module("from decos import deco\n\nscale = 3.0\n\n@deco\ndef f(x):\n    return x\n")
    assert cache.cache_key(mod.f, "reverse", (0,)) == cache.cache_key(
        mod.f.__wrapped__, "reverse", (0,)
    )
    assert cache.load_or_generate(mod.f, "reverse", (0,))(1.0, 1.0)[1] == (6.0,)
    assert fake_pipeline.calls[0][0] == "f"
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


def test_atomic_write_leaves_old_file_or_new_file(tmp_path, monkeypatch):
    target = tmp_path / "m.py"
    cache._atomic_write(target, "x = 1\n")
    assert target.read_text() == "x = 1\n"
    assert target.stat().st_mode & 0o077 == 0  # private, like the directory

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        cache._atomic_write(target, "x = 2\n")
    assert target.read_text() == "x = 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py"]  # no temp file left


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

    cache._MEMO.clear()  # as in a new process
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
    assert path.read_text() == expected


def test_unsafe_directory_is_refused(cache_dir, fake_pipeline, user_module):
    cache_dir.mkdir(mode=0o700)
    os.chmod(cache_dir, 0o777)
    with pytest.raises(cache.UnsafeCacheDirError, match="writable by group or others") as info:
        cache.cache_dir()
    assert isinstance(info.value, S2SGradError)
    assert "chmod 700" in str(info.value)

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
    with pytest.raises(cache.UnsafeCacheDirError, match="owned by uid 65534"):
        cache.cache_dir()


def test_file_writable_by_others_is_not_imported(cache_dir, fake_pipeline, user_module):
    mod = user_module(USER_SOURCE)
    cache.load_or_generate(mod.f, "reverse", (0,))
    [entry] = cache.list_entries()
    os.chmod(entry.path, 0o666)
    cache._MEMO.clear()
    cache.load_or_generate(mod.f, "reverse", (0,))
    assert cache.stats["loaded"] == 0 and cache.stats["generated"] == 2
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
