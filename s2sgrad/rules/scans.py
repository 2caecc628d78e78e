"""Rules for operations along one axis: cumulative sums and products (and their ``nan``
forms), differences, the trapezoid rule and convolution.

Parameters mirror NumPy's ``(a, axis=None, dtype=None, out=None)``; with
``axis=None`` a scan runs over the flattened array. ``cumprod`` is exact where ``a``
has zeros, as in jax (see ``runtime.cumprod_tangent``). The ``nan`` scans treat NaN
as the identity of the scan (0 for sums, 1 for products), so NaN entries receive no
derivative, as jax's ``where``-based versions give. The others are linear in their
array arguments: each tangent is the operation applied to the tangent, each
cotangent its transpose.
"""

from __future__ import annotations

import numpy as np

from s2sgrad.rules.registry import defjvp, deflinear, defvjp, shape_only
from s2sgrad.runtime import (
    cumprod_tangent,
    grouped_layout,
    inverse_permutation,
    trapezoid_weights,
    unbroadcast,
    unconvolve,
    uncumprod,
    uncumulative_sum,
    undiff,
)

# --------------------------------------------------------------------------- scans


deflinear(np.cumsum, params="a, axis=None, dtype=None, out=None")


@defvjp(np.cumsum)
def cumsum_vjp(g, ans, a, axis=None, dtype=None, out=None):
    # Each input element feeds every later partial sum: a reversed cumulative sum.
    return np.reshape(np.flip(np.cumsum(np.flip(g, axis), axis), axis), np.shape(a))


@defjvp(np.cumprod)
def cumprod_jvp(ans, a, axis=None, dtype=None, out=None, *, da):
    return cumprod_tangent(da, a, axis)


@defvjp(np.cumprod)
def cumprod_vjp(g, ans, a, axis=None, dtype=None, out=None):
    return uncumprod(g, a, axis)


@defjvp(np.nancumsum)
def nancumsum_jvp(ans, a, axis=None, dtype=None, out=None, *, da):
    return np.cumsum(np.where(np.isnan(a), 0.0, da), axis=axis)


@defvjp(np.nancumsum)
def nancumsum_vjp(g, ans, a, axis=None, dtype=None, out=None):
    # A reversed cumulative sum, as for np.cumsum, with NaN entries cut off.
    scanned = np.reshape(np.flip(np.cumsum(np.flip(g, axis), axis), axis), np.shape(a))
    return np.where(np.isnan(a), 0.0, scanned)


@defjvp(np.nancumprod)
def nancumprod_jvp(ans, a, axis=None, dtype=None, out=None, *, da):
    missing = np.isnan(a)
    return cumprod_tangent(np.where(missing, 0.0, da), np.where(missing, 1.0, a), axis)


@defvjp(np.nancumprod)
def nancumprod_vjp(g, ans, a, axis=None, dtype=None, out=None):
    missing = np.isnan(a)
    return np.where(missing, 0.0, uncumprod(g, np.where(missing, 1.0, a), axis))


# --------------------------------------------------------------------------- along one axis


deflinear(np.diff, params="a, n=1, axis=-1")


@defvjp(np.diff)
def diff_vjp(g, ans, a, n=1, axis=-1):
    return undiff(g, n, axis)


deflinear(np.cumulative_sum, params="x, axis=None, dtype=None, out=None, include_initial=False")


@defvjp(np.cumulative_sum)
def cumulative_sum_vjp(g, ans, x, axis=None, dtype=None, out=None, include_initial=False):
    return uncumulative_sum(g, x, axis, include_initial)


deflinear(np.trapezoid, params="y, x=None, dx=1.0, axis=-1")


@defvjp(np.trapezoid)
def trapezoid_vjp(g, ans, y, x=None, dx=1.0, axis=-1):
    # Sample points `x` and spacing `dx` are not differentiated (None entries).
    return np.expand_dims(g, axis) * trapezoid_weights(y, x, dx, axis), None, None


@defjvp(np.convolve)
def convolve_jvp(ans, a, v, mode="full", *, da, dv):
    return np.convolve(da, v, mode), np.convolve(a, dv, mode)


@defvjp(np.convolve)
def convolve_vjp(g, ans, a, v, mode="full"):
    return unconvolve(g, a, v, mode), unconvolve(g, v, a, mode)


# --------------------------------------------------------------------------- derivative code's own


# convolve's adjoint, bilinear in (ct, v) (a only gives the length): the transpose in ct
# is the convolution itself, and in v the same adjoint with the roles of a and v swapped.
@defjvp(unconvolve)
def unconvolve_jvp(ans, ct, a, v, mode="full", *, dct, dv):
    return unconvolve(dct, a, v, mode), unconvolve(ct, a, dv, mode)


shape_only(unconvolve, "a")


@defvjp(unconvolve)
def unconvolve_vjp(g, ans, ct, a, v, mode="full"):
    return np.convolve(g, v, mode), None, unconvolve(ct, v, g, mode)


