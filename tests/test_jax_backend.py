"""The JAX backend: the control-flow corpus on it, rolled loops, reverse mode through
``while`` under ``jax.jit``, loop bounds, composition with jit/vmap, and the CLI.

Every corpus program runs in both modes with ``backend="jax"`` and is compared
with the same independent oracles as on NumPy (jax.grad of the jnp twin,
autograd, central differences), not with s2sgrad's NumPy backend.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad import LoopBoundExceeded, cache
from tests.oracles import assert_close, central_difference_grad, jnp_twin
from tests.programs import control_flow as cf
from tests.test_control_flow import FD_ATOL, FD_RTOL, NAMES, references


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", NAMES)
def test_corpus_on_jax(name, mode):
    fn = getattr(cf, name)
    args = cf.make_args(name)
    got = s2sgrad.grad(fn, wrt=cf.float_positions(name), mode=mode, backend="jax")(*args)
    assert all(isinstance(g, jax.Array) for g in got)
    got = tuple(np.asarray(g) for g in got)
    for oracle, want in references(name).items():
        if oracle == "finite differences":
            assert_close(got, want, rtol=FD_RTOL, atol=FD_ATOL, what=f"{name} {mode} jax vs FD")
        else:
            assert_close(got, want, what=f"{name} {mode} jax vs {oracle}")


# --------------------------------------------------------------------------- rolled loops


def damped(x, n):
    for _ in range(n):
        x = x * 0.999 + 0.01 * np.sin(x)
    return np.sum(x**2)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_loops_are_rolled(mode):
    """The jaxpr of the gradient does not grow with the trip count: no unrolling."""
    x = np.linspace(0.1, 1.0, 3)
    entry = cache.load_or_generate(damped, mode, (0,), "jax")
    extra = (1.0,) if mode == "reverse" else (np.ones(3),)

    def size(n):
        return _equations(jax.make_jaxpr(entry, static_argnums=1)(x, n, *extra).jaxpr)

    assert size(10) == size(10_000)
    assert "scan" in str(jax.make_jaxpr(entry, static_argnums=1)(x, 10, *extra))


def _equations(jaxpr) -> int:
    """Equations of a jaxpr, those of the jaxprs nested in it (loop bodies) included."""
    total = 0
    for eqn in jaxpr.eqns:
        total += 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None and hasattr(inner, "eqns"):
                    total += _equations(inner)
    return total


def damped_twin(x, n):
    """``damped`` written for JAX by hand: the oracle for its derivatives."""
    return jnp.sum(jax.lax.fori_loop(0, n, lambda i, x: x * 0.999 + 0.01 * jnp.sin(x), x) ** 2)


def test_ten_thousand_steps_match_jax():
    x = np.linspace(0.1, 1.0, 3)
    got = s2sgrad.grad(damped, backend="jax")(x, 10_000)
    assert_close(np.asarray(got), np.asarray(jax.grad(damped_twin)(x, 10_000)), what="10k steps")


# --------------------------------------------------------------------------- while


def babylonian_sqrt(a, tol):
    """Heron's iteration to tolerance: a data-dependent trip count."""
    x = a
    while np.abs(x * x - a) > tol * a:
        x = 0.5 * (x + a / x)
    return x


def cube_root_energy(a):
    return babylonian_sqrt(a, 1e-13) ** 3


def test_reverse_through_while_under_jit():
    """jax.grad refuses lax.while_loop; s2sgrad's reverse mode runs through it, jitted."""
    g = jax.jit(s2sgrad.grad(cube_root_energy, backend="jax"))
    for a in (0.5, 2.0, 40.0):
        assert_close(float(g(a)), 1.5 * np.sqrt(a), rtol=1e-9, what=f"d(a**1.5)/da at {a}")


def spiral(x, limit):
    n = 0
    while n < limit:
        x = x + 0.001 * np.cos(x)
        n = n + 1
    return x


def test_while_bound_doubles_automatically():
    got = float(s2sgrad.grad(spiral, backend="jax")(0.3, 3000))
    want = central_difference_grad(spiral, (0.3, 3000), 0)
    assert_close(got, want, rtol=1e-6, what="3000-step while grad")


def test_explicit_bound_is_enforced():
    with pytest.raises(LoopBoundExceeded, match="max_steps=100"):
        s2sgrad.grad(spiral, backend="jax", max_steps=100)(0.3, 3000)
    got = float(s2sgrad.grad(spiral, backend="jax", max_steps=4000)(0.3, 3000))
    assert_close(got, central_difference_grad(spiral, (0.3, 3000), 0), rtol=1e-6, what="bound")


