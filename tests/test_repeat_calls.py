"""Repeated calls of a gradient (``api._Repeat``): a call with arguments like the last
call's runs what that call ran without binding, checking and looking it up again, while
everything that decided it still holds. Each test changes one of those things between
calls and compares the gradient with ``jax.grad`` of a jnp twin: a repeat that missed the
change would return the old derivative's numbers, dtype or structure.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad import api, cache
from s2sgrad.rules import registry
from tests.oracles import assert_close
from tests.test_cache import cache_dir, user_module  # noqa: F401  (fixtures)

BACKENDS = ["numpy", "jax"]


def _out(g):
    return jax.tree_util.tree_map(np.asarray, g)


@pytest.fixture
def lookups(monkeypatch):
    """How many calls looked their derivative up (``cache.load_or_generate``)."""
    counted = []
    real = cache.load_or_generate

    def counting(*args, **kwargs):
        counted.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "load_or_generate", counting)
    return counted


def _array(backend, value):
    return jnp.asarray(value) if backend == "jax" else np.asarray(value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_repeated_call_skips_the_lookup(backend, lookups):
    def f(x):
        return np.sum(np.sin(x) * x)

    g = s2sgrad.grad(f, backend=backend)
    for k in range(4):
        x = _array(backend, np.linspace(0.1, 1.0, 5) + k)
        got = g(x)
        assert_close(_out(got), jax.grad(lambda x: jnp.sum(jnp.sin(x) * x))(np.asarray(x)))
    # The first call looks up (and prepares the repeat); the others repeat it.
    assert len(lookups) <= 2, lookups


MODULE = """
import numpy as np

scale = np.array([1.0, 2.0, 3.0])
power = 2.0

def helper(x):
    return np.sin(x)

def other_helper(x):
    return np.cos(x)

