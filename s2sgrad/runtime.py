"""Runtime helpers that derivative rules call, NumPy implementations.

Rule templates (``s2sgrad/rules/``) are inlined into generated code, so every
helper named here may appear in a user's derivative module. They are named
for what they compute, so generated code reads like hand-written math:
``dx = unbroadcast(dz * y, x)``, ``dx = unreduce(dz, x, 1, False)``,
``dx = unindex(dz, x, np.s_[:, 0])``. The ``un-`` helpers share one
signature shape: they take the cotangent ``g`` of an output and the primal
input ``x`` it came from, and return the cotangent of ``x``.

Every helper is pure: it never mutates its arguments (a result may be ``g``
itself or a read-only view of it, never a write into it), so a JAX version with
the same names and signatures can replace this module in the JAX backend.

Helpers decorated with ``@foldable`` depend only on compile-time constants
(axes, permutations); the compiler evaluates them while generating code when
all their arguments are constants, so ``x.T`` differentiates to
``np.transpose(g)`` rather than ``np.transpose(g, inverse_permutation(None))``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "accumulate",
    "add_at",
    "broadcast_like",
    "clip_shares",
    "dot_adjoint_lhs",
    "dot_adjoint_rhs",
    "foldable",
    "greater_share",
    "inverse_permutation",
    "matmul_adjoint_lhs",
    "matmul_adjoint_rhs",
    "norm_direction",
    "prod_of_others",
    "set_at",
    "tie_shares",
    "unbroadcast",
    "unconcatenate",
    "unindex",
    "unreduce",
    "unstack",
    "zero_at",
    "zeros_if_none",
    "zeros_like_tree",
]


def foldable(fn: Callable) -> Callable:
    """Mark ``fn`` as a pure function of its arguments, safe to evaluate at compile time.

    The compiler calls a foldable helper while generating code when every
    argument is a constant, and prints the result instead of the call.
    """
    fn.__s2sgrad_foldable__ = True
    return fn


# --------------------------------------------------------------------------- broadcasting


def unbroadcast(g: Any, x: Any) -> Any:
    """Sum the cotangent ``g`` of a broadcast result down to the shape of the input ``x``.

    NumPy broadcasting copies ``x`` along new leading axes and along its
    size-1 axes; the adjoint of a copy is a sum, so those axes are summed.
    Returns ``g`` itself, without a copy, when the shapes already match (the
    common case, so it costs one shape comparison). ``x`` may be a Python
    scalar or 0-d; the result's dtype follows ``g``.
    """
    x_shape = np.shape(x)
    g_shape = np.shape(g)
    if g_shape == x_shape:
        return g
    lead = len(g_shape) - len(x_shape)
    if lead > 0:
        g = np.sum(g, axis=tuple(range(lead)))
        g_shape = g_shape[lead:]
    stretched = tuple(
        i for i, n in enumerate(x_shape) if n == 1 and i < len(g_shape) and g_shape[i] != 1
    )
    if stretched:
        g = np.sum(g, axis=stretched, keepdims=True)
    if np.shape(g) != x_shape:
        # g is smaller than x (a cotangent that was never broadcast): spread it out.
        g = np.broadcast_to(g, x_shape)
    return g


def broadcast_like(t: Any, ans: Any) -> Any:
    """Broadcast a tangent ``t`` to the shape of the result ``ans`` (``t`` itself if it fits).

    Forward rules of broadcasting operations use it where a contribution
    would otherwise keep the smaller shape of its input: the tangent of
    ``x + y`` with only a scalar ``x`` active is ``dx`` spread over ``y``'s shape.
    The result may be a read-only view.
    """
    shape = np.shape(ans)
    if np.shape(t) == shape:
        return t
    return np.broadcast_to(t, shape)


# --------------------------------------------------------------------------- reductions


def unreduce(g: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Broadcast the cotangent ``g`` of a reduction of ``x`` back to ``x``'s shape.

    ``axis`` and ``keepdims`` are the reduction's own arguments (an int, a
    tuple, negative axes, or None for all axes). Without ``keepdims`` the
    reduced axes are re-inserted as size 1 first. The result is a read-only
    view of ``g`` when it is bigger than ``g``; derivative code never writes
    into it.
    """
    x_shape = np.shape(x)
    if np.shape(g) == x_shape:
        return g
    if not keepdims:
        if axis is None:
            g = np.reshape(g, (1,) * len(x_shape))
        else:
            g = np.expand_dims(g, axis)
    return np.broadcast_to(g, x_shape)


