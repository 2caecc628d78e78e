"""Helpers of the element-reading rules (``rules/indexing.py``): diagonals, takes, sorting.

Written once for every backend: see ``s2sgrad/runtime/__init__.py``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import numpy as xp

from s2sgrad.runtime.core import _float_dtype, _host, unindex


@_host
def _diagonal_positions(n: int, offset: int) -> tuple[Any, Any]:
    return np.arange(n) + max(-offset, 0), np.arange(n) + max(offset, 0)


def undiagonal(g: Any, a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    """The cotangent of ``a`` in ``np.diagonal(a, offset, axis1, axis2)``: ``g`` on that diagonal.

    ``g`` has the diagonal as its last axis, as ``np.diagonal`` returns it.
    """
    g = np.asarray(g)
    out = np.zeros(np.shape(a), dtype=np.result_type(g, _float_dtype(a)))
    view = np.moveaxis(out, (axis1, axis2), (-2, -1))
    rows, cols = _diagonal_positions(g.shape[-1], offset)
    view[..., rows, cols] = g
    return out


def undiag(g: Any, v: Any, k: int = 0) -> Any:
    """The cotangent of ``v`` in ``np.diag(v, k)``: the k-th diagonal of ``g`` for a 1-D ``v``,
    ``g`` placed on the k-th diagonal of a matrix shaped like ``v`` for a 2-D one."""
    if xp.ndim(v) == 1:
        return xp.diag(g, k)
    return undiagonal(g, v, k, 0, 1)


def untake(g: Any, a: Any, indices: Any, axis: Any = None, mode: str = "raise") -> Any:
    """The cotangent of ``a`` in ``np.take(a, indices, axis, mode=mode)``; repeated indices add up.

    ``mode="wrap"`` and ``"clip"`` map out-of-range indices as ``np.take`` does.
    """
    shape = np.shape(a)
    n = int(np.prod(shape)) if axis is None else shape[operator.index(axis)]
    indices = np.asarray(indices)
    if mode == "wrap":
        indices = indices % n
    elif mode == "clip":
        indices = np.clip(indices, 0, n - 1)
    if axis is None:
        flat = unindex(g, np.zeros(int(np.prod(shape))), (indices,))
        return np.reshape(flat, shape)
    ax = operator.index(axis) % len(shape)
    return unindex(g, a, (slice(None),) * ax + (indices,))


def untake_along_axis(g: Any, arr: Any, indices: Any, axis: Any = -1) -> Any:
    """The cotangent of ``arr`` in ``np.take_along_axis(arr, indices, axis)`` (axis None: flat).

    Repeated indices add up.
    """
    shape = np.shape(arr)
    if axis is None:
        return untake(g, arr, np.ravel(indices), None)
    indices = np.asarray(indices)
    ax = operator.index(axis) % len(shape)
    grid = list(np.ogrid[tuple(slice(n) for n in indices.shape)])
    grid[ax] = indices
    return unindex(g, arr, tuple(grid))


def sort_order(a: Any, axis: Any = -1) -> Any:
    """The indices that sort ``a`` along ``axis``, ties in order (a stable sort), as
    ``np.sort`` orders them: what its derivative gathers by."""
    return xp.argsort(a, axis=axis, stable=True)
