"""Rules for products and linear algebra: dot, matmul, outer, einsum..., inv, solve, det.

The reverse rules of ``matmul`` and ``dot`` call runtime helpers because the
adjoint depends on the operands' ranks (1-D promotion, batching, ``np.dot``'s
N-D contraction), which a straight-line template cannot branch on. The
forward rules are the product rule written with the primitive itself.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np

from s2sgrad.rules.registry import defjvp, deflinear, defvjp, shape_only, written_template
from s2sgrad.runtime import (
    accumulate,
    cross,
    dot_adjoint_lhs,
    dot_adjoint_rhs,
    dual_blocks,
    einsum_adjoint,
    einsum_tangent,
    inner_adjoint_lhs,
    inner_adjoint_rhs,
    kron_adjoint_lhs,
    kron_adjoint_rhs,
    matmul_adjoint_lhs,
    matmul_adjoint_rhs,
    multi_dot_adjoint,
    multi_dot_tangent,
    tensordot_adjoint_lhs,
    tensordot_adjoint_rhs,
    unbroadcast,
    undual_corner,
    undual_diagonal,
    with_slot,
    without_slot,
    zeros_if_none,
    zeros_like_tree,
)


@defjvp(np.matmul, operator.matmul)
def matmul_jvp(ans, x, y, *, dx, dy):
    return dx @ y, x @ dy


@defvjp(np.matmul, operator.matmul)
def matmul_vjp(g, ans, x, y):
    return matmul_adjoint_lhs(g, x, y), matmul_adjoint_rhs(g, x, y)


@defjvp(np.dot)
def dot_jvp(ans, a, b, out=None, *, da, db):
    return np.dot(da, b), np.dot(a, db)


@defvjp(np.dot)
def dot_vjp(g, ans, a, b, out=None):
    return dot_adjoint_lhs(g, a, b), dot_adjoint_rhs(g, a, b)


@defjvp(np.outer)
def outer_jvp(ans, a, b, out=None, *, da, db):
    return np.outer(da, b), np.outer(a, db)


@defvjp(np.outer)
def outer_vjp(g, ans, a, b, out=None):
    # np.outer flattens both operands first.
    return np.reshape(g @ np.ravel(b), np.shape(a)), np.reshape(np.ravel(a) @ g, np.shape(b))


@defjvp(np.vdot)
def vdot_jvp(ans, a, b, *, da, db):
    return np.vdot(da, b), np.vdot(a, db)


@defvjp(np.vdot)
def vdot_vjp(g, ans, a, b):
    # np.vdot flattens both operands (real arrays: no conjugation to undo).
    return np.reshape(g * np.ravel(b), np.shape(a)), np.reshape(g * np.ravel(a), np.shape(b))


@defjvp(np.inner)
def inner_jvp(ans, a, b, *, da, db):
    return np.inner(da, b), np.inner(a, db)


@defvjp(np.inner)
def inner_vjp(g, ans, a, b):
    return inner_adjoint_lhs(g, a, b), inner_adjoint_rhs(g, a, b)


@defjvp(np.tensordot)
def tensordot_jvp(ans, a, b, axes=2, *, da, db):
    return np.tensordot(da, b, axes), np.tensordot(a, db, axes)


@defvjp(np.tensordot)
def tensordot_vjp(g, ans, a, b, axes=2):
    return tensordot_adjoint_lhs(g, a, b, axes), tensordot_adjoint_rhs(g, a, b, axes)


@defjvp(np.kron)
def kron_jvp(ans, a, b, *, da, db):
    return np.kron(da, b), np.kron(a, db)


@defvjp(np.kron)
def kron_vjp(g, ans, a, b):
    return kron_adjoint_lhs(g, a, b), kron_adjoint_rhs(g, a, b)


# np.einsum(subscripts, *operands): templates take at most five operands, by position
# (the missing ones are None). Each operand's contribution is the einsum with its tangent
# in its place; its cotangent an einsum of g with the other operands. In the sublist form
# (np.einsum(a, [0, 1], b, [1, 2], [0, 2])) `subscripts` holds the first operand and the
# op<k> parameters the sublists and the other operands: so `subscripts` is differentiable
# too (a string never is active), and the helpers read the form off its type.
# `optimize` only changes the order of the contractions.
@defjvp(np.einsum)
def einsum_jvp(
    ans,
    subscripts,
    op0,
    op1=None,
    op2=None,
    op3=None,
    op4=None,
    optimize=False,
    *,
    dsubscripts,
    dop0,
    dop1,
    dop2,
    dop3,
    dop4,
):
    ops = (op0, op1, op2, op3, op4)
    return (
        einsum_tangent(subscripts, ops, -1, dsubscripts),
        einsum_tangent(subscripts, ops, 0, dop0),
        einsum_tangent(subscripts, ops, 1, dop1),
        einsum_tangent(subscripts, ops, 2, dop2),
        einsum_tangent(subscripts, ops, 3, dop3),
        einsum_tangent(subscripts, ops, 4, dop4),
    )


@defvjp(np.einsum)
def einsum_vjp(g, ans, subscripts, op0, op1=None, op2=None, op3=None, op4=None, optimize=False):
    ops = (op0, op1, op2, op3, op4)
    return (
        einsum_adjoint(g, subscripts, ops, -1),
        einsum_adjoint(g, subscripts, ops, 0),
        einsum_adjoint(g, subscripts, ops, 1),
        einsum_adjoint(g, subscripts, ops, 2),
        einsum_adjoint(g, subscripts, ops, 3),
        einsum_adjoint(g, subscripts, ops, 4),
    )


@defjvp(np.linalg.multi_dot)
def multi_dot_jvp(ans, arrays, *, darrays):
    return multi_dot_tangent(arrays, darrays)


@defvjp(np.linalg.multi_dot)
def multi_dot_vjp(g, ans, arrays):
    return multi_dot_adjoint(g, arrays)


@defjvp(np.linalg.inv)
def inv_jvp(ans, a, *, da):
    return -ans @ da @ ans


@defvjp(np.linalg.inv)
def inv_vjp(g, ans, a):
    ans_t = np.swapaxes(ans, -1, -2)
    return -ans_t @ g @ ans_t


@defjvp(np.linalg.solve)
def solve_jvp(ans, a, b, *, da, db):
    return -np.linalg.solve(a, da @ ans), np.linalg.solve(a, db)


@defvjp(np.linalg.solve)
def solve_vjp(g, ans, a, b):
    db = np.linalg.solve(np.swapaxes(a, -1, -2), g)
    # ans = inv(a) @ b, so a's cotangent is that of a in `a @ ans`, with the opposite sign.
    return -matmul_adjoint_lhs(db, a, ans), db


@defjvp(np.linalg.det)
def det_jvp(ans, a, *, da):
    # Jacobi's formula; like inv, it needs a non-singular a.
    return ans * np.trace(np.linalg.solve(a, da), axis1=-2, axis2=-1)


@defvjp(np.linalg.det)
def det_vjp(g, ans, a):
    return (g * ans)[..., None, None] * np.swapaxes(np.linalg.inv(a), -1, -2)


# --------------------------------------------------------------------------- vector products


@defjvp(np.cross, cross)
def cross_jvp(ans, a, b, *, da, db):
    # 3-vectors along the last axis.
    return np.cross(da, b), np.cross(a, db)


@defvjp(np.cross, cross)
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


# --------------------------------------------------------------------------- derivative code's own


def _product_adjoint_rules(product: str, lhs: Callable, rhs: Callable, axes: str = "") -> None:
    """Rules for the adjoint helpers ``lhs``/``rhs`` of a bilinear product ``P(a, b)``.

    ``lhs(g, a, b)``, the cotangent of ``a``, is bilinear in ``(g, b)`` and reads only the
    shape of ``a``; ``rhs(g, a, b)`` likewise in ``(g, a)``. Their transposes are the
    product itself and the other adjoint: for a cotangent ``c`` shaped like ``a``,
    ``<c, lhs(g, a, b)> = <g, P(c, b)>``, so ``g`` gets ``P(c, b)`` and ``b`` gets
    ``rhs(g, c, b)``. ``product`` spells ``P`` with ``{}`` for its operands; ``axes``
    is ``", axes=2"`` for tensordot's extra parameter.
    """
    more = ", axes" if axes else ""
    namespace = globals()
    L, R = lhs.__name__, rhs.__name__
    defjvp(lhs)(
        written_template(
            f"def {L}_jvp(ans, g, a, b{axes}, *, dg, db):\n"
            f"    return {L}(dg, a, b{more}), {L}(g, a, db{more})\n",
            namespace,
        )
    )
    defjvp(rhs)(
        written_template(
            f"def {R}_jvp(ans, g, a, b{axes}, *, dg, da):\n"
            f"    return {R}(dg, a, b{more}), {R}(g, da, b{more})\n",
            namespace,
        )
    )
    defvjp(lhs)(
        written_template(
            f"def {L}_vjp(g, ans, part, a, b{axes}):\n"
            f"    return unbroadcast({product.format('g', 'b')}, part), None, "
            f"{R}(part, g, b{more})\n",
            namespace,
        )
    )
    defvjp(rhs)(
        written_template(
            f"def {R}_vjp(g, ans, part, a, b{axes}):\n"
            f"    return unbroadcast({product.format('a', 'g')}, part), {L}(part, a, g{more})\n",
            namespace,
        )
    )
    shape_only(lhs, "a")
    shape_only(rhs, "b")


_product_adjoint_rules("np.matmul({}, {})", matmul_adjoint_lhs, matmul_adjoint_rhs)
_product_adjoint_rules("np.dot({}, {})", dot_adjoint_lhs, dot_adjoint_rhs)
_product_adjoint_rules("np.inner({}, {})", inner_adjoint_lhs, inner_adjoint_rhs)
_product_adjoint_rules("np.kron({}, {})", kron_adjoint_lhs, kron_adjoint_rhs)
_product_adjoint_rules(
    "np.tensordot({}, {}, axes)", tensordot_adjoint_lhs, tensordot_adjoint_rhs, ", axes=2"
)


# multi_dot's tangent T(arrays, tangents) and cotangents A(g, arrays): T is linear in the
# tangents, A in g, and A is T's transpose. In the arrays they change with the chain's
# second derivative, which the block factors [[a, t], [0, a]] (dual_blocks) carry: their
# product is [[P, T], [0, P]], so T's derivative along darrays is the upper-right block
# of the blocks' own tangent along [[da, 0], [0, da]], and <g, T> is <G, product> for G
# the blocks' cotangent with g in its upper-right corner, whose cotangents A(G, blocks)
# give the arrays theirs on the blocks' diagonals (undual_diagonal).
@defjvp(multi_dot_tangent)
def multi_dot_tangent_jvp(ans, arrays, tangents, *, darrays, dtangents):
    blocks = dual_blocks(arrays, tangents)
    along = dual_blocks(darrays, zeros_like_tree(darrays))
    lifted = multi_dot_tangent(blocks, along)
    corner = lifted[: np.shape(lifted)[0] // 2, np.shape(lifted)[1] // 2 :]
    return np.reshape(corner, np.shape(ans)), multi_dot_tangent(arrays, dtangents)


@defvjp(multi_dot_tangent)
def multi_dot_tangent_vjp(g, ans, arrays, tangents):
    blocks = dual_blocks(arrays, tangents)
    rows = np.shape(blocks[0])[0] // 2
    cols = np.shape(blocks[-1])[1] // 2
    corner = np.pad(np.reshape(g, (rows, cols)), ((0, rows), (cols, 0)))
    return undual_diagonal(multi_dot_adjoint(corner, blocks), arrays), multi_dot_adjoint(g, arrays)


# (one expression, the sum of both tangents: the cotangents are a list, which `+` joins)
@defjvp(multi_dot_adjoint)
def multi_dot_adjoint_jvp(ans, part, arrays, *, dpart, darrays):
    blocks = dual_blocks(arrays, darrays)
    rows = np.shape(blocks[0])[0] // 2
    cols = np.shape(blocks[-1])[1] // 2
    corner = np.pad(np.reshape(part, (rows, cols)), ((0, rows), (cols, 0)))
    curved = undual_diagonal(multi_dot_adjoint(corner, blocks), arrays)
    return accumulate(multi_dot_adjoint(dpart, arrays), curved)


@defvjp(multi_dot_adjoint)
def multi_dot_adjoint_vjp(g, ans, part, arrays):
    blocks = dual_blocks(arrays, g)
    rows = np.shape(blocks[0])[0] // 2
    cols = np.shape(blocks[-1])[1] // 2
    corner = np.pad(np.reshape(part, (rows, cols)), ((0, rows), (cols, 0)))
    curved = undual_diagonal(multi_dot_adjoint(corner, blocks), arrays)
    return multi_dot_tangent(arrays, g), curved


# The blocks are linear in (arrays, tangents) together; their transposes take each
# block's diagonal blocks (summed) and its upper-right block, whose transposes are the
# blocks again.
@defjvp(dual_blocks)
def dual_blocks_jvp(ans, arrays, tangents, *, darrays, dtangents):
    return dual_blocks(darrays, dtangents)


@defvjp(dual_blocks)
def dual_blocks_vjp(g, ans, arrays, tangents):
    return undual_diagonal(g, arrays), undual_corner(g, arrays)


deflinear(undual_diagonal, params="c, arrays")
shape_only(undual_diagonal, "arrays")


@defvjp(undual_diagonal)
def undual_diagonal_vjp(g, ans, c, arrays):
    return dual_blocks(g, zeros_like_tree(g))


deflinear(undual_corner, params="c, arrays")
shape_only(undual_corner, "arrays")


@defvjp(undual_corner)
def undual_corner_vjp(g, ans, c, arrays):
    return dual_blocks(zeros_like_tree(g), g)


# einsum's tangent T = E(operands with operand k replaced by t) and cotangent A_k(g) (of
# operand k) are multilinear in the operands, like einsum: each term of their derivatives
# is the same helper with one more operand replaced by its tangent (with_slot). A term
# that does not exist (an absent operand's, or operand k's, which T replaces and A_k reads
# only the shape of) is None, made zeros of the right shape (zeros_if_none); the rules
# return one expression (the sum of every tangent's terms), so a helper that gives None
# has a None tangent. The transposes: T's in the other operands are the cotangents A_j
# of the einsum with t in place of operand k (zeros for operand k itself), and A_k's in g
# is T with g in that place. (Derivative code's own, for the subscripts-string form. In
# the sublist form the first operand is the `subscripts` argument, which these rules do
# not differentiate: a second derivative there is refused.)
@defjvp(einsum_tangent)
def einsum_tangent_jvp(ans, subscripts, operands, k, t, *, doperands, dt):
    terms = accumulate(
        accumulate(
            einsum_tangent(subscripts, with_slot(operands, 0, doperands[0], k), k, t),
            einsum_tangent(subscripts, with_slot(operands, 1, doperands[1], k), k, t),
        ),
        accumulate(
            accumulate(
                einsum_tangent(subscripts, with_slot(operands, 2, doperands[2], k), k, t),
                einsum_tangent(subscripts, with_slot(operands, 3, doperands[3], k), k, t),
            ),
            einsum_tangent(subscripts, with_slot(operands, 4, doperands[4], k), k, t),
        ),
    )
    return accumulate(zeros_if_none(terms, ans), einsum_tangent(subscripts, operands, k, dt))


@defvjp(einsum_tangent)
def einsum_tangent_vjp(g, ans, subscripts, operands, k, t):
    cotangents = (
        zeros_if_none(einsum_adjoint(g, subscripts, with_slot(operands, k, t, 0), 0), operands[0]),
        zeros_if_none(einsum_adjoint(g, subscripts, with_slot(operands, k, t, 1), 1), operands[1]),
        zeros_if_none(einsum_adjoint(g, subscripts, with_slot(operands, k, t, 2), 2), operands[2]),
        zeros_if_none(einsum_adjoint(g, subscripts, with_slot(operands, k, t, 3), 3), operands[3]),
        zeros_if_none(einsum_adjoint(g, subscripts, with_slot(operands, k, t, 4), 4), operands[4]),
    )
    to_t = zeros_if_none(einsum_adjoint(g, subscripts, with_slot(operands, k, t), k), t)
    return None, cotangents, None, to_t


@defjvp(einsum_adjoint)
def einsum_adjoint_jvp(ans, part, subscripts, operands, k, *, dpart, doperands):
    terms = accumulate(
        accumulate(
            einsum_adjoint(part, subscripts, with_slot(operands, 0, doperands[0], k), k),
            einsum_adjoint(part, subscripts, with_slot(operands, 1, doperands[1], k), k),
        ),
        accumulate(
            accumulate(
                einsum_adjoint(part, subscripts, with_slot(operands, 2, doperands[2], k), k),
                einsum_adjoint(part, subscripts, with_slot(operands, 3, doperands[3], k), k),
            ),
            einsum_adjoint(part, subscripts, with_slot(operands, 4, doperands[4], k), k),
        ),
    )
    return accumulate(einsum_adjoint(dpart, subscripts, operands, k), zeros_if_none(terms, ans))


@defvjp(einsum_adjoint)
def einsum_adjoint_vjp(g, ans, part, subscripts, operands, k):
    cotangents = (
        zeros_if_none(
            einsum_adjoint(part, subscripts, with_slot(operands, k, g, 0), 0), operands[0]
        ),
        zeros_if_none(
            einsum_adjoint(part, subscripts, with_slot(operands, k, g, 1), 1), operands[1]
        ),
        zeros_if_none(
            einsum_adjoint(part, subscripts, with_slot(operands, k, g, 2), 2), operands[2]
        ),
        zeros_if_none(
            einsum_adjoint(part, subscripts, with_slot(operands, k, g, 3), 3), operands[3]
        ),
        zeros_if_none(
            einsum_adjoint(part, subscripts, with_slot(operands, k, g, 4), 4), operands[4]
        ),
    )
    return zeros_if_none(einsum_tangent(subscripts, operands, k, g), part), None, cotangents


# The tuple with one entry replaced: linear in (operands, t) together; its transpose sends
# the cotangent's entry k to t and the rest to the operands.
@defjvp(with_slot)
def with_slot_jvp(ans, operands, k, t, skip=None, *, doperands, dt):
    return with_slot(doperands, k, dt, skip)


@defvjp(with_slot)
def with_slot_vjp(g, ans, operands, k, t, skip=None):
    return zeros_if_none(without_slot(g, k), operands), None, zeros_if_none(g[k], t)


deflinear(without_slot, params="c, k")


@defvjp(without_slot)
def without_slot_vjp(g, ans, c, k):
    return without_slot(g, k)
