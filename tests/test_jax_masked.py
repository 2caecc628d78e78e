"""Boolean-mask reads that end in reductions, on the JAX backend (``backends/jax/masks.py``).

Under ``jax.jit`` the read ``x[m]`` of a traced mask has a shape only the data knows, so
``jax.jit(jax.grad(f))`` refuses it. Where the selected values only flow through
elementwise work into full reductions and counts, the JAX lowering computes them as a
masked computation instead. Derivatives are compared with oracles that share no code
with s2sgrad: ``jax.grad`` / ``jax.jvp`` of a twin written by hand with ``jnp.where``,
and float64 central differences; the NumPy backend, which indexes as written, must
give the same values. Every other use of the selection keeps today's clear error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad import backends, cache
from s2sgrad.backends.jax import masked
from tests.markers import marked_line
from tests.oracles import assert_close, central_difference_grad, central_difference_jvp

# A huge value outside every mask below: exp(1000.0) is inf, and an inf in an unselected
# position would turn into NaN in a gradient (0 * inf).
Y = np.array([-1.3, 0.7, -0.4, 2.1, -2.2, 1000.0, 0.3, -0.9])
W = np.array([0.5, 1.5, 2.0, -1.0, 0.8, 3.0, 1.2, 0.6])
A = np.array([[1.0, 0.2, -0.5], [-1.0, 0.3, 0.9], [0.4, -1.2, 0.6], [-0.3, 2.0, 1000.0]])
ROW = np.array([0.5, -1.5, 2.0])


# --------------------------------------------------------------------------- programs


def mean_exp(y):
    return np.mean(np.exp(y[y < 0.0]))


def mean_exp_twin(y):
    m = y < 0.0
    return jnp.sum(jnp.where(m, jnp.exp(jnp.where(m, y, 0.0)), 0.0)) / jnp.sum(m)


def sum_chain(y):
    return np.sum(np.tanh(y[y < 0.5]) * 2.0 - y[y < 0.5] ** 2 / 3.0)


def sum_chain_twin(y):
    m = y < 0.5
    s = jnp.where(m, y, 0.0)
    return jnp.sum(jnp.where(m, jnp.tanh(s) * 2.0 - s**2 / 3.0, 0.0))


def max_chain(y):
    return np.max(np.exp(y[y < 0.0]) * 3.0)


def max_chain_twin(y):
    m = y < 0.0
    return jnp.max(jnp.where(m, jnp.exp(jnp.where(m, y, 0.0)) * 3.0, -jnp.inf))


def min_chain(y):
    z = y[np.isfinite(y) & ~(y > 1.0)]
    return np.min(np.sin(z) + z**2)


def min_chain_twin(y):
    m = jnp.isfinite(y) & ~(y > 1.0)
    z = jnp.where(m, y, 0.0)
    return jnp.min(jnp.where(m, jnp.sin(z) + z**2, jnp.inf))


def prod_chain(y):
    return np.prod(1.0 + y[y > 0.2] ** 2 / 4.0)


def prod_chain_twin(y):
    m = y > 0.2
    return jnp.prod(jnp.where(m, 1.0 + jnp.where(m, y, 0.0) ** 2 / 4.0, 1.0))


def counts(y):
    z = y[(y > 0.0) & (y < 10.0)]
    return np.sum(z**2) / len(z) + z.shape[0] * np.sum(z) / z.size


def counts_twin(y):
    m = (y > 0.0) & (y < 10.0)
    n = jnp.sum(m)
    return jnp.sum(jnp.where(m, y, 0.0) ** 2) / n + n * jnp.sum(jnp.where(m, y, 0.0)) / n


def two_reads(y, w):
    m = (y < 0.0) & (w > 0.0)
    return np.sum(y[m] * w[m]) + np.mean(np.cos(y[m]))


def two_reads_twin(y, w):
    m = (y < 0.0) & (w > 0.0)
    c = jnp.sum(jnp.where(m, jnp.cos(jnp.where(m, y, 0.0)), 0.0)) / jnp.sum(m)
    return jnp.sum(jnp.where(m, y * w, 0.0)) + c


def rows(A):
    r = A[:, 0] < 0.5  # a mask over the leading axis: whole rows
    return np.sum(np.sin(A[r]) ** 2) / len(A[r])


def rows_twin(A):
    r = (A[:, 0] < 0.5)[:, None]
    return jnp.sum(jnp.where(r, jnp.sin(jnp.where(r, A, 0.0)) ** 2, 0.0)) / jnp.sum(r)


def rows_weighted(A, w):
    r = A[:, 1] < 1.0
    return np.sum(A[r] * w)


def rows_weighted_twin(A, w):
    r = (A[:, 1] < 1.0)[:, None]
    return jnp.sum(jnp.where(r, A * w, 0.0))


def shifted(y, c):
    return np.mean((y[y < 0.0] - c) ** 2)


def shifted_twin(y, c):
    m = y < 0.0
    return jnp.sum(jnp.where(m, (y - c) ** 2, 0.0)) / jnp.sum(m)


# (program, its jnp twin, arguments, wrt)
PROGRAMS = {
    "mean_exp": (mean_exp, mean_exp_twin, (Y,), 0),
    "sum_chain": (sum_chain, sum_chain_twin, (Y,), 0),
    "max_chain": (max_chain, max_chain_twin, (Y,), 0),
    "min_chain": (min_chain, min_chain_twin, (Y,), 0),
    "prod_chain": (prod_chain, prod_chain_twin, (np.where(Y > 100.0, -1000.0, Y),), 0),
    "counts": (counts, counts_twin, (Y,), 0),
    "two_reads": (two_reads, two_reads_twin, (Y, W), (0, 1)),
    "rows": (rows, rows_twin, (A,), 0),
    "rows_weighted": (rows_weighted, rows_weighted_twin, (A, ROW), (0, 1)),
    "shifted": (shifted, shifted_twin, (Y, 0.25), (0, 1)),
}
ONE_ARGUMENT = [n for n, (_, _, args, _) in PROGRAMS.items() if len(args) == 1]


def _oracle_grad(twin, args, wrt):
    return jax.grad(twin, argnums=wrt)(*args)


def _fd_grad(fn, args, wrt):
    if isinstance(wrt, int):
        return central_difference_grad(fn, args, wrt)
    return tuple(central_difference_grad(fn, args, i) for i in wrt)


def _as_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


# --------------------------------------------------------------------------- first order


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", PROGRAMS)
def test_gradient_matches_the_oracles(name, mode):
    fn, twin, args, wrt = PROGRAMS[name]
    got = s2sgrad.grad(fn, wrt=wrt, mode=mode, backend="jax")(*args)
    leaves = jax.tree_util.tree_leaves(got)
    assert all(isinstance(g, jax.Array) for g in leaves)
    assert all(np.all(np.isfinite(g)) for g in leaves), got
    got = _as_numpy(got)
    assert_close(got, _as_numpy(_oracle_grad(twin, args, wrt)), what=f"{name} {mode} vs jax")
    fd = _fd_grad(fn, args, wrt)
    assert_close(got, fd, rtol=1e-5, atol=1e-6, what=f"{name} {mode} vs central differences")
    numpy_backend = s2sgrad.grad(fn, wrt=wrt, mode=mode)(*args)
    assert_close(got, numpy_backend, what=f"{name} {mode} vs the NumPy backend")


@pytest.mark.parametrize("name", ["mean_exp", "two_reads", "rows_weighted", "shifted"])
def test_jvp_and_vjp_match_jax(name):
    fn, twin, args, _ = PROGRAMS[name]
    rng = np.random.default_rng(3)
    tangents = tuple(rng.standard_normal(np.shape(a)) for a in args)
    value, tangent = s2sgrad.jvp(fn, args, tangents, backend="jax")
    want_value, want_tangent = jax.jvp(twin, args, tangents)
    assert_close(np.asarray(value), np.asarray(want_value), what=f"{name} value")
    assert_close(np.asarray(tangent), np.asarray(want_tangent), what=f"{name} jvp vs jax")
    fd = central_difference_jvp(fn, args, tangents)
    assert_close(np.asarray(tangent), fd, rtol=1e-5, atol=1e-6, what=f"{name} jvp vs FD")
    value, vjp_fn = s2sgrad.vjp(fn, *args, backend="jax")
    cotangents = _as_numpy(vjp_fn(2.0))
    want = _as_numpy(jax.vjp(twin, *args)[1](2.0))
    assert_close(np.asarray(value), np.asarray(want_value), what=f"{name} vjp value")
    assert_close(cotangents, want, what=f"{name} vjp vs jax")


# --------------------------------------------------------------------------- second order


@pytest.mark.parametrize("name", ONE_ARGUMENT)
def test_hessians_match_jax(name):
    """Forward over reverse (hessian, hvp) and reverse over reverse (jacrev of grad)."""
    fn, twin, (x,), _ = PROGRAMS[name]
    want = np.asarray(jax.hessian(twin)(x))
    assert_close(np.asarray(s2sgrad.hessian(fn, backend="jax")(x)), want, what=f"{name} hessian")
    twice_reverse = s2sgrad.jacrev(s2sgrad.grad(fn, backend="jax"), backend="jax")(x)
    assert_close(np.asarray(twice_reverse), want, what=f"{name} reverse over reverse")
    v = np.linspace(-1.0, 1.0, x.size).reshape(x.shape)
    product = s2sgrad.hvp(fn, backend="jax")(x, v)
    want_product = np.tensordot(want, v, axes=v.ndim)
    assert_close(np.asarray(product), want_product, what=f"{name} hvp")


def test_hessian_of_two_masked_reads():
    fn, twin, args, _ = PROGRAMS["two_reads"]
    got = s2sgrad.hessian(fn, wrt=(0, 1), backend="jax")(*args)
    want = jax.hessian(twin, argnums=(0, 1))(*args)
    assert_close(_as_numpy(got), _as_numpy(want), what="two_reads hessian")


# --------------------------------------------------------------------------- the code


def test_the_generated_code_is_a_masked_computation():
    reverse = s2sgrad.derivative_source(mean_exp, Y, backend="jax")
    for line in (
        "t3 = jnp.exp(masked_read(y, t1))",
        "out = masked_mean(t3, t1)",
        # (the mean's spread seed stays a number: optimize.keep_seeds_scalar)
        "dt3 = dout / (masked_size(t3, t1) / jnp.size(out))",
        "dt2 = trailing_operand(dt3, t3, t1) * t3",
        "dy = masked_unindex(dt2, y, t1)",
        "# line ",
    ):
        assert line in reverse, reverse
    forward = s2sgrad.derivative_source(mean_exp, Y, backend="jax", mode="forward")
    assert "dt2 = masked_read(dy, t1, like=t2)" in forward, forward
    assert "dout = masked_mean(dt3, t1)" in forward, forward
    assert "y[t1]" not in reverse + forward


def test_the_numpy_backend_indexes_as_written():
    source = s2sgrad.derivative_source(mean_exp, Y)
    assert "t3 = np.exp(y[t1])" in source and "dy = unindex(dt2, y, t1)" in source, source
    assert "masked_" not in source


def test_the_derivative_runs_under_jit_and_vmap():
    """The backend jits the derivative; it also runs under a caller's jit and vmap."""
    entry = cache.load_or_generate(mean_exp, "reverse", (0,), "jax")
    _, (dy,) = jax.jit(entry)(Y, 1.0)
    want = np.asarray(jax.grad(mean_exp_twin)(Y))
    assert_close(np.asarray(dy), want, what="jitted entry")
    g = s2sgrad.grad(mean_exp, backend="jax")
    assert_close(np.asarray(jax.jit(g)(Y)), want, what="under the caller's jit")
    batch = np.stack([Y, -Y, Y * 0.5])
    assert_close(
        np.asarray(jax.vmap(g)(batch)),
        np.asarray(jax.vmap(jax.grad(mean_exp_twin))(batch)),
        what="under vmap",
    )