def test_composes_with_vmap_and_jit():
    a = np.array([0.5, 2.0, 9.0])
    per_a = jax.vmap(s2sgrad.grad(cube_root_energy, backend="jax"))(a)
    assert_close(np.asarray(per_a), 1.5 * np.sqrt(a), rtol=1e-9, what="vmap of while grad")
    x = np.linspace(0.1, 1.0, 3)
    jitted = jax.jit(s2sgrad.grad(damped, backend="jax"), static_argnums=1)
    assert_close(
        np.asarray(jitted(x, 50)), np.asarray(jax.grad(damped_twin)(x, 50)), what="jit of grad"
    )


def test_value_and_grad_jvp_vjp_on_jax():
    x = np.linspace(0.1, 1.0, 3)
    want = np.asarray(jax.grad(damped_twin)(x, 20))
    value, grad = s2sgrad.value_and_grad(damped, backend="jax")(x, 20)
    assert_close(float(value), damped(x, 20), what="value")
    assert_close(np.asarray(grad), want, what="value_and_grad")
    t = np.array([1.0, -2.0, 0.5])
    _, want_tangent = jax.jvp(lambda x: damped_twin(x, 20), (x,), (t,))
    out, tangent = s2sgrad.jvp(damped, (x, 20), (t, 0), backend="jax")
    assert_close(float(tangent), float(want_tangent), what="jvp")
    out, vjp_fn = s2sgrad.vjp(damped, x, 20, backend="jax")
    assert_close(float(out), damped(x, 20), what="vjp value")
    assert_close(np.asarray(vjp_fn(2.0)[0]), 2 * want, what="vjp")


def test_unknown_backend_is_a_usage_error():
    with pytest.raises(s2sgrad.UsageError, match="backend"):
        s2sgrad.grad(damped, backend="torch")


def rounded_count(x):
    k = int(np.floor(x[0] * 3))
    return np.sum(x[:k] ** 2)


def masked_norm(x):
    # np.linalg.norm is not a reduction the masked lowering knows (tests/test_jax_masked.py)
    return np.linalg.norm(x[x > 0.5])


@pytest.mark.parametrize("fun, line", [(rounded_count, "k = int("), (masked_norm, "x[x > 0.5]")])
def test_traced_value_error_names_the_line(fun, line):
    """JAX's concretization errors under jit are re-told at the user's line, with a way out."""
    with pytest.raises(s2sgrad.NeedsConcreteValueError) as info:
        s2sgrad.grad(fun, backend="jax")(np.array([0.6, 0.2, 0.9]))
    message = str(info.value)
    assert "test_jax_backend.py:" in message and line in message
    assert "backend='numpy'" in message


def first_is_special(x, n):
    prev = None
    s = 0.0
    for i in range(n):
        if prev is None:
            s = s + 10.0 * x[i]
        else:
            s = s + prev * x[i]
        prev = np.sin(x[i])
    return s + np.sum(x)


def first_is_special_while(x):
    prev = None
    s = 0.0
    k = 0
    while k < 3 and s < 100.0:
        s = s + (10.0 * x[k] if prev is None else prev * x[k])
        prev = np.cos(x[k])
        k = k + 1
    return s


def none_unless_the_loop_runs(x, n):
    c = None
    for _ in range(n):
        c = 2.0
    if c is None:
        return np.sum(x**2)
    return np.sum(x)


def none_on_one_branch(x):
    if np.sum(x) > 0:
        c = None
    else:
        c = 2.0
    if c is None:
        return np.sum(x**2)
    return np.sum(x)


def none_after_a_continue(x, n):
    prev = 1.0
    s = 0.0
    for i in range(n):
        if prev is None:
            s = s + 10.0 * x[i]
        else:
            s = s + prev * x[i]
        if x[i] > 0.5:
            prev = None
            continue
        prev = np.sin(x[i])
    return s


def first_is_special_given(x, n, prev=None):
    s = 0.0
    for i in range(n):
        if prev is None:
            s = s + 10.0 * x[i]
        else:
            s = s + prev * x[i]
        prev = np.sin(x[i])
    return s + np.sum(x)


