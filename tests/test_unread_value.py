"""``grad`` on NumPy leaves out the work only its discarded value needs, where the compiler
proves that value a real scalar (``transforms.unread_value``); everywhere else the value is
computed and checked as before. Every gradient is checked against ``jax.grad``."""

from __future__ import annotations

import linecache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad import api, cache
from s2sgrad.errors import UsageError
from tests.oracles import assert_close, jnp_twin
from tests.programs import unread_value as uv

RNG = np.random.default_rng(7)
X = 1.0 + 0.5 * RNG.standard_normal(6)
CASES = {
    "chained_squares": (uv.chained_squares, (X,), 0),
    "mean_square_error": (
        uv.mean_square_error,
        (RNG.standard_normal(3), RNG.standard_normal((5, 3)), RNG.standard_normal(5)),
        0,
    ),
    "scaled_by_scalar": (uv.scaled_by_scalar, (X[:3], 0.7), (0, 1)),
    "value_after_branch": (uv.value_after_branch, (X,), 0),
    "value_after_branch_other_arm": (uv.value_after_branch, (-X,), 0),
    "accumulated_in_loop": (uv.accumulated_in_loop, (X,), 0),
    "through_a_helper": (uv.through_a_helper, (X,), 0),
}


def _grad_module_source(fn, args, wrt) -> str:
    """The module ``grad`` runs for these arguments (the value dropped where it can be)."""
    wrt = wrt if isinstance(wrt, tuple) else (wrt,)
    options = api._options(args, False, "reverse", value_unread=True)
    entry = cache.load_or_generate(fn, "reverse", wrt, "numpy", options)
    return "".join(linecache.getlines(entry.__code__.co_filename))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_without_the_value_match_jax(name, dtype):
    fn, args, wrt = CASES[name]
    args = tuple(a.astype(dtype) if isinstance(a, np.ndarray) else a for a in args)
    got = s2sgrad.grad(fn, wrt=wrt)(*args)
    expected = jax.grad(jnp_twin(fn), argnums=wrt)(*args)
    assert_close(got, expected, rtol=1e-4 if dtype == np.float32 else 1e-6, what=name)
    value, again = s2sgrad.value_and_grad(fn, wrt=wrt)(*args)
    assert_close(again, got, rtol=1e-5 if dtype == np.float32 else 1e-12, what=name)
    np.testing.assert_allclose(value, fn(*args), rtol=1e-6)


def test_an_unread_value_is_not_computed():
    source = _grad_module_source(uv.chained_squares, (X,), 0)
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    assert "return None, (dx,)" in code
    assert "np.sum(" not in code  # the final reduction, and the squares only it read
    assert code.count("**2") == 1  # x[:-1] ** 2, which the backward sweep reads
    # value_and_grad (and vjp) keep it:
    vjp_source = s2sgrad.derivative_source(uv.chained_squares, X)
    assert "out = np.sum(" in vjp_source and "return out, (dx,)" in vjp_source


def test_a_user_functions_body_is_looked_into():
    source = _grad_module_source(uv.through_a_helper, (X,), 0)
    assert "return None, (dx,)" in source and "helper_residual_fwd(x)" in source


@pytest.mark.parametrize(
    "name, fn, args",
    [
        ("a complex global", uv.with_complex_global, (X[:3],)),
        ("a user function with a complex global", uv.through_a_complex_helper, (X[:3],)),
        ("a value that is not provably a scalar", uv.returns_an_array, (X,)),
    ],
)
def test_the_value_is_computed_where_it_is_not_provably_a_real_scalar(name, fn, args):
    source = _grad_module_source(fn, args, 0)
    assert "return None," not in source, name
    assert "return out," in source, name


def test_the_checks_on_the_value_still_hold():
    with pytest.raises(UsageError, match="computes with complex numbers"):
        s2sgrad.grad(uv.with_complex_global)(X[:3])
    with pytest.raises(UsageError, match="computes with complex numbers"):
        s2sgrad.grad(uv.complex_linear)(X[:3])  # its gradient alone is real
    with pytest.raises(UsageError, match="computes with complex numbers"):
        s2sgrad.grad(uv.complex_from_a_callable_object)(X[:3])  # np.vectorize: not NumPy's own
    with pytest.raises(UsageError, match="return a scalar, but it returned an array"):
        s2sgrad.grad(uv.returns_an_array)(X)


def test_jax_keeps_one_module_for_grad_and_value_and_grad():
    """XLA removes dead work itself: the JAX backend asks for no value-less module."""
    d = s2sgrad.grad(uv.chained_squares, backend="jax").__s2sgrad__
    assert ("value_unread", True) not in api._options((X,), False, "reverse", False)
    got = s2sgrad.grad(uv.chained_squares, backend="jax")(X)
    assert_close(got, jax.grad(jnp_twin(uv.chained_squares))(X))
    assert d.finish.keep_value is False


def test_grad_without_its_value_composes():
    """The value-less module serves direct ``grad`` calls; compositions (Hessians, ``grad``
    inside a differentiated function) read back a module of their own, and agree with JAX."""
    inner = jax.grad(jnp_twin(uv.chained_squares))
    assert_close(
        s2sgrad.hessian(uv.chained_squares)(X), jax.hessian(jnp_twin(uv.chained_squares))(X)
    )
    expected = jax.grad(lambda x: jnp.sum(inner(x) ** 2))(X)
    for mode in ("reverse", "forward"):
        got = s2sgrad.grad(uv.squared_gradient_norm, mode=mode)(X)
        assert_close(got, expected, rtol=1e-8, what=mode)
    np.testing.assert_allclose(uv.squared_gradient_norm(X), np.sum(inner(X) ** 2), rtol=1e-12)
