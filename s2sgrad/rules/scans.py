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
    trapezoid_weights,
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
