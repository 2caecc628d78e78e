"""Unit tests of the runtime helpers that derivative rules call (``s2sgrad.runtime``).

The op tests check the helpers through the rules; these pin the contracts the
compiler and generated code rely on: no copies where none are needed, dtypes
that follow the cotangent, purity, repeated indices, container cotangents,
matmul/dot rank cases, and compile-time foldability.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from oracles import assert_close

from s2sgrad import runtime as rt

RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape)


# --------------------------------------------------------------------------- unbroadcast


def test_unbroadcast_returns_g_itself_when_shapes_match():
    g = randn(2, 3)
    assert rt.unbroadcast(g, randn(2, 3)) is g
    assert rt.unbroadcast(2.5, 1.0) == 2.5


@pytest.mark.parametrize(
    "g_shape, x_shape",
    [((2, 3), (3,)), ((2, 3), (2, 1)), ((2, 3), ()), ((4, 1, 3), (2, 1)), ((2, 3), (1, 1, 3))],
)
def test_unbroadcast_sums_to_the_input_shape(g_shape, x_shape):
    g, x = randn(*g_shape), randn(*x_shape)
    # The adjoint of broadcasting x to g's shape, by jax.
    target = np.broadcast_shapes(g_shape, x_shape)
    _, pullback = jax.vjp(lambda x: jnp.broadcast_to(x, target), x)
    expected = pullback(np.broadcast_to(g, target))[0]
    if target == g_shape:
        assert_close(rt.unbroadcast(g, x), expected)
    else:  # g smaller than x: spread
        assert np.shape(rt.unbroadcast(g, x)) == x_shape


def test_unbroadcast_of_python_scalar_and_dtype_follows_g():
    g = np.ones((2, 3), dtype=np.float32)
    out = rt.unbroadcast(g, 1.0)
    assert np.shape(out) == () and out == 6 and out.dtype == np.float32


# --------------------------------------------------------------------------- reductions


@pytest.mark.parametrize(
    "axis, keepdims",
    [(None, False), (None, True), (1, False), (-1, True), ((0, 2), False), ((), False)],
)
def test_unreduce_is_the_adjoint_of_sum(axis, keepdims):
    x = randn(2, 3, 2)
    g = randn(*np.shape(np.sum(x, axis=axis, keepdims=keepdims)))
    _, pullback = jax.vjp(lambda x: jnp.sum(x, axis=axis, keepdims=keepdims), x)
    assert_close(rt.unreduce(g, x, axis, keepdims), pullback(g)[0])


def test_unreduce_returns_g_when_nothing_was_reduced_away():
    g = randn(2, 1)
    assert rt.unreduce(g, randn(2, 1), 1, True) is g


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), ()])
def test_prod_of_others_handles_zeros(axis):
    x = randn(2, 3, 2)
    x[0, 1, 0] = 0.0
    x[1, :, 1] = 0.0
    expected = jax.grad(lambda x: jnp.sum(jnp.prod(x, axis=axis)))(x)
    assert_close(rt.prod_of_others(x, axis), expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (None, True), (1, True), (0, True)])
def test_tie_shares_fast_path_gives_the_bits_of_dividing(dtype, axis, keepdims):
    """The NumPy fast path multiplies by 1 / k: the same bits as winners / k, in a's dtype."""
    x = np.round(np.random.default_rng(5).normal(size=(40, 7)), 1).astype(dtype)
    top = np.max(x, axis=axis, keepdims=keepdims)
    got = rt.tie_shares(x, top, axis, keepdims)
    winners = x == top
    want = (winners / winners.sum(axis=axis, keepdims=True)).astype(dtype)
    assert got.dtype == dtype and np.array_equal(got, want)


