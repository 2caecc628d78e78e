"""Helpers of the rules along one axis (``rules/scans.py``): cumulative products, the
reversed scans of cumulative sums, differences, trapezoid weights, convolution.

Written once for every backend: see ``s2sgrad/runtime/__init__.py``.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
import numpy as xp

from s2sgrad.runtime.core import _float_dtype


def _scan_last(a: Any, axis: Any) -> tuple[Any, int]:
    """``a`` with the scanned ``axis`` moved last (flattened when ``axis`` is None), and that axis."""
    a = xp.asarray(a)
    if axis is None:
        return xp.ravel(a), 0
    axis = operator.index(axis) % a.ndim
    return xp.moveaxis(a, axis, -1), axis


def _cumprod_partials(a: Any) -> Any:
    """``P[..., j, i] = d cumprod(a)[i] / d a[j]`` along the last axis, exact when ``a`` has zeros.

    That is the product of ``a[k]`` over ``k <= i, k != j`` for ``j <= i`` (0
    otherwise): the exclusive product left of ``j`` times the product of
    ``a[j+1..i]``. It takes ``n**2`` memory per scanned row.
    """
    n = a.shape[-1]
    ones = xp.ones_like(a[..., :1])
    left = xp.cumprod(xp.concatenate([ones, a[..., :-1]], axis=-1), axis=-1)
    after = np.triu(np.ones((n, n), dtype=bool), 1)  # after[j, k]: k > j (static)
    between = xp.cumprod(xp.where(after, a[..., None, :], 1.0), axis=-1)
    return xp.where(~after.T, left[..., :, None] * between, 0.0)


def cumprod_tangent(t: Any, a: Any, axis: Any = None) -> Any:
    """The tangent of ``np.cumprod(a, axis)`` along the input tangent ``t``.

    ``cumprod(a) * cumsum(t / a)`` when ``a`` has no zeros (linear time);
    otherwise the exact quadratic form of ``_cumprod_partials``, as jax is
    exact at zeros.
    """
    a_last, moved = _scan_last(a, axis)
    t_last, _ = _scan_last(np.broadcast_to(t, np.shape(a)), axis)
    if np.all(a_last != 0):
        out = np.cumprod(a_last, axis=-1) * np.cumsum(t_last / a_last, axis=-1)
    else:
        out = np.einsum("...ji,...j->...i", _cumprod_partials(a_last), t_last)
    return np.moveaxis(out, -1, moved)


def uncumprod(g: Any, a: Any, axis: Any = None) -> Any:
    """The cotangent of ``a`` for ``np.cumprod(a, axis)`` with output cotangent ``g``.

    A reversed cumulative sum of ``g * cumprod(a)``, over ``a``, when ``a`` has
    no zeros; otherwise the exact quadratic form (see ``cumprod_tangent``).
    """
    a_last, moved = _scan_last(a, axis)
    g_last, _ = _scan_last(g, axis)
    if np.all(a_last != 0):
        scanned = np.flip(np.cumsum(np.flip(g_last * np.cumprod(a_last, axis=-1), -1), -1), -1)
        out = scanned / a_last
    else:
        out = np.einsum("...ji,...i->...j", _cumprod_partials(a_last), g_last)
    return np.reshape(np.moveaxis(out, -1, moved), np.shape(a))


def undiff(g: Any, n: int = 1, axis: int = -1) -> Any:
    """The cotangent of ``np.diff(a, n, axis)`` mapped back to ``a``.

    One difference ``a[i+1] - a[i]`` sends ``g[i]`` to ``a[i+1]`` and ``-g[i]`` to
    ``a[i]``: the negated difference of ``g`` padded with a zero at each end. ``n``
    differences are undone ``n`` times.
    """
    for _ in range(n):
        pad = [(0, 0)] * xp.ndim(g)
        pad[axis] = (1, 1)
        g = -xp.diff(xp.pad(g, pad), axis=axis)
    return g


def uncumulative_sum(g: Any, x: Any, axis: Any = None, include_initial: bool = False) -> Any:
    """The cotangent of ``np.cumulative_sum(x, axis, include_initial)`` mapped back to ``x``."""
    axis = 0 if axis is None else axis
    if include_initial:  # the initial 0 depends on nothing
        g = xp.asarray(g)
        g = g[(slice(None),) * (operator.index(axis) % g.ndim) + (slice(1, None),)]
    return xp.flip(xp.cumsum(xp.flip(g, axis), axis=axis), axis)


def trapezoid_weights(y: Any, x: Any = None, dx: float = 1.0, axis: int = -1) -> Any:
    """The weights ``w`` with ``np.trapezoid(y, x, dx, axis) == sum(w * y, axis)``.

    Each interval's width is shared half and half by its two end points; ``x`` may
    be 1-D (along ``axis``) or shaped like ``y``, and ``dx`` and ``x`` may be traced. A
    float32 ``x`` gives float32 weights.
    """
    n = np.shape(y)[axis]
    if x is None:
        w = np.zeros(n)  # the weights for dx = 1, static
        w[:-1] += 0.5
        w[1:] += 0.5
        shape = [1] * np.ndim(y)
        shape[axis] = n
        return xp.reshape(xp.asarray(w) * dx, shape)
    x = xp.asarray(x, dtype=_float_dtype(x))
    if x.ndim == 1:
        shape = [1] * np.ndim(y)
        shape[axis] = n
        x = xp.reshape(x, shape)
    widths = xp.diff(x, axis=axis)
    pad_left = [(0, 0)] * widths.ndim
    pad_right = [(0, 0)] * widths.ndim
    pad_left[axis] = (1, 0)
    pad_right[axis] = (0, 1)
    return (xp.pad(widths, pad_left) + xp.pad(widths, pad_right)) / 2


def unconvolve(ct: Any, a: Any, v: Any, mode: str = "full") -> Any:
    """The cotangent of ``a`` in ``np.convolve(a, v, mode)`` for the output cotangent ``ct``.

    The adjoint of a full convolution with ``v`` is a valid correlation with ``v``;
    'same' and 'valid' outputs are the centred part of the full one, so ``ct`` is
    first placed back at that offset in a zero full-length cotangent.
    """
    full = math.prod(np.shape(a)) + math.prod(np.shape(v)) - 1
    size = math.prod(np.shape(ct))
    start = (full - size) // 2
    padded = xp.pad(xp.ravel(xp.asarray(ct, dtype=_float_dtype(ct))), (start, full - start - size))
    return xp.correlate(padded, xp.asarray(v), mode="valid")
