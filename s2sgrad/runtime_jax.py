"""Runtime helpers that derivative rules call, JAX implementations.

Derivative code generated for the JAX backend is the same code as for NumPy,
spelled with ``jax.numpy`` and importing its helpers from this module instead
of ``s2sgrad.runtime``. Each helper here has the name, signature and result of
its NumPy twin in ``s2sgrad/runtime.py``, which documents what it computes;
the docstrings below only say where the JAX version differs.

Every helper works on jax arrays and on values traced by ``jax.jit``: shapes,
ranks and dtypes are static and drive all the Python-level decisions, array
values never do (where the NumPy twin branches on values, this module uses
``lax.cond`` or ``jnp.where``), and updates go through ``x.at[idx]`` instead
of writing into arrays. Indices may be traced. Helpers whose arguments are
compile-time constants only (``@foldable``) are the NumPy twins themselves.

Like the generated code, this module must import fast: it imports nothing
from the compiler.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from s2sgrad.runtime import (
    _EINSUM_LETTERS,
    _check_thin_svd,
    _diagonal_positions,
    _einsum_form,
    _einsum_operand,
    _einsum_terms,
    _items_layout,
    _joined_shape,
    _kron_shapes,
    _normalize_axes,
    _normalize_tensordot_axes,
    _refuse_sequence_arithmetic,
    _sequence_like,
    foldable,
    inverse_permutation,
    power_slope_exponent,
)

__all__ = [
    "accumulate",
    "add_at",
    "add_into",
    "average_weights",
    "broadcast_like",
    "clip_shares",
    "concatenate_items",
    "cumprod_tangent",
    "dot_adjoint_lhs",
    "dot_adjoint_rhs",
    "einsum_adjoint",
    "einsum_tangent",
    "foldable",
    "greater_share",
    "inner_adjoint_lhs",
    "inner_adjoint_rhs",
    "inverse_permutation",
    "kron_adjoint_lhs",
    "kron_adjoint_rhs",
    "logsumexp_shares",
    "matmul_adjoint_lhs",
    "matmul_adjoint_rhs",
    "matrix_power_adjoint",
    "matrix_power_tangent",
    "multi_dot_adjoint",
    "multi_dot_tangent",
    "negated_shift",
    "norm_direction",
    "pad_tangent",
    "power_slope_exponent",
    "prod_of_others",
    "resolved_spread",
    "set_at",
    "sort_order",
    "tensordot_adjoint_lhs",
    "tensordot_adjoint_rhs",
    "thin_svd_factor",
    "tie_shares",
    "trapezoid_weights",
    "unaverage_weights",
    "unbroadcast",
    "unconcatenate",
    "unconcatenate_items",
    "unconvolve",
    "uncumprod",
    "uncumulative_sum",
    "undiag",
    "undiagonal",
    "undiff",
    "unindex",
    "unjoin",
    "unpad",
    "unreduce",
    "unrepeat",
    "unsplit",
    "unstack",
    "untake",
    "untake_along_axis",
    "untile",
    "zero_at",
    "zeros_if_none",
    "zeros_like_tree",
]


# --------------------------------------------------------------------------- broadcasting


def unbroadcast(g: Any, x: Any) -> Any:
    """Sum ``g`` down to the shape of ``x`` (see ``runtime.unbroadcast``); ``g`` itself if it fits."""
    x_shape = jnp.shape(x)
    g_shape = jnp.shape(g)
    if g_shape == x_shape:
        return g
    if isinstance(x, (list, tuple)):
        _refuse_sequence_arithmetic()
    lead = len(g_shape) - len(x_shape)
    if lead > 0:
        g = jnp.sum(g, axis=tuple(range(lead)))
        g_shape = g_shape[lead:]
    stretched = tuple(
        i for i, n in enumerate(x_shape) if n == 1 and i < len(g_shape) and g_shape[i] != 1
    )
    if stretched:
        g = jnp.sum(g, axis=stretched, keepdims=True)
    if jnp.shape(g) != x_shape:
        g = jnp.broadcast_to(g, x_shape)
    return g


def broadcast_like(t: Any, ans: Any) -> Any:
    """Broadcast a tangent ``t`` to the shape of ``ans`` (see ``runtime.broadcast_like``)."""
    shape = jnp.shape(ans)
    if jnp.shape(t) == shape:
        return t
    if isinstance(ans, (list, tuple)):
        _refuse_sequence_arithmetic()
    return jnp.broadcast_to(t, shape)


# --------------------------------------------------------------------------- reductions


def unreduce(g: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Broadcast the cotangent of a reduction back to ``x``'s shape (see ``runtime.unreduce``)."""
    x_shape = jnp.shape(x)
    if jnp.shape(g) == x_shape:
        return g
    if not keepdims:
        if axis is None:
            g = jnp.reshape(g, (1,) * len(x_shape))
        else:
            g = jnp.expand_dims(g, axis)
    return jnp.broadcast_to(g, x_shape)


