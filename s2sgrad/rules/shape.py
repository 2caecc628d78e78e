"""Rules for primitives that move, select or copy elements without arithmetic.

Their forward rules apply the same primitive to the tangent (a view of ``x``
has the matching view of ``dx`` as tangent); their reverse rules apply the
inverse movement to the cotangent (a transpose by the inverse permutation, a
reshape back to the input's shape, a scatter for indexing, a split for
concatenation).
"""

from __future__ import annotations

import operator

import numpy as np

from s2sgrad.rules.registry import defjvp, defvjp
from s2sgrad.runtime import (
    broadcast_like,
    clip_shares,
    concatenate_items,
    inverse_permutation,
    unbroadcast,
    unconcatenate,
    unconcatenate_items,
    unindex,
    unstack,
)

# --------------------------------------------------------------------------- indexing


@defjvp(operator.getitem)
def getitem_jvp(ans, x, idx, *, dx):
    return dx[idx]


@defvjp(operator.getitem)
def getitem_vjp(g, ans, x, idx):
    return unindex(g, x, idx)


@defjvp(np.where)
def where_jvp(ans, condition, x, y, *, dx, dy):
    from_x = np.where(condition, dx, 0)
    from_y = np.where(condition, 0, dy)
    return broadcast_like(from_x, ans), broadcast_like(from_y, ans)


@defvjp(np.where)
def where_vjp(g, ans, condition, x, y):
    return (
        None,
        unbroadcast(np.where(condition, g, 0), x),
        unbroadcast(np.where(condition, 0, g), y),
    )


@defjvp(np.clip)
def clip_jvp(ans, a, a_min, a_max, *, da, da_min, da_max):
    a_share, min_share, max_share = clip_shares(a, a_min, a_max)
    return da * a_share, da_min * min_share, da_max * max_share


@defvjp(np.clip)
def clip_vjp(g, ans, a, a_min, a_max):
    a_share, min_share, max_share = clip_shares(a, a_min, a_max)
    return (
        unbroadcast(g * a_share, a),
        unbroadcast(g * min_share, a_min),
        unbroadcast(g * max_share, a_max),
    )


# --------------------------------------------------------------------------- shapes and axes


@defjvp(np.transpose)
def transpose_jvp(ans, a, axes=None, *, da):
    return np.transpose(da, axes)


@defvjp(np.transpose)
def transpose_vjp(g, ans, a, axes=None):
    return np.transpose(g, inverse_permutation(axes))


@defjvp(np.swapaxes)
def swapaxes_jvp(ans, a, axis1, axis2, *, da):
    return np.swapaxes(da, axis1, axis2)


@defvjp(np.swapaxes)
def swapaxes_vjp(g, ans, a, axis1, axis2):
    return np.swapaxes(g, axis1, axis2)


@defjvp(np.moveaxis)
def moveaxis_jvp(ans, a, source, destination, *, da):
    return np.moveaxis(da, source, destination)


@defvjp(np.moveaxis)
def moveaxis_vjp(g, ans, a, source, destination):
    return np.moveaxis(g, destination, source)


@defjvp(np.reshape)
def reshape_jvp(ans, a, shape, order="C", *, da):
    return np.reshape(da, shape, order=order)


@defvjp(np.reshape)
def reshape_vjp(g, ans, a, shape, order="C"):
    return np.reshape(g, np.shape(a), order=order)


@defjvp(np.ravel)
def ravel_jvp(ans, a, order="C", *, da):
    return np.ravel(da, order=order)


@defvjp(np.ravel)
def ravel_vjp(g, ans, a, order="C"):
    return np.reshape(g, np.shape(a), order=order)


@defjvp(np.expand_dims)
def expand_dims_jvp(ans, a, axis, *, da):
    return np.expand_dims(da, axis)


@defvjp(np.expand_dims)
def expand_dims_vjp(g, ans, a, axis):
    return np.reshape(g, np.shape(a))


@defjvp(np.squeeze)
def squeeze_jvp(ans, a, axis=None, *, da):
    return np.squeeze(da, axis)


@defvjp(np.squeeze)
def squeeze_vjp(g, ans, a, axis=None):
    return np.reshape(g, np.shape(a))


@defjvp(np.broadcast_to)
def broadcast_to_jvp(ans, array, shape, subok=False, *, darray):
    return np.broadcast_to(darray, shape)


@defvjp(np.broadcast_to)
def broadcast_to_vjp(g, ans, array, shape, subok=False):
    return unbroadcast(g, array)


@defjvp(np.flip)
def flip_jvp(ans, m, axis=None, *, dm):
    return np.flip(dm, axis)


@defvjp(np.flip)
def flip_vjp(g, ans, m, axis=None):
    return np.flip(g, axis)


# --------------------------------------------------------------------------- joining


@defjvp(np.concatenate)
def concatenate_jvp(ans, arrays, axis=0, out=None, *, darrays):
    return np.concatenate(darrays, axis=axis)


@defvjp(np.concatenate)
def concatenate_vjp(g, ans, arrays, axis=0, out=None):
    return unconcatenate(g, arrays, axis)


@defjvp(np.stack)
def stack_jvp(ans, arrays, axis=0, out=None, *, darrays):
    return np.stack(darrays, axis=axis)


@defvjp(np.stack)
def stack_vjp(g, ans, arrays, axis=0, out=None):
    return unstack(g, axis, arrays)


# np.r_[...] and np.c_[...] (index tricks: a subscript of an object), which the frontend
# lowers to concatenate_items(items, how, directive); a slice item is a constant np.arange.
@defjvp(concatenate_items)
def concatenate_items_jvp(ans, items, how="r_", directive=None, *, ditems):
    return concatenate_items(ditems, how, directive)


@defvjp(concatenate_items)
def concatenate_items_vjp(g, ans, items, how="r_", directive=None):
    return unconcatenate_items(g, items, how, directive)


# --------------------------------------------------------------------------- copies and creation


@defjvp(np.copy)
def copy_jvp(ans, a, order="K", subok=False, *, da):
    # A fresh tangent for a fresh array: generated code may write into either.
    return np.copy(da)


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


@defjvp(np.asarray)
def asarray_jvp(ans, a, dtype=None, order=None, *, da):
    return np.asarray(da)


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
