"""Properties of generated code: the product a person reads.

These tests pin *properties* (formatted, deterministic, hygienic, no dead
code, comments that point back to the source), not whole texts; one golden
file pins the overall shape of the README example's reverse-mode code.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import black
import jax
import numpy as np
import pytest

import s2sgrad
from s2sgrad import pipeline
from tests.oracles import assert_close, jnp_twin
from tests.programs import hygiene, straight_line

GOLDEN = Path(__file__).parent / "golden"


def body_of(source: str) -> ast.FunctionDef:
    module = ast.parse(source)
    return next(n for n in module.body if isinstance(n, ast.FunctionDef))


def test_output_is_black_formatted_valid_and_deterministic():
    for mode in ("reverse", "forward"):
        a = pipeline.generate(straight_line.two_layer, mode=mode, wrt=(0, 1, 2)).source
        b = pipeline.generate(straight_line.two_layer, mode=mode, wrt=(0, 1, 2)).source
        assert a == b
        assert black.format_str(a, mode=black.Mode(line_length=100)) == a
        compile(a, "<generated>", "exec")


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", list(straight_line.SHAPES))
def test_no_dead_statements(name, mode):
    fn = getattr(straight_line, name)
    wrt = tuple(range(len(straight_line.SHAPES[name])))
    func = body_of(pipeline.generate(fn, mode=mode, wrt=wrt).source)
    stmts = func.body
    for i, stmt in enumerate(stmts):
        if isinstance(stmt, ast.Assign):
            targets = {n.id for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            later = {
                n.id
                for s in stmts[i + 1 :]
                for n in ast.walk(s)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
            }
            assert targets & later, f"{name}: `{ast.unparse(stmt)}` is never read"


def test_comments_point_to_source_lines():
    source = pipeline.generate(straight_line.mlp_loss, mode="reverse", wrt=(0,)).source
    import inspect

    lines, start = inspect.getsourcelines(straight_line.mlp_loss)
    h_line = start + next(i for i, ln in enumerate(lines) if "h = np.tanh" in ln)
    assert f"# line {h_line}: h = np.tanh(x @ W + b)" in source
    assert "# backward sweep" in source
    assert "straight_line.py, line" in source


def test_generated_names_never_capture_user_names():
    args = [np.linspace(0.1, 0.9, 4), np.linspace(-1, 1, 4), np.linspace(1, 2, 4)]
    for mode in ("reverse", "forward"):
        got = s2sgrad.grad(hygiene.shadowy, wrt=(0, 1, 2), mode=mode)(*args)
        want = jax.grad(jnp_twin(hygiene.shadowy), argnums=(0, 1, 2))(*args)
        assert_close(got, tuple(np.asarray(w) for w in want))
    source = pipeline.generate(hygiene.shadowy, mode="reverse", wrt=(0, 1, 2)).source
    params = [a.arg for a in body_of(source).args.args]
    assert params[:3] == ["x", "dx", "g"] and len(set(params)) == len(params)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_user_names_never_shadow_the_helpers_generated_code_calls(mode, backend):
    """``unindex = y[1:]`` in the user's code used to shadow the helper ``unindex`` that the
    derivative calls ('numpy.float64' object is not callable)."""
    args = [np.linspace(0.1, 0.9, 5), 1.5]
    got = s2sgrad.grad(hygiene.named_like_helpers, mode=mode, backend=backend)(*args)
    assert_close(got, jax.grad(jnp_twin(hygiene.named_like_helpers))(*args))
    assert_close(
        s2sgrad.hessian(hygiene.named_like_helpers)(*args),
        jax.hessian(jnp_twin(hygiene.named_like_helpers))(*args),
    )


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_user_names_never_shadow_the_modules_own_functions(mode, backend):
    """A local ``_helper_vjp`` beside a call of ``_helper`` used to shadow the derivative
    function of that name (UnboundLocalError, or a tracer called as a function)."""
    fn, x = hygiene.named_like_derivatives, np.linspace(0.1, 1.0, 4)
    got = s2sgrad.grad(fn, mode=mode, backend=backend)(x)
    assert_close(got, jax.grad(jnp_twin(fn))(x))
    assert_close(s2sgrad.hessian(fn, backend=backend)(x), jax.hessian(jnp_twin(fn))(x))


def test_no_unbroadcast_where_shapes_provably_match():
    for mode in ("reverse", "forward"):
        source = pipeline.generate(hygiene.elementwise_one_input, mode=mode, wrt=(0,)).source
        assert "unbroadcast" not in source and "broadcast_like" not in source, source
    source = pipeline.generate(straight_line.mlp_loss, mode="reverse", wrt=(0,)).source
    assert "dt4 = dout / t6" in source or "unbroadcast(dout" not in source, source


def test_defaults_are_not_restated():
    source = pipeline.generate(straight_line.reductions, mode="forward", wrt=(0,)).source
    assert "keepdims=False" not in source and "axis=None" not in source, source


def test_golden_reverse_code_for_the_readme_example():
    """Pins the shape of the flagship output. Refresh: S2SGRAD_REFRESH_GOLDEN=1 pytest ..."""
    source = pipeline.generate(straight_line.mlp_loss, mode="reverse", wrt=(0, 1)).source
    code = source.split('"""', 2)[-1]  # skip the header, which names this machine's path
    path = GOLDEN / "mlp_loss_reverse.py.txt"
    if os.environ.get("S2SGRAD_REFRESH_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(code)
    assert code == path.read_text(), "generated code changed; refresh the golden file if intended"


def test_loop_invariants_are_computed_once_and_never_recorded():
    import importlib.util

    path = Path(__file__).parent.parent / "examples" / "ode_sensitivity.py"
    spec = importlib.util.spec_from_file_location("ode_sensitivity_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = pipeline.generate(module.loss, mode="reverse", wrt=(0,)).source
    loop_at = source.index("for _ in loop_range:")
    assert source.index("0.5 * dt") < loop_at, source
    assert source.index("dt / 6.0") < loop_at, source
    # the recorded values are the ones the backward sweep reads, never dt's invariants
    hoisted = [
        ln.split("=")[0].strip()
        for ln in source[:loop_at].splitlines()
        if "* dt" in ln or "dt /" in ln
    ]
    for name in hoisted:
        assert f"{name}_stack" not in source, name


def _scaled_power(a, x, n):
    y = x
    for _ in range(n):
        y = y * a
    return np.sum(y)


def test_derivative_source_is_the_module_a_call_runs():
    """With example arguments, the text is the code that runs for them: a Python float
    `a` gets `np.sum` where a column `a`, whose length-1 axis broadcasts, gets
    `unbroadcast`, and each text, executed, gives jax's gradient."""
    x = np.array([0.5, -1.0, 2.0])
    for a in (1.5, np.array([[1.5], [0.5], [-0.5]])):
        text = s2sgrad.derivative_source(_scaled_power, a, x, 3)
        assert ("unbroadcast" in text) == (np.ndim(a) > 0), text
        namespace: dict = {}
        exec(compile(text, "<derivative>", "exec"), namespace)
        vjp = namespace[namespace["__s2sgrad_entry__"]]
        value, (da,) = vjp(a, x, 3, 1.0)
        assert_close(value, _scaled_power(a, x, 3))
        want = jax.grad(jnp_twin(_scaled_power))(a if np.ndim(a) else float(a), x, 3)
        assert_close(np.asarray(da), np.asarray(want))
    forward = s2sgrad.derivative_source(_scaled_power, mode="forward")
    assert "def _scaled_power_jvp(" in forward


def test_the_compiler_pauses_garbage_collection_and_gives_it_back():
    """Compiling turns Python's automatic collection off (it made long functions compile
    in superlinear time) and back on after, unless the user had turned it off."""
    import gc

    seen = []
    original = pipeline._generate

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return original(*args, **kwargs)

    assert gc.isenabled()
    pipeline._generate = spy
    try:
        pipeline.generate(straight_line.mlp_loss, mode="reverse", wrt=(0,))
        assert seen == [False] and gc.isenabled()
        gc.disable()
        pipeline.generate(straight_line.mlp_loss, mode="forward", wrt=(0,))
        assert seen == [False, False] and not gc.isenabled()
    finally:
        gc.enable()
        pipeline._generate = original


def test_source_lines_are_counted_as_python_counts_them(tmp_path):
    """Statement positions come from Python's parser (frontend._Positions): a string
    holding characters str.splitlines breaks at (U+2028, form feed) must not shift the
    lines and columns the comments and errors name."""
    import importlib.util

    path = tmp_path / "separators.py"
    path.write_text(
        "import numpy as np\n\n\ndef f(x):\n"
        '    s = "a\u2028b\x0cc"\n'
        "    y = np.sin(x) * 2.0  # é\n"
        "    return np.sum(y)\n",
        encoding="utf-8",
    )
    spec = importlib.util.spec_from_file_location("separators", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from s2sgrad.frontend import parse_function

    assign_y = parse_function(module.f).body[1]
    assert (assign_y.loc.line, assign_y.loc.col) == (6, 4)
    source = pipeline.generate(module.f, mode="reverse", wrt=(0,)).source
    assert "# line 6: y = np.sin(x) * 2.0 # é" in source, source
    x = np.array([0.3, -1.2])
    assert_close(s2sgrad.grad(module.f)(x), 2.0 * np.cos(x))


def test_wide_characters_count_twice_in_a_line_as_black_counts_them(tmp_path):
    """A line of 70 characters holding 50 CJK ones is 120 columns wide for black, which
    wraps it; the printer must lay it out the same (it sends such a line to black)."""
    import importlib.util

    path = tmp_path / "wide.py"
    path.write_text(
        "import numpy as np\n\n\ndef f(x):\n"
        f'    n = len("{"漢" * 50}")\n'
        "    return np.sum(x * n)\n",
        encoding="utf-8",
    )
    spec = importlib.util.spec_from_file_location("wide", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = pipeline.lowered_source(module.f)
    assert black.format_str(source, mode=black.Mode(line_length=100)) == source
    assert "n = len(\n" in source, source


# A user's names that runtime helpers also have: globals bound at load time (the generated
# module imports those helpers under other names), a parameter and a local (renamed).
stand_in = 0.5
unbroadcast = 2.0


def helper_named_names(cross, c):
    scaled = cross * c
    unreduce = scaled + np.cross(cross, scaled)
    per_row = np.sum(unreduce**2, axis=1, keepdims=True)
    return np.sum(per_row * c) * stand_in + unbroadcast * np.sum(c**2)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_a_users_names_do_not_hide_the_runtime_helpers(backend):
    from oracles import assert_close, jnp_twin

    rng = np.random.default_rng(7)
    p, c = rng.normal(size=(700, 3)), rng.normal(size=(700, 1))  # large enough for stand-ins
    source = s2sgrad.derivative_source(helper_named_names, p, c, wrt=(0, 1), backend=backend)
    assert "unbroadcast as unbroadcast_" in source
    if backend == "numpy":  # (stand-ins are NumPy code's)
        assert "stand_in as stand_in_" in source
    twin = jnp_twin(helper_named_names)
    got = s2sgrad.grad(helper_named_names, wrt=(0, 1), backend=backend)(p, c)
    for g, w in zip(got, jax.grad(twin, argnums=(0, 1))(p, c)):
        assert_close(g, w)
    small = (p[:3], c[:3])
    assert_close(
        s2sgrad.hessian(helper_named_names, backend=backend)(*small), jax.hessian(twin)(*small)
    )