def prod_of_others(a: Any, axis: Any = None) -> Any:
    """For each element of ``a``, the product of the *other* elements of its reduction group.

    This is the derivative of ``np.prod(a, axis)`` with respect to each
    element. Unlike ``ans / a`` it is exact when ``a`` contains zeros (as in
    jax): it multiplies the exclusive cumulative products from the left and
    from the right, about three times the work of the product itself.
    """
    a = np.asarray(a)
    if a.ndim == 0:
        return np.ones_like(a)
    if axis is None:
        axes = tuple(range(a.ndim))
    else:
        axes = _normalize_axes(axis, a.ndim)
    if not axes:
        return np.ones_like(a)
    kept = [i for i in range(a.ndim) if i not in axes]
    # Reduced axes last, flattened into one.
    moved = np.transpose(a, kept + list(axes))
    group_shape = moved.shape[len(kept) :]
    flat = np.reshape(moved, moved.shape[: len(kept)] + (-1,))
    ones = np.ones_like(flat[..., :1])
    left = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = np.reshape(left * right, moved.shape[: len(kept)] + group_shape)
    return np.transpose(others, inverse_permutation(kept + list(axes)))


def _normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    return tuple(operator.index(ax) % ndim for ax in axes)


def tie_shares(a: Any, ans: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Each element's share of the max (or min) reduction ``ans`` of ``a`` along ``axis``.

    An element equal to its group's extremum gets ``1/k`` when ``k`` elements
    tie, every other element gets 0: the cotangent is split equally among ties,
    as jax does (``jax.grad(jnp.max)(jnp.array([1., 2., 2.])) == [0, .5, .5]``).
    """
    winners = a == unreduce(ans, a, axis, keepdims)
    counts = np.sum(winners, axis=axis, keepdims=True)
    return np.asarray(winners / counts, dtype=_float_dtype(a))


def norm_direction(
    x: Any, ans: Any, ord: Any = None, axis: Any = None, keepdims: bool = False
) -> Any:
    """The derivative of the vector norm ``ans = np.linalg.norm(x, ord, axis, keepdims)`` by ``x``.

    Covers the 2-norm and Frobenius norm (``ord`` None, 2 or "fro": ``x / ans``),
    ``ord=1`` (``sign(x)``), ``ord=inf`` (``sign(x)`` on the largest
    magnitudes, ties sharing equally as jax does) and any other vector
    ``p``-norm. Matrix norms other than Frobenius (``ord`` 1, 2, inf, "nuc"
    over two axes) raise NotImplementedError rather than return a wrong derivative.
    """
    ndim = np.ndim(x)
    matrix = (axis is None and ndim == 2) or (isinstance(axis, tuple) and len(axis) == 2)
    if ord is None or ord == "fro" or (ord == 2 and not matrix):
        return x / unreduce(ans, x, axis, keepdims)
    if matrix:
        raise NotImplementedError(
            f"s2sgrad has no derivative for the matrix norm np.linalg.norm(..., ord={ord!r})"
        )
    if ord == 1:
        return np.sign(x)
    if ord == np.inf:
        return np.sign(x) * tie_shares(np.abs(x), ans, axis, keepdims)
    p = float(ord)
    return np.sign(x) * np.abs(x) ** (p - 1) / unreduce(ans, x, axis, keepdims) ** (p - 1)


# --------------------------------------------------------------------------- non-smooth points


def _float_dtype(*values: Any) -> Any:
    """The floating dtype derivatives of ``values`` carry (float32 stays float32)."""
    return np.result_type(*values, 1.0)


def greater_share(x: Any, y: Any) -> Any:
    """``x``'s share of the derivative of ``np.maximum(x, y)``: 1 where x > y, 1/2 at ties, else 0.

    Splitting ties equally is jax's convention (``jax.grad(lambda x:
    jnp.maximum(x, 1.0))(1.0) == 0.5``); ``np.minimum(x, y)`` gives ``x`` the
    share ``greater_share(y, x)``.
    """
    share = np.where(x > y, 1.0, np.where(x == y, 0.5, 0.0))
    return np.asarray(share, dtype=_float_dtype(x, y))


def clip_shares(a: Any, a_min: Any, a_max: Any) -> tuple[Any, Any, Any]:
    """The shares of ``a``, ``a_min`` and ``a_max`` in the derivative of ``np.clip(a, a_min, a_max)``.

    jax computes clip as ``minimum(maximum(a, a_min), a_max)``, so at a bound
    the derivative is split half and half (``jax.grad(lambda x: jnp.clip(x,
    0.0, 1.0))(0.0) == 0.5``); we follow that. A bound of None is absent.
    """
    if a_min is None:
        lower, a_lower_share = a, np.ones(np.shape(a), dtype=_float_dtype(a))
    else:
        lower = np.maximum(a, a_min)
        a_lower_share = greater_share(a, a_min)
    if a_max is None:
        upper_share = np.ones(np.shape(lower), dtype=_float_dtype(lower))
    else:
        upper_share = greater_share(a_max, lower)
    return a_lower_share * upper_share, (1.0 - a_lower_share) * upper_share, 1.0 - upper_share


# --------------------------------------------------------------------------- indexing


def _is_basic_index(idx: Any) -> bool:
    """True when ``x[idx]`` touches each element of ``x`` at most once (no integer arrays)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    for item in items:
        if item is None or item is Ellipsis or isinstance(item, (int, np.integer, slice)):
            continue
        if isinstance(item, np.ndarray) and item.dtype == np.bool_:
            continue
        return False
    return True