def test_tie_shares_of_a_nan_extremum_are_nan():
    """A NaN maximum equals no element: no shares to give, NaN as dividing by 0 ties gives."""
    x = np.array([1.0, np.nan, 2.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.isnan(rt.tie_shares(x, np.max(x))).all()
        assert np.isnan(
            rt.tie_shares(x[None], np.max(x[None], axis=1, keepdims=True), 1, True)
        ).all()


def test_tie_shares_split_equally():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    shares = rt.tie_shares(x, np.max(x, axis=1), axis=1)
    assert_close(shares, np.array([[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]]))
    assert rt.tie_shares(x.astype(np.float32), np.float32(3.0)).dtype == np.float32


# --------------------------------------------------------------------------- non-smooth points


def test_greater_share_matches_jax_and_keeps_float32():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([1.0, 3.0, 2.0])
    expected = jax.grad(lambda x: jnp.sum(jnp.maximum(x, y)))(x)
    assert_close(rt.greater_share(x, y), expected)
    assert rt.greater_share(x.astype(np.float32), 1.0).dtype == np.float32


def test_clip_shares_match_jax_at_the_bounds():
    a = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    lo, hi = np.zeros(5), np.ones(5)
    expected = jax.grad(lambda a, lo, hi: jnp.sum(jnp.clip(a, lo, hi)), argnums=(0, 1, 2))(
        a, lo, hi
    )
    assert_close(rt.clip_shares(a, lo, hi), expected)
    a_share, min_share, max_share = rt.clip_shares(a, None, 1.0)
    assert_close(a_share, np.array([1, 1, 1, 0.5, 0]))
    assert_close(min_share, np.zeros(5))


# --------------------------------------------------------------------------- indexing


def _as_jax_index(idx):
    """jax wants index arrays as arrays, not lists."""
    if isinstance(idx, tuple):
        return tuple(_as_jax_index(i) for i in idx)
    return jnp.asarray(idx) if isinstance(idx, (np.ndarray, list)) else idx


@pytest.mark.parametrize(
    "idx",
    [
        1,
        np.s_[1:, None],
        np.s_[..., 0],
        np.s_[::-1, 1],
        np.array([0, 2, 0]),
        np.s_[np.array([1, 1]), np.array([0, 0])],
        np.array([True, False, True]),
        [0, 0, 1],
    ],
)
def test_unindex_is_the_adjoint_of_getitem(idx):
    x = randn(3, 2)
    out_shape = np.shape(x[idx])
    g = randn(*out_shape)
    _, pullback = jax.vjp(lambda x: x[_as_jax_index(idx)], x)
    assert_close(rt.unindex(g, x, idx), pullback(g)[0])


def test_unindex_of_containers():
    a, b = randn(2), randn(3)
    g = randn(3)
    out = rt.unindex(g, (a, b), 1)
    assert isinstance(out, tuple) and out[1] is g and np.all(out[0] == 0) and out[0].shape == (2,)
    out = rt.unindex(g, {"w": a, "b": b}, "b")
    assert out["b"] is g and out["w"].shape == (2,)
    out = rt.unindex([randn(2), randn(2)], [a, b, b], slice(1, None))
    assert isinstance(out, list) and out[0].shape == (2,) and np.all(out[0] == 0)


def test_add_at_and_set_at_are_pure():
    a = np.zeros(3)
    out = rt.add_at(a, np.array([0, 0, 2]), 1.0)
    assert_close(out, np.array([2.0, 0.0, 1.0]))
    assert np.all(a == 0)
    out = rt.set_at(a, 1, 5.0)
    assert_close(out, np.array([0.0, 5.0, 0.0]))
    assert np.all(a == 0)


@pytest.mark.parametrize(
    "table, rows, g_shape",
    [
        ((5, 3), [0, 0, 4, -1, 2], (5, 3)),  # repeats and a negative index
        ((5, 3, 2), [[1, 1], [0, -5]], (2, 2, 3, 2)),  # a 2-D index array
        ((4, 3), [1, 1], (3,)),  # g broadcast over the gathered rows
        ((4, 3), [2], ()),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_gathers_accumulate_as_np_add_at_does(table, rows, g_shape, dtype):
    """The bincount path of the gather adjoint (2-D tables) against np.add.at itself."""
    rows, g = np.array(rows), randn(*g_shape).astype(dtype)
    expected = np.zeros(table, dtype)
    np.add.at(expected, rows, g)
    assert_close(rt.unindex(g, np.zeros(table, dtype), rows), expected, rtol=1e-6)
    assert_close(rt.add_at(np.zeros(table, dtype), (rows,), g), expected, rtol=1e-6)
    acc = np.zeros(table, dtype)
    assert rt.add_into(acc, g, rows) is acc
    assert_close(acc, expected, rtol=1e-6)


def test_row_gather_out_of_bounds_raises_numpys_index_error():
    with pytest.raises(IndexError):
        rt.unindex(np.ones((1, 2)), np.zeros((3, 2)), np.array([3]))


@pytest.mark.parametrize("g", [2.5, np.float32(2.5), np.array(2.5), np.array([[2.5]])])
def test_unreduce_spreads_one_value_as_a_read_only_view(g):
    out = rt.unreduce(g, randn(30, 40))
    assert out.shape == (30, 40) and out.dtype == np.asarray(g).dtype
    assert np.all(out == 2.5) and not out.flags.writeable and out.strides == (0, 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_a_stand_in_has_the_shape_and_dtype_without_the_memory(dtype):
    x = np.ones((300, 7), dtype)
    s = rt.stand_in(x)
    assert s.shape == x.shape and s.dtype == x.dtype and s.strides == (0, 0)
    assert not s.flags.writeable and not np.shares_memory(s, x)
    # What derivative code reads it for: the shape to sum a broadcast back to.
    assert rt.unbroadcast(np.ones((300, 7, 2)).sum(-1), s).shape == (300, 7)
    assert rt.unindex(np.ones(7, dtype), s, 3).dtype == dtype
    small, number = np.ones(3), 2.5
    assert rt.stand_in(small) is small and rt.stand_in(number) is number


@pytest.mark.parametrize("shape", [(3, 4), (64,), (65,)])
def test_unreduce_spreads_a_python_float_over_a_few_elements_as_a_new_array(shape):
    """Filling a few elements costs less than making a view; either holds the value."""
    out = rt.unreduce(2.5, np.zeros(shape, np.float32), None)
    assert out.shape == shape and out.dtype == np.float64 and np.all(out == 2.5)
    assert out.flags.writeable == (np.prod(shape) <= 64)


# --------------------------------------------------------------------------- products

MATMUL_SHAPES = [
    ((2, 3), (3, 4)),
    ((3,), (3, 4)),
    ((2, 3), (3,)),
    ((3,), (3,)),
    ((2, 2, 3), (3, 4)),
    ((2, 1, 2, 3), (3, 3, 2)),
    ((3,), (2, 3, 4)),
    ((2, 2, 3), (3,)),
]


@pytest.mark.parametrize("a_shape, b_shape", MATMUL_SHAPES)
def test_matmul_adjoints(a_shape, b_shape):
    a, b = randn(*a_shape), randn(*b_shape)
    g = randn(*np.shape(a @ b))
    _, pullback = jax.vjp(jnp.matmul, a, b)
    da, db = pullback(g)
    assert_close(rt.matmul_adjoint_lhs(g, a, b), da)
    assert_close(rt.matmul_adjoint_rhs(g, a, b), db)


DOT_SHAPES = [((), (2, 3)), ((2, 3), ()), ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2))]
DOT_SHAPES += [((2, 3), (3, 4)), ((2, 2, 3), (3,)), ((2, 3), (2, 3, 2)), ((2, 2, 3), (4, 3, 2))]


@pytest.mark.parametrize("a_shape, b_shape", DOT_SHAPES)
def test_dot_adjoints(a_shape, b_shape):
    a, b = randn(*a_shape), randn(*b_shape)
    g = randn(*np.shape(np.dot(a, b)))
    _, pullback = jax.vjp(jnp.dot, a, b)
    da, db = pullback(g)
    assert_close(rt.dot_adjoint_lhs(g, a, b), da)
    assert_close(rt.dot_adjoint_rhs(g, a, b), db)


# --------------------------------------------------------------------------- shapes


def test_inverse_permutation_is_foldable_and_inverts():
    assert rt.inverse_permutation.__s2sgrad_foldable__ is True
    assert rt.inverse_permutation(None) is None
    for axes in [(1, 2, 0), (2, 0, 1), (-1, 0, 1), (0, 1)]:
        x = randn(*range(2, 2 + len(axes)))
        back = np.transpose(np.transpose(x, axes), rt.inverse_permutation(axes))
        assert back.shape == x.shape and np.all(back == x)
        assert all(type(i) is int for i in rt.inverse_permutation(axes))


def test_unconcatenate_and_unstack():
    a, b = randn(2, 1), randn(2, 3)
    pieces = rt.unconcatenate(np.concatenate([a, b], axis=1), [a, b], 1)
    assert [p.shape for p in pieces] == [(2, 1), (2, 3)]
    assert np.all(pieces[1] == b)
    pieces = rt.unconcatenate(np.concatenate([a, b], axis=None), [a, b], None)
    assert np.all(pieces[0] == a) and np.all(pieces[1] == b)
    stacked = np.stack([a, a + 1], axis=-1)
    pieces = rt.unstack(stacked, -1)
    assert len(pieces) == 2 and np.all(pieces[1] == a + 1)


def test_helpers_never_write_into_their_arguments():
    g, x = randn(2, 3), randn(2, 3)
    g0, x0 = g.copy(), x.copy()
    rt.unindex(g[0], x, 0)
    rt.prod_of_others(x, 1)
    rt.matmul_adjoint_lhs(g, x, randn(3, 3))
    rt.unreduce(np.sum(g, axis=0), x, 0)
    assert np.all(g == g0) and np.all(x == x0)


def test_accumulate_keeps_key_order():
    """Gradient dicts come back in a deterministic order (not hash order)."""
    from s2sgrad.runtime import accumulate

    acc = {"W2": np.ones(1), "b1": np.ones(1)}
    out = accumulate(acc, {"W1": np.ones(1), "b2": np.ones(1), "b1": np.ones(1)})
    assert list(out) == ["W2", "b1", "W1", "b2"]


def test_cross_is_np_cross():
    """``runtime.cross``, which NumPy derivative code calls for ``np.cross``: the same
    values and dtype as NumPy, on its fast path (3-vectors along the last axis, one float
    dtype, broadcasting) and off it (other axes, 2-vectors, mixed dtypes, integers)."""
    from s2sgrad.runtime import cross

    rng = np.random.default_rng(8)
    cases = [
        (rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), {}),
        (rng.standard_normal((4, 1, 3)), rng.standard_normal((2, 3)), {}),
        (
            rng.standard_normal(3).astype(np.float32),
            rng.standard_normal((2, 3)).astype(np.float32),
            {},
        ),
        (rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), {"axisa": 0, "axisb": 0}),
        (rng.standard_normal((5, 2)), rng.standard_normal((5, 2)), {}),
        (rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((5, 3)), {}),
        (np.arange(6).reshape(2, 3), np.arange(3), {}),
    ]
    for a, b, kwargs in cases:
        expected = np.cross(a, b, **kwargs)
        got = cross(a, b, **kwargs)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [2, 3, 7, 8, 11])
def test_summing_a_short_last_axis_back_matches_numpy_to_the_bit(k, dtype):
    """The cotangent of an (n, 1) factor of an (n, k) product: a sum over the last axis,
    which unbroadcast adds column by column below 8 columns (NumPy's own order)."""
    rng = np.random.default_rng(k)
    g = (rng.normal(size=(3000, k)) * 10.0 ** rng.integers(-6, 6, (3000, k))).astype(dtype)
    got = rt.unbroadcast(g, np.zeros((3000, 1), dtype))
    want = np.sum(g, axis=1, keepdims=True)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)
    assert_close(rt.unbroadcast(g[None], np.zeros((1, 1, 1))), np.sum(g).reshape(1, 1, 1))
