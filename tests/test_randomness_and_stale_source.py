"""Derivatives must see exactly the values the primal computed, of the code that runs.

* Random draws: derivative code runs parts of the function again (forward mode
  once per input element; reverse mode recomputes called functions in the
  backward sweep, and ``vjp_fn`` recomputes the whole forward sweep), so a draw
  inside a differentiated function gives a value from one draw and a gradient
  from another. Every call that draws (``np.random.*``, a generator's methods, the
  ``random`` module) is refused at its line, in both modes and backends.
* Stale source: s2sgrad compiles the source file. If the file was edited after
  the module was imported, the file is not the running function: refused, on
  the compiler's path and on the cache's (the key is computed from the source).
"""

from __future__ import annotations

import importlib.util
import linecache
import os
import sys
import textwrap
import uuid

import numpy as np
import pytest

import s2sgrad
from s2sgrad import cache
from s2sgrad.errors import RandomDrawError, StaleSourceError
from tests.entry_points import entry_points
from tests.markers import marked_line
from tests.oracles import assert_close, central_difference_grad
from tests.programs import randomness

X = np.array([0.5, -1.3, 2.1])

# --------------------------------------------------------------------------- randomness

DRAWS = [
    ("noisy", randomness.noisy),
    ("calls_noisy", randomness.noisy),  # the draw is in the called function
    ("uses_global_generator", randomness.uses_global_generator),
    ("makes_generator", randomness.makes_generator),
    ("generator_argument", randomness.generator_argument),
    ("stdlib_random", randomness.stdlib_random),
    ("dropout", randomness.dropout),
    ("passes_generator", randomness.passes_generator),
    # A call whose result carries no derivative still runs again in the derivative code.
    ("inactive_helper_draws", randomness.make_noise),
    ("inactive_helper_of_helper_draws", randomness.make_noise),
]


def _args(name):
    return (X, np.random.default_rng(0)) if name == "generator_argument" else (X,)


def _check_random_message(message: str, where) -> None:
    assert f"randomness.py:{marked_line(where)}:" in message.splitlines()[0], message
    assert "draw random numbers" in message, message
    assert "hint: draw the random numbers outside" in message, message
    assert "pass them in as an argument" in message, message


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name,where", DRAWS, ids=[d[0] for d in DRAWS])
def test_random_draws_are_refused_at_their_line(name, where, mode, backend):
    with pytest.raises(RandomDrawError) as info:
        s2sgrad.value_and_grad(getattr(randomness, name), mode=mode, backend=backend)(*_args(name))
    _check_random_message(str(info.value), where)


@pytest.mark.parametrize("name,where", DRAWS, ids=[d[0] for d in DRAWS])
def test_random_draws_are_refused_by_vjp_and_jvp(name, where):
    fn = getattr(randomness, name)
    args = _args(name)
    with pytest.raises(RandomDrawError) as info:
        s2sgrad.vjp(fn, *args)
    _check_random_message(str(info.value), where)
    tangents = (np.ones(3),) + tuple(args[1:])
    with pytest.raises(RandomDrawError):
        s2sgrad.jvp(fn, args, tangents)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_random_numbers_passed_in_are_fine(mode):
    fn = randomness.noise_passed_in
    noise = np.random.default_rng(3).normal(size=3)
    value, gradient = s2sgrad.value_and_grad(fn, mode=mode)(X, noise)
    assert_close(value, fn(X, noise))
    assert_close(gradient, central_difference_grad(fn, [X, noise], 0), rtol=1e-6)


# --------------------------------------------------------------------------- stale source

MODULE = """\
from __future__ import annotations

import numpy as np


def helper(x):
    return np.sin(x) * 3.0


def f(x):
    return np.sum(helper(x) * x)


def make(k):
    def scaled(x):
        return np.sum(np.cos(x) * k)

    return scaled
"""


def _import(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))


@pytest.fixture
def user_module(tmp_path):
    name = f"s2sgrad_stale_{uuid.uuid4().hex[:12]}"
    path = tmp_path / f"{name}.py"
    path.write_text(MODULE)
    module = _import(path, name)
    yield path, module
    sys.modules.pop(name, None)


