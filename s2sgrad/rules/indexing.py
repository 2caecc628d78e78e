"""Rules for reading elements: subscripts, takes, diagonals, triangles, trace and sort.

The forward rules read the tangent the same way; the reverse rules scatter the
cotangent back to the positions read (``unindex``, ``untake``, ``undiagonal``),
adding up repeated reads. ``np.sort`` is differentiated through its permutation, as
jax does: ties keep their order (a stable sort), so tied elements do not share the
derivative.
"""

from __future__ import annotations

import operator

import numpy as np

from s2sgrad.rules.registry import defjvp, deflinear, defvjp, shape_only
from s2sgrad.runtime import (
    sort_order,
    undiag,
    undiagonal,
    unindex,
    untake,
    untake_along_axis,
)

# --------------------------------------------------------------------------- subscripts


@defjvp(operator.getitem)
def getitem_jvp(ans, x, idx, *, dx):
    return dx[idx]


@defvjp(operator.getitem)
def getitem_vjp(g, ans, x, idx):
    return unindex(g, x, idx)


# --------------------------------------------------------------------------- takes and diagonals


deflinear(np.diag, params="v, k=0")


@defvjp(np.diag)
def diag_vjp(g, ans, v, k=0):
    return undiag(g, v, k)


deflinear(np.diagonal, params="a, offset=0, axis1=0, axis2=1")


@defvjp(np.diagonal)
def diagonal_vjp(g, ans, a, offset=0, axis1=0, axis2=1):
    return undiagonal(g, a, offset, axis1, axis2)


deflinear(np.trace, params="a, offset=0, axis1=0, axis2=1, dtype=None, out=None")


@defvjp(np.trace)
def trace_vjp(g, ans, a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    diagonal = np.diagonal(a, offset, axis1, axis2)
    return undiagonal(
        np.broadcast_to(np.expand_dims(g, -1), np.shape(diagonal)), a, offset, axis1, axis2
    )


deflinear(np.triu, params="m, k=0")


@defvjp(np.triu)
def triu_vjp(g, ans, m, k=0):
    return np.triu(g, k)


deflinear(np.tril, params="m, k=0")


@defvjp(np.tril)
def tril_vjp(g, ans, m, k=0):
    return np.tril(g, k)


deflinear(np.take, params="a, indices, axis=None, out=None, mode='raise'")


@defvjp(np.take)
def take_vjp(g, ans, a, indices, axis=None, out=None, mode="raise"):
    return untake(g, a, indices, axis, mode)


deflinear(np.take_along_axis, params="arr, indices, axis=-1")


@defvjp(np.take_along_axis)
def take_along_axis_vjp(g, ans, arr, indices, axis=-1):
    return untake_along_axis(g, arr, indices, axis)


@defjvp(np.sort)
def sort_jvp(ans, a, axis=-1, kind=None, order=None, *, da):
    return np.take_along_axis(da, sort_order(a, axis), axis)


@defvjp(np.sort)
def sort_vjp(g, ans, a, axis=-1, kind=None, order=None):
    return untake_along_axis(g, a, sort_order(a, axis), axis)


# --------------------------------------------------------------------------- derivative code's own

# Each helper writes a cotangent into zeros shaped like the array it answers for (on a
# diagonal, at taken positions): linear in g, reading only that array's shape. Its
# transpose reads the same positions back: np.diagonal, np.diag, np.take,
# np.take_along_axis.
deflinear(undiagonal, params="g, a, offset=0, axis1=0, axis2=1")
shape_only(undiagonal, "a")


@defvjp(undiagonal)
def undiagonal_vjp(g, ans, part, a, offset=0, axis1=0, axis2=1):
    return np.diagonal(g, offset, axis1, axis2)


deflinear(undiag, params="g, v, k=0")
shape_only(undiag, "v")


@defvjp(undiag)
def undiag_vjp(g, ans, part, v, k=0):
    return np.diag(g, k)


deflinear(untake, params="g, a, indices, axis=None, mode='raise'")
shape_only(untake, "a")


@defvjp(untake)
def untake_vjp(g, ans, part, a, indices, axis=None, mode="raise"):
    return np.take(g, indices, axis, mode=mode)


deflinear(untake_along_axis, params="g, arr, indices, axis=-1")
shape_only(untake_along_axis, "arr")


@defvjp(untake_along_axis)
def untake_along_axis_vjp(g, ans, part, arr, indices, axis=-1):
    return np.take_along_axis(g, indices, axis)