def test_jax_may_differentiate_the_derivative_without_nan():
    """The filler of unselected positions has no gradient, and no inf (exp(1000.0))."""
    g = s2sgrad.grad(mean_exp, backend="jax")
    got = jax.grad(lambda y: jnp.sum(g(y) ** 2))(Y)
    want = jax.grad(lambda y: jnp.sum(jax.grad(mean_exp_twin)(y) ** 2))(Y)
    assert np.all(np.isfinite(got))
    assert_close(np.asarray(got), np.asarray(want), what="jax.grad of the s2sgrad gradient")


# --------------------------------------------------------------------------- edges


def sum_exp_above(y):
    return np.sum(np.exp(y[y > 1e9]))


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_an_empty_mask_sums_to_zero(mode):
    value, grad = s2sgrad.value_and_grad(sum_exp_above, mode=mode, backend="jax")(Y)
    assert float(value) == 0.0
    assert_close(np.asarray(grad), np.zeros_like(Y), what="gradient of an empty sum")
    # NumPy's mean of nothing (the NumPy backend's gradient divides by zero there)
    assert np.isnan(float(s2sgrad.value_and_grad(mean_exp, backend="jax")(np.abs(Y))[0]))


def test_a_mask_assigned_once_in_a_loop_body_works_in_forward_mode():
    def selected_energy(y, n):
        s = 0.0
        for i in range(n):
            s = s + np.sum(y[y < 0.5 * i] ** 2)
        return s

    got = s2sgrad.grad(selected_energy, mode="forward", backend="jax")(Y, 3)
    assert_close(np.asarray(got), central_difference_grad(selected_energy, (Y, 3), 0))