def set_before_read(x, n):
    prev = None
    s = 0.0
    for i in range(n):
        prev = np.sin(x[i])
        s = s + prev * x[i]
    return s


X4 = np.array([0.8, -0.1, -0.5, -0.3])


@pytest.mark.parametrize(
    "fun, args, line",
    [
        (first_is_special, (X4, 3), "if prev is None:"),
        (first_is_special_while, (X4,), "if prev is None else"),
        (none_unless_the_loop_runs, (X4, 0), "if c is None:"),
        (none_on_one_branch, (X4,), "if c is None:"),
        (none_after_a_continue, (np.array([0.8, -0.1, 0.6, 0.2]), 4), "if prev is None:"),
        (first_is_special_given, (X4, 3), "for i in range(n):"),  # None comes as an argument
        (first_is_special_given, (X4, 3, None), "for i in range(n):"),
    ],
)
def test_an_is_none_test_jax_cannot_answer_is_refused_at_its_line(fun, args, line):
    """JAX runs each loop and traced branch with one type per variable, None being zeros
    (or another path's constant): ``prev is None`` was False in the first iteration and
    the gradient silently wrong (1 where 11 is right). A test of a variable that may be
    None or a value is refused at its line (``backends.jax.none_tests``); a None that comes
    in as an argument is caught when the loop is traced (``backends.jax.control``), at the loop.
    The NumPy backend runs them all, checked against central differences."""
    for derivative in (s2sgrad.grad, s2sgrad.value_and_grad):
        with pytest.raises(s2sgrad.UnsupportedSyntaxError) as info:
            derivative(fun, backend="jax")(*args)
        message = str(info.value)
        assert "test_jax_backend.py:" in message and line in message
        assert ("`prev`" in message or "`c`" in message) and "backend='numpy'" in message
    with pytest.raises(s2sgrad.UnsupportedSyntaxError, match="`prev`|`c`"):
        s2sgrad.jvp(fun, args, (np.ones_like(args[0]),) + args[1:], backend="jax")
    expected = central_difference_grad(fun, args, 0)
    assert_close(s2sgrad.grad(fun)(*args), expected, rtol=FD_RTOL, atol=FD_ATOL)


def test_an_is_none_test_jax_answers_at_trace_time_runs_on_jax():
    """A None argument tested before any loop, or a value given for it, is known when
    JAX traces: no refusal, and the gradient of the path taken (jax.grad oracle)."""

    def twin(x, prev):
        s = 0.0
        for i in range(3):
            s = s + (10.0 * x[i] if prev is None else prev * x[i])
            prev = jnp.sin(x[i])
        return s + jnp.sum(x)

    expected = jax.grad(twin)(jnp.asarray(X4), 1.5)
    got = s2sgrad.grad(first_is_special_given, backend="jax")(X4, 3, 1.5)
    assert_close(got, expected)


def test_none_before_a_loop_that_sets_it_before_reading_runs_on_jax():
    """``prev = None`` before a loop is fine when the loop never tests it: the check that
    refuses ``is None`` tests must not refuse this."""
    expected = jax.grad(lambda x: sum(jnp.sin(x[i]) * x[i] for i in range(3)))(jnp.asarray(X4))
    assert_close(s2sgrad.grad(set_before_read, backend="jax")(X4, 3), expected)


def rounds_toward_zero(x):
    y = np.sin(x)
    return np.sum(np.fix(y * 3.0) + y)


def test_a_function_jax_lacks_is_refused_at_its_line():
    """``np.fix`` has no jax.numpy twin: the error names the user's file and line (it
    named neither), and offers the NumPy backend."""
    from s2sgrad.codegen import NoJaxEquivalentError

    with pytest.raises(NoJaxEquivalentError) as info:
        s2sgrad.grad(rounds_toward_zero, backend="jax")(np.ones(3))
    message = str(info.value)
    assert "test_jax_backend.py:" in message and "np.fix(y * 3.0)" in message
    assert "backend='numpy'" in message


