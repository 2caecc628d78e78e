"""Helpers of the product rules (``rules/linalg.py``): adjoints of matmul, dot,
tensordot, inner, kron, einsum and multi_dot.

Written once for every backend: see ``s2sgrad/runtime/__init__.py``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import numpy as xp

from s2sgrad.runtime.core import (
    _asarray,
    _float_dtype,
    _host,
    _per_element,
    _sequence_like,
    inverse_permutation,
    unbroadcast,
)


def _matmul_operands(g: Any, a: Any, b: Any) -> tuple[Any, Any, Any]:
    """Promote 1-D operands as matmul does: ``a`` to a row, ``b`` to a column, ``g`` to match."""
    a, b, g = _asarray(a), _asarray(b), _asarray(g)
    if b.ndim == 1:
        b = b[:, None]
        g = g[..., None]
    if a.ndim == 1:
        a = a[None, :]
        g = g[..., None, :]
    return g, a, b


def matmul_adjoint_lhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``a`` in ``a @ b``: ``g @ b.T``, summed over broadcast batch axes.

    Handles matmul's 1-D promotions (vector @ matrix, matrix @ vector,
    vector @ vector) and batched operands of different ranks.
    """
    g2, a2, b2 = _matmul_operands(g, a, b)
    da = unbroadcast(xp.matmul(g2, xp.swapaxes(b2, -1, -2)), a2)
    return xp.reshape(da, xp.shape(a))


def matmul_adjoint_rhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``b`` in ``a @ b``: ``a.T @ g``, summed over broadcast batch axes."""
    g2, a2, b2 = _matmul_operands(g, a, b)
    db = unbroadcast(xp.matmul(xp.swapaxes(a2, -1, -2), g2), b2)
    return xp.reshape(db, xp.shape(b))


def dot_adjoint_lhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``a`` in ``np.dot(a, b)``.

    ``np.dot`` is a product when either operand is a scalar; otherwise it
    contracts the last axis of ``a`` with the second-to-last of ``b`` (the
    only axis of a 1-D ``b``), and the result's axes are ``a``'s other axes
    followed by ``b``'s other axes.
    """
    a_nd, b_nd = np.ndim(a), np.ndim(b)
    if a_nd == 0 or b_nd == 0:
        return unbroadcast(np.multiply(g, b), a)
    g = np.asarray(g)
    if b_nd == 1:
        return np.multiply.outer(g, b)
    b_free = list(range(b_nd - 2)) + [b_nd - 1]
    return np.tensordot(g, b, axes=(list(range(a_nd - 1, g.ndim)), b_free))