def prod_of_others(a: Any, axis: Any = None) -> Any:
    """The product of the other elements of each reduction group (see ``runtime.prod_of_others``)."""
    a = jnp.asarray(a)
    if a.ndim == 0:
        return jnp.ones_like(a)
    axes = tuple(range(a.ndim)) if axis is None else _normalize_axes(axis, a.ndim)
    if not axes:
        return jnp.ones_like(a)
    kept = [i for i in range(a.ndim) if i not in axes]
    moved = jnp.transpose(a, kept + list(axes))
    group_shape = moved.shape[len(kept) :]
    flat = jnp.reshape(moved, moved.shape[: len(kept)] + (-1,))
    ones = jnp.ones_like(flat[..., :1])
    left = jnp.cumprod(jnp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = jnp.cumprod(jnp.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = jnp.reshape(left * right, moved.shape[: len(kept)] + group_shape)
    return jnp.transpose(others, inverse_permutation(kept + list(axes)))


def tie_shares(a: Any, ans: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Each element's share of a max/min reduction, ties equal (see ``runtime.tie_shares``)."""
    winners = a == unreduce(ans, a, axis, keepdims)
    counts = jnp.sum(winners, axis=axis, keepdims=True)
    return jnp.asarray(winners / counts, dtype=_float_dtype(a))


def resolved_spread(ans: Any, a: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """A std ``ans`` of ``a``, inf where it is rounding noise (see ``runtime.resolved_spread``)."""
    n = jnp.size(a) / max(jnp.size(ans), 1)
    biggest = jnp.max(jnp.where(jnp.isnan(a), 0.0, jnp.abs(a)), axis=axis, keepdims=keepdims)
    rounding = n * jnp.finfo(_float_dtype(ans)).eps * biggest
    return jnp.where(ans <= rounding, jnp.inf, ans)


def average_weights(a: Any, axis: Any = None, weights: Any = None, returned: bool = False) -> Any:
    """The weights of ``average(a, axis, weights)`` spread to ``a``'s shape (see ``runtime``)."""
    if returned:
        raise NotImplementedError("s2sgrad has no derivative for np.average(..., returned=True)")
    shape = jnp.shape(a)
    if weights is None:
        return jnp.ones(shape, dtype=_float_dtype(a))
    w = jnp.asarray(weights)
    if w.ndim and w.shape != shape:
        axes = _normalize_axes(axis, len(shape))
        w = jnp.transpose(w, tuple(np.argsort(axes).tolist()))
        w = jnp.reshape(w, tuple(n if i in axes else 1 for i, n in enumerate(shape)))
    return jnp.broadcast_to(w, shape)


def unaverage_weights(g: Any, weights: Any, a: Any, axis: Any = None) -> Any:
    """The cotangent of ``weights`` in ``average_weights`` (see ``runtime.unaverage_weights``)."""
    shape = jnp.shape(a)
    if jnp.shape(weights) == shape:
        return g
    if jnp.ndim(weights) == 0:
        return jnp.sum(g)
    axes = _normalize_axes(axis, len(shape))
    g = jnp.sum(g, axis=tuple(i for i in range(len(shape)) if i not in axes))
    return jnp.transpose(g, tuple(np.argsort(np.argsort(axes)).tolist()))


def _scan_last(a: Any, axis: Any) -> tuple[Any, int]:
    """``a`` with the scanned ``axis`` moved last (flattened when ``axis`` is None), and that axis."""
    a = jnp.asarray(a)
    if axis is None:
        return jnp.ravel(a), 0
    axis = operator.index(axis) % a.ndim
    return jnp.moveaxis(a, axis, -1), axis


def _cumprod_partials(a: Any) -> Any:
    """``P[..., j, i] = d cumprod(a)[i] / d a[j]`` along the last axis (see ``runtime``)."""
    n = a.shape[-1]
    ones = jnp.ones_like(a[..., :1])
    left = jnp.cumprod(jnp.concatenate([ones, a[..., :-1]], axis=-1), axis=-1)
    after = np.triu(np.ones((n, n), dtype=bool), 1)  # after[j, k]: k > j (static)
    between = jnp.cumprod(jnp.where(after, a[..., None, :], 1.0), axis=-1)
    return jnp.where(~after.T, left[..., :, None] * between, 0.0)


def cumprod_tangent(da: Any, a: Any, axis: Any = None) -> Any:
    """The tangent of ``cumprod(a, axis)`` (see ``runtime.cumprod_tangent``).

    The NumPy twin picks the linear-time form with a Python ``if`` on whether
    ``a`` has zeros; here ``lax.cond`` picks it, so it works under ``jit``
    (under ``vmap`` both branches run). Both branches give the floating dtype
    of ``a`` and ``da``.
    """
    a_last, moved = _scan_last(a, axis)
    da_last, _ = _scan_last(jnp.broadcast_to(da, jnp.shape(a)), axis)
    dtype = _float_dtype(a_last, da_last)

    def linear(a_last, da_last):
        t = jnp.cumprod(a_last, axis=-1) * jnp.cumsum(da_last / a_last, axis=-1)
        return t.astype(dtype)

    def exact(a_last, da_last):
        return jnp.einsum("...ji,...j->...i", _cumprod_partials(a_last), da_last).astype(dtype)

    t = lax.cond(jnp.all(a_last != 0), linear, exact, a_last, da_last)
    return jnp.moveaxis(t, -1, moved)


def uncumprod(g: Any, a: Any, axis: Any = None) -> Any:
    """The cotangent of ``a`` in ``cumprod(a, axis)`` (see ``runtime.uncumprod``).

    As in ``cumprod_tangent``, ``lax.cond`` chooses between the linear and the
    exact form, and both give the floating dtype of ``a`` and ``g``.
    """
    a_last, moved = _scan_last(a, axis)
    g_last, _ = _scan_last(g, axis)
    dtype = _float_dtype(a_last, g_last)

    def linear(a_last, g_last):
        prods = g_last * jnp.cumprod(a_last, axis=-1)
        scanned = jnp.flip(jnp.cumsum(jnp.flip(prods, -1), -1), -1)
        return (scanned / a_last).astype(dtype)

    def exact(a_last, g_last):
        return jnp.einsum("...ji,...i->...j", _cumprod_partials(a_last), g_last).astype(dtype)

    out = lax.cond(jnp.all(a_last != 0), linear, exact, a_last, g_last)
    return jnp.reshape(jnp.moveaxis(out, -1, moved), jnp.shape(a))


def logsumexp_shares(
    a: Any, ans: Any, axis: Any = None, keepdims: bool = False, b: Any = None
) -> Any:
    """``b * exp(a - ans)`` for ``ans = logsumexp(a, axis, b, keepdims)`` (see ``runtime``)."""
    ans = jnp.asarray(ans)
    if not keepdims and axis is not None:
        ans = jnp.expand_dims(ans, axis)
    shares = jnp.exp(a - ans)
    return shares if b is None else shares * b


def norm_direction(
    x: Any, ans: Any, ord: Any = None, axis: Any = None, keepdims: bool = False
) -> Any:
    """The derivative of ``ans = norm(x, ord, axis, keepdims)`` by ``x`` (see ``runtime``)."""
    ndim = jnp.ndim(x)
    matrix = (axis is None and ndim == 2) or (isinstance(axis, tuple) and len(axis) == 2)
    if ord is None or ord == "fro" or (ord == 2 and not matrix):
        return x / unreduce(ans, x, axis, keepdims)
    if matrix:
        return _matrix_norm_direction(jnp.asarray(x), ord, (0, 1) if axis is None else axis)
    if ord == 0:
        return jnp.zeros(jnp.shape(x), dtype=_float_dtype(x))
    if ord == 1:
        return _abs_slope(x)
    if ord in (np.inf, -np.inf):
        return _abs_slope(x) * tie_shares(jnp.abs(x), ans, axis, keepdims)
    p = float(ord)
    return jnp.sign(x) * jnp.abs(x) ** (p - 1) / unreduce(ans, x, axis, keepdims) ** (p - 1)


def _abs_slope(x: Any) -> Any:
    """The derivative of ``abs`` at ``x``: the sign of ``x``, with slope 1 at 0 as in jax."""
    return jnp.where(x >= 0, 1.0, -1.0).astype(_float_dtype(x))


def _matrix_norm_direction(x: Any, ord: Any, axis: tuple[int, int]) -> Any:
    """The derivative of a matrix norm over the axis pair ``axis`` (see ``runtime``)."""
    row, col = _normalize_axes(axis, x.ndim)
    if ord in ("nuc", 2, -2):
        u, s, vh = jnp.linalg.svd(jnp.moveaxis(x, (row, col), (-2, -1)), full_matrices=False)
        if ord in (2, -2):  # tied extreme singular values share equally (see ``runtime``)
            extreme = s[..., :1] if ord == 2 else s[..., -1:]
            u = u * tie_shares(s, extreme, -1, True)[..., None, :]
        return jnp.moveaxis(u @ vh, (-2, -1), (row, col))
    if ord in (1, -1):
        summed, across = row, col
    elif ord in (np.inf, -np.inf):
        summed, across = col, row
    else:
        raise ValueError(f"invalid norm order {ord!r} for matrices")
    sums = jnp.sum(jnp.abs(x), axis=summed, keepdims=True)
    pick = jnp.max if ord > 0 else jnp.min
    extreme = pick(sums, axis=across, keepdims=True)
    return _abs_slope(x) * tie_shares(sums, extreme, across, True)


# --------------------------------------------------------------------------- non-smooth points


def _float_dtype(*values: Any) -> Any:
    """The floating dtype derivatives of ``values`` carry (float32 stays float32)."""
    return jnp.result_type(*values, 1.0)


def greater_share(x: Any, y: Any) -> Any:
    """``x``'s share of the derivative of ``maximum(x, y)`` (see ``runtime.greater_share``)."""
    share = jnp.where(x > y, 1.0, jnp.where(x == y, 0.5, 0.0))
    return jnp.asarray(share, dtype=_float_dtype(x, y))


def clip_shares(a: Any, a_min: Any, a_max: Any) -> tuple[Any, Any, Any]:
    """The shares of ``a``, ``a_min`` and ``a_max`` in ``clip(a, a_min, a_max)`` (see ``runtime``)."""
    if a_min is None:
        lower, a_lower_share = a, jnp.ones(jnp.shape(a), dtype=_float_dtype(a))
    else:
        lower = jnp.maximum(a, a_min)
        a_lower_share = greater_share(a, a_min)
    if a_max is None:
        upper_share = jnp.ones(jnp.shape(lower), dtype=_float_dtype(lower))
    else:
        upper_share = greater_share(a_max, lower)
    return a_lower_share * upper_share, (1.0 - a_lower_share) * upper_share, 1.0 - upper_share


# --------------------------------------------------------------------------- indexing


def _as_index(idx: Any) -> Any:
    """``idx`` as jax indexing wants it: lists (NumPy's integer or boolean arrays) as arrays.

    Lists of Python values become NumPy arrays, which stay concrete under
    ``jit`` (a boolean mask must be concrete to index with); lists holding
    traced values become jax arrays.
    """
    if isinstance(idx, tuple):
        return tuple(_as_index(item) for item in idx)
    if isinstance(idx, list):
        try:
            return np.asarray(idx)
        except Exception:  # traced entries
            return jnp.asarray(idx)
    return idx


def _mask(idx: Any, x: Any) -> Any:
    """A boolean mask ``idx`` broadcastable against ``x`` (it covers ``x``'s leading axes), or None.

    Writes under such a mask can use ``jnp.where``, which, unlike ``x.at[mask]``,
    works when the mask is traced (``x[x < 0] = 0`` inside ``jit``).
    """
    if isinstance(idx, tuple) and len(idx) == 1:
        idx = idx[0]
    if getattr(idx, "dtype", None) != np.bool_ or not 1 <= jnp.ndim(idx) <= jnp.ndim(x):
        return None
    return jnp.reshape(idx, jnp.shape(idx) + (1,) * (jnp.ndim(x) - jnp.ndim(idx)))


def unindex(g: Any, x: Any, idx: Any) -> Any:
    """The cotangent of ``x`` for the read ``x[idx]`` (see ``runtime.unindex``).

    A scatter-add into zeros: repeated integer indices add up. ``idx`` may be
    traced, except a boolean mask (the shape of ``x[mask]`` depends on it).
    For a container ``x`` (tuple, list, dict), ``idx`` must be a Python value.
    """
    if isinstance(x, (tuple, list, dict)):
        return _unindex_container(g, x, idx)
    out = jnp.zeros(jnp.shape(x), dtype=jnp.result_type(g, x))
    return out.at[_as_index(idx)].add(g)


def _zeros_like_tree(x: Any) -> Any:
    if x is None:  # a None argument (`prev=None`): no tangent
        return None
    if isinstance(x, dict):
        return {k: _zeros_like_tree(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return _sequence_like(x, [_zeros_like_tree(v) for v in x])
    return jnp.zeros(jnp.shape(x), dtype=jnp.result_type(x, 0.0))


def _unindex_container(g: Any, x: Any, idx: Any) -> Any:
    if isinstance(x, dict):
        return {k: (g if k == idx else _zeros_like_tree(v)) for k, v in x.items()}
    positions = range(len(x))[idx]
    if isinstance(positions, int):
        chosen = {positions: g}
    else:
        chosen = dict(zip(positions, g, strict=True))
    return _sequence_like(
        x, [chosen[i] if i in chosen else _zeros_like_tree(v) for i, v in enumerate(x)]
    )


def add_at(a: Any, idx: Any, b: Any) -> Any:
    """A copy of ``a`` with ``b`` added at ``idx``, repeats accumulating (``a.at[idx].add(b)``).

    A boolean mask with a scalar ``b`` goes through ``jnp.where``, so the mask may be traced.
    """
    dtype = jnp.result_type(a, b)
    out = jnp.asarray(a, dtype=dtype)
    idx = _as_index(idx)
    mask = _mask(idx, out) if jnp.ndim(b) == 0 else None
    if mask is not None:
        return (out + jnp.where(mask, b, 0)).astype(dtype)
    return out.at[idx].add(b)


def add_into(acc: Any, g: Any, idx: Any) -> Any:
    """``acc`` with ``g`` added at ``idx`` (``runtime.add_into``; jax arrays are immutable,
    so this is ``.at[idx].add``, which XLA updates in place where it can)."""
    return add_at(acc, idx, g)


def set_at(a: Any, idx: Any, b: Any) -> Any:
    """A copy of ``a`` with ``b`` written at ``idx`` (``a.at[idx].set(b)``).

    A boolean mask with a scalar ``b`` goes through ``jnp.where``, so the mask
    may be traced. Which of several writes to a repeated integer index wins is
    unspecified in jax (NumPy keeps the last).
    """
    dtype = jnp.result_type(a, b)
    out = jnp.asarray(a, dtype=dtype)
    idx = _as_index(idx)
    mask = _mask(idx, out) if jnp.ndim(b) == 0 else None
    if mask is not None:
        return jnp.where(mask, b, out).astype(dtype)
    return out.at[idx].set(b)


# --------------------------------------------------------------------------- products


def _matmul_operands(g: Any, a: Any, b: Any) -> tuple[Any, Any, Any]:
    """Promote 1-D operands as matmul does: ``a`` to a row, ``b`` to a column, ``g`` to match."""
    a, b, g = jnp.asarray(a), jnp.asarray(b), jnp.asarray(g)
    if b.ndim == 1:
        b = b[:, None]
        g = g[..., None]
    if a.ndim == 1:
        a = a[None, :]
        g = g[..., None, :]
    return g, a, b


def matmul_adjoint_lhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``a`` in ``a @ b`` (see ``runtime.matmul_adjoint_lhs``)."""
    g2, a2, b2 = _matmul_operands(g, a, b)
    da = unbroadcast(jnp.matmul(g2, jnp.swapaxes(b2, -1, -2)), a2)
    return jnp.reshape(da, jnp.shape(a))


def matmul_adjoint_rhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``b`` in ``a @ b`` (see ``runtime.matmul_adjoint_rhs``)."""
    g2, a2, b2 = _matmul_operands(g, a, b)
    db = unbroadcast(jnp.matmul(jnp.swapaxes(a2, -1, -2), g2), b2)
    return jnp.reshape(db, jnp.shape(b))


def dot_adjoint_lhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``a`` in ``dot(a, b)`` (see ``runtime.dot_adjoint_lhs``)."""
    a_nd, b_nd = jnp.ndim(a), jnp.ndim(b)
    if a_nd == 0 or b_nd == 0:
        return unbroadcast(jnp.multiply(g, b), a)
    g = jnp.asarray(g)
    if b_nd == 1:
        return g[..., None] * jnp.asarray(b)
    b_free = list(range(b_nd - 2)) + [b_nd - 1]
    return jnp.tensordot(g, b, axes=(list(range(a_nd - 1, g.ndim)), b_free))


def dot_adjoint_rhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``b`` in ``dot(a, b)`` (see ``runtime.dot_adjoint_rhs``)."""
    a_nd, b_nd = jnp.ndim(a), jnp.ndim(b)
    if a_nd == 0 or b_nd == 0:
        return unbroadcast(jnp.multiply(g, a), b)
    g = jnp.asarray(g)
    lead = list(range(a_nd - 1))
    db = jnp.tensordot(a, g, axes=(lead, lead))
    if b_nd == 1:
        return db
    return jnp.moveaxis(db, 0, -2)


# --------------------------------------------------------------------------- shapes


def _split_points(lengths: list[int]) -> list[int]:
    """Where ``jnp.split`` cuts pieces of ``lengths`` (static Python ints)."""
    return np.cumsum(lengths)[:-1].tolist()


def unconcatenate(g: Any, arrays: Any, axis: Any = 0) -> list[Any]:
    """Split the cotangent of ``concatenate(arrays, axis)`` per array (see ``runtime``)."""
    if axis is None:
        sizes = [math.prod(jnp.shape(e)) for e in arrays]
        pieces = jnp.split(jnp.ravel(g), _split_points(sizes))
        pieces = [jnp.reshape(p, jnp.shape(e)) for p, e in zip(pieces, arrays, strict=True)]
        return _per_element(pieces, arrays)
    lengths = [jnp.shape(e)[axis] for e in arrays]
    return _per_element(list(jnp.split(g, _split_points(lengths), axis=axis)), arrays)


def unstack(g: Any, axis: int = 0, arrays: Any = None) -> list[Any]:
    """Split the cotangent of ``stack(arrays, axis)`` per stacked array (see ``runtime.unstack``)."""
    moved = jnp.moveaxis(jnp.asarray(g), axis, 0)
    if arrays is not None and not isinstance(arrays, (list, tuple)):
        return jnp.reshape(moved, jnp.shape(arrays))
    return [moved[i] for i in range(moved.shape[0])]


def _per_element(pieces: list[Any], arrays: Any) -> Any:
    """A list for a list or tuple argument, one array shaped like an array argument."""
    if isinstance(arrays, (list, tuple)):
        return pieces
    return jnp.reshape(jnp.stack([jnp.asarray(p) for p in pieces]), jnp.shape(arrays))


# --------------------------------------------------------------------------- control flow


def accumulate(acc: Any, c: Any) -> Any:
    """``acc + c`` for adjoints: None is zero, containers add leafwise (see ``runtime.accumulate``)."""
    if acc is None:
        return c
    if c is None:
        return acc
    if isinstance(acc, dict):
        keys = list(acc) + [k for k in c if k not in acc]  # deterministic order
        return {k: accumulate(acc.get(k), c.get(k)) for k in keys}
    if isinstance(acc, (tuple, list)):
        return _sequence_like(acc, [accumulate(a, b) for a, b in zip(acc, c, strict=True)])
    return acc + c


def zeros_like_tree(x: Any) -> Any:
    """Zeros shaped like ``x``, leaf by leaf when ``x`` is a tuple, list or dict."""
    return _zeros_like_tree(x)


def zeros_if_none(d: Any, x: Any) -> Any:
    """The cotangent ``d`` of ``x``, or zeros shaped like ``x`` when nothing reached it."""
    return _zeros_like_tree(x) if d is None else d


def zero_at(d: Any, idx: Any) -> Any:
    """``d`` with ``d[idx]`` zeroed (see ``runtime.zero_at``); a boolean mask may be traced.

    The result is floating: float32 stays float32 (the NumPy twin gives float64).
    """
    out = jnp.asarray(d, dtype=_float_dtype(d))
    idx = _as_index(idx)
    mask = _mask(idx, out)
    if mask is not None:
        return jnp.where(mask, 0, out)
    return out.at[idx].set(0)


# --------------------------------------------------------------------------- joining and splitting


def unjoin(g: Any, arrays: Any, how: str) -> list[Any]:
    """Split the cotangent of ``hstack``/``vstack``/``dstack``/``column_stack`` (see ``runtime``)."""
    promoted = [_joined_shape(jnp.shape(e), how) for e in arrays]
    axis = promoted[0][1]
    lengths = [shape[axis] for shape, _ in promoted]
    pieces = jnp.split(g, _split_points(lengths), axis=axis)
    pieces = [jnp.reshape(p, jnp.shape(e)) for p, e in zip(pieces, arrays, strict=True)]
    return _per_element(pieces, arrays)


def concatenate_items(items: Any, how: str = "r_", directive: str | None = None) -> Any:
    """``np.r_[items]`` / ``np.c_[items]`` (see ``runtime.concatenate_items``): the items'
    elements gathered in the order the index trick puts them, a layout computed from the
    static shapes, so it traces under jax.jit."""
    layout, _ = _items_layout(items, how, directive)
    flat = jnp.concatenate([jnp.ravel(jnp.asarray(item)) for item in items])
    return jnp.reshape(flat[np.ravel(layout)], np.shape(layout))


def unconcatenate_items(g: Any, items: Any, how: str = "r_", directive: str | None = None) -> list:
    """The cotangent of each item of ``concatenate_items`` (see ``runtime``)."""
    layout, shapes = _items_layout(items, how, directive)
    flat = jnp.ravel(g)[np.argsort(np.ravel(layout), kind="stable")]
    sizes = [math.prod(s) for s in shapes]
    pieces = jnp.split(flat, _split_points(sizes))
    return [jnp.reshape(p, s) for p, s in zip(pieces, shapes, strict=True)]


def unsplit(g: Any, ans: Any, axis: int = 0) -> Any:
    """The cotangent of ``ary`` in ``ans = split(ary, ..., axis)`` (see ``runtime.unsplit``)."""
    parts = [
        jnp.zeros(jnp.shape(a), dtype=_float_dtype(a)) if c is None else c for c, a in zip(g, ans)
    ]
    return jnp.concatenate(parts, axis=axis)


# --------------------------------------------------------------------------- copies of elements


def untile(g: Any, a: Any, reps: Any) -> Any:
    """The cotangent of ``a`` in ``tile(a, reps)``: ``g`` summed over the tiles."""
    shape = jnp.shape(a)
    reps = tuple(np.atleast_1d(reps).tolist())
    d = max(len(shape), len(reps))
    a_shape = (1,) * (d - len(shape)) + tuple(shape)
    reps = (1,) * (d - len(reps)) + reps
    interleaved = [n for pair in zip(reps, a_shape) for n in pair]
    summed = jnp.sum(jnp.reshape(g, interleaved), axis=tuple(range(0, 2 * d, 2)))
    return jnp.reshape(summed, shape)


def unrepeat(g: Any, a: Any, repeats: Any, axis: Any = None) -> Any:
    """The cotangent of ``a`` in ``repeat(a, repeats, axis)``: each element's copies summed.

    ``repeats`` may be traced: the number of copies is read off ``g``'s shape.
    """
    shape = jnp.shape(a)
    if axis is None:
        flat_shape = (math.prod(shape),)
        ax = 0
    else:
        flat_shape = tuple(shape)
        ax = operator.index(axis) % len(shape)
    n = flat_shape[ax]
    moved = jnp.moveaxis(jnp.asarray(g), ax, 0)
    repeats = _as_index(repeats)  # a list as an array
    if isinstance(repeats, (int, np.integer, np.ndarray)):  # static: the owners are constants
        owners = np.repeat(np.arange(n), repeats)
    else:
        owners = jnp.repeat(jnp.arange(n), repeats, total_repeat_length=moved.shape[0])
    out = jnp.zeros((n,) + moved.shape[1:], dtype=_float_dtype(g)).at[owners].add(moved)
    return jnp.reshape(jnp.moveaxis(out, 0, ax), shape)


def unpad(g: Any, array: Any, pad_width: Any, mode: str = "constant") -> Any:
    """The cotangent of ``array`` in ``pad(array, pad_width, mode)`` (see ``runtime.unpad``)."""
    shape = jnp.shape(array)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=int), (len(shape), 2))
    if mode in ("constant", "empty"):
        interior = tuple(slice(int(lo), int(lo) + n) for (lo, _), n in zip(widths, shape))
        return jnp.asarray(g)[interior]
    if mode in ("edge", "reflect", "symmetric", "wrap"):
        size = math.prod(shape)
        sources = np.pad(np.arange(size).reshape(shape), pad_width, mode=mode)  # static
        out = jnp.zeros(size, dtype=_float_dtype(g)).at[np.ravel(sources)].add(jnp.ravel(g))
        return jnp.reshape(out, shape)
    raise NotImplementedError(f"s2sgrad has no derivative for np.pad(..., mode={mode!r})")


def pad_tangent(t: Any, pad_width: Any, mode: str = "constant") -> Any:
    """The tangent of ``pad(array, pad_width, mode)`` (see ``runtime.pad_tangent``)."""
    if mode in ("constant", "empty"):
        return jnp.pad(t, pad_width)
    if mode in ("edge", "reflect", "symmetric", "wrap"):
        return jnp.pad(t, pad_width, mode=mode)
    raise NotImplementedError(f"s2sgrad has no derivative for np.pad(..., mode={mode!r})")


def undiagonal(g: Any, a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    """The cotangent of ``a`` in ``diagonal(a, offset, axis1, axis2)``: ``g`` on that diagonal."""
    g = jnp.asarray(g)
    out = jnp.zeros(jnp.shape(a), dtype=jnp.result_type(g, _float_dtype(a)))
    view = jnp.moveaxis(out, (axis1, axis2), (-2, -1))
    rows, cols = _diagonal_positions(g.shape[-1], offset)
    view = view.at[..., rows, cols].set(g)
    return jnp.moveaxis(view, (-2, -1), (axis1, axis2))


def undiag(g: Any, v: Any, k: int = 0) -> Any:
    """The cotangent of ``v`` in ``diag(v, k)`` (see ``runtime.undiag``)."""
    if jnp.ndim(v) == 1:
        return jnp.diag(g, k)
    return undiagonal(g, v, k, 0, 1)


def untake(g: Any, a: Any, indices: Any, axis: Any = None, mode: str = "raise") -> Any:
    """The cotangent of ``a`` in ``take(a, indices, axis, mode=mode)``; repeated indices add up.

    ``indices`` may be traced. With ``mode="raise"`` an out-of-range index
    cannot raise under ``jit``: its cotangent is dropped. With ``axis=None``
    the result is floating, float32 staying float32 (the NumPy twin gives float64).
    """
    shape = jnp.shape(a)
    n = math.prod(shape) if axis is None else shape[operator.index(axis)]
    indices = _as_index(indices)
    if mode == "wrap":
        indices = indices % n
    elif mode == "clip":
        indices = jnp.clip(indices, 0, n - 1)
    if axis is None:
        flat = unindex(g, jnp.zeros(math.prod(shape), dtype=_float_dtype(g)), (indices,))
        return jnp.reshape(flat, shape)
    ax = operator.index(axis) % len(shape)
    return unindex(g, a, (slice(None),) * ax + (indices,))


def untake_along_axis(g: Any, arr: Any, indices: Any, axis: Any = -1) -> Any:
    """The cotangent of ``arr`` in ``take_along_axis(arr, indices, axis)``; repeats add up."""
    shape = jnp.shape(arr)
    if axis is None:
        return untake(g, arr, jnp.ravel(_as_index(indices)), None)
    indices = _as_index(indices)
    ax = operator.index(axis) % len(shape)
    grid = list(np.ogrid[tuple(slice(n) for n in jnp.shape(indices))])
    grid[ax] = indices
    return unindex(g, arr, tuple(grid))


# --------------------------------------------------------------------------- more products


def tensordot_adjoint_lhs(g: Any, a: Any, b: Any, axes: Any = 2) -> Any:
    """The cotangent of ``a`` in ``tensordot(a, b, axes)`` (see ``runtime``)."""
    a_nd, b_nd = jnp.ndim(a), jnp.ndim(b)
    a_axes, b_axes = _normalize_tensordot_axes(axes, a_nd, b_nd)
    a_free = [i for i in range(a_nd) if i not in a_axes]
    b_free = [i for i in range(b_nd) if i not in b_axes]
    g_b = list(range(len(a_free), len(a_free) + len(b_free)))
    da = jnp.tensordot(g, b, axes=(g_b, b_free))
    paired = [a_axes[b_axes.index(j)] for j in sorted(b_axes)]
    return jnp.transpose(da, inverse_permutation(a_free + paired))


def tensordot_adjoint_rhs(g: Any, a: Any, b: Any, axes: Any = 2) -> Any:
    """The cotangent of ``b`` in ``tensordot(a, b, axes)`` (see ``runtime``)."""
    a_nd, b_nd = jnp.ndim(a), jnp.ndim(b)
    a_axes, b_axes = _normalize_tensordot_axes(axes, a_nd, b_nd)
    a_free = [i for i in range(a_nd) if i not in a_axes]
    db = jnp.tensordot(a, g, axes=(a_free, list(range(len(a_free)))))
    b_free = [i for i in range(b_nd) if i not in b_axes]
    paired = [b_axes[a_axes.index(i)] for i in sorted(a_axes)]
    return jnp.transpose(db, inverse_permutation(paired + b_free))


def inner_adjoint_lhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``a`` in ``inner(a, b)`` (a product when either is a scalar)."""
    if jnp.ndim(a) == 0 or jnp.ndim(b) == 0:
        return unbroadcast(jnp.multiply(g, b), a)
    return tensordot_adjoint_lhs(g, a, b, ([-1], [-1]))


def inner_adjoint_rhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``b`` in ``inner(a, b)``."""
    if jnp.ndim(a) == 0 or jnp.ndim(b) == 0:
        return unbroadcast(jnp.multiply(g, a), b)
    return tensordot_adjoint_rhs(g, a, b, ([-1], [-1]))


def kron_adjoint_lhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``a`` in ``kron(a, b)``: each block of ``g`` contracted with ``b``."""
    a_shape, b_shape = _kron_shapes(a, b)
    d = len(a_shape)
    blocks = jnp.reshape(g, [n for pair in zip(a_shape, b_shape) for n in pair])
    da = jnp.tensordot(
        blocks, jnp.reshape(b, b_shape), axes=(list(range(1, 2 * d, 2)), list(range(d)))
    )
    return jnp.reshape(da, jnp.shape(a))


def kron_adjoint_rhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``b`` in ``kron(a, b)``: the blocks of ``g`` weighted by ``a``."""
    a_shape, b_shape = _kron_shapes(a, b)
    d = len(a_shape)
    blocks = jnp.reshape(g, [n for pair in zip(a_shape, b_shape) for n in pair])
    db = jnp.tensordot(
        blocks, jnp.reshape(a, a_shape), axes=(list(range(0, 2 * d, 2)), list(range(d)))
    )
    return jnp.reshape(db, jnp.shape(b))


def einsum_tangent(subscripts: Any, operands: Any, k: int, t: Any) -> Any:
    """``einsum(subscripts, *operands)`` with operand ``k`` replaced by ``t`` (None entries dropped;
    ``k == -1``: the first operand of the sublist form)."""
    if not _einsum_operand(subscripts, operands, k):
        return None
    spec, ops, k = _einsum_form(subscripts, operands, k)
    ops = [t if i == k else op for i, op in enumerate(ops)]
    return jnp.einsum(spec, *ops)


def einsum_adjoint(g: Any, subscripts: Any, operands: Any, k: int) -> Any:
    """The cotangent of operand ``k`` of ``einsum(subscripts, *operands)`` (see ``runtime``).

    The identity and ones factors it adds take ``g``'s floating dtype (NumPy's are float64).
    """
    passed = subscripts if k == -1 else operands[k]
    if passed is None or not _einsum_operand(subscripts, operands, k):
        return None
    subscripts, ops, k = _einsum_form(subscripts, operands, k)
    terms, output = _einsum_terms(subscripts, ops)
    target = terms[k]
    others = [(t, op) for i, (t, op) in enumerate(zip(terms, ops)) if i != k]
    known = set(output).union(*[set(t) for t, _ in others])
    spare = [c for c in _EINSUM_LETTERS if c not in set(output).union(*map(set, terms))]
    shape = jnp.shape(ops[k])
    dtype = _float_dtype(g)
    extra_terms, extra_ops, result = [], [], ""
    seen: set[str] = set()
    for c, n in zip(target, shape):
        if c in seen:  # a repeated letter: a diagonal of this operand
            fresh = spare.pop(0)
            extra_terms.append(c + fresh)
            extra_ops.append(jnp.eye(n, dtype=dtype))
            result += fresh
            continue
        seen.add(c)
        if c not in known:  # summed away from this operand alone
            extra_terms.append(c)
            extra_ops.append(jnp.ones(n, dtype=dtype))
        result += c
    spec = ",".join([output] + [t for t, _ in others] + extra_terms) + "->" + result
    adjoint = jnp.einsum(spec, g, *[op for _, op in others], *extra_ops)
    return unbroadcast(adjoint, ops[k])


def multi_dot_tangent(arrays: Any, tangents: Any) -> Any:
    """The tangent of ``multi_dot(arrays)``: one product per factor, with its tangent."""
    total = 0
    for i, t in enumerate(tangents):
        total = total + jnp.linalg.multi_dot([t if j == i else a for j, a in enumerate(arrays)])
    return total


def multi_dot_adjoint(g: Any, arrays: Any) -> list[Any]:
    """The cotangents of the factors of ``multi_dot(arrays)`` (see ``runtime.multi_dot_adjoint``)."""
    mats = [jnp.asarray(a) for a in arrays]
    if mats[0].ndim == 1:
        mats[0] = mats[0][None, :]
    if mats[-1].ndim == 1:
        mats[-1] = mats[-1][:, None]
    g = jnp.reshape(g, (mats[0].shape[0], mats[-1].shape[1]))
    out = []
    for k in range(len(mats)):
        left = g
        if k > 0:
            left = jnp.swapaxes(_chain(mats[:k]), -1, -2) @ g
        if k < len(mats) - 1:
            left = left @ jnp.swapaxes(_chain(mats[k + 1 :]), -1, -2)
        out.append(jnp.reshape(left, jnp.shape(arrays[k])))
    return _per_element(out, arrays)


def _chain(mats: list[Any]) -> Any:
    return mats[0] if len(mats) == 1 else jnp.linalg.multi_dot(mats)


def _power_factors(a: Any, n: int) -> tuple[Any, int]:
    """The base and exponent of ``matrix_power(a, n)`` as a non-negative power."""
    return (jnp.linalg.inv(a), -n) if n < 0 else (a, n)


def thin_svd_factor(u: Any, a: Any, full_matrices: Any = True) -> Any:
    """``u`` of ``svd(a, full_matrices)``, checked to be the thin factor (see ``runtime``)."""
    _check_thin_svd(jnp.shape(a), full_matrices)
    return u


def matrix_power_tangent(a: Any, n: int, t: Any) -> Any:
    """The tangent of ``matrix_power(a, n)`` along ``t`` (see ``runtime.matrix_power_tangent``)."""
    m_, m = _power_factors(a, operator.index(n))
    dm = -m_ @ t @ m_ if n < 0 else t
    powers = [jnp.broadcast_to(jnp.eye(jnp.shape(a)[-1]), jnp.shape(a))]
    for _ in range(m - 1):
        powers.append(powers[-1] @ m_)
    total = jnp.zeros(jnp.shape(a), dtype=jnp.result_type(a, t, 1.0))
    for k in range(m):
        total = total + powers[k] @ dm @ powers[m - 1 - k]
    return total


def matrix_power_adjoint(g: Any, a: Any, n: int) -> Any:
    """The cotangent of ``a`` in ``matrix_power(a, n)`` (see ``runtime.matrix_power_adjoint``)."""
    m_, m = _power_factors(a, operator.index(n))
    mt = jnp.swapaxes(m_, -1, -2)
    powers = [jnp.broadcast_to(jnp.eye(jnp.shape(a)[-1]), jnp.shape(a))]
    for _ in range(m - 1):
        powers.append(powers[-1] @ mt)
    total = jnp.zeros(jnp.shape(a), dtype=jnp.result_type(a, g, 1.0))
    for k in range(m):
        total = total + powers[k] @ g @ powers[m - 1 - k]
    if n < 0:
        total = -mt @ total @ mt
    return total


# --------------------------------------------------------------------------- sequences


def undiff(g: Any, n: int = 1, axis: int = -1) -> Any:
    """The cotangent of ``diff(a, n, axis)`` mapped back to ``a`` (see ``runtime.undiff``)."""
    for _ in range(n):
        pad = [(0, 0)] * jnp.ndim(g)
        pad[axis] = (1, 1)
        g = -jnp.diff(jnp.pad(g, pad), axis=axis)
    return g


def uncumulative_sum(g: Any, x: Any, axis: Any = None, include_initial: bool = False) -> Any:
    """The cotangent of ``cumulative_sum(x, axis, include_initial)`` mapped back to ``x``."""
    axis = 0 if axis is None else axis
    g = jnp.asarray(g)
    if include_initial:
        g = lax.slice_in_dim(g, 1, None, axis=operator.index(axis) % g.ndim)
    return jnp.flip(jnp.cumsum(jnp.flip(g, axis), axis=axis), axis)


def trapezoid_weights(y: Any, x: Any = None, dx: float = 1.0, axis: int = -1) -> Any:
    """The weights ``w`` with ``trapezoid(y, x, dx, axis) == sum(w * y, axis)`` (see ``runtime``).

    ``dx`` and ``x`` may be traced. A float32 ``x`` gives float32 weights (NumPy's are float64).
    """
    n = jnp.shape(y)[axis]
    if x is None:
        w = np.zeros(n)  # the weights for dx = 1, static
        w[:-1] += 0.5
        w[1:] += 0.5
        shape = [1] * jnp.ndim(y)
        shape[axis] = n
        return jnp.reshape(jnp.asarray(w) * dx, shape)
    x = jnp.asarray(x, dtype=_float_dtype(x))
    if x.ndim == 1:
        shape = [1] * jnp.ndim(y)
        shape[axis] = n
        x = jnp.reshape(x, shape)
    widths = jnp.diff(x, axis=axis)
    pad_left = [(0, 0)] * widths.ndim
    pad_right = [(0, 0)] * widths.ndim
    pad_left[axis] = (1, 0)
    pad_right[axis] = (0, 1)
    return (jnp.pad(widths, pad_left) + jnp.pad(widths, pad_right)) / 2


def unconvolve(g: Any, a: Any, v: Any, mode: str = "full") -> Any:
    """The cotangent of ``convolve(a, v, mode)`` by ``a`` (see ``runtime.unconvolve``).

    Float32 ``g`` stays float32 (the NumPy twin gives float64).
    """
    full = math.prod(jnp.shape(a)) + math.prod(jnp.shape(v)) - 1
    size = math.prod(jnp.shape(g))
    start = (full - size) // 2
    padded = jnp.zeros(full, dtype=_float_dtype(g)).at[start : start + size].set(jnp.ravel(g))
    return jnp.correlate(padded, jnp.asarray(v), mode="valid")


def sort_order(a: Any, axis: Any = -1) -> Any:
    """The indices that sort ``a`` along ``axis``, ties in order (see ``runtime.sort_order``)."""
    return jnp.argsort(a, axis=axis, stable=True)


def negated_shift(shift: Any) -> Any:
    """The shift that undoes ``roll(x, shift)``: an int, or a tuple of ints, stays static."""
    if isinstance(shift, (tuple, list)):
        return tuple(-s for s in shift)
    return -shift
