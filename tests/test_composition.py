"""Differentiating through a callable s2sgrad produced: where it composes, and where not yet.

``grad(f)`` and ``value_and_grad(f)`` (a ``@s2sgrad.grad``-decorated function too)
compose: passed to ``grad``/``jvp``/``vjp``/``value_and_grad``, or called inside a
function being differentiated, they are differentiated as the derivative code they
run (``tests/test_higher_order.py`` checks Hessians of whole corpora). The compiler
used to look through them to ``f`` (their ``__wrapped__``) and silently return
first-order numbers; every test here checks second-order numbers against JAX.

Still refused, with ``HigherOrderError`` at the user's line: a ``vjp_fn`` or one of
s2sgrad's transformations, passed to the API or called inside. Where the decorated
function itself is wanted (``derivative_source``, ``s2sgrad inspect``) it still is.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad.errors import HigherOrderError
from tests.entry_points import entry_points
from tests.markers import marked_line
from tests.oracles import assert_close, central_difference_grad
from tests.programs import composition

X = np.array([0.5, -1.3, 2.1])

REFUSED_CALLERS = ["calls_vjp_fn", "calls_grad_transformation"]


def _check_message(message: str, where: str) -> None:
    first = message.splitlines()[0]
    assert where in first, message
    assert "higher order" in first and "not supported yet" in first, message
    assert "hint:" in message, message


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", REFUSED_CALLERS)
def test_calling_a_vjp_fn_or_a_transformation_inside_is_refused_at_that_call(name, mode, backend):
    fn = getattr(composition, name)
    with pytest.raises(HigherOrderError) as info:
        s2sgrad.grad(fn, mode=mode, backend=backend)(X)
    _check_message(str(info.value), f"composition.py:{marked_line(fn)}:")


@pytest.mark.parametrize("name", REFUSED_CALLERS)
def test_calling_a_vjp_fn_inside_is_refused_by_jvp_vjp_and_value_and_grad(name):
    fn = getattr(composition, name)
    where = f"composition.py:{marked_line(fn)}:"
    for attempt in (
        lambda: s2sgrad.jvp(fn, (X,), (np.ones(3),)),
        lambda: s2sgrad.vjp(fn, X)[1](1.0),
        lambda: s2sgrad.value_and_grad(fn)(X),
    ):
        with pytest.raises(HigherOrderError) as info:
            attempt()
        _check_message(str(info.value), where)


def _twin(x):
    return jnp.sum(jnp.sin(x) * x**2)


def _expected(name: str) -> np.ndarray:
    """The gradient of each caller, from jax.hessian of the jnp twin of ``f``."""
    hessian = np.asarray(jax.hessian(_twin)(X))
    gradient = np.asarray(jax.grad(_twin)(X))
    ones = np.ones(3)
    return {
        "calls_grad": hessian.T @ ones,
        "calls_forward_grad": hessian.T @ ones,
        "calls_value_and_grad": gradient + hessian.T @ ones,
        "calls_decorated": hessian.T @ ones,
        "calls_through_helper": 2.0 * hessian.T @ ones,
        "inactive_call_of_grad": np.sum(np.asarray(jax.grad(_twin)(ones))) * ones,
    }[name]


CALLERS = [
    "calls_grad",
    "calls_forward_grad",
    "calls_value_and_grad",
    "calls_decorated",
    "calls_through_helper",
    "inactive_call_of_grad",
]


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", CALLERS)
def test_a_derivative_called_inside_a_differentiated_function_is_differentiated(
    name, mode, backend
):
    got = s2sgrad.grad(getattr(composition, name), mode=mode, backend=backend)(X)
    assert_close(np.asarray(got), _expected(name), rtol=1e-6 if backend == "jax" else 1e-12)


def test_jvp_and_vjp_of_a_function_calling_grad():
    v = np.array([0.3, -0.7, 1.1])
    hessian = np.asarray(jax.hessian(_twin)(X))
    _, tangent = s2sgrad.jvp(composition.calls_grad, (X,), (v,))
    assert_close(tangent, np.ones(3) @ hessian @ v, rtol=1e-12)
    _, vjp_fn = s2sgrad.vjp(composition.calls_grad, X)
    assert_close(vjp_fn(2.0)[0], 2.0 * hessian.T @ np.ones(3), rtol=1e-12)


def test_a_fresh_process_loads_the_module_of_a_function_calling_grad(tmp_path):
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent.parent)!r})\n"
        "import numpy as np, s2sgrad\n"
        "from s2sgrad import cache\n"
        "from tests.programs import composition\n"
        "g = s2sgrad.grad(composition.calls_through_helper)(np.array([0.5, -1.3, 2.1]))\n"
        "print(repr(g.tolist()), cache.stats['generated'], cache.stats['loaded'])\n"
    )
    env = {**os.environ, "S2SGRAD_CACHE_DIR": str(tmp_path / "cache")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs[0][:3] == runs[1][:3]  # the same gradient
    assert runs[1][-2] == "0" and int(runs[1][-1]) >= 2  # nothing compiled, modules loaded
    assert_close(np.array(eval(" ".join(runs[1][:3]))), _expected("calls_through_helper"))


REFUSED = {
    "vjp_fn": lambda: composition.vjp_fn,
    "transformation": lambda: s2sgrad.grad,
    "hessian_transformation": lambda: s2sgrad.hessian,
    "hessian": lambda: s2sgrad.hessian(composition.f),
}

API = entry_points(X)


@pytest.mark.parametrize("api", list(API))
@pytest.mark.parametrize("produced", list(REFUSED))
def test_passing_a_derivative_that_does_not_compose_is_refused_at_the_users_line(produced, api):
    fn = REFUSED[produced]()
    with pytest.raises(HigherOrderError) as info:
        API[api](fn)
    message = str(info.value)
    # The location is the user's line that called the API (inside the entry point's lambda).
    line = inspect.getsourcelines(API[api])[1]
    _check_message(message, f"tests/entry_points.py:{line}:")


COMPOSED = {
    "grad": lambda: composition.g,
    "grad_forward": lambda: composition.g_forward,
    "decorated": lambda: composition.decorated,
}


def _twin_gradient(x):
    return jax.grad(lambda x: jnp.sum(jnp.sin(x) * x**2))(x)


@pytest.mark.parametrize("produced", list(COMPOSED))
def test_passing_grad_to_jvp_and_vjp_gives_second_derivatives(produced):
    g = COMPOSED[produced]()
    v = np.array([0.3, -0.7, 1.1])
    hessian = np.asarray(jax.hessian(lambda x: jnp.sum(jnp.sin(x) * x**2))(X))
    value, tangent = s2sgrad.jvp(g, (X,), (v,))
    assert_close(value, np.asarray(_twin_gradient(X)), rtol=1e-12)
    assert_close(tangent, hessian @ v, rtol=1e-12)
    value, vjp_fn = s2sgrad.vjp(g, X)
    assert_close(vjp_fn(v)[0], hessian.T @ v, rtol=1e-12)


@pytest.mark.parametrize("api", ["grad", "grad_forward", "value_and_grad", "jax"])
def test_grad_of_a_vector_valued_gradient_says_so_by_the_derivatives_name(api):
    with pytest.raises(s2sgrad.UsageError) as info:
        API[api](composition.g)
    assert "requires s2sgrad.grad(f) to return a scalar" in str(info.value)


def test_value_and_grad_composes_too():
    v = np.array([0.3, -0.7, 1.1])
    hessian = np.asarray(jax.hessian(lambda x: jnp.sum(jnp.sin(x) * x**2))(X))
    (value, gradient), (dvalue, dgradient) = s2sgrad.jvp(composition.vg, (X,), (v,))
    assert_close(dvalue, np.asarray(_twin_gradient(X)) @ v, rtol=1e-12)
    assert_close(dgradient, hessian @ v, rtol=1e-12)


def test_the_refusal_names_the_derivative_and_what_it_came_from():
    with pytest.raises(HigherOrderError) as info:
        s2sgrad.grad(composition.calls_vjp_fn)(X)
    assert "`vjp_fn` is the vjp_fn that s2sgrad.vjp returned for `f`" in str(info.value)
    with pytest.raises(HigherOrderError) as info:
        s2sgrad.grad(composition.calls_grad_transformation)(X)
    assert "`s2sgrad.grad` is s2sgrad's own `grad` transformation" in str(info.value)


def test_produced_callables_still_compute_first_derivatives():
    expected = central_difference_grad(composition.f, [X], 0)
    assert_close(composition.g(X), expected, rtol=1e-6)
    assert_close(composition.decorated(X), expected, rtol=1e-6)
    value, gradient = composition.vg(X)
    assert_close(gradient, expected, rtol=1e-6)
    assert_close(
        composition.vjp_fn(1.0)[0], central_difference_grad(composition.f, [np.arange(1.0, 4.0)], 0)
    )


def test_derivative_source_of_a_decorated_function_is_its_primals():
    # The decorated function itself is the target here: its derivative, not a higher one.
    source = s2sgrad.derivative_source(composition.decorated)
    assert "def decorated_vjp(" in source and "np.cos" in source