# cumprod's tangent T(a, t) and its transpose uncumprod (derivative code's own): linear
# in t (in g), and in a they change with cumprod's second derivative, exact where a has
# zeros as the helpers are. Along each scanned row (grouped_layout puts it last), with
# a^(j) the row with a_j set to 1 and d^(j) the direction with d_j set to 0:
#     T(a, t)_i = sum_{j <= i} t_j cumprod(a^(j))_i,
# so its derivative along d is sum_{j <= i} t_j cumprod_tangent(d^(j), a^(j))_i, with one
# copy of the row per j along a new axis. That second derivative is symmetric in t and
# d; the cotangent it sends to a for the cotangent g is
#     sum_{i >= j} g_i cumprod_tangent(t^(j), a^(j))_i,
# which is also uncumprod's derivative in a along t, and its own transpose.
@defjvp(cumprod_tangent)
def cumprod_tangent_jvp(ans, t, a, axis=None, *, dt, da):
    perm, moved, flat = grouped_layout(np.shape(a), axis)
    rows = np.reshape(np.transpose(a, perm), flat)
    t_rows = np.reshape(np.transpose(np.broadcast_to(t, np.shape(a)), perm), flat)
    d_rows = np.reshape(np.transpose(da, perm), flat)
    n = np.shape(rows)[-1]
    eye = np.eye(n, dtype=bool)
    copies = cumprod_tangent(
        np.where(eye, 0.0, d_rows[..., None, :]), np.where(eye, 1.0, rows[..., None, :]), -1
    )
    curved = np.sum(t_rows[..., :, None] * np.triu(np.ones((n, n))) * copies, axis=-2)
    back = np.transpose(np.reshape(curved, moved), inverse_permutation(perm))
    return cumprod_tangent(dt, a, axis), np.reshape(back, np.shape(ans))


@defvjp(cumprod_tangent)
def cumprod_tangent_vjp(g, ans, t, a, axis=None):
    perm, moved, flat = grouped_layout(np.shape(a), axis)
    rows = np.reshape(np.transpose(a, perm), flat)
    t_rows = np.reshape(np.transpose(np.broadcast_to(t, np.shape(a)), perm), flat)
    g_rows = np.reshape(np.transpose(np.reshape(g, np.shape(a)), perm), flat)
    n = np.shape(rows)[-1]
    eye = np.eye(n, dtype=bool)
    copies = cumprod_tangent(
        np.where(eye, 0.0, t_rows[..., None, :]), np.where(eye, 1.0, rows[..., None, :]), -1
    )
    curved = np.sum(np.triu(np.ones((n, n))) * copies * g_rows[..., None, :], axis=-1)
    back = np.transpose(np.reshape(curved, moved), inverse_permutation(perm))
    return unbroadcast(uncumprod(g, a, axis), t), back


@defjvp(uncumprod)
def uncumprod_jvp(ans, g, a, axis=None, *, dg, da):
    perm, moved, flat = grouped_layout(np.shape(a), axis)
    rows = np.reshape(np.transpose(a, perm), flat)
    d_rows = np.reshape(np.transpose(da, perm), flat)
    g_rows = np.reshape(np.transpose(np.reshape(g, np.shape(a)), perm), flat)
    n = np.shape(rows)[-1]
    eye = np.eye(n, dtype=bool)
    copies = cumprod_tangent(
        np.where(eye, 0.0, d_rows[..., None, :]), np.where(eye, 1.0, rows[..., None, :]), -1
    )
    curved = np.sum(np.triu(np.ones((n, n))) * copies * g_rows[..., None, :], axis=-1)
    back = np.transpose(np.reshape(curved, moved), inverse_permutation(perm))
    return uncumprod(dg, a, axis), back


@defvjp(uncumprod)
def uncumprod_vjp(g, ans, part, a, axis=None):
    perm, moved, flat = grouped_layout(np.shape(a), axis)
    rows = np.reshape(np.transpose(a, perm), flat)
    c_rows = np.reshape(np.transpose(g, perm), flat)
    p_rows = np.reshape(np.transpose(np.reshape(part, np.shape(a)), perm), flat)
    n = np.shape(rows)[-1]
    eye = np.eye(n, dtype=bool)
    copies = cumprod_tangent(
        np.where(eye, 0.0, c_rows[..., None, :]), np.where(eye, 1.0, rows[..., None, :]), -1
    )
    curved = np.sum(np.triu(np.ones((n, n))) * copies * p_rows[..., None, :], axis=-1)
    back = np.transpose(np.reshape(curved, moved), inverse_permutation(perm))
    return cumprod_tangent(g, a, axis), back


# The transposes of differences and running sums, linear in g: their own transposes are
# the differences and running sums again.
deflinear(undiff, params="g, n=1, axis=-1")


@defvjp(undiff)
def undiff_vjp(g, ans, part, n=1, axis=-1):
    return np.diff(g, n, axis)


deflinear(uncumulative_sum, params="g, x, axis=None, include_initial=False")
shape_only(uncumulative_sum, "x")


@defvjp(uncumulative_sum)
def uncumulative_sum_vjp(g, ans, part, x, axis=None, include_initial=False):
    return np.cumulative_sum(g, axis=axis, include_initial=include_initial)
