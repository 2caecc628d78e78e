"""Rules for joining, splitting, tiling, padding, diagonals, triangles, takes and sorting.

Like ``shape.py`` these primitives move or copy elements without arithmetic:
the forward rules apply the primitive to the tangent, the reverse rules send
each element of the cotangent back to the element it was copied from (adding
up the copies: ``untile``, ``unrepeat``, ``untake``...). ``np.sort`` is
differentiated through its permutation, as jax does: ties keep their order
(a stable sort), so tied elements do not share the derivative.
"""

from __future__ import annotations

import numpy as np

from s2sgrad.rules.registry import defjvp, defvjp, restrict
from s2sgrad.runtime import (
    negated_shift,
    pad_tangent,
    sort_order,
    unconcatenate,
    undiag,
    undiagonal,
    unjoin,
    unpad,
    unrepeat,
    unsplit,
    untake,
    untake_along_axis,
    untile,
)

# --------------------------------------------------------------------------- joining and splitting


@defjvp(np.hstack)
def hstack_jvp(ans, tup, *, dtup):
    return np.hstack(dtup)


@defvjp(np.hstack)
def hstack_vjp(g, ans, tup):
    return unjoin(g, tup, "hstack")


@defjvp(np.vstack)
def vstack_jvp(ans, tup, *, dtup):
    return np.vstack(dtup)


@defvjp(np.vstack)
def vstack_vjp(g, ans, tup):
    return unjoin(g, tup, "vstack")


@defjvp(np.dstack)
def dstack_jvp(ans, tup, *, dtup):
    return np.dstack(dtup)


@defvjp(np.dstack)
def dstack_vjp(g, ans, tup):
    return unjoin(g, tup, "dstack")


@defjvp(np.column_stack)
def column_stack_jvp(ans, tup, *, dtup):
    return np.column_stack(dtup)


@defvjp(np.column_stack)
def column_stack_vjp(g, ans, tup):
    return unjoin(g, tup, "column_stack")


# np.split returns a list: its cotangent is the list of the pieces' cotangents.
@defjvp(np.split)
def split_jvp(ans, ary, indices_or_sections, axis=0, *, dary):
    return np.split(dary, indices_or_sections, axis)


@defvjp(np.split)
def split_vjp(g, ans, ary, indices_or_sections, axis=0):
    return unsplit(g, ans, axis)


@defjvp(np.array_split)
def array_split_jvp(ans, ary, indices_or_sections, axis=0, *, dary):
    return np.array_split(dary, indices_or_sections, axis)


@defvjp(np.array_split)
def array_split_vjp(g, ans, ary, indices_or_sections, axis=0):
    return unsplit(g, ans, axis)


# --------------------------------------------------------------------------- copies and moves


@defjvp(np.tile)
def tile_jvp(ans, A, reps, *, dA):
    return np.tile(dA, reps)


@defvjp(np.tile)
def tile_vjp(g, ans, A, reps):
    return untile(g, A, reps)


@defjvp(np.repeat)
def repeat_jvp(ans, a, repeats, axis=None, *, da):
    return np.repeat(da, repeats, axis)


@defvjp(np.repeat)
def repeat_vjp(g, ans, a, repeats, axis=None):
    return unrepeat(g, a, repeats, axis)


@defjvp(np.fliplr)
def fliplr_jvp(ans, m, *, dm):
    return np.fliplr(dm)


@defvjp(np.fliplr)
def fliplr_vjp(g, ans, m):
    return np.fliplr(g)


@defjvp(np.flipud)
def flipud_jvp(ans, m, *, dm):
    return np.flipud(dm)


@defvjp(np.flipud)
def flipud_vjp(g, ans, m):
    return np.flipud(g)


@defjvp(np.roll)
def roll_jvp(ans, a, shift, axis=None, *, da):
    return np.roll(da, shift, axis)


@defvjp(np.roll)
def roll_vjp(g, ans, a, shift, axis=None):
    return np.roll(g, negated_shift(shift), axis)


# Constant padding (the fill values carry no derivative) and the copying modes
# edge, reflect, symmetric and wrap; other modes raise NotImplementedError.
@defjvp(np.pad)
def pad_jvp(ans, array, pad_width, mode="constant", constant_values=0, *, darray):
    return pad_tangent(darray, pad_width, mode)


@defvjp(np.pad)
def pad_vjp(g, ans, array, pad_width, mode="constant", constant_values=0):
    return unpad(g, array, pad_width, mode)


restrict(
    np.pad,
    mode=("constant", "empty", "edge", "reflect", "symmetric", "wrap", ...),
    hint="s2sgrad differentiates np.pad with mode 'constant', 'edge', 'reflect', "
    "'symmetric' or 'wrap'",
)


@defjvp(np.atleast_1d)
def atleast_1d_jvp(ans, arys, *, darys):
    return np.atleast_1d(darys)


@defvjp(np.atleast_1d)
def atleast_1d_vjp(g, ans, arys):
    return np.reshape(g, np.shape(arys))


@defjvp(np.atleast_2d)
def atleast_2d_jvp(ans, arys, *, darys):
    return np.atleast_2d(darys)


@defvjp(np.atleast_2d)
def atleast_2d_vjp(g, ans, arys):
    return np.reshape(g, np.shape(arys))


@defjvp(np.atleast_3d)
def atleast_3d_jvp(ans, arys, *, darys):
    return np.atleast_3d(darys)


@defvjp(np.atleast_3d)
def atleast_3d_vjp(g, ans, arys):
    return np.reshape(g, np.shape(arys))


# np.append(arr, values) joins the flattened arrays; with an axis, concatenate along it.
@defjvp(np.append)
def append_jvp(ans, arr, values, axis=None, *, darr, dvalues):
    return (
        np.append(darr, np.zeros_like(values, dtype=float), axis),
        np.append(np.zeros_like(arr, dtype=float), dvalues, axis),
    )


@defvjp(np.append)
def append_vjp(g, ans, arr, values, axis=None):
    pieces = unconcatenate(g, [arr, values], axis)
    return pieces[0], pieces[1]


# --------------------------------------------------------------------------- diagonals and triangles


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


# --------------------------------------------------------------------------- takes and sorting


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