def test_without_x64_derivatives_are_float32_as_jax_gives_them(tmp_path):
    """JAX's default (``jax_enable_x64`` off): a float64 NumPy input gets a float32 gradient,
    as from ``jax.grad``, and no warning. s2sgrad asked JAX for float64 (the input's dtype):
    every call warned that the request was truncated."""
    (tmp_path / "energy.py").write_text(
        "import numpy as np\n\n\ndef f(x):\n    return np.sum(np.sin(x) * x)\n"
    )
    code = (
        "import jax, numpy as np, s2sgrad, energy\n"
        "x = np.linspace(0.1, 1.0, 3)\n"
        "want = jax.grad(lambda x: jax.numpy.sum(jax.numpy.sin(x) * x))(x)\n"
        "got = s2sgrad.grad(energy.f, backend='jax')(x)\n"
        "_, tangent = s2sgrad.jvp(energy.f, (x,), (np.ones(3),), backend='jax')\n"
        "_, vjp_fn = s2sgrad.vjp(energy.f, x, backend='jax')\n"
        "(ct,) = vjp_fn(np.float32(1.0))\n"
        "assert want.dtype == got.dtype == ct.dtype == 'float32', (want.dtype, got.dtype)\n"
        "assert np.allclose(got, want, rtol=1e-5) and np.allclose(ct, want, rtol=1e-5)\n"
        "assert tangent.dtype == 'float32'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, cwd=tmp_path, env=env)


def test_numpy_backend_never_imports_jax(tmp_path):
    """JAX takes seconds to import: a NumPy-backend user must not pay for it."""
    (tmp_path / "energy.py").write_text(
        "import numpy as np\n\n\ndef f(x):\n    return np.sum(np.sin(x) ** 2)\n"
    )
    code = (
        "import sys, numpy as np, s2sgrad, energy\n"
        "s2sgrad.grad(energy.f)(np.ones(3))\n"
        "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_jax_control_exports_exist():
    from s2sgrad.backends.jax import control as jax_control

    missing = [n for n in jax_control.__all__ if not hasattr(jax_control, n)]
    assert not missing


# --------------------------------------------------------------------------- inspect


def test_inspect_prints_jax_code(tmp_path):
    src = tmp_path / "solver.py"
    src.write_text(
        "import numpy as np\n\n\n"
        "def f(x, n):\n"
        "    s = 0.0\n"
        "    for i in range(n):\n"
        "        s = s + np.sin(x * i)\n"
        "    while s > 1.0:\n"
        "        s = np.sqrt(s) - 0.5\n"  # its adjoint reads s: the loop records it
        "    return s\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "s2sgrad", "inspect", f"{src}:f", "--backend", "jax"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "import jax.numpy as jnp" in out
    code = "\n".join(line for line in out.splitlines() if not line.lstrip().startswith("#"))
    assert "jnp.sin" in code and "np.sin(" not in code.replace("jnp.sin(", "")
    assert "for_loop_recording(" in out and "replay(" in out and "while_recording(" in out
    assert "# line 7: s = s + np.sin(x * i)" in out
    compile(out, "generated", "exec")


def grows(c, x):
    for _ in range(3):
        c = c * np.sin(x) + x
    return np.sum(c**2)


def grows_in_a_branch(c, x):
    if np.sum(x) > 0.0:
        c = c * x
    return np.sum(c**2)


@pytest.mark.parametrize("fn", [grows, grows_in_a_branch])
def test_an_array_whose_shape_a_loop_or_branch_changes_is_refused(fn):
    """JAX carries one shape per variable. ``c`` of shape (1,) that the body makes (3,) was
    broadcast on entry (or at the join of the branches): then ``np.sum(c**2)`` on the
    path that leaves ``c`` alone summed three copies, and its cotangent came back with
    shape (3,). Refused, naming the variable; NumPy, where shapes are per value, agrees
    with jax.grad of the twin."""
    c, x = np.array([0.7]), np.array([-0.3, 0.5, -1.2])
    with pytest.raises(
        TypeError,
        match=r"shape \(1,\) on one path has shape \(3,\)|shape \(3,\) on one path has shape \(1,\)",
    ) as refused:
        s2sgrad.value_and_grad(fn, wrt=(0, 1), backend="jax")(c, x)
    assert "hint: give it its final shape before the loop or branch" in str(refused.value)
    if fn is grows:
        assert "variable 'c'" in str(refused.value)
    want = jax.grad(jnp_twin(fn), argnums=(0, 1))(c, x)
    assert_close(s2sgrad.grad(fn, wrt=(0, 1))(c, x), want)
    # Given its shape first, it runs on JAX.
    c3 = np.broadcast_to(c, x.shape) * 1.0
    want = jax.grad(jnp_twin(fn), argnums=(0, 1))(c3, x)
    assert_close(s2sgrad.grad(fn, wrt=(0, 1), backend="jax")(c3, x), want)