def dot_adjoint_rhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``b`` in ``np.dot(a, b)`` (see ``dot_adjoint_lhs``)."""
    a_nd, b_nd = xp.ndim(a), xp.ndim(b)
    if a_nd == 0 or b_nd == 0:
        return unbroadcast(xp.multiply(g, a), b)
    g = xp.asarray(g)
    lead = list(range(a_nd - 1))
    db = xp.tensordot(a, g, axes=(lead, lead))  # axes: (contracted,) + b's free axes
    if b_nd == 1:
        return db
    return xp.moveaxis(db, 0, -2)


@_host
def _normalize_tensordot_axes(axes: Any, a_nd: int, b_nd: int) -> tuple[list[int], list[int]]:
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        return list(range(a_nd - n, a_nd)), list(range(n))
    a_axes, b_axes = axes
    a_axes = [a_axes] if isinstance(a_axes, (int, np.integer)) else list(a_axes)
    b_axes = [b_axes] if isinstance(b_axes, (int, np.integer)) else list(b_axes)
    return [int(x) % a_nd for x in a_axes], [int(x) % b_nd for x in b_axes]


def cross(
    a: Any, b: Any, axisa: int = -1, axisb: int = -1, axisc: int = -1, axis: Any = None
) -> Any:
    """``np.cross(a, b, ...)``; for 3-vectors along the last axis of two float arrays of
    one dtype (rotations of many points: ``np.cross(axis, X)``), computed component by
    component into one array, in a third of ``np.cross``'s time (it moves axes and copies
    its operands). NumPy derivative code calls it wherever the user's code and the rules
    call ``np.cross``; it has ``np.cross``'s derivative rules.
    """
    if (
        type(a) is np.ndarray
        and type(b) is np.ndarray
        and (axisa, axisb, axisc, axis) == (-1, -1, -1, None)
        and a.shape[-1:] == (3,) == b.shape[-1:]
        and a.dtype == b.dtype
        and a.dtype.kind == "f"
    ):
        a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
        b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
        out = np.empty(np.broadcast_shapes(a.shape, b.shape), a.dtype)
        np.multiply(a1, b2, out=out[..., 0])
        out[..., 0] -= a2 * b1
        np.multiply(a2, b0, out=out[..., 1])
        out[..., 1] -= a0 * b2
        np.multiply(a0, b1, out=out[..., 2])
        out[..., 2] -= a1 * b0
        return out
    return xp.cross(a, b, axisa, axisb, axisc, axis)


def tensordot_adjoint_lhs(g: Any, a: Any, b: Any, axes: Any = 2) -> Any:
    """The cotangent of ``a`` in ``np.tensordot(a, b, axes)``.

    The result's axes are ``a``'s free axes then ``b``'s; contracting ``g``
    with ``b`` over ``b``'s free axes leaves ``a``'s free axes followed by
    the contracted ones (in ``b``'s order), which a transpose puts back in
    ``a``'s order.
    """
    a_nd, b_nd = xp.ndim(a), xp.ndim(b)
    a_axes, b_axes = _normalize_tensordot_axes(axes, a_nd, b_nd)
    a_free = [i for i in range(a_nd) if i not in a_axes]
    b_free = [i for i in range(b_nd) if i not in b_axes]
    g_b = list(range(len(a_free), len(a_free) + len(b_free)))
    da = xp.tensordot(g, b, axes=(g_b, b_free))
    # The contracted axes come out in b's order; name each by the axis of a it pairs with.
    paired = [a_axes[b_axes.index(j)] for j in sorted(b_axes)]
    return xp.transpose(da, inverse_permutation(a_free + paired))


def tensordot_adjoint_rhs(g: Any, a: Any, b: Any, axes: Any = 2) -> Any:
    """The cotangent of ``b`` in ``np.tensordot(a, b, axes)`` (see ``tensordot_adjoint_lhs``)."""
    a_nd, b_nd = xp.ndim(a), xp.ndim(b)
    a_axes, b_axes = _normalize_tensordot_axes(axes, a_nd, b_nd)
    a_free = [i for i in range(a_nd) if i not in a_axes]
    db = xp.tensordot(a, g, axes=(a_free, list(range(len(a_free)))))
    b_free = [i for i in range(b_nd) if i not in b_axes]
    paired = [b_axes[a_axes.index(i)] for i in sorted(a_axes)]
    return xp.transpose(db, inverse_permutation(paired + b_free))


def inner_adjoint_lhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``a`` in ``np.inner(a, b)`` (a product when either is a scalar)."""
    if xp.ndim(a) == 0 or xp.ndim(b) == 0:
        return unbroadcast(xp.multiply(g, b), a)
    return tensordot_adjoint_lhs(g, a, b, ([-1], [-1]))


def inner_adjoint_rhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``b`` in ``np.inner(a, b)``."""
    if xp.ndim(a) == 0 or xp.ndim(b) == 0:
        return unbroadcast(xp.multiply(g, a), b)
    return tensordot_adjoint_rhs(g, a, b, ([-1], [-1]))


@_host
def _kron_shapes(a: Any, b: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    a_shape, b_shape = np.shape(a), np.shape(b)
    d = max(len(a_shape), len(b_shape))
    return (1,) * (d - len(a_shape)) + a_shape, (1,) * (d - len(b_shape)) + b_shape


def kron_adjoint_lhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``a`` in ``np.kron(a, b)``: each block of ``g`` contracted with ``b``."""
    a_shape, b_shape = _kron_shapes(a, b)
    d = len(a_shape)
    blocks = xp.reshape(g, [n for pair in zip(a_shape, b_shape) for n in pair])
    da = xp.tensordot(
        blocks, xp.reshape(b, b_shape), axes=(list(range(1, 2 * d, 2)), list(range(d)))
    )
    return xp.reshape(da, xp.shape(a))


def kron_adjoint_rhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``b`` in ``np.kron(a, b)``: the blocks of ``g`` weighted by ``a``."""
    a_shape, b_shape = _kron_shapes(a, b)
    d = len(a_shape)
    blocks = xp.reshape(g, [n for pair in zip(a_shape, b_shape) for n in pair])
    db = xp.tensordot(
        blocks, xp.reshape(a, a_shape), axes=(list(range(0, 2 * d, 2)), list(range(d)))
    )
    return xp.reshape(db, xp.shape(b))


_EINSUM_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@_host
def _einsum_terms(subscripts: str, operands: list[Any]) -> tuple[list[str], str]:
    """Explicit subscripts per operand and for the output, with every ``...`` spelled out."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        inputs, output = subscripts.split("->")
    else:
        inputs, output = subscripts, None
    terms = inputs.split(",")
    used = set(subscripts) - set(".,->")
    spare = [c for c in _EINSUM_LETTERS if c not in used]
    ell_nd = max(
        [np.ndim(op) - len(t.replace("...", "")) for t, op in zip(terms, operands) if "..." in t],
        default=0,
    )
    ell = "".join(spare[:ell_nd])
    expanded = []
    for t, op in zip(terms, operands, strict=True):
        if "..." in t:
            k = np.ndim(op) - len(t.replace("...", ""))
            t = t.replace("...", ell[ell_nd - k :] if k else "")
        expanded.append(t)
    if output is None:
        letters = "".join(expanded)
        named = sorted(c for c in set(inputs) - set(".,") if letters.count(c) == 1)
        output = ell + "".join(c for c in named if c not in ell)
    else:
        output = output.replace("...", ell)
    return expanded, output


@_host
def _einsum_sublists(arguments: list[Any]) -> tuple[str, list[Any]]:
    """The subscripts string and operands of ``np.einsum``'s sublist form.

    ``np.einsum(a, [0, 1], b, [1, 2], [0, 2])`` alternates operands and lists of
    axis labels (integers, or Ellipsis), with an optional output list last; it is
    ``np.einsum("ab,bc->ac", a, b)``.
    """

    def letters(sublist: Any) -> str:
        return "".join(
            "..." if s is Ellipsis else _EINSUM_LETTERS[operator.index(s)] for s in sublist
        )

    operands = list(arguments[0::2])
    inputs = [letters(s) for s in arguments[1::2]]
    spec = ",".join(inputs[: len(operands)])
    if len(arguments) % 2:  # an output sublist
        operands = operands[:-1]
        spec = ",".join(inputs) + "->" + letters(arguments[-1])
    return spec, operands


@_host
def _einsum_form(subscripts: Any, operands: Any, k: int) -> tuple[str, list[Any], int]:
    """(subscripts string, operands, index of the operand ``k`` names) for either einsum form.

    In the sublist form the rule's ``subscripts`` parameter holds the first operand:
    ``k == -1`` names it, and ``k`` the rule's ``op<k>`` parameter otherwise.
    """
    ops = [op for op in operands if op is not None]
    if isinstance(subscripts, str):
        return subscripts, ops, k
    spec, sub_ops = _einsum_sublists([subscripts, *ops])
    return spec, sub_ops, (k + 1) // 2


@_host
def _einsum_operand(subscripts: Any, operands: Any, k: int) -> bool:
    """Whether the rule's parameter ``k`` (-1: ``subscripts``) holds an operand of the call
    (not the subscripts string, a sublist, or the output sublist that ends the sublist form).

    False too where the arguments make no einsum at all: ``operands`` None (see
    ``with_slot``), or operands that do not match the subscripts, which the rules of these
    helpers pass in place of an absent operand's tangent (never evaluated by the compiler,
    which skips inactive arguments).
    """
    if operands is None:
        return False
    if isinstance(subscripts, str):
        inputs = subscripts.split("->")[0].count(",") + 1
        return 0 <= k < inputs and sum(op is not None for op in operands) == inputs
    count = 1 + sum(op is not None for op in operands)  # arguments of the call
    position = k + 1
    sublists = [op for op in operands if op is not None][::2]
    if not all(_is_sublist(s) for s in sublists):
        return False
    return position % 2 == 0 and not (count % 2 and position == count - 1)


@_host
def _is_sublist(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(
        s is Ellipsis or isinstance(s, (int, np.integer)) for s in value
    )


def einsum_tangent(subscripts: Any, operands: Any, k: int, t: Any) -> Any:
    """``np.einsum(subscripts, *operands)`` with the ``k``-th operand replaced by the tangent ``t``.

    Entries of ``operands`` that are None (operands the call did not pass) are dropped.
    In the sublist form (``subscripts`` is the first operand) ``k == -1`` names it.
    None where ``t`` or ``operands`` is None (see ``with_slot``).
    """
    if t is None or not _einsum_operand(subscripts, operands, k):
        return None  # the subscripts string, or a sublist: no tangent
    spec, ops, k = _einsum_form(subscripts, operands, k)
    ops = [t if i == k else op for i, op in enumerate(ops)]
    return xp.einsum(spec, *ops)


def einsum_adjoint(g: Any, subscripts: Any, operands: Any, k: int) -> Any:
    """The cotangent of the ``k``-th operand of ``np.einsum(subscripts, *operands)``.

    It is an einsum of ``g`` with the other operands, whose output is the
    ``k``-th operand's subscripts. Implicit outputs and ``...`` are spelled
    out first. A letter repeated in that operand (a diagonal, as in
    ``"ii->"``) gets an identity matrix, a letter only it carries (summed
    away) a vector of ones, and ``...`` axes it broadcast are summed back.
    Entries of ``operands`` that are None are dropped; for them the result is None.
    In the sublist form (``subscripts`` is the first operand) ``k == -1`` names it.
    The cotangent of an operand the call did not pass (an entry None of ``operands``, in
    the subscripts-string form) is a 0-d zero, which the rules of these helpers use as
    such (a cotangent of nothing). None where the arguments make no einsum (``g`` or
    ``operands`` None, see ``with_slot``).
    """
    if g is None or operands is None:
        return None
    if isinstance(subscripts, str) and 0 <= k < len(operands) and operands[k] is None:
        inputs = subscripts.split("->")[0].count(",") + 1
        if k >= inputs and sum(op is not None for op in operands) == inputs:
            return xp.zeros((), dtype=_float_dtype(g))
    if not _einsum_operand(subscripts, operands, k):
        return None
    if (subscripts if k == -1 else operands[k]) is None:
        return None
    subscripts, ops, k = _einsum_form(subscripts, operands, k)
    terms, output = _einsum_terms(subscripts, ops)
    target = terms[k]
    others = [(t, op) for i, (t, op) in enumerate(zip(terms, ops)) if i != k]
    known = set(output).union(*[set(t) for t, _ in others])
    spare = [c for c in _EINSUM_LETTERS if c not in set(output).union(*map(set, terms))]
    shape = xp.shape(ops[k])
    extra_terms, extra_ops, result = [], [], ""
    seen: set[str] = set()
    for c, n in zip(target, shape):
        if c in seen:  # a repeated letter: a diagonal of this operand
            fresh = spare.pop(0)
            extra_terms.append(c + fresh)
            extra_ops.append(xp.eye(n, dtype=_float_dtype(g)))
            result += fresh
            continue
        seen.add(c)
        if c not in known:  # summed away from this operand alone
            extra_terms.append(c)
            extra_ops.append(xp.ones(n, dtype=_float_dtype(g)))
        result += c
    spec = ",".join([output] + [t for t, _ in others] + extra_terms) + "->" + result
    adjoint = xp.einsum(spec, g, *[op for _, op in others], *extra_ops)
    return unbroadcast(adjoint, ops[k])


def with_slot(operands: Any, k: int, t: Any, skip: Any = None) -> Any:
    """The tuple (or list) ``operands`` with its entry ``k`` replaced by ``t``; where ``t`` is
    None or ``k == skip``, Nones only (no einsum: the einsum helpers give None for it).

    For the rules of ``einsum_tangent`` and ``einsum_adjoint`` (higher order): each
    term of their derivatives is an einsum of the operands with one or two of them
    replaced by tangents. There is no such term for an absent operand (whose tangent is
    None), or for the operand ``skip`` that the helper replaces or reads only the shape
    of.
    """
    if operands is None:
        return None
    if t is None or k == skip:
        return _sequence_like(operands, [None] * len(operands))
    return _sequence_like(operands, [t if i == k else op for i, op in enumerate(operands)])


def without_slot(c: Any, k: int) -> Any:
    """The tuple (or list) ``c`` with its entry ``k`` made zeros (None stays None): the
    cotangent of the ``operands`` of ``with_slot(operands, k, t)``, whose entry ``k`` is not
    used."""
    if c is None:
        return None
    return _sequence_like(
        c, [(None if x is None else xp.zeros_like(x)) if i == k else x for i, x in enumerate(c)]
    )


def multi_dot_tangent(arrays: Any, tangents: Any) -> Any:
    """The tangent of ``np.linalg.multi_dot(arrays)``: one product per factor, with its tangent."""
    total = 0
    for i, t in enumerate(tangents):
        total = total + xp.linalg.multi_dot([t if j == i else a for j, a in enumerate(arrays)])
    return total


def multi_dot_adjoint(g: Any, arrays: Any) -> list[Any]:
    """The cotangents of the factors of ``np.linalg.multi_dot(arrays)``.

    A 1-D first factor is a row and a 1-D last factor a column, as in
    ``multi_dot``; the cotangent of factor ``k`` is ``(A_0..A_{k-1})^T g (A_{k+1}..)^T``.
    """
    mats = [xp.asarray(a) for a in arrays]
    if mats[0].ndim == 1:
        mats[0] = mats[0][None, :]
    if mats[-1].ndim == 1:
        mats[-1] = mats[-1][:, None]
    g = xp.reshape(g, (mats[0].shape[0], mats[-1].shape[1]))
    out = []
    for k in range(len(mats)):
        left = g
        if k > 0:
            left = xp.swapaxes(_chain(mats[:k]), -1, -2) @ g
        if k < len(mats) - 1:
            left = left @ xp.swapaxes(_chain(mats[k + 1 :]), -1, -2)
        out.append(xp.reshape(left, xp.shape(arrays[k])))
    return _per_element(out, arrays)


def _chain(mats: list[Any]) -> Any:
    return mats[0] if len(mats) == 1 else xp.linalg.multi_dot(mats)


def _chain_matrix(a: Any, i: int, n: int) -> Any:
    """Factor ``i`` of ``n`` of a multi_dot as a matrix: a 1-D first factor is a row, a 1-D
    last factor a column."""
    a = xp.asarray(a)
    if a.ndim == 1:
        return a[None, :] if i == 0 else a[:, None]
    return a


def dual_blocks(arrays: Any, tangents: Any) -> list[Any]:
    """Each factor ``a`` of ``np.linalg.multi_dot(arrays)``, with its tangent ``t``, as the
    block matrix ``[[a, t], [0, a]]`` (a 1-D first factor a row, a 1-D last factor a column).

    The product of the blocks is ``[[P, dP], [0, P]]``: its upper-right block is the
    chain's tangent ``multi_dot_tangent(arrays, tangents)``. The rules of the multi_dot
    helpers (higher order) differentiate them through these blocks.
    """
    n = len(arrays)
    out = []
    for i, (a, t) in enumerate(zip(arrays, tangents, strict=True)):
        a = _chain_matrix(a, i, n)
        t = _chain_matrix(xp.broadcast_to(xp.asarray(t), xp.shape(arrays[i])), i, n)
        dtype = xp.result_type(a, t, 1.0)
        zeros = xp.zeros(xp.shape(a), dtype=dtype)
        top = xp.concatenate([xp.asarray(a, dtype=dtype), xp.asarray(t, dtype=dtype)], axis=1)
        out.append(xp.concatenate([top, xp.concatenate([zeros, a.astype(dtype)], axis=1)], axis=0))
    return out


def _block_parts(c: Any, arrays: Any, part: str) -> Any:
    n = len(arrays)
    out = []
    for i, (block, a) in enumerate(zip(c, arrays, strict=True)):
        rows, cols = xp.shape(_chain_matrix(a, i, n))
        block = xp.asarray(block)
        if part == "diagonal":
            piece = block[:rows, :cols] + block[rows:, cols:]
        else:
            piece = block[:rows, cols:]
        out.append(xp.reshape(piece, xp.shape(a)))
    return _per_element(out, arrays)


def undual_diagonal(c: Any, arrays: Any) -> Any:
    """The cotangents of ``arrays`` in ``dual_blocks(arrays, tangents)`` for the blocks'
    cotangents ``c``: each block's two diagonal blocks, summed (shaped like ``arrays``)."""
    return _block_parts(c, arrays, "diagonal")


def undual_corner(c: Any, arrays: Any) -> Any:
    """The cotangents of ``tangents`` in ``dual_blocks(arrays, tangents)`` for the blocks'
    cotangents ``c``: each block's upper-right block (shaped like ``arrays``)."""
    return _block_parts(c, arrays, "corner")