def _check_stale(message: str, path, qualname: str) -> None:
    first = message.splitlines()[0]
    assert f"{path}:" in first, message
    assert f"the source of {qualname}" in first and "edited after it was imported" in first, message
    assert "hint: reload the module" in message, message


API = entry_points(X)


@pytest.mark.parametrize("api", list(API))
def test_a_function_edited_after_import_is_refused(user_module, api):
    path, module = user_module
    _edit(path, "return np.sum(helper(x) * x)", "return np.sum(helper(x) * x * x)  # edited")
    with pytest.raises(StaleSourceError) as info:
        API[api](module.f)
    _check_stale(str(info.value), path, "f")


@pytest.mark.parametrize("api", ["grad", "grad_forward", "vjp"])
def test_an_edited_callee_is_refused(user_module, api):
    path, module = user_module
    _edit(path, "return np.sin(x) * 3.0", "return np.sin(x) * 30.0")
    with pytest.raises(StaleSourceError) as info:
        API[api](module.f)
    _check_stale(str(info.value), path, "helper")


def test_an_edited_closure_is_refused(user_module):
    path, module = user_module
    scaled = module.make(2.0)
    assert_close(s2sgrad.grad(scaled)(X), -2.0 * np.sin(X))  # unedited: fine
    _edit(path, "np.cos(x) * k", "np.cos(x) + k")
    with pytest.raises(StaleSourceError):
        s2sgrad.grad(module.make(3.0))(X)


def test_the_warm_cache_path_refuses_too(user_module, tmp_path):
    # Process state: the module was imported (v1), then the file was edited (v2), and a
    # derivative of v2 is in the disk cache (as another process running v2 would leave
    # it). The key is computed from the file, so it matches v2's entry: it must not load.
    path, module = user_module
    v1 = module.f
    _edit(path, "return np.sum(helper(x) * x)", "return np.sum(helper(x) * 2.0)  # v2")
    v2_module = _import(path, module.__name__)
    s2sgrad.grad(v2_module.f)(X)  # writes v2's entry
    with pytest.raises(StaleSourceError):
        cache.cache_key(v1, "reverse", (0,))
    with pytest.raises(StaleSourceError):
        s2sgrad.grad(v1)(X)


def test_edits_elsewhere_in_the_file_leave_a_function_usable(user_module):
    # Only the code s2sgrad reads for f (and its callees) matters: an edit below it is fine.
    path, module = user_module
    _edit(path, "np.cos(x) * k", "np.cos(x) + k  # edited, but f does not call it")
    expected = central_difference_grad(module.f, [X], 0)
    for mode in ("reverse", "forward"):
        assert_close(s2sgrad.grad(module.f, mode=mode)(X), expected, rtol=1e-6)


def test_lines_inserted_above_a_function_are_an_edit_too(user_module):
    # The function's recorded line now holds other text: s2sgrad would read the wrong code.
    path, module = user_module
    _edit(path, "import numpy as np\n", "import numpy as np\n\n\n# a comment\nA = 1\n")
    with pytest.raises(StaleSourceError):
        s2sgrad.grad(module.f)(X)


def test_functions_defined_by_exec_with_linecache_source_work():
    # As in a notebook cell: the source lives in linecache under a pseudo file name.
    source = textwrap.dedent("""
        import numpy as np

        def cell_f(x):
            return np.sum(np.exp(x) * x)
        """)
    filename = f"<ipython-input-{uuid.uuid4().hex[:8]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    fn = namespace["cell_f"]
    gradient = s2sgrad.grad(fn)(X)
    assert_close(gradient, np.exp(X) * (X + 1.0))
    # Re-running an edited cell under the same name keeps working: the cell's text is the code.
    edited = source.replace("* x)", "* x * 2.0)")
    linecache.cache[filename] = (len(edited), None, edited.splitlines(True), filename)
    exec(compile(edited, filename, "exec"), namespace)
    assert_close(s2sgrad.grad(namespace["cell_f"])(X), 2.0 * np.exp(X) * (X + 1.0))
    # The first function was compiled while its text was current: its derivative stays right.
    assert_close(s2sgrad.grad(fn)(X), np.exp(X) * (X + 1.0))
    # One never compiled before its cell's text changed is refused.
    stale = namespace["cell_f"]
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    with pytest.raises(StaleSourceError):
        s2sgrad.grad(stale, mode="forward")(X)