def unindex(g: Any, x: Any, idx: Any) -> Any:
    """The cotangent of ``x`` for the read ``x[idx]``: zeros shaped like ``x``, plus ``g`` at ``idx``.

    Integer-array indices may repeat an element (``x[[0, 0]]``); the
    cotangents of the repeats add up (``np.add.at``). Basic indices (ints,
    slices, None, Ellipsis) and boolean masks cannot repeat, so a plain
    assignment does, faster. ``x`` may also be a tuple, list or dict of arrays
    (``params[0]``, ``params["w"]``); the result is then the same container,
    with ``g`` at ``idx`` and zeros elsewhere.
    """
    if isinstance(x, (tuple, list, dict)):
        return _unindex_container(g, x, idx)
    out = np.zeros(np.shape(x), dtype=np.result_type(g, x))
    if _is_basic_index(idx):
        out[idx] = g
    else:
        np.add.at(out, idx, g)
    return out


def _zeros_like_tree(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _zeros_like_tree(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_zeros_like_tree(v) for v in x)
    return np.zeros_like(x, dtype=np.result_type(x, 0.0))


def _unindex_container(g: Any, x: Any, idx: Any) -> Any:
    if isinstance(x, dict):
        out = {k: (g if k == idx else _zeros_like_tree(v)) for k, v in x.items()}
        return out
    positions = range(len(x))[idx]
    if isinstance(positions, int):
        chosen = {positions: g}
    else:
        chosen = dict(zip(positions, g, strict=True))
    return type(x)(chosen[i] if i in chosen else _zeros_like_tree(v) for i, v in enumerate(x))


def add_at(a: Any, idx: Any, b: Any) -> Any:
    """A copy of ``a`` with ``b`` added at ``idx``; repeated indices accumulate (jax's ``.at[].add``)."""
    out = np.array(a, dtype=np.result_type(a, b), copy=True)
    if _is_basic_index(idx):
        out[idx] += b
    else:
        np.add.at(out, idx, b)
    return out


def set_at(a: Any, idx: Any, b: Any) -> Any:
    """A copy of ``a`` with ``b`` written at ``idx`` (jax's ``.at[].set``); ``a`` is untouched."""
    out = np.array(a, dtype=np.result_type(a, b), copy=True)
    out[idx] = b
    return out


# --------------------------------------------------------------------------- products


def _matmul_operands(g: Any, a: Any, b: Any) -> tuple[Any, Any, Any]:
    """Promote 1-D operands as matmul does: ``a`` to a row, ``b`` to a column, ``g`` to match."""
    a, b, g = np.asarray(a), np.asarray(b), np.asarray(g)
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
    da = unbroadcast(np.matmul(g2, np.swapaxes(b2, -1, -2)), a2)
    return np.reshape(da, np.shape(a))


def matmul_adjoint_rhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``b`` in ``a @ b``: ``a.T @ g``, summed over broadcast batch axes."""
    g2, a2, b2 = _matmul_operands(g, a, b)
    db = unbroadcast(np.matmul(np.swapaxes(a2, -1, -2), g2), b2)
    return np.reshape(db, np.shape(b))


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
    a_nd, b_nd = np.ndim(a), np.ndim(b)
    if a_nd == 0 or b_nd == 0:
        return unbroadcast(np.multiply(g, a), b)
    g = np.asarray(g)
    lead = list(range(a_nd - 1))
    db = np.tensordot(a, g, axes=(lead, lead))  # axes: (contracted,) + b's free axes
    if b_nd == 1:
        return db
    return np.moveaxis(db, 0, -2)


# --------------------------------------------------------------------------- shapes


@foldable
def inverse_permutation(axes: Any) -> Any:
    """The axes that undo ``np.transpose(_, axes)``; None (a full reversal, its own inverse) stays None."""
    if axes is None:
        return None
    n = len(axes)
    inverse = [0] * n
    for i, ax in enumerate(axes):
        inverse[operator.index(ax) % n] = i
    return tuple(inverse)


def unconcatenate(g: Any, arrays: Any, axis: Any = 0) -> list[Any]:
    """Split the cotangent of ``np.concatenate(arrays, axis)`` into one cotangent per array.

    With ``axis=None`` the arrays were flattened first; each piece is
    reshaped back to its array's shape.
    """
    if axis is None:
        sizes = [np.size(e) for e in arrays]
        pieces = np.split(np.ravel(g), np.cumsum(sizes)[:-1])
        return [np.reshape(p, np.shape(e)) for p, e in zip(pieces, arrays, strict=True)]
    lengths = [np.shape(e)[axis] for e in arrays]
    return list(np.split(g, np.cumsum(lengths)[:-1], axis=axis))


def unstack(g: Any, axis: int = 0) -> list[Any]:
    """Split the cotangent of ``np.stack(arrays, axis)`` into one cotangent per stacked array."""
    return list(np.moveaxis(np.asarray(g), axis, 0))


# --------------------------------------------------------------------------- control flow
#
# In reverse mode, an adjoint written only on some paths of the backward sweep
# (inside a branch or a loop that may run zero times) is None on the others:
# "zero, and no array allocated for it". These helpers accept that marker.


def accumulate(acc: Any, c: Any) -> Any:
    """``acc + c`` for adjoints: None means zero, and tuples, lists and dicts add leafwise.

    (Python's ``+`` would concatenate two tuples: the adjoint of a tuple of
    arrays is the tuple of their adjoints, added element by element.)
    """
    if acc is None:
        return c
    if c is None:
        return acc
    if isinstance(acc, dict):
        return {k: accumulate(acc.get(k), c.get(k)) for k in acc.keys() | c.keys()}
    if isinstance(acc, (tuple, list)):
        return type(acc)(accumulate(a, b) for a, b in zip(acc, c, strict=True))
    return acc + c


def zeros_like_tree(x: Any) -> Any:
    """Zeros shaped like ``x``, leaf by leaf when ``x`` is a tuple, list or dict."""
    return _zeros_like_tree(x)


def zeros_if_none(d: Any, x: Any) -> Any:
    """The cotangent ``d`` of ``x``, or zeros shaped like ``x`` when nothing reached it."""
    return _zeros_like_tree(x) if d is None else d


def zero_at(d: Any, idx: Any) -> Any:
    """A copy of the cotangent ``d`` with ``d[idx]`` zeroed: the adjoint of overwriting ``x[idx]``.

    It copies rather than writing into ``d`` because another adjoint may share
    ``d``'s memory (a first write ``dx = dy`` does not copy).
    """
    out = np.array(d, dtype=np.result_type(d, float), copy=True)
    out[idx] = 0
    return out