# --------------------------------------------------------------------------- still refused


def returned(y):
    return y[y < 0.0] * 2.0  # <-


def concatenated(y):
    return np.sum(np.concatenate([y[y < 0.0], y]))  # <-


def matmul(y):
    z = y[y < 0.0]  # <-
    return z @ z


def indexed_again(y):
    z = y[y < 0.0]  # <-
    return z[0] ** 2


def scanned(y):
    return np.sum(np.cumsum(y[y < 0.0]) ** 2)  # <-


def norm_of(y):
    return np.linalg.norm(y[y < 0.0])  # <-


def unequal_ranks(y, W):
    m = y < 0.0
    return np.sum(y[m] * W[m])  # <-  W is (n, 1): x[m] lines up with W's columns


def full_length_operand(y, w):
    return np.sum(y[y < 0.0] * w)  # <-  w is (n,): it would meet the selected axis


def recorded_by_a_loop(y, n):
    s = 0.0
    for _ in range(n):
        z = y[y < 0.0]  # <-
        s = s + np.sum(z**2)
    return s


REFUSED = [
    (returned, (Y,), "vjp"),
    (concatenated, (Y,), "reverse"),
    (concatenated, (Y,), "forward"),
    (matmul, (Y,), "reverse"),
    (indexed_again, (Y,), "forward"),
    (scanned, (Y,), "reverse"),
    (norm_of, (Y,), "forward"),
    (unequal_ranks, (Y, W[:, None]), "reverse"),
    (unequal_ranks, (Y, W[:, None]), "forward"),
    (full_length_operand, (Y, W), "reverse"),
    (recorded_by_a_loop, (Y, 2), "reverse"),
]


