"""Reverse mode through calls of the user's functions: each callee's forward work runs
once per gradient, its residuals handed to its backward pass (transforms.residuals; on
JAX where a loop saves them per iteration), and the gradients stay JAX's, at first and
second order, on both backends."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad import pipeline
from tests.oracles import assert_close, jnp_twin
from tests.programs import callees as cp

BACKENDS = ["numpy", "jax"]
rng = np.random.default_rng(11)

CASES = {
    "counted_nest": (cp.counted_nest, (rng.normal(size=4), rng.normal(size=4))),
    "helpers_nested": (cp.helpers_nested, (rng.normal(size=2), 0.7, 1.3)),
    "one_path_residual (then)": (cp.one_path_residual, (rng.uniform(0.5, 1.0, size=3), 0.5)),
    "one_path_residual (else)": (cp.one_path_residual, (rng.uniform(-1.0, -0.5, size=3), 0.5)),
    "helper_in_loop": (cp.helper_in_loop, (rng.uniform(0.5, 1.0, size=3), rng.normal(size=3))),
    "with_loop_inside": (cp.with_loop_inside, (rng.uniform(0.5, 1.0, size=3), 0.8)),
    "damped_twice_in_a_loop": (cp.damped_twice_in_a_loop, (rng.normal(size=4), 0.7)),
    "recurrent": (
        cp.recurrent,
        (
            rng.uniform(0.0, 1.0, size=(2, 6)),
            rng.uniform(0.0, 1.0, size=3),
            rng.normal(size=(5, 3)),
        ),
    ),
    "recurrent_while": (
        cp.recurrent_while,
        (rng.uniform(0.0, 1.0, size=6), rng.uniform(0.0, 1.0, size=3), rng.normal(size=3), 1.5),
    ),
}


def _float_positions(args):
    return tuple(i for i, a in enumerate(args) if np.asarray(a).dtype.kind == "f")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_gradients_through_callees_match_jax(name, backend):
    fn, args = CASES[name]
    wrt = _float_positions(args)
    got = s2sgrad.grad(fn, wrt=wrt, backend=backend)(*args)
    assert_close(got, jax.grad(jnp_twin(fn), argnums=wrt)(*args), what=name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "name",
    ["counted_nest", "helpers_nested", "helper_in_loop", "damped_twice_in_a_loop", "recurrent"],
)
def test_hessians_through_split_callees_match_jax(name, backend):
    fn, args = CASES[name]
    got = s2sgrad.hessian(fn, backend=backend)(*args)
    assert_close(got, jax.hessian(jnp_twin(fn))(*args), what=name)


def test_callee_forward_work_runs_once_per_gradient():
    """Two levels of callees: recomputation ran ``innermost``'s forward work three
    times per gradient (in the caller's forward sweep, in ``middle``'s vjp, in its own)."""
    x, w = CASES["counted_nest"][1]
    grad = s2sgrad.grad(cp.counted_nest, wrt=(0, 1))
    grad(x, w)  # compiled
    before = cp.counted_square.calls
    grad(x, w)
    assert cp.counted_square.calls - before == 1


def test_split_callees_read_as_forward_and_backward_functions():
    x, w = CASES["counted_nest"][1]
    source = s2sgrad.derivative_source(cp.counted_nest, x, w, wrt=(0, 1))
    assert "y, innermost_residuals = innermost_fwd(" in source
    assert "innermost_bwd(innermost_residuals, " in source
    assert "def middle_fwd(x, w):" in source and "def middle_bwd(residuals, dout):" in source
    assert "_vjp(" not in source.replace("def counted_nest_vjp(", "")
    # Outside loops the JAX backend recomputes: XLA merges the forward work with the
    # forward sweep's and fuses it into the backward sweep.
    jax_source = s2sgrad.derivative_source(cp.counted_nest, x, w, wrt=(0, 1), backend="jax")
    assert "middle_vjp(" in jax_source and "_fwd(" not in jax_source


def test_split_callees_in_loops_compose_with_jacobians_and_vmap_on_jax():
    """What a JAX user does with such a gradient: its Jacobian (``jacrev``, ``jacfwd``),
    and ``jax.vmap`` of it for per-example gradients, each against JAX."""
    w, h0, xs = CASES["recurrent"][1]
    twin = jnp_twin(cp.recurrent)
    for jacobian in (s2sgrad.jacrev, s2sgrad.jacfwd):
        got = jacobian(s2sgrad.grad(cp.recurrent, backend="jax"), backend="jax")(w, h0, xs)
        assert_close(got, jax.hessian(twin)(w, h0, xs))
    g = s2sgrad.grad(cp.recurrent, wrt=(0, 1), backend="jax")
    batch = rng.uniform(0.0, 1.0, size=(4, 3))
    want = jax.vmap(lambda h: jax.grad(twin, argnums=(0, 1))(w, h, xs))(batch)
    assert_close(jax.vmap(lambda h: g(w, h, xs))(batch), want)


def test_residuals_are_saved_per_iteration_once_made():
    """In a loop, a callee's residuals are saved after the call that makes them, as any
    value the iteration makes (not before, as a value the call overwrites: on JAX that
    made them the loop's carried state, copied through every iteration)."""
    args = CASES["helper_in_loop"][1]
    source = s2sgrad.derivative_source(cp.helper_in_loop, *args, wrt=(0, 1))
    call = "y, step_residuals = step_fwd(y, p)\n        step_residuals_stack.append(step_residuals)"
    assert call in source, source
    assert "step_residuals = None" not in source, source
    assert "step_residuals = step_residuals_stack.pop()\n" in source, source


def test_jax_splits_the_callees_a_loop_saves_per_iteration():
    """On JAX, a callee called in a loop is split, and so is every callee inside a split
    one: recomputing would rerun its forward work in each backward step, once more per
    level (the LSTM benchmark: 19 exponentials per step, 7 split, as ``jax.grad``). The
    residuals hold a tape of the callee's loop and a Python integer that slices."""
    w, h0, xs = CASES["recurrent"][1]
    source = s2sgrad.derivative_source(cp.recurrent, w, h0, xs, wrt=(0, 1), backend="jax")
    for split in ("layers", "cell", "gate"):
        assert f"{split}_fwd(" in source and f"{split}_bwd(" in source, source
    assert "_vjp(" not in source.replace("def recurrent_vjp(", ""), source
    want = jax.grad(jnp_twin(cp.recurrent), argnums=(0, 1))(w, h0, xs)
    g = s2sgrad.grad(cp.recurrent, wrt=(0, 1), backend="jax")
    assert_close(g(w, h0, xs), want)
    assert_close(jax.jit(g)(w, h0, xs), want)  # under the caller's jit too
    # float32 arguments: float32 gradients, as JAX's.
    args32 = tuple(a.astype(np.float32) for a in (w, h0, xs))
    got32 = s2sgrad.grad(cp.recurrent, wrt=(0, 1), backend="jax")(*args32)
    want32 = jax.grad(jnp_twin(cp.recurrent), argnums=(0, 1))(*args32)
    assert_close(got32, want32, rtol=1e-4, atol=1e-5)


def test_jax_loops_hold_loop_invariant_residuals_once():
    """A split callee's residuals hand back its parameters (``W``); on JAX, a saved value
    that depends on nothing the loop changes is held once, not stacked per iteration
    (40 copies of a 300 x 300 W would be 29 MB), as ``jax.grad`` of a scan does."""
    W = rng.normal(size=(300, 300)) / 20.0
    h0 = rng.normal(size=300)
    g = s2sgrad.grad(cp.deep_recurrence, wrt=(0, 1), backend="jax")
    assert "dense_step_fwd(" in s2sgrad.derivative_source(
        cp.deep_recurrence, W, h0, wrt=(0, 1), backend="jax"
    )
    assert_close(g(W, h0), jax.grad(jnp_twin(cp.deep_recurrence), argnums=(0, 1))(W, h0))
    stats = jax.jit(g).lower(W, h0).compile().memory_analysis()
    assert stats.temp_size_in_bytes < 8 * W.nbytes, stats


def test_jax_loops_hold_an_inner_loops_invariant_rows_once():
    """The rows of ``W`` that a loop over layers saves (its callee's residuals) are the same
    in every step of the time loop around it: held once, not stacked per step (30 steps of
    a 3 x 150 x 150 W would be 16 MB)."""
    W = rng.normal(size=(3, 150, 150)) / 15.0
    h0 = rng.normal(size=150)
    g = s2sgrad.grad(cp.layers_in_time, wrt=(0, 1), backend="jax")
    assert_close(g(W, h0), jax.grad(jnp_twin(cp.layers_in_time), argnums=(0, 1))(W, h0))
    stats = jax.jit(g).lower(W, h0).compile().memory_analysis()
    assert stats.temp_size_in_bytes < 8 * W.nbytes, stats


def test_jax_loops_keep_stacked_what_an_inner_loop_with_a_while_saves():
    """Hoisting runs the inner loop on zeros for its state, so an inner loop that runs a
    ``while`` is not looked into (``while s < 5: s = s * 2`` from 0 never ends)."""
    W = rng.normal(size=(2, 4, 4))
    h0 = rng.normal(size=4)
    got = s2sgrad.grad(cp.while_inside_layers_in_time, wrt=(0, 1), backend="jax")(W, h0)
    want = jax.grad(jnp_twin(cp.while_inside_layers_in_time), argnums=(0, 1))(W, h0)
    assert_close(got, want)


def test_a_callee_with_masked_reads_stays_whole_on_jax():
    """A callee whose boolean-mask read becomes a masked computation keeps its read and its
    reductions in one function, so the JAX backend recomputes it even in a loop."""
    x, w = rng.normal(size=6), 0.8
    source = s2sgrad.derivative_source(cp.masked_in_loop, x, w, wrt=(0, 1), backend="jax")
    assert "masked_mean_vjp(" in source and "masked_mean_fwd" not in source, source

    def twin(x, w):
        total = 0.0
        for k in range(3):
            y = x * w + k * 0.1
            m = y < 0.5
            total = total + jnp.sum(jnp.where(m, jnp.exp(y), 0.0)) / jnp.sum(m)
        return total

    got = s2sgrad.grad(cp.masked_in_loop, wrt=(0, 1), backend="jax")(x, w)
    assert_close(got, jax.grad(twin, argnums=(0, 1))(x, w))
    numpy_got = s2sgrad.grad(cp.masked_in_loop, wrt=(0, 1))(x, w)
    assert_close(numpy_got, jax.grad(twin, argnums=(0, 1))(x, w))


def test_a_callee_with_a_loop_splits_unless_its_module_is_read_back():
    """A callee with a loop hands its stacks over as residuals too (the LSTM's ``predict``
    over layers); a module that a composition reads back to differentiate again keeps
    recomputing it, since the frontend reads a stack only where it is made."""
    args = CASES["with_loop_inside"][1]
    source = s2sgrad.derivative_source(cp.with_loop_inside, *args)
    assert "weighted_fwd(" in source and "power_sum_fwd(" in source, source
    assert "power_sum_vjp" not in source and "return value, (x, k_range)" in source, source
    read_back = pipeline.generate(
        cp.with_loop_inside, mode="reverse", wrt=(0,), options=(("read_back", True),)
    ).source
    assert "power_sum_vjp(" in read_back and "power_sum_fwd" not in read_back, read_back
    for fn in (
        s2sgrad.hessian(cp.with_loop_inside, wrt=(0, 1)),
        s2sgrad.jacrev(s2sgrad.grad(cp.with_loop_inside, wrt=(0, 1)), wrt=(0, 1)),
    ):
        assert_close(fn(*args), jax.hessian(jnp_twin(cp.with_loop_inside), argnums=(0, 1))(*args))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_callees_with_dicts_float32_aux_vjp_and_jacobians(dtype, backend):
    """What a user passes and asks for around a split callee: dicts in and out, float32,
    ``has_aux``, a ``vjp`` of a vector result, ``jacrev`` and ``hessian``."""
    params = {"W": rng.normal(size=(3, 4)).astype(dtype), "b": rng.normal(size=4).astype(dtype)}
    x = rng.normal(size=(5, 3)).astype(dtype)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype is np.float32 else {}
    got = s2sgrad.grad(cp.dict_through_callee, backend=backend)(params, x)
    assert_close(got, jax.grad(jnp_twin(cp.dict_through_callee))(params, x), **tol)
    g, aux = s2sgrad.grad(cp.aux_through_callee, has_aux=True, backend=backend)(params, x)
    want_g, want_aux = jax.grad(jnp_twin(cp.aux_through_callee), has_aux=True)(params, x)
    assert_close((g, aux), (want_g, want_aux), **tol)
    _, vjp_fn = s2sgrad.vjp(cp.vector_through_callee, params, x, backend=backend)
    _, jax_vjp_fn = jax.vjp(jnp_twin(cp.vector_through_callee), params, x)
    cotangent = np.ones((5, 4), dtype)
    assert_close(vjp_fn(cotangent), jax_vjp_fn(cotangent), **tol)
    if dtype is np.float64:
        assert_close(
            s2sgrad.jacrev(cp.vector_through_callee, backend=backend)(params, x),
            jax.jacrev(jnp_twin(cp.vector_through_callee))(params, x),
        )
        assert_close(
            s2sgrad.hessian(cp.dict_through_callee, wrt=1, backend=backend)(params, x),
            jax.hessian(jnp_twin(cp.dict_through_callee), argnums=1)(params, x),
        )
