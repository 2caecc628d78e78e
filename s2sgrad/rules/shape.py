"""Rules for reshaping and rearranging arrays: transpose, reshape, squeeze, broadcast_to,
flips, rotations and rolls, ``atleast_*``, and copies (``array``, ``copy``, ``full``).

These primitives move or copy elements without arithmetic. Their forward rules
apply the same primitive to the tangent (a view of ``x`` has the matching view of
``dx`` as tangent); their reverse rules apply the inverse movement to the cotangent
(a transpose by the inverse permutation, a reshape back to the input's shape, a flip
or roll the other way).
"""

from __future__ import annotations

import numpy as np

from s2sgrad.rules.registry import defjvp, deflinear, defvjp
from s2sgrad.runtime import (
    inverse_permutation,
    negated_shift,
    unbroadcast,
)

# --------------------------------------------------------------------------- rearranging


deflinear(np.transpose, params="a, axes=None")


@defvjp(np.transpose)
def transpose_vjp(g, ans, a, axes=None):
    return np.transpose(g, inverse_permutation(axes))


deflinear(np.swapaxes, params="a, axis1, axis2")


@defvjp(np.swapaxes)
def swapaxes_vjp(g, ans, a, axis1, axis2):
    return np.swapaxes(g, axis1, axis2)


deflinear(np.moveaxis, params="a, source, destination")


@defvjp(np.moveaxis)
def moveaxis_vjp(g, ans, a, source, destination):
    return np.moveaxis(g, destination, source)


deflinear(np.reshape, params="a, shape, order='C'")


@defvjp(np.reshape)
def reshape_vjp(g, ans, a, shape, order="C"):
    return np.reshape(g, np.shape(a), order=order)


deflinear(np.ravel, params="a, order='C'")


@defvjp(np.ravel)
def ravel_vjp(g, ans, a, order="C"):
    return np.reshape(g, np.shape(a), order=order)


deflinear(np.expand_dims, params="a, axis")


@defvjp(np.expand_dims)
def expand_dims_vjp(g, ans, a, axis):
    return np.reshape(g, np.shape(a))


deflinear(np.squeeze, params="a, axis=None")


@defvjp(np.squeeze)
def squeeze_vjp(g, ans, a, axis=None):
    return np.reshape(g, np.shape(a))


deflinear(np.broadcast_to, params="array, shape, subok=False")


@defvjp(np.broadcast_to)
def broadcast_to_vjp(g, ans, array, shape, subok=False):
    return unbroadcast(g, array)


deflinear(np.flip, params="m, axis=None")


@defvjp(np.flip)
def flip_vjp(g, ans, m, axis=None):
    return np.flip(g, axis)


# A fresh tangent for a fresh array: generated code may write into either.
deflinear(np.copy, params="a, order='K', subok=False")


@defvjp(np.copy)
def copy_vjp(g, ans, a, order="K", subok=False):
    return g


# np.array and np.asarray of an array, or of a list of arrays or scalars (np.array([x0, 2 * x1])).
@defjvp(np.array)
def array_jvp(ans, object, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, dobject):
    return np.array(dobject, ndmin=ndmin)


@defvjp(np.array)
def array_vjp(g, ans, object, dtype=None, copy=True, order="K", subok=False, ndmin=0):
    # The shape of the array made from `object`, not of `object` itself: jnp.shape
    # refuses Python lists.
    return np.reshape(g, np.shape(np.asarray(object)))


deflinear(np.asarray, params="a, dtype=None, order=None")


@defvjp(np.asarray)
def asarray_vjp(g, ans, a, dtype=None, order=None):
    return g


# np.full and np.full_like make constants unless the fill value itself carries a derivative.
@defjvp(np.full)
def full_jvp(ans, shape, fill_value, dtype=None, order="C", *, dfill_value):
    return np.full(np.shape(ans), dfill_value)


@defvjp(np.full)
def full_vjp(g, ans, shape, fill_value, dtype=None, order="C"):
    return None, unbroadcast(g, fill_value)


# np.full_like reads only the shape of `a`: its derivative there is zero, but `a` may be active.
@defjvp(np.full_like)
def full_like_jvp(
    ans, a, fill_value, dtype=None, order="K", subok=True, shape=None, *, da, dfill_value
):
    return np.zeros_like(ans), np.full(np.shape(ans), dfill_value)


@defvjp(np.full_like)
def full_like_vjp(g, ans, a, fill_value, dtype=None, order="K", subok=True, shape=None):
    return np.zeros_like(a), unbroadcast(g, fill_value)


# --------------------------------------------------------------------------- flips and rolls


deflinear(np.fliplr, params="m")


@defvjp(np.fliplr)
def fliplr_vjp(g, ans, m):
    return np.fliplr(g)


deflinear(np.flipud, params="m")


@defvjp(np.flipud)
def flipud_vjp(g, ans, m):
    return np.flipud(g)


deflinear(np.roll, params="a, shift, axis=None")


@defvjp(np.roll)
def roll_vjp(g, ans, a, shift, axis=None):
    return np.roll(g, negated_shift(shift), axis)


deflinear(np.atleast_1d, params="arys")


@defvjp(np.atleast_1d)
def atleast_1d_vjp(g, ans, arys):
    return np.reshape(g, np.shape(arys))


deflinear(np.atleast_2d, params="arys")


@defvjp(np.atleast_2d)
def atleast_2d_vjp(g, ans, arys):
    return np.reshape(g, np.shape(arys))


deflinear(np.atleast_3d, params="arys")


@defvjp(np.atleast_3d)
def atleast_3d_vjp(g, ans, arys):
    return np.reshape(g, np.shape(arys))


deflinear(np.rot90, params="m, k=1, axes=(0, 1)")


@defvjp(np.rot90)
def rot90_vjp(g, ans, m, k=1, axes=(0, 1)):
    return np.rot90(g, -k, axes)
