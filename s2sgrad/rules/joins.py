"""Rules for joining and splitting arrays: concatenate, stack and their ``h``/``v``/``d``/
``column`` forms, ``np.r_``/``np.c_``, append, split, tile, repeat and pad.

Like ``shape.py`` these move or copy elements without arithmetic: the forward rules
apply the primitive to the tangent, the reverse rules send each element of the
cotangent back to the element it was copied from, adding up copies (``unjoin``,
``unsplit``, ``untile``, ``unrepeat``, ``unpad``).
"""

from __future__ import annotations

import numpy as np

from s2sgrad.rules.registry import defjvp, deflinear, defvjp, restrict, shape_only
from s2sgrad.runtime import (
    concatenate_items,
    pad_tangent,
    rejoin,
    unconcatenate,
    unconcatenate_items,
    unjoin,
    unpad,
    unrepeat,
    unsplit,
    unstack,
    untile,
    zeros_if_none,
)

# --------------------------------------------------------------------------- joining and splitting


deflinear(np.concatenate, params="arrays, axis=0, out=None")


@defvjp(np.concatenate)
def concatenate_vjp(g, ans, arrays, axis=0, out=None):
    return unconcatenate(g, arrays, axis)


deflinear(np.stack, params="arrays, axis=0, out=None")


@defvjp(np.stack)
def stack_vjp(g, ans, arrays, axis=0, out=None):
    return unstack(g, axis, arrays)


# np.r_[...] and np.c_[...] (index tricks: a subscript of an object), which the frontend
# lowers to concatenate_items(items, how, directive); a slice item is a constant np.arange.
deflinear(concatenate_items, params="items, how='r_', directive=None")


@defvjp(concatenate_items)
def concatenate_items_vjp(g, ans, items, how="r_", directive=None):
    return unconcatenate_items(g, items, how, directive)


deflinear(np.hstack, params="tup")


@defvjp(np.hstack)
def hstack_vjp(g, ans, tup):
    return unjoin(g, tup, "hstack")


deflinear(np.vstack, params="tup")


@defvjp(np.vstack)
def vstack_vjp(g, ans, tup):
    return unjoin(g, tup, "vstack")


deflinear(np.dstack, params="tup")


@defvjp(np.dstack)
def dstack_vjp(g, ans, tup):
    return unjoin(g, tup, "dstack")


deflinear(np.column_stack, params="tup")


@defvjp(np.column_stack)
def column_stack_vjp(g, ans, tup):
    return unjoin(g, tup, "column_stack")


# np.split returns a list: its cotangent is the list of the pieces' cotangents.
deflinear(np.split, params="ary, indices_or_sections, axis=0")


@defvjp(np.split)
def split_vjp(g, ans, ary, indices_or_sections, axis=0):
    return unsplit(g, ans, axis)


deflinear(np.array_split, params="ary, indices_or_sections, axis=0")


@defvjp(np.array_split)
def array_split_vjp(g, ans, ary, indices_or_sections, axis=0):
    return unsplit(g, ans, axis)


deflinear(np.tile, params="A, reps")


@defvjp(np.tile)
def tile_vjp(g, ans, A, reps):
    return untile(g, A, reps)


deflinear(np.repeat, params="a, repeats, axis=None")


@defvjp(np.repeat)
def repeat_vjp(g, ans, a, repeats, axis=None):
    return unrepeat(g, a, repeats, axis)


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


# --------------------------------------------------------------------------- derivative code's own

# Each helper sums a cotangent back over copies (tiles, repeats) or cuts out the interior
# of a padding: linear in g, reading only the shape of the array it answers for. Its
# transpose copies again: np.tile, np.repeat, and pad_tangent (the tangent of np.pad),
# whose own transpose is unpad.
deflinear(untile, params="g, a, reps")
shape_only(untile, "a")


@defvjp(untile)
def untile_vjp(g, ans, part, a, reps):
    return np.tile(g, reps)


deflinear(unrepeat, params="g, a, repeats, axis=None")
shape_only(unrepeat, "a")


@defvjp(unrepeat)
def unrepeat_vjp(g, ans, part, a, repeats, axis=None):
    return np.repeat(g, repeats, axis)


deflinear(unpad, params="g, array, pad_width, mode='constant'")
shape_only(unpad, "array")


@defvjp(unpad)
def unpad_vjp(g, ans, part, array, pad_width, mode="constant"):
    return pad_tangent(g, pad_width, mode)


deflinear(pad_tangent, params="t, pad_width, mode='constant'")


@defvjp(pad_tangent)
def pad_tangent_vjp(g, ans, t, pad_width, mode="constant"):
    return unpad(g, t, pad_width, mode)


# The cotangent of a join split back into one cotangent per joined array (a list), and its
# transpose: the join again, with zeros for the pieces nothing used (None). Of the joined
# arrays the helpers read only the shapes.
deflinear(unconcatenate, params="g, arrays, axis=0")
shape_only(unconcatenate, "arrays")


@defvjp(unconcatenate)
def unconcatenate_vjp(g, ans, part, arrays, axis=0):
    return unsplit(g, ans, axis)


deflinear(unstack, params="g, axis=0, arrays=None")
shape_only(unstack, "arrays")


@defvjp(unstack)
def unstack_vjp(g, ans, part, axis=0, arrays=None):
    return np.stack(zeros_if_none(g, ans), axis)


deflinear(unjoin, params="g, arrays, how")
shape_only(unjoin, "arrays")


@defvjp(unjoin)
def unjoin_vjp(g, ans, part, arrays, how):
    return rejoin(g, ans, how)


# (Parameters named as the rule sees them: a template's own result is `ans`.)
deflinear(rejoin, params="g, pieces, how")
shape_only(rejoin, "pieces")


@defvjp(rejoin)
def rejoin_vjp(g, ans, part, pieces, how):
    return unjoin(g, pieces, how)


deflinear(unconcatenate_items, params="g, items, how='r_', directive=None")
shape_only(unconcatenate_items, "items")


@defvjp(unconcatenate_items)
def unconcatenate_items_vjp(g, ans, part, items, how="r_", directive=None):
    return concatenate_items(zeros_if_none(g, ans), how, directive)


deflinear(unsplit, params="g, pieces, axis=0")
shape_only(unsplit, "pieces")


@defvjp(unsplit)
def unsplit_vjp(g, ans, part, pieces, axis=0):
    return unconcatenate(g, pieces, axis)
