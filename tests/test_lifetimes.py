"""Generated NumPy code releases each intermediate once nothing reads it (``del``,
transforms/lifetimes.py), so a gradient's peak memory is what is live at once, not the
sum of every intermediate; the code stays differentiable (higher order)."""

from __future__ import annotations

import tracemalloc

import jax
import numpy as np
import pytest

import s2sgrad
from tests.oracles import assert_close, jnp_twin


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_by_hand(x):
    """The gradient as one would write it, for its peak memory."""
    d = x[1:] - x[:-1] ** 2
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * d - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * d
    return g


def _peak(fn, x) -> float:
    """Peak memory of ``fn(x)`` above what was held before, in arrays of ``x``'s size."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn(x)
        return (tracemalloc.get_traced_memory()[1] - base) / x.nbytes
    finally:
        tracemalloc.stop()


def test_a_straight_line_gradient_peaks_like_the_hand_written_one():
    x = np.random.default_rng(0).normal(size=100_000)
    grad = s2sgrad.grad(rosenbrock)
    assert_close(grad(x), jax.grad(jnp_twin(rosenbrock))(x))
    # Holding its ten intermediates to the end, it peaked at 10 arrays; the hand-written
    # gradient peaks at 4.
    assert _peak(grad, x) <= _peak(rosenbrock_by_hand, x) + 0.5


def test_released_code_differentiates_again():
    x = np.random.default_rng(1).normal(size=6)
    source = s2sgrad.derivative_source(rosenbrock, x)
    assert "\n    del " in source
    assert_close(s2sgrad.hessian(rosenbrock)(x), jax.hessian(jnp_twin(rosenbrock))(x))


def test_nothing_is_released_that_a_folded_expression_or_a_loop_still_reads():
    def f(x, n):
        t = np.sin(x) * 2.0
        s = np.sum(t)
        for _ in range(n):
            s = s + np.sum(np.cos(x) * t)
        return s + np.sum(np.exp(x))

    x = np.linspace(0.1, 1.0, 5)
    for n in (0, 3):
        got = s2sgrad.grad(f)(x, n)
        assert_close(got, jax.grad(jnp_twin(f))(x, n), what=f"n={n}")


# Values the backward sweep reads only for their shape (``unbroadcast(g, t)``) are
# stand-ins from their last other read on (``runtime.stand_in``), in a function's own
# forward sweep and in the residuals a split callee returns.


def _rotate_points(p, c):
    """Points p (n, 3) scaled per row by c (n, 1), then a per-row sum of squares."""
    scaled = p * c
    shifted = scaled + np.cross(p, scaled)
    return np.sum(np.sum(shifted**2, axis=1, keepdims=True) * c)


def _through_a_callee(p, c):
    return _rotate_points(p, c) + np.sum(p * c)


def _inputs(n, dtype=np.float64):
    rng = np.random.default_rng(4)
    return rng.normal(size=(n, 3)).astype(dtype), rng.normal(size=(n, 1)).astype(dtype)


def test_values_read_only_for_their_shape_are_stand_ins():
    p, c = _inputs(5)
    own = s2sgrad.derivative_source(_rotate_points, p, c, wrt=(0, 1))
    split = s2sgrad.derivative_source(_through_a_callee, p, c, wrt=(0, 1))
    assert "= stand_in(" in own and "is read from here on" in own
    returned = split.split("def _rotate_points_fwd", 1)[1].split("return out, ", 1)[1]
    assert "stand_in(t1)" in returned.split("\n\n")[0]  # np.cross(p, scaled): its shape


def test_stand_ins_lower_the_peak_and_keep_the_gradient():
    p, c = _inputs(40_000)
    for f in (_rotate_points, _through_a_callee):
        grad = s2sgrad.grad(f, wrt=(0, 1))
        for got, want in zip(grad(p, c), jax.grad(jnp_twin(f), argnums=(0, 1))(p, c)):
            assert_close(got, want)
    # The callee's values read only for their shape are no residuals: holding them, the
    # gradient peaked at 9.7 arrays of p's size; without them, 7.3.
    grad = s2sgrad.grad(_through_a_callee, wrt=(0, 1))
    assert _peak(lambda x: grad(x, c), p) <= 8.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_code_with_stand_ins_differentiates_again(dtype):
    p, c = _inputs(4, dtype)
    for f in (_rotate_points, _through_a_callee):
        got = s2sgrad.hessian(f)(p, c)
        assert got.dtype == dtype
        tol = 1e-4 if dtype == np.float32 else 1e-6
        assert_close(got, jax.hessian(jnp_twin(f))(p, c), rtol=tol, atol=tol)
        got = s2sgrad.grad(f, wrt=(0, 1))(p, c)
        assert all(g.dtype == dtype for g in got)


def _rows(p, c):
    """A vector result through the split callee: one number per row."""
    return np.sum(_scaled_rows(p, c) ** 2, axis=1)


def _scaled_rows(p, c):
    scaled = p * c
    return scaled + np.cross(p, scaled)


def test_stand_ins_under_jacobians_and_value_and_grad_with_aux():
    p, c = _inputs(200)  # (200, 3): 4.8 KB, large enough to be stood in for
    source = s2sgrad.derivative_source(_rows, p, c, wrt=(0, 1))
    assert "t2 = stand_in(t2)" in source and "stand_in(t1))" in source
    got = s2sgrad.jacrev(_rows, wrt=(0, 1))(p, c)
    want = jax.jacrev(jnp_twin(_rows), argnums=(0, 1))(p, c)
    for g, w in zip(got, want):
        assert_close(g, w)

    def with_aux(p, c):
        return _through_a_callee(p, c), {"rows": _rows(p, c)}

    (value, aux), grads = s2sgrad.value_and_grad(with_aux, wrt=(0, 1), has_aux=True)(p, c)
    (want_value, want_aux), want_grads = jax.value_and_grad(
        jnp_twin(with_aux), argnums=(0, 1), has_aux=True
    )(p, c)
    assert_close(value, want_value)
    assert_close(aux["rows"], want_aux["rows"])
    for g, w in zip(grads, want_grads):
        assert_close(g, w)
