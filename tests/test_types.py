"""What a user may pass: floating dtypes keep their dtype, integers and booleans cannot be
differentiated, complex numbers are refused (not supported yet) in both modes and backends,
and a non-scalar result of ``grad`` is a UsageError, as in JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad.errors import UnsupportedSyntaxError, UsageError
from tests.oracles import assert_close, central_difference_grad, jnp_twin
from tests.programs import fuzz_found
from tests.programs import types as ty

BACKENDS = ["numpy", "jax"]
MODES = ["reverse", "forward"]
FLOATS = [np.float16, np.float32, np.float64]


def _dtype(x):
    return np.asarray(x).dtype


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.__name__)
def test_gradient_has_the_dtype_of_its_input(dtype, mode, backend):
    x = np.linspace(-1.0, 1.5, 4).astype(dtype)
    got = s2sgrad.grad(ty.sin_square, mode=mode, backend=backend)(x)
    want = jax.grad(jnp_twin(ty.sin_square))(jnp.asarray(x))
    assert _dtype(got) == want.dtype == dtype
    tol = {np.float16: 1e-2, np.float32: 1e-5, np.float64: 1e-9}[dtype]
    assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: d.__name__)
def test_scalar_and_dict_leaves_keep_their_dtypes(dtype, backend):
    params = {"W": np.full((3, 2), 0.3, dtype), "b": np.array([0.1, -0.2])}
    x = np.linspace(-1, 1, 6).reshape(2, 3).astype(dtype)
    got = s2sgrad.grad(ty.mlp, backend=backend)(params, x)
    want = jax.grad(jnp_twin(ty.mlp))(params, x)
    assert {k: _dtype(v) for k, v in got.items()} == {k: v.dtype for k, v in want.items()}
    assert_close(got, want, rtol=1e-2, atol=1e-3)
    scalar = s2sgrad.grad(ty.sin_square, backend=backend)(dtype(0.7))
    assert _dtype(scalar) == jax.grad(jnp_twin(ty.sin_square))(dtype(0.7)).dtype


@pytest.mark.parametrize("backend", BACKENDS)
def test_vjp_and_jvp_results_have_the_dtypes_jax_gives(backend):
    x = np.linspace(-1, 1, 5).astype(np.float32)
    out, vjp_fn = s2sgrad.vjp(ty.elementwise, x, backend=backend)
    (ct,) = vjp_fn(np.ones(5, np.float32))
    _, jax_vjp = jax.vjp(jnp_twin(ty.elementwise), jnp.asarray(x))
    assert _dtype(ct) == jax_vjp(jnp.ones(5, jnp.float32))[0].dtype == np.float32
    assert_close(ct, jax_vjp(jnp.ones(5, jnp.float32))[0], rtol=1e-5)
    _, tangent = s2sgrad.jvp(ty.elementwise, (x,), (np.ones(5, np.float32),), backend=backend)
    _, jax_tangent = jax.jvp(jnp_twin(ty.elementwise), (x,), (jnp.ones(5, jnp.float32),))
    assert _dtype(tangent) == jax_tangent.dtype == np.float32
    assert_close(tangent, jax_tangent, rtol=1e-5)


# --------------------------------------------------------------------------- integers, booleans


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "wrt, n",
    [(1, np.arange(3)), (1, 2), (1, True), (1, np.array([True, False, True])), (0, None)],
    ids=["int-array", "python-int", "python-bool", "bool-array", "int-first"],
)
def test_integer_and_boolean_arguments_in_wrt_are_refused(wrt, n, mode, backend):
    x = np.arange(3) if n is None else np.ones(3)
    n = np.arange(3) if n is None else n
    with pytest.raises(UsageError, match="only floating-point arguments can be differentiated"):
        s2sgrad.grad(ty.scaled, wrt=wrt, mode=mode, backend=backend)(x, n)
    with pytest.raises(TypeError):  # JAX refuses them too
        jax.grad(jnp_twin(ty.scaled), argnums=wrt)(x, n)


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_arguments_outside_wrt_are_constants(backend):
    x = np.linspace(0.5, 1.5, 3)
    got = s2sgrad.grad(ty.scaled, backend=backend)(x, np.arange(3))
    assert_close(got, jax.grad(jnp_twin(ty.scaled))(x, np.arange(3)))


# --------------------------------------------------------------------------- complex


Z = np.array([1.0 + 2.0j, 3.0 - 1.0j])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_complex_arguments_are_refused(mode, backend):
    # s2sgrad gave 2|z|; JAX gives 2 conj(z): refuse rather than return a wrong real number.
    with pytest.raises(UsageError, match="argument 'z' of abs_square is complex.*not there yet"):
        s2sgrad.grad(ty.abs_square, mode=mode, backend=backend)(Z)


@pytest.mark.parametrize("backend", BACKENDS)
def test_complex_arguments_and_tangents_are_refused_by_jvp_and_vjp(backend):
    with pytest.raises(UsageError, match="complex"):
        s2sgrad.jvp(ty.abs_square, (Z,), (Z,), backend=backend)
    with pytest.raises(UsageError, match="tangent of argument 'x' of elementwise is complex"):
        s2sgrad.jvp(ty.elementwise, (np.ones(2),), (np.ones(2) * 1j,), backend=backend)
    with pytest.raises(UsageError, match="complex"):
        s2sgrad.vjp(ty.abs_square, Z, backend=backend)
    _, vjp_fn = s2sgrad.vjp(ty.elementwise, np.ones(2), backend=backend)
    with pytest.raises(UsageError, match="cotangent is complex"):
        vjp_fn(np.ones(2) * 1j)


@pytest.mark.parametrize("mode", MODES)
def test_complex_literal_is_refused_at_its_line(mode):
    with pytest.raises(UnsupportedSyntaxError) as info:
        s2sgrad.grad(ty.imaginary_literal, mode=mode)(np.ones(3))
    message = str(info.value)
    assert "programs/types.py:" in message and "complex number literal" in message
    assert "x * 1j" in message and "not there yet" in message


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_complex_intermediate_values_are_refused(mode, backend):
    with pytest.raises(UsageError, match="computes with complex numbers"):
        s2sgrad.grad(ty.complex_global, mode=mode, backend=backend)(np.array([0.5, -1.5]))


@pytest.mark.parametrize("fn", [ty.complex_dtype, ty.complex128_dtype], ids=lambda f: f.__name__)
def test_complex_types_are_refused_where_they_are_named(fn):
    with pytest.raises(UnsupportedSyntaxError, match="the complex type `(complex|np.complex128)`"):
        s2sgrad.grad(fn)(np.array([0.5, -1.5]))


# --------------------------------------------------------------------------- non-scalar results


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "fn, kind",
    [
        (ty.two_outputs, "tuple"),
        (ty.scalar_and_array, "tuple"),
        (ty.list_output, "list"),
        (ty.dict_output, "dict"),
    ],
    ids=["tuple", "scalar-and-array", "list", "dict"],
)
def test_grad_of_a_container_result_is_a_usage_error(fn, kind, mode, backend):
    with pytest.raises(UsageError, match=f"returned a {kind}.*") as info:
        s2sgrad.grad(fn, mode=mode, backend=backend)(np.ones(3))
    assert "has_aux=True" in str(info.value)


# --------------------------------------------------------------------------- NaN isolation


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "fn, x", [(ty.norm_plus_square, np.zeros(3)), (ty.sqrt_plus_square, np.array([0.0, 1.0, 4.0]))]
)
def test_a_nan_on_one_arguments_path_stays_there(fn, x, mode, backend):
    """The derivative of norm or sqrt at 0 is NaN/inf for x, but y's gradient is 2y in JAX."""
    y = np.array([1.0, -2.0, 0.5])
    got = s2sgrad.grad(fn, wrt=(0, 1), mode=mode, backend=backend)(x, y)
    want = jax.grad(jnp_twin(fn), argnums=(0, 1))(x, y)
    assert_close(got[1], want[1])
    assert_close(got[1], central_difference_grad(fn, (x, y), 1), rtol=1e-6)
    assert np.all(np.isfinite(got[1]))


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("backend", BACKENDS)
def test_jvp_and_vjp_use_the_defaults_of_parameters_left_out(backend):
    """As ``fun(*primals)`` would: defaults are constants, with no tangent or cotangent."""
    x = np.array([0.5, -1.0, 2.0])
    out, tangent = s2sgrad.jvp(ty.weighted_power, (x,), (np.ones(3),), backend=backend)
    want_out, want_tangent = jax.jvp(jnp_twin(ty.weighted_power), (x,), (np.ones(3),))
    assert_close((out, tangent), (want_out, want_tangent))
    out, vjp_fn = s2sgrad.vjp(ty.weighted_power, x, backend=backend)
    cotangents = vjp_fn(1.0)
    assert len(cotangents) == 1
    assert_close(cotangents[0], jax.grad(jnp_twin(ty.weighted_power))(x))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_std_of_equal_entries_in_float32_adds_no_derivative(mode, backend):
    """The rounding that ``runtime.resolved_spread`` resolves is float32's for float32 data:
    std of three equal float32 entries is 2.4e-7 here, not 0, and must still count as 0
    (bug 26 of the fuzzer, at the other precision)."""
    f = fuzz_found.std_of_entries_equal_by_construction
    x = np.array([1.3040000200271606, 0.9470809698104858, -0.7037352323532104], np.float32)
    s = np.sum(np.hypot(x, 0.5))
    assert np.std(np.broadcast_to(s, (3,))) != 0  # the case is exercised
    got = s2sgrad.grad(f, mode=mode, backend=backend)(x)
    assert _dtype(got) == np.float32
    # The float64 function at the same point: v is 0 there, so only sin(x) * 1 remains.
    want = central_difference_grad(f, [x.astype(np.float64)], 0)
    assert_close(got, want.astype(np.float32), rtol=1e-5, atol=1e-5)
