"""Helpers of the joining and splitting rules (``rules/joins.py``): cotangents cut back
into the pieces that were joined, tiled, repeated or padded, and ``np.r_``/``np.c_``.

Written once for every backend: see ``s2sgrad/runtime/__init__.py``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import numpy as xp

from s2sgrad.runtime.core import _float_dtype, _host, _per_element, zeros_if_none


def unconcatenate(g: Any, arrays: Any, axis: Any = 0) -> list[Any]:
    """Split the cotangent of ``np.concatenate(arrays, axis)`` into one cotangent per array.

    With ``axis=None`` the arrays were flattened first; each piece is
    reshaped back to its array's shape.
    """
    if axis is None:
        sizes = [np.size(e) for e in arrays]
        pieces = xp.split(xp.ravel(g), _split_points(sizes))
        pieces = [xp.reshape(p, xp.shape(e)) for p, e in zip(pieces, arrays, strict=True)]
        return _per_element(pieces, arrays)
    lengths = [e.shape[axis] if type(e) is np.ndarray else xp.shape(e)[axis] for e in arrays]
    if type(g) is np.ndarray and isinstance(arrays, (list, tuple)):
        # The common case, cut with slices: np.split costs ten times the cutting.
        lead = (slice(None),) * (axis % g.ndim)
        pieces, start = [], 0
        for n in lengths:
            pieces.append(g[(*lead, slice(start, start + n))] if lead else g[start : start + n])
            start += n
        return pieces
    return _per_element(list(xp.split(g, _split_points(lengths), axis=axis)), arrays)


def unstack(g: Any, axis: int = 0, arrays: Any = None) -> list[Any]:
    """Split the cotangent of ``np.stack(arrays, axis)`` into one cotangent per stacked array.

    When ``arrays`` is one array (``np.stack(x)`` stacks its rows) the result is one
    array shaped like it, not a list.
    """
    moved = xp.moveaxis(xp.asarray(g), axis, 0)
    if arrays is not None and not isinstance(arrays, (list, tuple)):
        return xp.reshape(moved, xp.shape(arrays))
    return [moved[i] for i in range(moved.shape[0])]


@_host
def _split_points(lengths: list[int]) -> list[int]:
    """Where ``split`` cuts pieces of ``lengths`` (static Python ints) apart."""
    return np.cumsum(lengths)[:-1].tolist()


@_host
def _joined_shape(shape: tuple[int, ...], how: str) -> tuple[tuple[int, ...], int]:
    """The shape an array takes inside ``np.<how>`` (after its atleast_Nd promotion) and the axis."""
    nd = len(shape)
    if how == "hstack":
        promoted = shape if nd else (1,)
        return promoted, 0 if len(promoted) == 1 else 1
    if how == "vstack":
        return ((1, 1), (1,) + shape)[nd] if nd < 2 else shape, 0
    if how == "dstack":
        if nd == 0:
            return (1, 1, 1), 2
        if nd == 1:
            return (1,) + shape + (1,), 2
        return (shape + (1,) if nd == 2 else shape), 2
    if how == "column_stack":
        return ((1, 1), shape + (1,))[nd] if nd < 2 else shape, 1
    raise ValueError(f"unknown joining function np.{how}")


def unjoin(g: Any, arrays: Any, how: str) -> list[Any]:
    """Split the cotangent of ``np.hstack``/``vstack``/``dstack``/``column_stack`` of ``arrays``.

    Each array is promoted as the joining function does (``np.atleast_2d`` for
    ``vstack``, a column for a 1-D array in ``column_stack``...); the piece of
    ``g`` it occupies is reshaped back to the array's own shape.
    """
    promoted = [_joined_shape(xp.shape(e), how) for e in arrays]
    axis = promoted[0][1]
    lengths = [shape[axis] for shape, _ in promoted]
    pieces = xp.split(g, _split_points(lengths), axis=axis)
    pieces = [xp.reshape(p, xp.shape(e)) for p, e in zip(pieces, arrays, strict=True)]
    return _per_element(pieces, arrays)


def rejoin(g: Any, ans: Any, how: str) -> Any:
    """Join the cotangents ``g`` of the pieces ``ans = unjoin(_, arrays, how)`` back with
    ``np.<how>``: the transpose of ``unjoin`` (its reverse rule, for higher order).

    A piece nothing used has None for its cotangent: zeros shaped like the piece.
    """
    return getattr(xp, how)(zeros_if_none(g, ans))


def concatenate_items(items: Any, how: str = "r_", directive: str | None = None) -> Any:
    """``np.r_[items]`` (``how="r_"``) or ``np.c_[items]``, as a function of the list of items.

    The frontend lowers ``np.r_[a, 0:3, b]`` to ``concatenate_items([a, np.arange(0, 3, 1),
    b], "r_", None)``: a slice is the ``np.arange`` it stands for, and a leading string
    (``np.r_["0,2", a, b]``) is ``directive``.
    """
    key = tuple(items) if directive is None else (directive, *items)
    return (np.r_ if how == "r_" else np.c_)[key]


@_host
def _items_layout(items: Any, how: str, directive: str | None) -> tuple[np.ndarray, list]:
    """Where each element of ``items`` lands in ``concatenate_items(items, how, directive)``.

    The index trick is applied to arrays of element numbers shaped like the items
    (shapes are static, also under jax.jit): the result holds, at each position, the
    number of the element copied there. Returns it and the items' shapes.
    """
    if any(isinstance(item, str) for item in items):
        from s2sgrad.errors import UnsupportedSyntaxError

        raise UnsupportedSyntaxError(
            "a string item of np.r_[...] / np.c_[...] that is not a literal first item "
            "(a directive held in a variable) is not differentiated",
            hint='write the directive literally, first: np.r_["0,2", a, b]',
        )
    shapes = [np.shape(item) for item in items]
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0] + sizes)
    numbers = [np.arange(o, o + n).reshape(s) for o, n, s in zip(offsets, sizes, shapes)]
    return concatenate_items(numbers, how, directive), shapes


def unconcatenate_items(g: Any, items: Any, how: str = "r_", directive: str | None = None) -> list:
    """The cotangent of each item of ``concatenate_items(items, how, directive)``.

    Every element of the result is a copy of one element of one item, so the
    cotangent is ``g`` read back in element-number order, cut and shaped per item.
    """
    layout, shapes = _items_layout(items, how, directive)
    flat = xp.ravel(g)[np.argsort(np.ravel(layout), kind="stable")]
    pieces = xp.split(flat, _split_points([int(np.prod(s)) for s in shapes]))
    return [xp.reshape(p, s) for p, s in zip(pieces, shapes, strict=True)]


def unsplit(g: Any, ans: Any, axis: int = 0) -> Any:
    """The cotangent of ``ary`` in ``ans = np.split(ary, ..., axis)`` (or ``np.array_split``).

    ``g`` is the list of the pieces' cotangents; None or zeros stand for pieces
    the program did not use. The pieces are concatenated back along ``axis``.
    """
    parts = [
        xp.zeros(xp.shape(a), dtype=_float_dtype(a)) if c is None else c for c, a in zip(g, ans)
    ]
    return xp.concatenate(parts, axis=axis)


def untile(g: Any, a: Any, reps: Any) -> Any:
    """The cotangent of ``a`` in ``np.tile(a, reps)``: the sum of ``g`` over the tiles."""
    shape = xp.shape(a)
    reps = tuple(np.atleast_1d(reps).tolist())
    d = max(len(shape), len(reps))
    a_shape = (1,) * (d - len(shape)) + tuple(shape)
    reps = (1,) * (d - len(reps)) + reps
    interleaved = [n for pair in zip(reps, a_shape) for n in pair]
    summed = xp.sum(xp.reshape(g, interleaved), axis=tuple(range(0, 2 * d, 2)))
    return xp.reshape(summed, shape)


def unrepeat(g: Any, a: Any, repeats: Any, axis: Any = None) -> Any:
    """The cotangent of ``a`` in ``np.repeat(a, repeats, axis)``: each element's copies summed."""
    shape = np.shape(a)
    if axis is None:
        flat_shape = (int(np.prod(shape)),)
        ax = 0
    else:
        flat_shape = tuple(shape)
        ax = operator.index(axis) % len(shape)
    n = flat_shape[ax]
    owners = np.repeat(np.arange(n), repeats)
    moved = np.moveaxis(np.asarray(g), ax, 0)
    out = np.zeros((n,) + moved.shape[1:], dtype=_float_dtype(g))
    np.add.at(out, owners, moved)
    return np.reshape(np.moveaxis(out, 0, ax), shape)


