"""Rules for operations along one axis of a sequence: differences, integrals, convolution,
cross and dot products of vectors, and quarter turns.

All are linear (or bilinear) in their array arguments, so each tangent is the
operation applied to the tangent, and each cotangent is its transpose.
"""

from __future__ import annotations

import numpy as np

from s2sgrad.rules.registry import defjvp, defvjp
from s2sgrad.runtime import (
    trapezoid_weights,
    unbroadcast,
    unconvolve,
    uncumulative_sum,
    undiff,
)


@defjvp(np.diff)
def diff_jvp(ans, a, n=1, axis=-1, *, da):
    return np.diff(da, n, axis)


@defvjp(np.diff)
def diff_vjp(g, ans, a, n=1, axis=-1):
    return undiff(g, n, axis)


@defjvp(np.cumulative_sum)
def cumulative_sum_jvp(ans, x, axis=None, dtype=None, out=None, include_initial=False, *, dx):
    return np.cumulative_sum(dx, axis=axis, include_initial=include_initial)


@defvjp(np.cumulative_sum)
def cumulative_sum_vjp(g, ans, x, axis=None, dtype=None, out=None, include_initial=False):
    return uncumulative_sum(g, x, axis, include_initial)


@defjvp(np.trapezoid)
def trapezoid_jvp(ans, y, x=None, dx=1.0, axis=-1, *, dy):
    return np.trapezoid(dy, x, dx, axis)


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


@defjvp(np.cross)
def cross_jvp(ans, a, b, *, da, db):
    # 3-vectors along the last axis.
    return np.cross(da, b), np.cross(a, db)


@defvjp(np.cross)
def cross_vjp(g, ans, a, b):
    # <g, a x b> = <a, b x g> = <b, g x a>
    return unbroadcast(np.cross(b, g), a), unbroadcast(np.cross(g, a), b)


@defjvp(np.vecdot)
def vecdot_jvp(ans, x1, x2, axis=-1, *, dx1, dx2):
    return np.vecdot(dx1, x2, axis=axis), np.vecdot(x1, dx2, axis=axis)


@defvjp(np.vecdot)
def vecdot_vjp(g, ans, x1, x2, axis=-1):
    gx = np.expand_dims(g, axis)
    return unbroadcast(gx * x2, x1), unbroadcast(x1 * gx, x2)


@defjvp(np.rot90)
def rot90_jvp(ans, m, k=1, axes=(0, 1), *, dm):
    return np.rot90(dm, k, axes)


@defvjp(np.rot90)
def rot90_vjp(g, ans, m, k=1, axes=(0, 1)):
    return np.rot90(g, -k, axes)
