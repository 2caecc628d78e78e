"""Rules for products and linear algebra: dot, matmul, outer, inv, solve, det.

The reverse rules of ``matmul`` and ``dot`` call runtime helpers because the
adjoint depends on the operands' ranks (1-D promotion, batching, ``np.dot``'s
N-D contraction), which a straight-line template cannot branch on. The
forward rules are the product rule written with the primitive itself.
"""

from __future__ import annotations

import operator

import numpy as np

from s2sgrad.rules.registry import defjvp, defvjp
from s2sgrad.runtime import (
    dot_adjoint_lhs,
    dot_adjoint_rhs,
    matmul_adjoint_lhs,
    matmul_adjoint_rhs,
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
