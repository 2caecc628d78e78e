"""A function under a user's decorator is differentiated as it runs: through the wrapper.

``functools.wraps`` sets ``__wrapped__``, and the compiler used to follow it and
differentiate the undecorated function: value and gradient silently ignored what
the decorator does. Now the wrapper is what is compiled (its closure holds the
decorated function), including ``(*args, **kwargs)`` forwarding, with the
signature of what runs; wrappers s2sgrad cannot follow are refused, naming the
decorator's wrapper and where it is defined. The oracle is float64 central
differences of the decorated function itself.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import s2sgrad
from s2sgrad.errors import UnsupportedSyntaxError, UsageError
from tests.oracles import assert_close, central_difference_grad, central_difference_jvp
from tests.programs import decorated, decorator_lib

X = np.array([0.3, -1.2, 2.0])
W = np.array([1.5, 2.0, -0.5])

# name -> (args, wrt, kwargs)
CASES = {
    "sin_sum": ((X,), 0, {}),
    "sin_sum_other_module": ((X,), 0, {}),
    "weighted": ((X, W), (0, 1), {"power": 3.0}),
    "cubic": ((X, W), "y", {}),
    "weight_fixed": ((X,), 0, {}),
    "renamed": ((X,), 0, {}),
    # Their global SCALE must not be read from the wrapper's cell named SCALE:
    "reads_scale": ((X,), 0, {}),
    "reads_scale_same_module": ((X,), 0, {}),
}


def expected(fn, args, wrt, kwargs):
    def call(*a):
        return fn(*a, **kwargs)

    params = list(inspect.signature(fn).parameters)
    items = wrt if isinstance(wrt, tuple) else (wrt,)
    indices = [params.index(i) if isinstance(i, str) else i for i in items]
    grads = tuple(central_difference_grad(call, list(args), i) for i in indices)
    return call(*args), grads if isinstance(wrt, tuple) else grads[0]


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", list(CASES))
def test_value_and_grad_go_through_the_wrapper(name, mode, backend):
    fn = getattr(decorated, name)
    args, wrt, kwargs = CASES[name]
    value, gradient = s2sgrad.value_and_grad(fn, wrt=wrt, mode=mode, backend=backend)(
        *args, **kwargs
    )
    want_value, want_gradient = expected(fn, args, wrt, kwargs)
    assert_close(np.asarray(value), np.asarray(want_value), rtol=1e-9)
    assert_close(
        tuple(np.asarray(g) for g in gradient) if isinstance(wrt, tuple) else np.asarray(gradient),
        want_gradient,
        rtol=1e-6,
    )


def test_the_wrapper_is_what_runs_not_the_decorated_function():
    # The reproducer: `return fn(x) * 10` must scale the gradient and the value.
    undecorated = decorated.sin_sum.__wrapped__
    value, gradient = s2sgrad.value_and_grad(decorated.sin_sum)(X)
    assert_close(value, 10.0 * undecorated(X))
    assert_close(gradient, 10.0 * central_difference_grad(undecorated, [X], 0), rtol=1e-6)


def test_decorated_function_reads_its_own_globals_and_the_wrapper_its_own():
    # decorated.SCALE is 2, decorator_lib.SCALE is 1000: each function sees its module's.
    value, gradient = s2sgrad.value_and_grad(decorated.cubic, wrt=(0, 1))(X, W)
    assert_close(value, decorated.cubic(X, W))
    assert_close(gradient[1], 3.0 * 2.0 * X**3)


@pytest.mark.parametrize("name", ["cubic"])
def test_jvp_and_vjp_go_through_the_wrapper(name):
    fn = getattr(decorated, name)
    t = (np.array([0.2, 0.1, -0.4]), np.array([1.0, -2.0, 0.5]))
    out, tangent = s2sgrad.jvp(fn, (X, W), t)
    assert_close(out, fn(X, W))
    assert_close(tangent, central_difference_jvp(fn, [X, W], list(t)), rtol=1e-6)
    out, vjp_fn = s2sgrad.vjp(fn, X, W)
    assert_close(out, fn(X, W))
    cotangents = vjp_fn(1.0)
    for i in range(2):
        assert_close(cotangents[i], central_difference_grad(fn, [X, W], i), rtol=1e-6)


def test_wrt_names_and_indices_follow_the_signature_of_what_runs():
    # The wrapper takes (x): wrt names the wrapper's parameter, not the wrapped (x, w).
    gradient = s2sgrad.grad(decorated.weight_fixed, wrt="x")(X)
    assert_close(gradient, central_difference_grad(decorated.weight_fixed, [X], 0), rtol=1e-6)
    with pytest.raises(UsageError, match="no parameter named 'w'"):
        s2sgrad.grad(decorated.weight_fixed, wrt="w")
    # A forwarding wrapper takes the wrapped function's parameters, keyword-only included.
    gradient = s2sgrad.grad(decorated.weighted, wrt="w")(X, W, power=3.0)
    assert_close(gradient, 10.0 * X**3)


def _wrapper_where(decorator) -> str:
    code = decorator(lambda x: x).__code__
    qualname = getattr(code, "co_qualname", code.co_name)  # Python 3.10: no co_qualname
    return f"{qualname} ({code.co_filename}:{code.co_firstlineno})"


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize(
    "name,decorator,words",
    [
        ("uses_args", decorator_lib.inspects_args, "using `args` other than to forward it"),
        ("mixed_forwarding", decorator_lib.squares_input, "*args in the wrapper of a decorator"),
    ],
)
def test_wrappers_that_do_more_than_forward_are_refused_naming_the_decorator(
    name, decorator, words, mode
):
    with pytest.raises(UnsupportedSyntaxError) as info:
        s2sgrad.grad(getattr(decorated, name), mode=mode)(X)
    message = str(info.value)
    assert "decorator_lib.py:" in message.splitlines()[0], message
    assert words in message, message
    assert _wrapper_where(decorator) in message, message
    assert "hint:" in message, message


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_calling_a_decorated_function_is_refused_naming_the_decorator(mode):
    with pytest.raises(UsageError) as info:
        s2sgrad.grad(decorated.calls_decorated, mode=mode)(X)
    message = str(info.value)
    assert "sin_sum is decorated" in message, message
    assert "local_times_ten.<locals>.wrapper" in message, message
    assert "decorated.py:" in message.splitlines()[0], message
    assert "hint:" in message, message


def test_stacked_decorators_are_refused_naming_the_inner_wrapper():
    with pytest.raises(UsageError) as info:
        s2sgrad.grad(decorated.stacked)(X)
    assert "scaled_by.<locals>.decorate.<locals>.wrapper" in str(info.value)


def test_inspect_of_a_decorated_function_shows_the_wrapper(capsys):
    from s2sgrad.cli import main

    path = inspect.getsourcefile(decorated)
    assert main(["inspect", f"{path}:sin_sum", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "10.0" in out  # the wrapper's factor is in the derivative
