"""Tuples, lists and dicts of arrays in and out; has_aux; calls of other user functions."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import s2sgrad
from tests.oracles import assert_close, central_difference_grad, jnp_twin
from tests.programs import structured as st

MODES = ["reverse", "forward"]
rng = np.random.default_rng(7)
X = rng.normal(size=(5, 3))


@pytest.mark.parametrize("mode", MODES)
def test_dict_of_parameters_gives_a_dict_of_gradients(mode):
    params = {
        "W1": rng.normal(size=(3, 4)),
        "b1": rng.normal(size=4),
        "W2": rng.normal(size=(4, 2)),
    }
    y = rng.normal(size=(5, 2))
    got = s2sgrad.grad(st.mlp, mode=mode)(params, X, y)
    assert isinstance(got, dict) and sorted(got) == ["W1", "W2", "b1"]
    assert_close(got, jax.grad(jnp_twin(st.mlp))(params, X, y))


@pytest.mark.parametrize("mode", MODES)
def test_nested_dicts(mode):
    params = {"layer": {"W": rng.normal(size=(3, 2))}, "scale": 1.5}
    got = s2sgrad.grad(st.nested, mode=mode)(params, X)
    assert_close(got, jax.grad(jnp_twin(st.nested))(params, X))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", [st.tuple_params, st.list_params])
def test_tuples_and_lists(fn, mode):
    if fn is st.tuple_params:
        p = (rng.normal(size=(3, 4)), rng.normal(size=4))
    else:
        p = [rng.normal(size=(3, 3)), rng.normal(size=(3, 2))]
    got = s2sgrad.grad(fn, mode=mode)(p, X)
    assert type(got) is type(p)
    assert_close(got, jax.grad(jnp_twin(fn))(p, X))


@pytest.mark.parametrize("mode", MODES)
def test_tuple_adjoints_add_leafwise_not_by_concatenation(mode):
    p = (np.ones(2), 2 * np.ones(2))
    got = s2sgrad.grad(st.tuple_indexed_twice, mode=mode)(p)
    assert_close(got, (3 * np.ones(2), np.ones(2)))


@pytest.mark.parametrize("mode", MODES)
def test_has_aux(mode):
    w = rng.normal(size=3)
    g, aux = s2sgrad.grad(st.with_aux, has_aux=True, mode=mode)(w, X)
    want_g, want_aux = jax.grad(jnp_twin(st.with_aux), has_aux=True)(w, X)
    assert_close(g, want_g)
    assert_close(aux["residual"], want_aux["residual"])
    assert aux["n"] == 3
    (value, aux2), g2 = s2sgrad.value_and_grad(st.with_aux, has_aux=True, mode=mode)(w, X)
    assert_close(value, st.with_aux(w, X)[0])
    assert_close(g2, want_g)


def test_vjp_and_jvp_of_structured_outputs():
    x = rng.normal(size=4)
    out, vjp_fn = s2sgrad.vjp(st.returns_pair, x)
    ct = (np.ones(4), {"double": np.arange(4.0)})
    (got,) = vjp_fn(ct)
    _, jax_vjp = jax.vjp(jnp_twin(st.returns_pair), x)
    assert_close(got, jax_vjp(ct)[0])
    _, tangent = s2sgrad.jvp(st.returns_pair, (x,), (np.ones(4),))
    _, want = jax.jvp(jnp_twin(st.returns_pair), (x,), (np.ones(4),))
    assert_close(tangent, want)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", [st.calls_helper, st.uses_recursion])
def test_calls_of_user_functions_are_differentiated(fn, mode):
    x, y = rng.uniform(0.5, 1.5, size=3), rng.uniform(0.5, 1.5, size=3)
    args = [x, y] if fn is st.calls_helper else [x]
    wrt = tuple(range(len(args)))
    got = s2sgrad.grad(fn, wrt=wrt, mode=mode)(*args)
    for i in wrt:
        assert_close(got[i], central_difference_grad(fn, args, i), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", MODES)
def test_callee_in_another_module_reads_its_own_globals(mode):
    p, y0 = np.array([1.0, 0.5, 0.3]), np.array([1.0, 0.8])
    got = s2sgrad.grad(st.calls_other_module, wrt=(0, 1), mode=mode)(p, y0)
    for i in (0, 1):
        assert_close(got[i], central_difference_grad(st.calls_other_module, [p, y0], i), rtol=1e-6)
    from s2sgrad import pipeline

    source = pipeline.generate(st.calls_other_module, mode=mode, wrt=(0,)).source
    assert "_tests_programs_physics.DT" in source


@pytest.mark.parametrize("mode", MODES)
def test_a_closure_reads_its_captured_variables(mode):
    x = rng.normal(size=3)
    for scale in (2.0, -1.0):
        f = st.make_scaled_loss(scale)
        assert_close(s2sgrad.grad(f, mode=mode)(x), scale * np.exp(x))


@pytest.mark.parametrize("mode", MODES)
def test_nested_defs_are_inlined_with_their_closures(mode):
    x, w = np.linspace(-1, 1, 4), np.linspace(0.5, 1, 4)
    got = s2sgrad.grad(st.nested_defs, wrt=(0, 1), mode=mode)(x, w)
    for i in (0, 1):
        assert_close(got[i], central_difference_grad(st.nested_defs, [x, w], i), rtol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("program", [st.logdet_unpacked, st.logdet_indexed])
def test_named_tuple_results(program, mode, backend):
    A = np.array([[2.0, 0.3, 0.0], [0.1, 1.5, -0.2], [0.4, 0.0, 1.2]])
    got = s2sgrad.grad(program, mode=mode, backend=backend)(A)
    assert_close(np.asarray(got), np.asarray(jax.grad(jnp_twin(program))(A)), what="vs jax")
