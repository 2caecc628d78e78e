"""The control-flow corpus: every program, both modes, against jax, autograd and finite differences.

``test_oracles_agree`` checks the corpus itself (the three oracles agree on
every program, so the inputs sit away from branch boundaries and the programs
mean what they say), independently of s2sgrad. The other tests check s2sgrad
against those oracles.
"""

from __future__ import annotations

import copy
import functools
import inspect
import textwrap
import types

import autograd
import autograd.numpy as anp
import jax
import numpy as np
import pytest

import s2sgrad
from tests.oracles import (
    assert_close,
    central_difference_grad,
    central_difference_jvp,
    jnp_twin,
)
from tests.programs import control_flow as cf

NAMES = list(cf.ARGS)
FD_RTOL, FD_ATOL = 1e-5, 1e-6


def autograd_twin(fn):
    """``fn`` re-created from its source with NumPy replaced by ``autograd.numpy``.

    Like ``oracles.jnp_twin``: the copy of ``fn.__globals__`` it runs in maps the
    ``numpy`` module, and globals bound to NumPy functions, to autograd's.
    """
    namespace = {}
    for key, value in fn.__globals__.items():
        if value is np:
            value = anp
        elif isinstance(value, types.FunctionType) or not callable(value):
            pass
        elif getattr(np, getattr(value, "__name__", ""), None) is value:
            value = getattr(anp, value.__name__, value)
        namespace[key] = value
    exec(compile(textwrap.dedent(inspect.getsource(fn)), "<autograd twin>", "exec"), namespace)
    return namespace[fn.__name__]


def _arrays(values):
    return tuple(np.asarray(v, dtype=np.float64) for v in values)


@functools.cache
def references(name):
    """The oracles' gradients of program ``name`` w.r.t. its float arguments, by oracle."""
    fn = getattr(cf, name)
    args = cf.make_args(name)
    wrt = cf.float_positions(name)
    out = {"finite differences": _arrays(central_difference_grad(fn, args, i) for i in wrt)}
    if name in cf.JNP_TWIN - cf.LONG_LOOPS:
        out["jax"] = _arrays(jax.grad(jnp_twin(fn), argnums=wrt)(*args))
    if name in cf.AUTOGRAD_TWIN:
        twin = autograd_twin(fn)
        out["autograd"] = _arrays(autograd.grad(twin, i)(*args) for i in wrt)
    return out


def test_the_corpus_covers_enough_programs():
    functions = [
        n for n, v in vars(cf).items() if inspect.isfunction(v) and v.__module__ == cf.__name__
    ]
    assert set(NAMES) <= set(functions)
    assert len(NAMES) >= 45
    assert cf.INPLACE <= set(NAMES)


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@pytest.mark.parametrize("name", NAMES)
def test_oracles_agree(name):
    refs = references(name)
    fd = refs["finite differences"]
    for oracle in ("jax", "autograd"):
        if oracle in refs:
            assert_close(
                fd, refs[oracle], rtol=FD_RTOL, atol=FD_ATOL, what=f"{name}: FD vs {oracle}"
            )
    if "jax" in refs and "autograd" in refs:
        assert_close(refs["autograd"], refs["jax"], what=f"{name}: autograd vs jax")


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", NAMES)
def test_grad_matches_oracles(name, mode):
    fn = getattr(cf, name)
    args = cf.make_args(name)
    got = s2sgrad.grad(fn, wrt=cf.float_positions(name), mode=mode)(*args)
    for oracle, want in references(name).items():
        if oracle == "finite differences":
            assert_close(got, want, rtol=FD_RTOL, atol=FD_ATOL, what=f"{name} {mode} vs FD")
        else:
            assert_close(got, want, what=f"{name} {mode} vs {oracle}")


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@pytest.mark.parametrize("name", NAMES)
def test_value_and_grad_returns_the_functions_value(name):
    """The value comes from the forward sweep, even where the backward sweep restores
    the returned name to earlier values (``y = y_stack.pop()``)."""
    fn = getattr(cf, name)
    args = cf.make_args(name)
    value, got = s2sgrad.value_and_grad(fn, wrt=cf.float_positions(name))(*args)
    assert_close(value, fn(*args), what=f"{name} value")
    want = references(name)["finite differences"]
    assert_close(got, want, rtol=FD_RTOL, atol=FD_ATOL, what=f"{name} gradient vs FD")


