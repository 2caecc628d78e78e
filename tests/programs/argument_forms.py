"""Argument forms, edge shapes and singular points (issue 14, part 4), as programs.

``tests/test_argument_forms.py`` differentiates each function in both modes and
on both backends and compares with jax (the jnp twin) or central differences;
the functions whose line carries ``# <-`` must be refused there, at that line.
"""

import numpy as np

W = np.array([0.3, -1.2, 0.7, 2.0, -0.4, 1.1, 0.9, -2.2, 0.5, 1.7, -0.6, 0.8])


# --------------------------------------------------------------------------- index tricks


def r_pair(x):
    return np.sum(np.r_[x, x] ** 2)


def c_pair(x):
    return np.sum(np.c_[x, x] ** 2 * W[:6].reshape(3, 2))


def r_mixed(x, y):
    return np.sum(np.sin(np.r_[x, 0:3, 1.5, y]) * W[:8])


def r_rows(x, y):
    return np.sum(np.sin(np.r_["0,2", x, y]) * W[:6].reshape(2, 3))


def c_columns(x, y):
    return np.sum(np.sin(np.c_[x, y, 2:5]) * W[:9].reshape(3, 3))


def r_matrix(x):
    return np.sum(np.r_["r", x, x])  # <-


# --------------------------------------------------------------------------- einsum forms


def einsum_transpose(a):
    return np.sum(np.sin(np.einsum(a, [0, 1], [1, 0])) * W[:6].reshape(3, 2))


def einsum_product(a, b):
    return np.sum(np.sin(np.einsum(a, [0, 1], b, [1, 2], [0, 2])))


def einsum_subscripts(s, x, y):
    return np.sum(np.einsum(s, x, y))


# --------------------------------------------------------------------------- joining one array


def vstack_1d(x):
    return np.sum(np.sin(np.vstack(x)) * W[:3].reshape(3, 1))


def hstack_1d(x):
    return np.sum(np.sin(np.hstack(x)) * W[:3])


def column_stack_1d(x):
    return np.sum(np.sin(np.column_stack(x)) * W[:3])


def stack_2d(x):
    return np.sum(np.sin(np.stack(x, axis=1)) * W[:6].reshape(3, 2))


def concatenate_2d(x):
    return np.sum(np.sin(np.concatenate(x)) * W[:6])


def concatenate_one(x):
    return np.sum(np.sin(np.concatenate([x])) * W[:6].reshape(2, 3))


# --------------------------------------------------------------------------- length-1 axes


def std_length_one(x):
    return np.sum(np.std(x, axis=0)) + np.sum(x)


def nanstd_length_one(x):
    return np.sum(np.nanstd(x, axis=1)) + np.nansum(x)


def nanstd_rows(x):
    return np.sum(np.nanstd(x, axis=1))


def std_scalar(x):
    return np.std(x) + x


# --------------------------------------------------------------------------- singular points


def hypot_at_zero(x, y):
    return np.sum(np.hypot(x, y))


def power_zero(x):
    return np.sum(x**0 + np.sin(x))


# --------------------------------------------------------------------------- strings, lists


def pad_mode(x, w, mode):
    return np.pad(x, w, mode)


def sum_of_list(a):
    return np.sum([1.0, a * a, 2.0])


def max_of_tuple(a, b):
    return np.max((np.sin(a), b * b, 0.25))


# --------------------------------------------------------------------------- refused forms


def svd_values(a):
    return np.sum(np.linalg.svd(a, compute_uv=False))  # <-


def svd_full_matrices(a):
    u, s, vt = np.linalg.svd(a)
    return np.sum(u[:, 0] ** 2 * 0.5) + np.sum(s) + np.sum(vt * 2.0)


def svd_square(a):
    u, s, vt = np.linalg.svd(a)
    return np.sum(u[:, 0] * 0.5) + np.sum(s) + np.sum(vt[0] * 2.0)


def svdvals(a):
    return np.sum(np.linalg.svdvals(a) ** 2)


def sum_integer_dtype(x):
    return np.sum(x * x, dtype=int)  # <-


def qr_complete(a):
    q, r = np.linalg.qr(a, mode="complete")  # <-
    return np.sum(r)


def cholesky_upper(a):
    return np.sum(np.linalg.cholesky(a, upper=True))  # <-


def nan_to_num_in_place(x):
    y = x * 2.0
    return np.sum(np.nan_to_num(y, copy=False))  # <-


def pad_linear_ramp(x):
    return np.sum(np.pad(x, 2, mode="linear_ramp"))  # <-


def sum_initial(x):
    return np.sum(x, initial=1.0)  # <-


def diff_prepend(x):
    return np.sum(np.diff(x, prepend=0.0) ** 2)  # <-


def block_of(x):
    return np.sum(np.block([[x, x]]))  # <-


def stack_into(x):
    buffer = np.zeros((2, 3))
    np.stack([x, x], out=buffer)  # <-
    return np.sum(buffer)


def stack_out(x):
    buffer = np.zeros((2, 3))
    y = np.stack([x, x], out=buffer)  # <-
    return np.sum(y)


def einsum_out(x):
    buffer = np.zeros(())
    y = np.einsum("i,i->", x, x, out=buffer)  # <-
    return y


def pinv_hermitian(a):
    return np.sum(np.linalg.pinv(a, hermitian=True))  # <-


def index_object(x):
    return np.sum(np.s_[x])  # <-


def float_condition(x):
    return np.sum(np.where(x, 1.0, 2.0))  # <-
