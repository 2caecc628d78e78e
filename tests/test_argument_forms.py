"""Issue 14, part 4: argument forms, edge shapes and values.

Each program of ``tests/programs/argument_forms.py`` is differentiated by
``s2sgrad.grad`` in both modes on both backends (and by ``jvp``/``vjp`` where the
form concerns them) and compared with ``jax.grad`` of its jnp twin (x64) or
with float64 central differences where jax has no answer or the wrong one (the
std over one element: jax says nan, the function is constant). Forms s2sgrad
does not differentiate must be refused at the user's line, with a hint.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from oracles import assert_close, central_difference_grad, jnp_twin

import s2sgrad
from s2sgrad.errors import S2SGradError
from tests.markers import marked_line
from tests.programs import argument_forms as P

BACKENDS = ["numpy", "jax"]
MODES = ["reverse", "forward"]

X3 = np.array([0.4, -1.3, 2.1])
Y3 = np.array([1.1, 0.2, -0.7])
A23 = np.array([[0.5, -1.0, 2.0], [1.5, 0.3, -0.8]])
B32 = np.array([[0.2, 1.0], [-0.6, 0.4], [1.3, -1.1]])

# (program, arguments, oracle): "jax" = jax.grad of the jnp twin, "fd" = central differences.
GRAD_CASES = [
    ("r_pair", (X3,), "jax"),
    ("c_pair", (X3,), "jax"),
    ("r_mixed", (np.array([0.3, -0.2]), np.array([1.4, 0.6])), "jax"),
    ("r_rows", (X3, Y3), "jax"),
    ("c_columns", (X3, Y3), "jax"),
    ("einsum_transpose", (A23,), "jax"),
    ("einsum_product", (A23, B32), "jax"),
    ("vstack_1d", (X3,), "jax"),
    ("hstack_1d", (X3,), "jax"),
    ("column_stack_1d", (X3,), "jax"),
    ("stack_2d", (A23,), "jax"),
    ("concatenate_2d", (A23,), "jax"),
    ("concatenate_one", (A23,), "jax"),
    ("std_length_one", (np.array([[0.5, -1.0, 2.0]]),), "fd"),
    ("nanstd_length_one", (np.array([[0.5], [-1.0], [2.0]]),), "fd"),
    ("std_scalar", (0.7,), "fd"),
    ("hypot_at_zero", (np.array([0.0, 0.0, 3.0]), np.array([0.0, -1.0, 4.0])), "jax"),
    ("power_zero", (np.array([0.0, 1.5, -2.0]),), "jax"),
    ("sum_of_list", (1.5,), "fd"),  # jax.numpy refuses lists: the twin cannot run
    ("max_of_tuple", (0.3, 0.9), "fd"),
    ("svdvals", (A23,), "jax"),
    ("svd_square", (np.array([[2.0, 0.5], [-0.3, 1.0]]),), "jax"),
]


def _oracle(f, args, kind):
    wrt = tuple(range(len(args)))
    if kind == "jax":
        grads = jax.grad(jnp_twin(f), argnums=wrt)(*args)
        return tuple(np.asarray(g) for g in grads)

    def scalar(*a):
        return np.nansum(f(*a))

    return tuple(np.asarray(central_difference_grad(scalar, list(args), i)) for i in wrt)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, args, kind", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_grad_matches_oracle(name, args, kind, mode, backend):
    f = getattr(P, name)
    wrt = tuple(range(len(args)))
    want = _oracle(f, args, kind)
    got = s2sgrad.grad(f, wrt=wrt, mode=mode, backend=backend)(*args)
    # An array for an array (np.vstack(x) of a 1-D x once gave a list of scalars).
    assert all(not isinstance(g, (list, tuple)) for g in got), got
    got = tuple(np.asarray(g) for g in got)
    assert_close(got, want, rtol=1e-6, atol=1e-7, what=f"grad of {name} ({mode}, {backend})")


@pytest.mark.parametrize("backend", BACKENDS)
def test_joined_array_cotangent_is_an_array(backend):
    """``np.vstack(x)`` of a 1-D ``x``: the cotangent is an array shaped like ``x``."""
    for f, x in ((P.vstack_1d, X3), (P.column_stack_1d, X3), (P.stack_2d, A23)):
        _, pullback = s2sgrad.vjp(f, x, backend=backend)
        (ct,) = pullback(1.0)
        assert not isinstance(ct, list) and np.shape(ct) == np.shape(x)
        want = jax.grad(jnp_twin(f))(x)
        assert_close(np.asarray(ct), np.asarray(want), what=f"vjp of {f.__name__}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_string_arguments_under_vjp_and_jvp(backend):
    """Strings passed positionally (einsum subscripts, a pad mode) are not inputs."""
    out, pullback = s2sgrad.vjp(P.einsum_subscripts, "i,i->", X3, Y3, backend=backend)
    assert_close(np.asarray(out), np.dot(X3, Y3))
    cts = pullback(1.0)
    assert cts[0] is None  # the subscripts are not numbers: no cotangent, as in JAX's float0
    assert_close(np.asarray(cts[1]), Y3)
    assert_close(np.asarray(cts[2]), X3)
    out, tangent = s2sgrad.jvp(P.einsum_subscripts, ("i,i->", X3, Y3), ("", Y3, X3))
    assert_close(np.asarray(tangent), np.dot(Y3, Y3) + np.dot(X3, X3))
    out, pullback = s2sgrad.vjp(P.pad_mode, X3, 1, "constant", backend=backend)
    assert_close(np.asarray(out), np.pad(X3, 1))
    g = np.arange(5.0)
    assert_close(np.asarray(pullback(g)[0]), g[1:4])
    out, pullback = s2sgrad.vjp(P.pad_mode, X3, 1, "edge", backend=backend)
    assert_close(np.asarray(pullback(g)[0]), np.array([0.0 + 1.0, 2.0, 3.0 + 4.0]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_nanstd_of_one_present_entry(mode, backend):
    """A row with one entry that is not NaN has a constant nanstd: derivative 0 there, and
    0 for the NaN entry (jax: nan for the entry, central differences: 0)."""
    x = np.array([[1.0, np.nan], [2.0, 3.0]])
    got = s2sgrad.grad(P.nanstd_rows, mode=mode, backend=backend)(x)
    assert_close(np.asarray(got), np.array([[0.0, 0.0], [-0.5, 0.5]]))


def test_jvp_of_index_tricks_and_sublists():
    tx, ty = np.array([1.0, 0.0, -1.0]), np.array([0.5, 2.0, 0.0])
    for f, args, tangents in (
        (P.r_rows, (X3, Y3), (tx, ty)),
        (P.c_columns, (X3, Y3), (tx, ty)),
        (P.einsum_product, (A23, B32), (np.ones_like(A23), np.zeros_like(B32))),
    ):
        for backend in BACKENDS:
            _, got = s2sgrad.jvp(f, args, tangents, backend=backend)
            _, want = jax.jvp(jnp_twin(f), args, tangents)
            assert_close(np.asarray(got), np.asarray(want), what=f"jvp of {f.__name__}")


# --------------------------------------------------------------------------- refusals

REFUSED = [
    ("r_matrix", (X3,), s2sgrad.UnsupportedSyntaxError, "matrix directive 'r'", "'0,2'"),
    ("svd_values", (A23,), s2sgrad.NoDerivativeRuleError, "compute_uv=True", "svdvals"),
    ("sum_integer_dtype", (X3,), s2sgrad.NoDerivativeRuleError, "dtype", "leave dtype out"),
    ("qr_complete", (A23.T,), s2sgrad.NoDerivativeRuleError, "mode='reduced'", "np.linalg.qr(a)"),
    (
        "cholesky_upper",
        (np.array([[2.0, 0.5], [0.5, 1.0]]),),
        s2sgrad.NoDerivativeRuleError,
        "upper=False",
        "transpose",
    ),
    ("nan_to_num_in_place", (X3,), s2sgrad.NoDerivativeRuleError, "copy=True", "assign"),
    ("pad_linear_ramp", (X3,), s2sgrad.NoDerivativeRuleError, "linear_ramp", "'edge'"),
    ("sum_initial", (X3,), s2sgrad.NoDerivativeRuleError, "initial", "register a rule"),
    ("diff_prepend", (X3,), s2sgrad.NoDerivativeRuleError, "prepend", "register a rule"),
    ("block_of", (X3,), s2sgrad.NoDerivativeRuleError, "np.block", "defvjp"),
    ("stack_into", (X3,), s2sgrad.UnsupportedSyntaxError, "expression statement", "assign"),
    ("stack_out", (X3,), s2sgrad.NoDerivativeRuleError, "out=", "assign the result"),
    ("einsum_out", (X3,), s2sgrad.NoDerivativeRuleError, "out", "register a rule"),
    (
        "pinv_hermitian",
        (np.array([[2.0, 0.5], [0.5, 1.0]]),),
        s2sgrad.NoDerivativeRuleError,
        "hermitian=False",
        "symmetrize",
    ),
    ("index_object", (X3,), s2sgrad.NonDifferentiableError, "`idx` argument", "wrt"),
    ("float_condition", (X3,), s2sgrad.NonDifferentiableError, "`condition`", "wrt"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_full_svd_of_a_non_square_matrix_is_refused(mode, backend):
    """Only the thin SVD has a derivative (jax refuses too): a clear error, not a shape
    mismatch inside the generated code."""
    with pytest.raises(s2sgrad.NonDifferentiableError, match="full_matrices=True") as info:
        s2sgrad.grad(P.svd_full_matrices, mode=mode, backend=backend)(B32)
    assert "full_matrices=False" in info.value.hint


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, args, error, what, hint", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_forms_name_the_line(name, args, error, what, hint, mode, backend):
    f = getattr(P, name)
    with pytest.raises(error) as info:
        s2sgrad.grad(f, mode=mode, backend=backend)(*args)
    exc = info.value
    assert isinstance(exc, S2SGradError)
    assert exc.loc is not None and exc.loc.file.endswith("argument_forms.py")
    assert exc.loc.line == marked_line(f), str(exc)
    assert what in exc.message, str(exc)
    assert exc.hint and hint in exc.hint, str(exc)


def test_pad_mode_known_at_run_time():
    """A mode passed in as a value is checked when the derivative runs: wrap is supported."""
    _, pullback = s2sgrad.vjp(P.pad_mode, X3, (1, 2), "wrap")
    assert_close(np.asarray(pullback(np.ones(6))[0]), np.array([2.0, 2.0, 2.0]))
