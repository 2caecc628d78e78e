"""Runtime helpers that derivative rules call, for the JAX backend.

Derivative code generated for the JAX backend is the same code as for NumPy,
spelled with ``jax.numpy`` and importing its helpers from this module instead
of ``s2sgrad.runtime``. Most helpers are ``s2sgrad.runtime``'s own, written
once against the array namespace ``xp``: ``rebinding.adopt_shared_helpers`` (at the
end of this module) places copies of them here that see ``xp = jax.numpy`` and this
module's helpers. The functions defined below are only those whose JAX version
truly differs; each has the name, signature and result of its NumPy twin, which
documents what it computes, and says where it differs.

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

from s2sgrad import runtime
from s2sgrad.backends import rebinding
from s2sgrad.backends.jax.revolve import checkpoints as checkpoints
from s2sgrad.backends.jax.revolve import restore_checkpoint as restore_checkpoint
from s2sgrad.backends.jax.revolve import store_checkpoint as store_checkpoint
from s2sgrad.runtime.core import (
    _float_dtype,
    _unindex_container,
    unbroadcast,
)
from s2sgrad.runtime.indexing import _diagonal_positions
from s2sgrad.runtime.joins import _items_layout
from s2sgrad.runtime.linalg import _matmul_operands
from s2sgrad.runtime.scans import _cumprod_partials, _scan_last

#: The array namespace the shared helpers of ``s2sgrad.runtime`` compute with here.
xp = jnp

__all__ = list(runtime.__all__)


# --------------------------------------------------------------------------- core


def _spread(g: Any, shape: tuple) -> Any:
    """``g`` broadcast to ``shape`` (NumPy's builds a stride-0 view by hand; XLA needs none)."""
    return jnp.broadcast_to(g, shape)


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
    dtype = jnp.result_type(g, x)
    padded = _padded(g, jnp.shape(x), idx, dtype)
    if padded is not None:
        return padded
    return jnp.zeros(jnp.shape(x), dtype=dtype).at[_as_index(idx)].add(g)


def _padded(g: Any, shape: tuple, idx: Any, dtype: Any, least: float = 0.0) -> Any:
    """``g``, the value of ``x[idx]``, in zeros of ``x``'s ``shape`` by ``lax.pad``, or None.

    The transpose of a slice is a pad, which XLA fuses with the arithmetic around it (as
    in ``jax.grad``'s own code); a scatter into zeros it runs as a separate loop, and on a
    CPU a slow one (the Rosenbrock gradient at n = 1e6: 4x ``jax.grad``'s time). Only for
    indices fixed at trace time made of integers, slices with a positive step and
    ``...``, and where ``x[idx]`` has at least the fraction ``least`` of ``x``'s elements
    (a pad touches all of them).
    """
    items = idx if isinstance(idx, tuple) else (idx,)
    dots = [k for k, item in enumerate(items) if item is Ellipsis]  # (`is`: items may be arrays)
    if len(dots) > 1:
        return None
    if dots:
        k = dots[0]
        items = items[:k] + (slice(None),) * (len(shape) - len(items) + 1) + items[k + 1 :]
    items = items + (slice(None),) * (len(shape) - len(items))
    if len(items) != len(shape):
        return None
    config, part, kept = [], [], []
    for item, n in zip(items, shape):
        if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            i = int(item) + n if item < 0 else int(item)
            if not 0 <= i < n:
                return None
            config.append((i, n - 1 - i, 0))
            part.append(1)
        elif isinstance(item, slice) and all(
            v is None or isinstance(v, (int, np.integer))
            for v in (item.start, item.stop, item.step)
        ):
            start, stop, step = item.indices(n)
            count = len(range(start, stop, step))
            if step <= 0 or count == 0:
                return None
            config.append((start, n - 1 - (start + (count - 1) * step), step - 1))
            part.append(count)
            kept.append(count)
        else:
            return None  # an array, a traced integer, None: scatter
    if math.prod(part) < least * math.prod(shape):
        return None
    g = jnp.reshape(jnp.broadcast_to(jnp.asarray(g, dtype=dtype), tuple(kept)), tuple(part))
    return lax.pad(g, jnp.zeros((), dtype=dtype), config)


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
    # A part of half the array or more: a fused pad and add beats an unfused scatter.
    padded = _padded(b, jnp.shape(out), idx, dtype, least=0.5)
    if padded is not None:
        return out + padded
    return out.at[idx].add(b)


def add_into(acc: Any, part: Any, idx: Any) -> Any:
    """``acc`` with ``part`` added at ``idx`` (``runtime.add_into``; jax arrays are immutable,
    so this is ``.at[idx].add``, which XLA updates in place where it can)."""
    return add_at(acc, idx, part)


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


def zero_into(d: Any, idx: Any) -> Any:
    """``zero_at``: jax arrays are immutable, and XLA updates in place where it can."""
    return zero_at(d, idx)


def part_copy(d: Any, idx: Any) -> Any:
    """``d[idx]``: jax arrays are immutable, so no view is ever written through."""
    return jnp.asarray(d)[_as_index(idx)]


# --------------------------------------------------------------------------- scans


def cumprod_tangent(t: Any, a: Any, axis: Any = None) -> Any:
    """The tangent of ``cumprod(a, axis)`` (see ``runtime.cumprod_tangent``).

    The NumPy twin picks the linear-time form with a Python ``if`` on whether
    ``a`` has zeros; here ``lax.cond`` picks it, so it works under ``jit``
    (under ``vmap`` both branches run). Both branches give the floating dtype
    of ``a`` and ``t``.
    """
    a_last, moved = _scan_last(a, axis)
    t_last, _ = _scan_last(jnp.broadcast_to(t, jnp.shape(a)), axis)
    dtype = _float_dtype(a_last, t_last)

    def linear(a_last, t_last):
        out = jnp.cumprod(a_last, axis=-1) * jnp.cumsum(t_last / a_last, axis=-1)
        return out.astype(dtype)

    def exact(a_last, t_last):
        return jnp.einsum("...ji,...j->...i", _cumprod_partials(a_last), t_last).astype(dtype)

    out = lax.cond(jnp.all(a_last != 0), linear, exact, a_last, t_last)
    return jnp.moveaxis(out, -1, moved)


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


# --------------------------------------------------------------------------- linalg


def matmul_adjoint_lhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``a`` in ``a @ b`` (see ``runtime.matmul_adjoint_lhs``): ``g @ b.T``
    as one contraction. XLA's CPU backend copies a transposed operand before a dot: for
    ``A.T @ r`` with a 4000 x 400 ``A`` that copy cost five times the product itself."""
    g2, a2, b2 = _matmul_operands(g, a, b)
    da = unbroadcast(jnp.einsum("...ik,...jk->...ij", g2, b2), a2)
    return jnp.reshape(da, jnp.shape(a))


def matmul_adjoint_rhs(g: Any, a: Any, b: Any) -> Any:
    """The cotangent of ``b`` in ``a @ b``: ``a.T @ g`` as one contraction (see
    ``matmul_adjoint_lhs``)."""
    g2, a2, b2 = _matmul_operands(g, a, b)
    db = unbroadcast(jnp.einsum("...ki,...kj->...ij", a2, g2), b2)
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


# --------------------------------------------------------------------------- joins


def concatenate_items(items: Any, how: str = "r_", directive: str | None = None) -> Any:
    """``np.r_[items]`` / ``np.c_[items]`` (see ``runtime.concatenate_items``): the items'
    elements gathered in the order the index trick puts them, a layout computed from the
    static shapes, so it traces under jax.jit."""
    layout, _ = _items_layout(items, how, directive)
    flat = jnp.concatenate([jnp.ravel(jnp.asarray(item)) for item in items])
    return jnp.reshape(flat[np.ravel(layout)], np.shape(layout))


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


# --------------------------------------------------------------------------- indexing


def undiagonal(g: Any, a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    """The cotangent of ``a`` in ``diagonal(a, offset, axis1, axis2)``: ``g`` on that diagonal."""
    g = jnp.asarray(g)
    out = jnp.zeros(jnp.shape(a), dtype=jnp.result_type(g, _float_dtype(a)))
    view = jnp.moveaxis(out, (axis1, axis2), (-2, -1))
    rows, cols = _diagonal_positions(g.shape[-1], offset)
    view = view.at[..., rows, cols].set(g)
    return jnp.moveaxis(view, (-2, -1), (axis1, axis2))


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


rebinding.adopt_shared_helpers(runtime.FAMILIES, globals())