@pytest.mark.parametrize(
    "fn, args, how", REFUSED, ids=[f"{f.__name__}-{how}" for f, _, how in REFUSED]
)
def test_other_uses_of_a_selection_keep_the_clear_error(fn, args, how):
    with pytest.raises(s2sgrad.NeedsConcreteValueError) as info:
        if how == "vjp":
            s2sgrad.vjp(fn, *args, backend="jax")
        else:
            s2sgrad.grad(fn, mode=how, backend="jax")(*args)
    message = str(info.value)
    assert "Array boolean indices must be concrete" in message, message
    assert f"test_jax_masked.py:{marked_line(fn)}:" in message, message
    assert "np.where(mask, x, 0)" in message and "backend='numpy'" in message, message
    numpy_backend = s2sgrad.grad(fn, mode="reverse") if how != "vjp" else None
    if numpy_backend is not None and fn not in (unequal_ranks, full_length_operand):
        assert np.all(np.isfinite(numpy_backend(*args)))  # the NumPy backend runs it


# --------------------------------------------------------------------------- the helpers


def _mask_cases():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 3))
    return [
        (x[:, 0], x[:, 0] < 0.2),  # 1-D
        (x, x[:, 1] > -0.3),  # rows of a 2-D array
        (x, x > 0.0),  # a mask of the array's own shape
        (x[:, 0], np.zeros(5, dtype=bool)),  # empty
    ]