def unpad(g: Any, array: Any, pad_width: Any, mode: str = "constant") -> Any:
    """The cotangent of ``array`` in ``np.pad(array, pad_width, mode)``.

    ``constant`` (and ``empty``) padding adds constants: the cotangent is the
    interior of ``g``. ``edge``, ``reflect``, ``symmetric`` and ``wrap`` copy
    elements of ``array`` into the border: their cotangents are added back to
    the elements they copy (found by padding an array of element numbers).
    Other modes raise NotImplementedError.
    """
    shape = np.shape(array)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=int), (len(shape), 2))
    if mode in ("constant", "empty"):
        interior = tuple(slice(int(lo), int(lo) + n) for (lo, _), n in zip(widths, shape))
        return g[interior]
    if mode in ("edge", "reflect", "symmetric", "wrap"):
        sources = np.pad(np.arange(int(np.prod(shape))).reshape(shape), pad_width, mode=mode)
        out = np.zeros(int(np.prod(shape)), dtype=_float_dtype(g))
        np.add.at(out, np.ravel(sources), np.ravel(g))
        return np.reshape(out, shape)
    raise NotImplementedError(f"s2sgrad has no derivative for np.pad(..., mode={mode!r})")


def pad_tangent(t: Any, pad_width: Any, mode: str = "constant") -> Any:
    """The tangent of ``np.pad(array, pad_width, mode)`` given the tangent ``t`` of ``array``.

    Constant padding gets a zero border (the constants carry no derivative);
    the copying modes pad the tangent the same way.
    """
    if mode in ("constant", "empty"):
        return xp.pad(t, pad_width)
    if mode in ("edge", "reflect", "symmetric", "wrap"):
        return xp.pad(t, pad_width, mode=mode)
    raise NotImplementedError(f"s2sgrad has no derivative for np.pad(..., mode={mode!r})")
