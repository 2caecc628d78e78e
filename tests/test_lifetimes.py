"""Generated NumPy code releases each intermediate once nothing reads it (``del``,
transforms/lifetimes.py), so a gradient's peak memory is what is live at once, not the
sum of every intermediate; the code stays differentiable (higher order)."""

from __future__ import annotations

import tracemalloc

import jax
import numpy as np

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
