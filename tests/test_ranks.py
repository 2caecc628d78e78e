"""Array ranks in the shape analysis (shapes.ShapeEnv.profile): called with arrays whose
ranks and length-1 axes are known (a key of the derivative module), the compiler drops
``unbroadcast`` where it provably does nothing and writes it as a sum over leading axes
where that is all it does. Every shape combination below, a length-1 axis included, gives
JAX's gradients; the code it generates is checked where ranks decide it."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import s2sgrad
from benchmarks.problems.mlp import mlp_loss as softmax_loss
from tests.oracles import assert_close, jnp_twin


def affine(W, b, x):
    return np.sum(np.tanh(x @ W + b) * W[0])


def scaled(x, y):
    return np.sum(np.sin(x * y) + x / (1.0 + y * y))


def rows(X, w):
    total = 0.0
    for i in range(X.shape[0]):
        total = total + np.sum(np.cos(X[i] * w) * X[i])
    return total


rng = np.random.default_rng(30)

AFFINE_SHAPES = {
    "full": ((4, 3), (3,), (5, 4)),
    "bias as a row": ((4, 3), (1, 3), (5, 4)),
    "one output": ((4, 1), (1,), (5, 4)),
    "one example": ((4, 3), (3,), (1, 4)),
    "scalar bias": ((4, 3), (), (5, 4)),
}
SCALED_SHAPES = {
    "same": ((3, 4), (3, 4)),
    "row": ((3, 4), (4,)),
    "column": ((3, 4), (3, 1)),
    "length-1 x": ((1, 4), (3, 4)),
    "length-1 both": ((3, 1), (1, 4)),
    "3-D": ((2, 3, 4), (3, 4)),
}


def _draw(shapes):
    return tuple(rng.standard_normal(s) if s else float(rng.standard_normal()) for s in shapes)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("case", list(AFFINE_SHAPES))
def test_affine_layer_gradients_for_each_shape_combination(case, backend):
    args = _draw(AFFINE_SHAPES[case])
    got = s2sgrad.grad(affine, wrt=(0, 1, 2), backend=backend)(*args)
    want = jax.grad(jnp_twin(affine), argnums=(0, 1, 2))(*args)
    assert_close(got, want, what=case)
    assert all(np.shape(g) == np.shape(a) for g, a in zip(got, args, strict=True)), case


@pytest.mark.parametrize("case", list(SCALED_SHAPES))
def test_broadcast_gradients_for_each_shape_combination(case):
    args = _draw(SCALED_SHAPES[case])
    got = s2sgrad.grad(scaled, wrt=(0, 1))(*args)
    assert_close(got, jax.grad(jnp_twin(scaled), argnums=(0, 1))(*args), what=case)
    hessian = s2sgrad.hessian(scaled)(*args)
    assert_close(hessian, jax.hessian(jnp_twin(scaled))(*args), what=f"{case}, hessian")


def _backward(fn, *args, wrt=0) -> str:
    source = s2sgrad.derivative_source(fn, *args, wrt=wrt)
    return source.split("# backward sweep", 1)[1]


def test_full_arrays_of_one_rank_need_no_unbroadcast_and_a_bias_is_a_sum():
    W, b, x = _draw(AFFINE_SHAPES["full"])
    backward = _backward(affine, W, b, x, wrt=(0, 1, 2))
    assert "unbroadcast(" not in backward, backward
    assert backward.count(", axis=0)") == 2, backward  # the cotangents of b and W[0]
    # A length-1 axis could be broadcast: the check stays, decided at run time.
    W, b, x = _draw(AFFINE_SHAPES["bias as a row"])
    assert "unbroadcast(" in _backward(affine, W, b, x, wrt=(0, 1, 2))


def test_a_dict_of_weights_and_a_helper_s_result_have_ranks():
    """The benchmarks' MLP, small: the weights' ranks come from the dict's arrays, and the
    rank of what ``logsumexp`` returns from the helper's own shape walk, so the only
    ``unbroadcast`` left sums over the axis ``logsumexp`` kept (length 1)."""
    params = {
        "W1": rng.standard_normal((6, 5)),
        "b1": rng.standard_normal(5),
        "W2": rng.standard_normal((5, 3)),
        "b2": rng.standard_normal(3),
    }
    x = rng.standard_normal((4, 6))
    labels = np.eye(3)[[0, 2, 1, 1]]
    source = s2sgrad.derivative_source(softmax_loss, params, x, labels)
    main = source.split("def logsumexp_fwd", 1)[0].split("# backward sweep", 1)[1]
    assert main.count("unbroadcast(") == 1 and "np.sum(dlogits, axis=0)" in main, main
    helper = source.split("def logsumexp_bwd", 1)[1]
    assert helper.count("unbroadcast(") == 1, helper  # the sum into the kept axis
    for backend in ("numpy", "jax"):
        got = s2sgrad.grad(softmax_loss, backend=backend)(params, x, labels)
        assert_close(got, jax.grad(jnp_twin(softmax_loss))(params, x, labels), what=backend)
    got = s2sgrad.hvp(softmax_loss)(params, x, labels, params)
    want = jax.jvp(lambda p: jax.grad(jnp_twin(softmax_loss))(p, x, labels), (params,), (params,))
    assert_close(got, want[1], what="hvp")


def test_a_row_of_a_matrix_has_the_shape_of_a_full_vector():
    X0, w0 = rng.standard_normal((4, 3)), rng.standard_normal(3)
    assert "unbroadcast(" not in _backward(rows, X0, w0, wrt=(0, 1))
    for X, w in ((X0, w0), (rng.standard_normal((4, 1)), w0), (X0, rng.standard_normal(1))):
        got = s2sgrad.grad(rows, wrt=(0, 1))(X, w)
        assert_close(got, jax.grad(jnp_twin(rows), argnums=(0, 1))(X, w), what=str(X.shape))


def layer(W, b, x):
    return np.tanh(x @ W + b) * W[0]


def layer_loss(W, b, x):
    return np.sum(layer(W, b, x) ** 2)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_rank_rewrites_under_every_reverse_entry_point(backend):
    """The sums ranks write (``np.sum(g, axis=0)`` for a bias and a row) under ``jacrev``
    (a batch of seeds), ``vjp`` with a user's cotangent, ``value_and_grad``, float32
    arguments, and forward over reverse (``jacfwd`` of ``grad``), against JAX."""
    W, b, x = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal((5, 4))
    assert "unbroadcast(" not in _backward(layer_loss, W, b, x, wrt=(0, 1, 2))
    jacobian = s2sgrad.jacrev(layer, wrt=(0, 1), backend=backend)(W, b, x)
    assert_close(jacobian, jax.jacrev(jnp_twin(layer), argnums=(0, 1))(W, b, x), what="jacrev")
    cotangent = rng.standard_normal((5, 3))
    _, pullback = s2sgrad.vjp(layer, W, b, x, backend=backend)
    assert_close(pullback(cotangent), jax.vjp(jnp_twin(layer), W, b, x)[1](cotangent))
    value, grads = s2sgrad.value_and_grad(layer_loss, wrt=(0, 1, 2), backend=backend)(W, b, x)
    assert_close(value, layer_loss(W, b, x))
    assert_close(grads, jax.grad(jnp_twin(layer_loss), argnums=(0, 1, 2))(W, b, x))
    args32 = tuple(a.astype(np.float32) for a in (W, b, x))
    got = s2sgrad.grad(layer_loss, wrt=(0, 1), backend=backend)(*args32)
    want = jax.grad(jnp_twin(layer_loss), argnums=(0, 1))(*args32)
    assert_close(got, want, rtol=1e-4, atol=1e-5, what="float32")  # (dtypes checked too)
    hessian = jax.hessian(jnp_twin(layer_loss), argnums=1)(W, b, x)
    grad_b = s2sgrad.grad(layer_loss, wrt=1, backend=backend)
    assert_close(s2sgrad.jacfwd(grad_b, wrt=1, backend=backend)(W, b, x), hessian)


def gate(v):
    return 1.0 / (1.0 + np.exp(-v))


def cell_step(w, h, c, x):
    """A helper returning a tuple, whose parts are a slice and a concatenation."""
    n = h.shape[0]
    z = np.concatenate([x, h]) * w
    g = gate(z[:n])
    c = c * g + np.tanh(z[n:])
    return np.tanh(c) * h, c


def unrolled(W, h, c, xs):
    total = 0.0
    for t in range(xs.shape[0]):
        h, c = cell_step(W[t % 2], h, c, xs[t])
        total = total + np.sum(h * c)
    return total


_GROWS = "state broadcast from one"
CELL_SHAPES = {
    "full": ((2, 6), (3,), (3,), (4, 3)),
    "length-1 state": ((2, 2), (1,), (1,), (4, 1)),
    _GROWS: ((2, 6), (3,), (1,), (4, 3)),
}


# (On JAX a state that changes shape in the loop is refused: test_jax_backend.)
CELL_RUNS = [(c, b) for c in CELL_SHAPES for b in ("numpy", "jax") if (c, b) != (_GROWS, "jax")]


@pytest.mark.parametrize(("case", "backend"), CELL_RUNS)
def test_a_helper_s_tuple_result_has_ranks(case, backend):
    """The LSTM benchmark's pattern: a helper returning ``(h, c)``, unpacked in a loop that
    carries them. Its parts' ranks come from the helper's own walk (a concatenation of
    vectors is a full vector, a slice may have length 1), so the loop's state keeps its
    rank and the cotangents need no ``unbroadcast`` where both sides are full; a state of
    length 1 (which broadcasts) keeps the checks."""
    args = _draw(CELL_SHAPES[case])
    got = s2sgrad.grad(unrolled, wrt=(0, 1, 2), backend=backend)(*args)
    want = jax.grad(jnp_twin(unrolled), argnums=(0, 1, 2))(*args)
    assert_close(got, want, what=case)
    assert all(np.shape(g) == np.shape(a) for g, a in zip(got, args[:3], strict=True)), case


def test_what_a_tuple_result_s_ranks_remove():
    args = _draw(CELL_SHAPES["full"])
    source = s2sgrad.derivative_source(unrolled, *args, wrt=(0, 1, 2))
    main = source.split("def cell_step_fwd", 1)[0].split("# backward sweep", 1)[1]
    assert "unbroadcast(" not in main, main
    helper = source.split("def cell_step_bwd", 1)[1].split("def gate_fwd", 1)[0]
    # Left: the products with the gate and the candidate, slices that may have length 1.
    assert helper.count("unbroadcast(") == 2, helper
    assert "unbroadcast(" in _backward(unrolled, *_draw(CELL_SHAPES["length-1 state"]))