def f(x):
    return np.sum(scale * helper(x) ** power)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_reassigned_global_array_is_seen(cache_dir, user_module, backend):  # noqa: F811
    mod = user_module(MODULE, f"repeat_globals_{backend}")
    g = s2sgrad.grad(mod.f, backend=backend)
    x = _array(backend, [0.3, -0.2, 0.5])

    def want(scale, power, inner=jnp.sin):
        return jax.grad(lambda x: jnp.sum(scale * inner(x) ** power))(np.asarray(x))

    assert_close(_out(g(x)), want(mod.scale, 2.0))
    assert_close(_out(g(x)), want(mod.scale, 2.0))
    mod.scale = np.array([-1.0, 0.5, 4.0])  # data: same code, new value
    assert_close(_out(g(x)), want(mod.scale, 2.0))
    mod.power = 3.0  # a float global
    assert_close(_out(g(x)), want(mod.scale, 3.0))
    g(x)
    mod.helper = mod.other_helper  # code: a new derivative
    assert_close(_out(g(x)), want(mod.scale, 3.0, jnp.cos))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_reassigned_closure_variable_is_seen(backend):
    weight = 2.0

    def f(x):
        return np.sum(weight * x**3)

    g = s2sgrad.grad(f, backend=backend)
    x = _array(backend, [0.5, 1.5])
    for weight in (2.0, -3.0, 0.25):  # noqa: B007  (read by f through its closure)
        assert_close(_out(g(x)), 3.0 * weight * np.asarray(x) ** 2)
        assert_close(_out(g(x)), 3.0 * weight * np.asarray(x) ** 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_arguments_of_another_structure_dtype_or_rank(backend):
    def f(p, x):
        return np.sum(np.tanh(p["w"] * x) + p["b"] ** 2)

    g = s2sgrad.grad(f, backend=backend)

    def jf(p, x):
        return jnp.sum(jnp.tanh(p["w"] * x) + p["b"] ** 2)

    cases = [
        ({"w": np.array([0.5, -1.0]), "b": np.array([0.2, 0.3])}, np.array([1.0, 2.0])),
        ({"w": np.array([0.5, -1.0]), "b": np.array([0.2, 0.3])}, np.array([1.0, 2.0])),
        ({"w": np.array([[0.5], [-1.0]]), "b": np.array(0.2)}, np.array([1.0, 2.0, 3.0])),
        ({"w": np.array([0.5, -1.0], np.float32), "b": np.array([0.2, 0.3])}, np.array([1.0, 2.0])),
        ({"w": np.array([0.5, -1.0, 2.0]), "b": np.array([0.2, 0.3, 0.1])}, np.ones(3)),
        ({"w": 0.5, "b": np.array([0.2, 0.3])}, np.array([1.0, 2.0])),
    ]
    for p, x in cases * 2:
        args = jax.tree_util.tree_map(lambda v: _array(backend, v), (p, x))
        got = g(*args)
        want = jax.grad(jf)(p, x)
        assert set(got) == {"w", "b"}
        for k in got:
            assert np.shape(got[k]) == np.shape(want[k])
            assert np.asarray(got[k]).dtype == np.asarray(want[k]).dtype, k
            assert_close(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-5, atol=1e-6)


def scaled_copy(x):
    """A function that gets a rule between two calls of a gradient that calls it."""
    return x * 1.0


def _uses_scaled_copy(x):
    return np.sum(scaled_copy(x) ** 2)


def test_a_rule_registered_between_calls_is_used():
    g = s2sgrad.grad(_uses_scaled_copy)
    x = np.array([1.0, 2.0])
    assert_close(g(x), 2.0 * x)
    assert_close(g(x), 2.0 * x)
    before = registry.generation()

    @s2sgrad.defvjp(scaled_copy)  # (deliberately not its derivative: which one ran shows)
    def scaled_copy_vjp(g, ans, x):
        return 3.0 * g

    assert registry.generation() != before
    assert_close(g(x), 3.0 * 2.0 * x)


def test_a_longer_while_loop_than_the_bound_on_a_repeated_call():
    """JAX: the repeat's jitted function records 128 iterations; a later call that needs more
    takes the full path, which doubles the bound, and the repeat after it uses the new one."""

    def f(x, tol):
        while np.sum(x * x) > tol:
            x = x * 0.99
        return np.sum(x)

    g = s2sgrad.grad(f, backend="jax")

    def want(x, tol):
        steps = 0
        while np.sum(x * x) > tol:
            x = x * 0.99
            steps += 1
        return np.full_like(x, 0.99**steps), steps

    for tol in (0.5, 0.5, 1e-3, 1e-3, 1e-6, 0.5):
        x = np.array([1.0, 2.0, 1.5])
        expected, steps = want(x, tol)
        assert_close(np.asarray(g(jnp.asarray(x), tol)), expected, what=f"{steps} steps")


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_error_on_a_repeated_call_is_the_full_paths(backend):
    def f(x, y):
        return np.sum(x * y)

    g = s2sgrad.grad(f, backend=backend)
    ok = (_array(backend, [1.0, 2.0]), _array(backend, [3.0, 4.0]))
    g(*ok)
    g(*ok)
    with pytest.raises((ValueError, TypeError)) as repeated:
        g(_array(backend, [1.0, 2.0]), _array(backend, [3.0, 4.0, 5.0]))
    api_error = repeated.value
    assert "shape" in str(api_error).lower() or "broadcast" in str(api_error).lower()
    assert_close(_out(g(*ok)), np.asarray(ok[1]))


def test_signatures_tell_apart_what_the_options_and_checks_read():
    sig = api._call_signature
    a = np.zeros(3)
    assert sig((a,)) == sig((np.ones(5),))  # shapes are not in it
    assert sig((a,)) != sig((np.zeros((3, 1)),))  # rank, and an axis of length 1
    assert sig((np.zeros((2, 3)),)) != sig((np.zeros((2, 1)),))
    assert sig((a,)) != sig((a.astype(np.float32),))
    assert sig((1.0,)) != sig((1,)) and sig((True,)) != sig((1,))
    assert sig(({"w": a},)) != sig(({"v": a},))
    assert sig(((a, a),)) != sig(([a, a],))
    for other in (np.float64(1.0), np.ma.zeros(3), np.zeros(3).view(np.matrix), "s", None):
        assert sig((other,)) is None  # not told cheaply: every call takes the full path
    assert sig(({1: a},)) is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeats_under_every_gradient_entry_point(backend, lookups):
    """has_aux, value_and_grad, float32 arguments, a caller's jax.jit and jax.vmap of the
    JAX gradient: each called again and again, against JAX."""

    def f(w, x):
        y = np.tanh(x @ w)
        return np.sum(y**2), y

    def jf(w, x):
        y = jnp.tanh(x @ w)
        return jnp.sum(y**2), y

    w, x = np.linspace(-1.0, 1.0, 6).reshape(3, 2), np.linspace(0.5, 2.0, 12).reshape(4, 3)
    want_g, want_aux = jax.grad(jf, has_aux=True)(w, x)
    want_v = jf(w, x)[0]
    g = s2sgrad.grad(f, has_aux=True, backend=backend)
    vg = s2sgrad.value_and_grad(f, has_aux=True, backend=backend)
    for _ in range(3):
        got_g, got_aux = g(_array(backend, w), _array(backend, x))
        assert_close(_out(got_g), want_g)
        assert_close(_out(got_aux), want_aux)
        (value, aux), got = vg(_array(backend, w), _array(backend, x))
        assert_close(float(value), float(want_v))
        assert_close(_out(got), want_g)
    w32, x32 = w.astype(np.float32), x.astype(np.float32)
    want32 = jax.grad(jf, has_aux=True)(w32, x32)[0]
    for _ in range(3):  # float32 after float64: the signature tells them apart
        got32, _ = g(_array(backend, w32), _array(backend, x32))
        assert_close(_out(got32), want32, rtol=1e-5, atol=1e-6)  # (float32, as JAX's)
    if backend == "jax":
        plain = s2sgrad.grad(lambda_free_loss, backend="jax")
        jitted = jax.jit(plain)
        batched = jax.vmap(plain, in_axes=(None, 0))
        xs = np.stack([x, 2.0 * x])
        for _ in range(3):
            assert_close(np.asarray(jitted(w, x)), jax.grad(jf_loss)(w, x))
            assert_close(np.asarray(batched(w, xs)), jax.vmap(jax.grad(jf_loss), (None, 0))(w, xs))
    assert len(lookups) <= 12, len(lookups)  # (not one per call)


def lambda_free_loss(w, x):
    return np.sum(np.tanh(x @ w) ** 2)


def jf_loss(w, x):
    return jnp.sum(jnp.tanh(x @ w) ** 2)