def test_value_and_grad_of_a_name_updated_in_a_loop_on_both_backends():
    def power(a, n):
        y = 1.0
        for _ in range(n):
            y = y * a
        return y

    for backend in ("numpy", "jax"):
        value, slope = s2sgrad.value_and_grad(power, backend=backend)(2.0, 3)
        assert_close(float(value), 8.0, what=f"{backend} value")
        assert_close(float(slope), 12.0, what=f"{backend} d(a**3)/da at 2")


def test_grad_does_not_modify_its_inputs():
    args = cf.make_args("slice_update")
    before = [a.copy() for a in args]
    for mode in ("reverse", "forward"):
        s2sgrad.grad(cf.slice_update, mode=mode)(*args)
        assert_close(args, before, rtol=0, atol=0, what=f"inputs after {mode} grad")


@pytest.mark.parametrize("name", sorted(cf.INPLACE))
def test_jvp_and_vjp_of_in_place_updates_leave_their_inputs_alone(name):
    """Primals, tangents and cotangents come back unchanged, and the products still
    match finite differences."""
    fn, args = getattr(cf, name), cf.make_args(name)
    tangents = _tangents(name, args)
    before = copy.deepcopy((args, tangents))
    _, tangent = s2sgrad.jvp(fn, args, tangents)
    _, vjp_fn = s2sgrad.vjp(fn, *args)
    vjp_fn(1.0)
    assert_close((args, tangents), before, rtol=0, atol=0, what=f"{name} inputs")
    grads = references(name)["finite differences"]
    want = sum(np.sum(g * tangents[i]) for g, i in zip(grads, cf.float_positions(name)))
    assert_close(tangent, want, rtol=FD_RTOL, atol=FD_ATOL, what=f"{name} jvp vs FD")


JVP_PROGRAMS = [
    "huber_loss",
    "enumerate_zip",
    "continue_and_break",
    "return_from_nested_loops",
    "while_true_break",
    "euler_trajectory",
]


def _tangents(name, args):
    rng = np.random.default_rng(7)
    floats = set(cf.float_positions(name))
    return [
        (
            (rng.uniform(-1.0, 1.0, size=np.shape(a)) if np.ndim(a) else float(rng.uniform(-1, 1)))
            if i in floats
            else 0
        )
        for i, a in enumerate(args)
    ]


@pytest.mark.parametrize("name", JVP_PROGRAMS)
def test_jvp_and_vjp(name):
    fn = getattr(cf, name)
    args = cf.make_args(name)
    tangents = _tangents(name, args)
    floats = cf.float_positions(name)
    out, tangent_out = s2sgrad.jvp(fn, args, tangents)
    assert_close(out, fn(*args), what=f"{name} jvp primal")
    fd_tangents = [t if i in floats else None for i, t in enumerate(tangents)]
    want = central_difference_jvp(fn, args, fd_tangents)
    assert_close(tangent_out, want, rtol=FD_RTOL, atol=FD_ATOL, what=f"{name} jvp tangent")

    out, vjp_fn = s2sgrad.vjp(fn, *args)
    cotangents = vjp_fn(1.7)
    assert len(cotangents) == len(args)
    for i, grad in zip(floats, references(name)["finite differences"]):
        assert_close(cotangents[i], 1.7 * grad, rtol=FD_RTOL, atol=FD_ATOL, what=f"{name} vjp {i}")
