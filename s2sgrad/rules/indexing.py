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

from s2sgrad.rules.registry import defjvp, defvjp
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


@defjvp(np.diag)
def diag_jvp(ans, v, k=0, *, dv):
    return np.diag(dv, k)


@defvjp(np.diag)
def diag_vjp(g, ans, v, k=0):
    return undiag(g, v, k)


@defjvp(np.diagonal)
def diagonal_jvp(ans, a, offset=0, axis1=0, axis2=1, *, da):
    return np.diagonal(da, offset, axis1, axis2)


@defvjp(np.diagonal)
def diagonal_vjp(g, ans, a, offset=0, axis1=0, axis2=1):
    return undiagonal(g, a, offset, axis1, axis2)


@defjvp(np.trace)
def trace_jvp(ans, a, offset=0, axis1=0, axis2=1, dtype=None, out=None, *, da):
    return np.trace(da, offset, axis1, axis2)


@defvjp(np.trace)
def trace_vjp(g, ans, a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    diagonal = np.diagonal(a, offset, axis1, axis2)
    return undiagonal(
        np.broadcast_to(np.expand_dims(g, -1), np.shape(diagonal)), a, offset, axis1, axis2
    )


@defjvp(np.triu)
def triu_jvp(ans, m, k=0, *, dm):
    return np.triu(dm, k)


@defvjp(np.triu)
def triu_vjp(g, ans, m, k=0):
    return np.triu(g, k)


@defjvp(np.tril)
def tril_jvp(ans, m, k=0, *, dm):
    return np.tril(dm, k)


@defvjp(np.tril)
def tril_vjp(g, ans, m, k=0):
    return np.tril(g, k)


@defjvp(np.take)
def take_jvp(ans, a, indices, axis=None, out=None, mode="raise", *, da):
    return np.take(da, indices, axis, mode=mode)


@defvjp(np.take)
def take_vjp(g, ans, a, indices, axis=None, out=None, mode="raise"):
    return untake(g, a, indices, axis, mode)


@defjvp(np.take_along_axis)
def take_along_axis_jvp(ans, arr, indices, axis=-1, *, darr):
    return np.take_along_axis(darr, indices, axis)


@defvjp(np.take_along_axis)
def take_along_axis_vjp(g, ans, arr, indices, axis=-1):
    return untake_along_axis(g, arr, indices, axis)


@defjvp(np.sort)
def sort_jvp(ans, a, axis=-1, kind=None, order=None, *, da):
    return np.take_along_axis(da, sort_order(a, axis), axis)


@defvjp(np.sort)
def sort_vjp(g, ans, a, axis=-1, kind=None, order=None):
    return untake_along_axis(g, a, sort_order(a, axis), axis)
