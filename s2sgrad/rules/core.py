"""Rules for the helpers of derivative code itself (``runtime/core.py``): summing
broadcasts back, spreading tangents, and reads and writes at an index.

Derivative code is code s2sgrad can differentiate again (higher order): every helper
it calls has rules in both modes, like any NumPy function. These helpers are linear
in the cotangent or tangent they move, so their forward rules are the helper applied
to the tangent (``deflinear``), and their reverse rules are the transposed movement:
a sum for a spread, a spread for a sum, a read at ``idx`` for a write there.
"""

from __future__ import annotations

from s2sgrad.rules.registry import defjvp, deflinear, defvjp, shape_only
from s2sgrad.runtime import (
    accumulate,
    add_at,
    add_into,
    broadcast_like,
    cast_like,
    owned_copy,
    part_copy,
    set_at,
    unbroadcast,
    unindex,
    zero_at,
    zero_into,
    zeros_if_none,
)

# --------------------------------------------------------------------------- broadcasts

# Summing down to x's shape (or spreading up to it) and its transpose, the same
# helper the other way round: the cotangent of g is ct summed or spread to g's shape.
deflinear(unbroadcast, params="g, x")
shape_only(unbroadcast, "x")


@defvjp(unbroadcast)
def unbroadcast_vjp(g, ans, part, x):
    return unbroadcast(g, part)


deflinear(broadcast_like, params="t, result")
shape_only(broadcast_like, "result")


@defvjp(broadcast_like)
def broadcast_like_vjp(g, ans, t, result):
    return unbroadcast(g, t)


# --------------------------------------------------------------------------- at an index

# Zeros shaped like x with g added at idx: its transpose reads ct at idx.
deflinear(unindex, params="g, x, idx")
shape_only(unindex, "x")


@defvjp(unindex)
def unindex_vjp(g, ans, part, x, idx):
    return unbroadcast(g[idx], part)


@defjvp(add_at)
def add_at_jvp(ans, a, idx, b, *, da, db):
    return da, unindex(db, a, idx)


@defvjp(add_at)
def add_at_vjp(g, ans, a, idx, b):
    return g, None, unbroadcast(g[idx], b)


# A projection (zeros at idx): its own transpose.
deflinear(zero_at, params="d, idx")


@defvjp(zero_at)
def zero_at_vjp(g, ans, d, idx):
    return zero_at(g, idx)


# zero_at in place on an adjoint the derivative code owns: the same projection. Its
# tangent updates the accumulator's owned tangent in place too (transforms/forward.py).
deflinear(zero_into, params="d, idx")


@defvjp(zero_into)
def zero_into_vjp(g, ans, d, idx):
    return zero_at(g, idx)


# A read at idx (a copy where it would be a view): linear, its transpose a scatter.
deflinear(part_copy, params="d, idx")


@defvjp(part_copy)
def part_copy_vjp(g, ans, d, idx):
    return unindex(g, d, idx), None


# ``acc[idx] += g`` in place on an adjoint the derivative code owns. Its tangent is the
# same update of the accumulator's tangent (the forward transform keeps that tangent
# owned: transforms/forward.py), its transpose a read at idx like add_at's.
@defjvp(add_into)
def add_into_jvp(ans, acc, part, idx, *, dacc, dpart):
    return add_into(dacc, dpart, idx)


@defvjp(add_into)
def add_into_vjp(g, ans, acc, part, idx):
    return g, unbroadcast(g[idx], part), None


# A copy of a with b written at idx: linear in (a, b) together.
@defjvp(set_at)
def set_at_jvp(ans, a, idx, b, *, da, db):
    return set_at(da, idx, db)


@defvjp(set_at)
def set_at_vjp(g, ans, a, idx, b):
    return zero_at(g, idx), None, unbroadcast(g[idx], b)


# --------------------------------------------------------------------------- adjoint sums


# ``acc + c`` where None is zero and containers add leafwise: linear in both, and the
# tangents add the same way (operator.add would concatenate two tuples of tangents).
@defjvp(accumulate)
def accumulate_jvp(ans, acc, c, *, dacc, dc):
    return accumulate(dacc, dc)


@defvjp(accumulate)
def accumulate_vjp(g, ans, acc, c):
    return g, g


# The cotangent d, or zeros shaped like x when nothing reached it (None).
deflinear(zeros_if_none, params="d, x")
shape_only(zeros_if_none, "x")


@defvjp(zeros_if_none)
def zeros_if_none_vjp(g, ans, d, x):
    return g


# A gradient in its argument's dtype (a composition function's result): linear in d;
# the cotangent goes back in d's own dtype.
deflinear(cast_like, params="d, x")
shape_only(cast_like, "x")


@defvjp(cast_like)
def cast_like_vjp(g, ans, d, x):
    return cast_like(g, d)


# A copy that keeps None (forward mode's tangent of an array updated in place): linear.
deflinear(owned_copy, params="x")


@defvjp(owned_copy)
def owned_copy_vjp(g, ans, x):
    return g
