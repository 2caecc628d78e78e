"""Loops that rerun their body in the backward sweep instead of saving its values
(transforms.remat): the gradients stay JAX's, with the rerun forced on NumPy (where it
is off by default) and as the JAX backend chooses it; a stepper's forward sweep saves
only its state; the loops the rule leaves alone generate what they did."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

import s2sgrad
from s2sgrad import api, cache, pipeline
from tests.oracles import assert_close, central_difference_grad, jnp_twin
from tests.programs import control_flow as cf
from tests.programs import rerun as rp

RERUN = sorted(set(rp.ARGS) - rp.KEPT)


def _float_positions(args) -> tuple[int, ...]:
    return tuple(i for i, a in enumerate(args) if not isinstance(a, int))


def _options(args, rerun: bool) -> tuple:
    return api._options(tuple(args), False, "reverse") + (("rerun_loops", rerun),)


def _numpy_gradient(fn, args, wrt, rerun: bool = True):
    """The NumPy backend's gradient with loop reruns forced on (or off)."""
    vjp = cache.load_or_generate(fn, "reverse", wrt, "numpy", _options(args, rerun))
    return vjp(*args, 1.0)[1]


def _source(fn, args, wrt, backend="numpy", rerun: bool | None = None) -> str:
    options = api._options(tuple(args), False, "reverse")
    if rerun is not None:
        options += (("rerun_loops", rerun),)
    return pipeline.generate(fn, mode="reverse", wrt=wrt, backend=backend, options=options).source


@pytest.mark.parametrize("backend", ["numpy (rerun forced)", "jax"])
@pytest.mark.parametrize("name", sorted(rp.ARGS))
def test_gradients_of_rerun_loops_match_jax_and_finite_differences(name, backend):
    fn, args = getattr(rp, name), rp.ARGS[name]
    wrt = _float_positions(args)
    if backend == "jax" and name in rp.NUMPY_ONLY:
        pytest.skip("the JAX backend compiles every function the derivative calls")
    if backend == "jax":
        got = s2sgrad.grad(fn, wrt=wrt, backend="jax")(*args)
    else:
        got = _numpy_gradient(fn, args, wrt)
    want = jax.grad(jnp_twin(fn), argnums=wrt)(*args)
    assert_close(got, tuple(np.asarray(w) for w in want), what=f"{name} on {backend}")
    for k, i in enumerate(wrt):
        fd = central_difference_grad(fn, list(args), i)
        assert_close(got[k], fd, rtol=1e-5, atol=1e-6, what=f"{name} vs FD, argument {i}")


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@pytest.mark.parametrize("name", sorted(cf.ARGS))
def test_the_control_flow_corpus_with_reruns_forced(name):
    """Every program of the control-flow corpus on NumPy with reruns forced on: the loops
    the rule takes (about a dozen of them) rerun, the others are untouched."""
    fn, args = getattr(cf, name), cf.make_args(name)
    wrt = cf.float_positions(name)
    got = _numpy_gradient(fn, args, wrt)
    if name in cf.JNP_TWIN - cf.LONG_LOOPS:
        want = jax.grad(jnp_twin(fn), argnums=wrt)(*args)
        assert_close(got, tuple(np.asarray(w) for w in want), what=name)
    else:
        for k, i in enumerate(wrt):
            fd = central_difference_grad(fn, args, i)
            assert_close(got[k], fd, rtol=1e-5, atol=1e-6, what=f"{name} vs FD, argument {i}")


def _loop_saves(source: str) -> list[str]:
    """The stacks a NumPy module's first function pushes on in its forward loops."""
    forward = source.split("# backward sweep")[0]
    return re.findall(r"(\w+)\.append\(", forward)


def test_a_stepper_saves_only_its_state():
    """Saving, RK4 keeps per step the residuals of its four stages (each stage's call of
    ``rhs`` hands its backward pass a tuple); rerun, one value: the state the step starts
    from."""
    args = rp.ARGS["rk4"]
    saving = _loop_saves(_source(rp.rk4, args, (0,), rerun=False))
    rerun = _loop_saves(_source(rp.rk4, args, (0,), rerun=True))
    assert len(saving) == 4 and all("rhs_residuals" in s for s in saving), saving
    assert rerun == ["state_stack"], rerun
    jax_source = _source(rp.rk4, args, (0,), backend="jax")
    assert "(state,), (state_stack,) = for_loop_recording(" in jax_source, jax_source


