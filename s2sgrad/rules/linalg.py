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

from s2sgrad.rules.registry import defjvp, defvjp, shape_only, written_template
from s2sgrad.runtime import (
    dot_adjoint_lhs,
    dot_adjoint_rhs,
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