@pytest.mark.parametrize("case", range(4))
def test_helpers_under_jit_compute_what_indexing_does(case):
    x, m = _mask_cases()[case]
    want = x[m]

    @jax.jit
    def run(x, m):
        t = masked.masked_read(x, m)
        t2 = t**2 + 1.0
        return (
            masked.masked_sum(t2, m),
            masked.masked_prod(t2, m),
            masked.masked_len(t, m),
            masked.masked_size(t, m),
            masked.masked_shape(t, m),
            masked.masked_unindex(t2, x, m),
            masked.masked_add_at(jnp.ones_like(x), m, t2),
        )

    total, product, length, size, shape, back, added = run(x, m)
    assert_close(float(total), float(np.sum(want**2 + 1.0)), what="sum")
    assert_close(float(product), float(np.prod(want**2 + 1.0)), what="prod")
    assert (int(length), int(size)) == (len(want), want.size)
    assert tuple(int(n) for n in shape) == want.shape
    expected = np.zeros_like(x)
    expected[m] = want**2 + 1.0
    assert_close(np.asarray(back), expected, what="unindex")
    assert_close(np.asarray(added), expected + 1.0, what="add_at")
    if want.size:
        extrema = jax.jit(
            lambda x, m: (
                masked.masked_max(masked.masked_read(x, m), m),
                masked.masked_min(masked.masked_read(x, m), m),
                masked.masked_mean(masked.masked_read(x, m), m),
            )
        )(x, m)
        assert_close(
            tuple(float(e) for e in extrema), (want.max(), want.min(), want.mean()), what="max"
        )


def test_helpers_with_a_concrete_mask_are_the_operations_they_replace():
    x, m = _mask_cases()[1]
    t = masked.masked_read(x, m)
    assert_close(np.asarray(t), x[m], what="read")
    assert_close(float(masked.masked_mean(t, m)), float(np.mean(x[m])), what="mean")
    assert masked.masked_len(t, m) == len(x[m])
    assert masked.masked_shape(t, m) == x[m].shape


def test_filler_is_a_selected_value_with_no_gradient():
    y = np.array([1000.0, -1.0, 5.0, -2.0])
    m = y < 0.0
    t = jax.jit(masked.masked_read)(y, m)
    assert_close(np.asarray(t), np.array([-1.0, -1.0, -1.0, -2.0]), what="filler")
    jac = jax.jit(jax.jacobian(masked.masked_read))(y, m)
    assert_close(np.asarray(jac), np.diag(m.astype(float)), what="gradient of the read")


def test_the_compiler_lists_the_helper_names():
    assert masked.__all__ == list(backends.JAX_MASKED_NAMES)
    assert all(callable(getattr(masked, n)) for n in masked.__all__)