def test_numpy_saves_by_default_and_jax_reruns():
    """On NumPy each rerun operation pays its dispatch again (RK4: about 25% more time),
    so the default keeps the saves; under XLA the rerun fuses into the backward step."""
    args = rp.ARGS["rk4"]
    assert _source(rp.rk4, args, (0,)) == _source(rp.rk4, args, (0,), rerun=False)
    assert _source(rp.rk4, args, (0,), backend="jax") == _source(
        rp.rk4, args, (0,), backend="jax", rerun=True
    )


@pytest.mark.parametrize("name", RERUN)
def test_the_programs_meant_to_rerun_do(name):
    fn, args = getattr(rp, name), rp.ARGS[name]
    wrt = _float_positions(args)
    assert _source(fn, args, wrt, rerun=True) != _source(fn, args, wrt, rerun=False)


@pytest.mark.parametrize("name", sorted(rp.KEPT))
def test_loops_not_cheap_to_rerun_keep_their_saves(name):
    """A matrix product in the step, or a branch: the rule leaves the loop saving."""
    fn, args = getattr(rp, name), rp.ARGS[name]
    wrt = _float_positions(args)
    assert _source(fn, args, wrt, rerun=True) == _source(fn, args, wrt, rerun=False)


def test_the_rerun_reads_as_the_step_again():
    """The backward loop restores the state, runs the step as the forward loop did, then
    its backward sweep; the forward loop is the step and one save."""
    source = _source(rp.counter_in_the_body, rp.ARGS["counter_in_the_body"], (0,), rerun=True)
    forward, backward = source.split("# backward sweep")
    assert forward.count(".append(") == 1 and "y_stack.append(y)" in forward, forward
    assert "y = y_stack.pop()" in backward
    assert backward.count("u = np.exp(t3)") == 1 and forward.count("u = np.exp(t3)") == 1, source


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("name", ["rk4", "value_from_before_the_loop", "scalar_state"])
def test_second_derivatives_through_rerun_loops_match_jax(name, backend):
    """hessian (forward over reverse) and jacrev of grad: the JAX backend's first-order
    module reruns its loops, and a module read back to differentiate again saves."""
    fn, args = getattr(rp, name), rp.ARGS[name]
    want = np.asarray(jax.hessian(jnp_twin(fn))(*args))
    assert_close(np.asarray(s2sgrad.hessian(fn, backend=backend)(*args)), want, what=name)
    twice = s2sgrad.jacrev(s2sgrad.grad(fn, backend=backend), backend=backend)(*args)
    assert_close(np.asarray(twice), want, what=f"{name}, jacrev of grad")


@pytest.mark.parametrize("name", ["rk4", "carried_pair"])
def test_rerun_loops_under_vjp_value_and_grad_and_float32(name):
    """The JAX backend's rerun loops behind ``vjp`` (a user's cotangent), ``value_and_grad``
    and float32 arguments (gradients in float32), against JAX."""
    fn, args = getattr(rp, name), rp.ARGS[name]
    wrt = _float_positions(args)
    twin = jnp_twin(fn)
    value, grads = s2sgrad.value_and_grad(fn, wrt=wrt, backend="jax")(*args)
    assert_close(value, fn(*args))
    assert_close(grads, jax.grad(twin, argnums=wrt)(*args), what=f"{name} value_and_grad")
    _, pullback = s2sgrad.vjp(fn, *args, backend="jax")
    want = jax.vjp(twin, *args)[1](0.7)
    assert_close(pullback(0.7)[: len(wrt)], want[: len(wrt)], what=f"{name} vjp")
    args32 = tuple(a.astype(np.float32) if isinstance(a, np.ndarray) else a for a in args)
    got = s2sgrad.grad(fn, wrt=wrt, backend="jax")(*args32)
    expected = jax.grad(twin, argnums=wrt)(*args32)
    assert_close(got, expected, rtol=1e-4, atol=1e-5, what=f"{name} float32")
