"""Helpers of the reduction rules (``rules/reductions.py``, ``logsumexp`` in
``rules/special.py``): cotangents spread back over reduced axes, shares of ties, the
product of the others, weights of averages, the spread of std, norm directions.

Written once for every backend: see ``s2sgrad/runtime/__init__.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy as xp

from s2sgrad.runtime.core import (
    _float_dtype,
    _host,
    _normalize_axes,
    _spread,
    foldable,
    inverse_permutation,
    unbroadcast,
)


def unreduce(g: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Broadcast the cotangent ``g`` of a reduction of ``x`` back to ``x``'s shape.

    ``axis`` and ``keepdims`` are the reduction's own arguments (an int, a
    tuple, negative axes, or None for all axes). Without ``keepdims`` the
    reduced axes are re-inserted as size 1 first. The result is a read-only
    view of ``g`` when it is bigger than ``g`` (one number over a few elements:
    a new array); derivative code never writes into it.
    """
    if type(x) is np.ndarray:  # (without np.shape's dispatch: small arrays in loops)
        if type(g) is np.ndarray:
            if g.shape == x.shape:
                return g
        elif type(g) is float or type(g) is np.float64:  # a total: of every element
            return _spread(g, x.shape)
    x_shape = xp.shape(x)
    if xp.shape(g) == x_shape:
        return g
    if axis is None or xp.size(g) == 1:
        return _spread(g, x_shape)
    if not keepdims:
        g = xp.expand_dims(g, axis)
    return xp.broadcast_to(g, x_shape)


def rereduce(c: Any, g: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Sum ``c``, shaped like the reduced array, back to the shape of ``g``: the transpose
    of ``unreduce(g, x, axis, keepdims)`` (its reverse rule, for higher order).

    Each branch undoes the matching branch of ``unreduce``: nothing for the same shape,
    a total for a spread, and a sum over the stretched axes for a broadcast.
    """
    g_shape = xp.shape(g)
    if xp.shape(c) == g_shape:
        return c
    if axis is None or xp.size(g) == 1:
        return xp.reshape(xp.sum(c), g_shape)
    kept = g if keepdims else xp.expand_dims(g, axis)
    return xp.reshape(unbroadcast(c, kept), g_shape)


@foldable
def grouped_layout(shape: tuple[int, ...], axis: Any = None) -> tuple[tuple, tuple, tuple]:
    """How an array of ``shape`` lies with each group of ``axis`` along one last axis.

    The groups of a reduction along ``axis`` (an int, a tuple, or None for all axes), or
    of a scan (an int, or None for the flattened array): ``(perm, moved, flat)``, where
    ``np.transpose(x, perm)`` puts the group's axes last, of shape ``moved``, and
    ``np.reshape(_, flat)`` makes them one. ``np.transpose(np.reshape(y, moved),
    inverse_permutation(perm))`` undoes it. The rules of the helpers of ``np.prod`` and
    ``np.cumprod`` (higher order) work on that layout.
    """
    ndim = len(shape)
    axes = tuple(range(ndim)) if axis is None else _normalize_axes(axis, ndim)
    kept = [i for i in range(ndim) if i not in axes]
    perm = tuple(kept + list(axes))
    moved = tuple(shape[i] for i in perm)
    flat = tuple(shape[i] for i in kept) + (math.prod(shape[i] for i in axes),)
    return perm, moved, flat


def prod_of_others(a: Any, axis: Any = None) -> Any:
    """For each element of ``a``, the product of the *other* elements of its reduction group.

    This is the derivative of ``np.prod(a, axis)`` with respect to each
    element. Unlike ``ans / a`` it is exact when ``a`` contains zeros (as in
    jax): it multiplies the exclusive cumulative products from the left and
    from the right, about three times the work of the product itself.
    """
    a = xp.asarray(a)
    if a.ndim == 0:
        return xp.ones_like(a)
    axes = tuple(range(a.ndim)) if axis is None else _normalize_axes(axis, a.ndim)
    if not axes:
        return xp.ones_like(a)
    kept = [i for i in range(a.ndim) if i not in axes]
    # Reduced axes last, flattened into one.
    moved = xp.transpose(a, kept + list(axes))
    group_shape = moved.shape[len(kept) :]
    flat = xp.reshape(moved, moved.shape[: len(kept)] + (-1,))
    ones = xp.ones_like(flat[..., :1])
    left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = xp.cumprod(xp.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = xp.reshape(left * right, moved.shape[: len(kept)] + group_shape)
    return xp.transpose(others, inverse_permutation(kept + list(axes)))


def prod_of_others_tangent(a: Any, t: Any, axis: Any = None) -> Any:
    """The tangent of ``prod_of_others(a, axis)`` along the tangent ``t`` of ``a``.

    Element ``k`` gets ``sum over j != k of t_j * (product of a_i, i not k or j)``:
    exact when ``a`` has zeros, at the cost of an ``n x n`` array per reduction group
    of ``n`` elements. That Jacobian is symmetric, so this is also the cotangent of
    ``a`` for the cotangent ``t`` of ``prod_of_others`` (second derivatives of ``np.prod``).
    """
    a = xp.asarray(a)
    t = xp.broadcast_to(xp.asarray(t), a.shape)
    if a.ndim == 0:
        return xp.zeros_like(a * t)
    axes = tuple(range(a.ndim)) if axis is None else _normalize_axes(axis, a.ndim)
    if not axes:
        return xp.zeros_like(a * t)
    kept = [i for i in range(a.ndim) if i not in axes]
    order = kept + list(axes)
    moved = xp.transpose(a, order)
    lead, group_shape = moved.shape[: len(kept)], moved.shape[len(kept) :]
    flat_a = xp.reshape(moved, lead + (-1,))
    flat_t = xp.reshape(xp.transpose(t, order), lead + (-1,))
    diagonal = xp.eye(flat_a.shape[-1], dtype=bool)
    # pairs[..., k, j]: a_j with a 1 for j == k, so its prod_of_others over j excludes k and j
    pairs = xp.where(diagonal, xp.ones_like(flat_a)[..., None, :], flat_a[..., None, :])
    excluded = prod_of_others(pairs, -1)
    terms = xp.where(diagonal, 0.0, excluded * flat_t[..., None, :])
    tangent = xp.reshape(xp.sum(terms, axis=-1), lead + group_shape)
    return xp.transpose(tangent, inverse_permutation(order))


def tie_shares(a: Any, ans: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Each element's share of the max (or min) reduction ``ans`` of ``a`` along ``axis``.

    An element equal to its group's extremum gets ``1/k`` when ``k`` elements
    tie, every other element gets 0: the cotangent is split equally among ties,
    as jax does (``jax.grad(jnp.max)(jnp.array([1., 2., 2.])) == [0, .5, .5]``).
    """
    if type(a) is np.ndarray and (keepdims or axis is None) and a.dtype.kind == "f":
        # The common case: ``ans`` broadcasts against ``a`` as it is (no spread view). A
        # share is 1 * (1 / k): multiplying by the reciprocal gives the bits dividing does
        # (the winners are 0 or 1), in half the time of a division per element.
        winners = a == ans
        counts = np.count_nonzero(winners) if axis is None else winners.sum(axis, keepdims=True)
        return np.multiply(winners, np.float64(1.0) / counts, dtype=a.dtype)  # (k = 0: NaN)
    winners = a == unreduce(ans, a, axis, keepdims)
    counts = xp.sum(winners, axis=axis, keepdims=True)
    return xp.asarray(winners / counts, dtype=_float_dtype(a))


def resolved_spread(spread: Any, a: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """The standard deviation ``spread`` of ``a`` along ``axis``, inf where it is rounding noise.

    The derivative of std is ``centered / spread``, 0 / 0 where a slice's entries are
    equal. Entries equal by construction (``np.std(np.broadcast_to(s, (3,)))``) need
    not give a std of exactly 0: their mean may round away from them (XLA sums in
    another order than NumPy), and ``centered / spread`` is then O(1) noise where the
    function is constant (fuzz seed 31-4619). A spread within ``n * eps * max|a|`` (the
    rounding of the mean of ``n`` entries) cannot be told from 0 and counts as 0: the
    rules divide by inf there, a derivative of 0, as over a single entry. NaN entries
    (``np.nanstd``) are left out of the maximum.
    """
    n = xp.size(a) / max(xp.size(spread), 1)
    biggest = xp.max(xp.where(xp.isnan(a), 0.0, xp.abs(a)), axis=axis, keepdims=keepdims)
    rounding = n * xp.finfo(_float_dtype(spread)).eps * biggest
    return xp.where(spread <= rounding, xp.inf, spread)


def average_weights(a: Any, axis: Any = None, weights: Any = None, returned: bool = False) -> Any:
    """The weights of ``np.average(a, axis, weights)`` spread to the shape of ``a``.

    Ones when ``weights`` is None. Weights of the shape of ``a`` (or a scalar)
    are broadcast as they are; otherwise they hold one weight per position
    along ``axis`` (an int or a tuple), laid out as NumPy does. ``returned=True`` (a tuple result)
    has no derivative rule and raises NotImplementedError.
    """
    if returned:
        raise NotImplementedError("s2sgrad has no derivative for np.average(..., returned=True)")
    shape = xp.shape(a)
    if weights is None:
        return xp.ones(shape, dtype=_float_dtype(a))
    w = xp.asarray(weights)
    if w.ndim and w.shape != shape:
        axes = _normalize_axes(axis, len(shape))
        w = xp.transpose(w, tuple(np.argsort(axes).tolist()))
        w = xp.reshape(w, tuple(n if i in axes else 1 for i, n in enumerate(shape)))
    return xp.broadcast_to(w, shape)


def unaverage_weights(ct: Any, weights: Any, a: Any, axis: Any = None) -> Any:
    """The cotangent of ``weights`` from the cotangent ``ct`` of ``average_weights(a, axis,
    weights)``.

    The adjoint of that spreading: ``ct`` summed over the axes the weights were
    broadcast along and laid out in the weights' own axis order.
    """
    shape = xp.shape(a)
    if xp.shape(weights) == shape:
        return ct
    if xp.ndim(weights) == 0:
        return xp.sum(ct)
    axes = _normalize_axes(axis, len(shape))
    ct = xp.sum(ct, axis=tuple(i for i in range(len(shape)) if i not in axes))
    return xp.transpose(ct, tuple(np.argsort(np.argsort(axes)).tolist()))


def logsumexp_shares(
    a: Any, lse: Any, axis: Any = None, keepdims: bool = False, b: Any = None
) -> Any:
    """``b * exp(a - lse)`` for ``lse = scipy.special.logsumexp(a, axis, b, keepdims)``.

    The derivative of ``logsumexp`` by ``a`` (by ``b`` with ``b=None``: ``exp(a -
    lse)``, the softmax of ``a`` over ``axis``). ``lse`` is re-expanded over the
    reduced axes, so the result has the broadcast shape of ``a`` and ``b``.
    """
    lse = xp.asarray(lse)
    if not keepdims and axis is not None:
        lse = xp.expand_dims(lse, axis)
    shares = xp.exp(a - lse)
    return shares if b is None else shares * b


def norm_direction(
    x: Any, norm: Any, ord: Any = None, axis: Any = None, keepdims: bool = False
) -> Any:
    """The derivative of the norm ``norm = np.linalg.norm(x, ord, axis, keepdims)`` by ``x``.

    Vector norms: the 2-norm and Frobenius norm (``ord`` None, 2 or "fro": ``x /
    norm``), ``ord=1`` (the slope of ``abs``, 1 at 0 as in jax), ``ord=inf`` and
    ``-inf`` (that slope on the largest or smallest magnitudes, ties sharing
    equally as jax does), ``ord=0`` (a count: zero) and any other ``p``-norm.
    Matrix norms (``axis`` a pair, or None for a 2-D ``x``): see
    ``_matrix_norm_direction``.
    """
    ndim = xp.ndim(x)
    matrix = _is_matrix_norm(ndim, axis)
    if ord is None or ord == "fro" or (ord == 2 and not matrix):
        return x / unreduce(norm, x, axis, keepdims)
    if matrix:
        return _matrix_norm_direction(xp.asarray(x), ord, (0, 1) if axis is None else axis)
    if ord == 0:
        return xp.zeros(xp.shape(x), dtype=_float_dtype(x))
    if ord == 1:
        return _abs_slope(x)
    if ord in (xp.inf, -xp.inf):
        return _abs_slope(x) * tie_shares(xp.abs(x), norm, axis, keepdims)
    p = float(ord)
    return xp.sign(x) * xp.abs(x) ** (p - 1) / unreduce(norm, x, axis, keepdims) ** (p - 1)


@_host
def _is_matrix_norm(ndim: int, axis: Any) -> bool:
    """Whether ``np.linalg.norm`` over ``axis`` of an array of rank ``ndim`` is a matrix norm."""
    return (axis is None and ndim == 2) or (isinstance(axis, tuple) and len(axis) == 2)


@foldable
def norm_power(ndim: int, ord: Any = None, axis: Any = None) -> float:
    """The ``p`` of the norm ``np.linalg.norm(x, ord, axis)`` of a rank-``ndim`` ``x`` whose
    derivative ``norm_direction`` is ``sign(x) * |x|**(p - 1) / norm**(p - 1)``, for the
    rules of that derivative (second derivatives of norms).

    2 for the 2-norm and the Frobenius norm, ``ord`` for the other vector ``p``-norms,
    and 1 for the norms whose derivative is piecewise constant (a derivative of 0):
    vector norms of order 0, 1 and +-inf, matrix norms of order +-1 and +-inf. The
    matrix 2-norms and the nuclear norm (singular vectors) have no such rule: raises
    NoDerivativeRuleError.
    """
    matrix = _is_matrix_norm(ndim, axis)
    if ord is None or ord == "fro" or (ord == 2 and not matrix):
        return 2.0
    if matrix and ord in (2, -2, "nuc"):
        from s2sgrad.errors import NoDerivativeRuleError

        raise NoDerivativeRuleError(
            f"s2sgrad has no second derivative of the matrix norm np.linalg.norm(x, {ord!r}) "
            "(the derivative of its singular vectors)",
            hint="differentiate np.linalg.svd(x) and its singular values instead",
        )
    if matrix or ord in (0, 1, np.inf, -np.inf):
        return 1.0
    return float(ord)


def _abs_slope(x: Any) -> Any:
    """The derivative of ``abs`` at ``x``: the sign of ``x``, with slope 1 at 0 as in jax."""
    return xp.where(x >= 0, 1.0, -1.0).astype(_float_dtype(x))


def _matrix_norm_direction(x: Any, ord: Any, axis: tuple[int, int]) -> Any:
    """The derivative of a matrix norm over the axis pair ``axis`` (rows, columns) by ``x``.

    ``"nuc"``: ``U @ Vh`` of the thin SVD; ``2`` and ``-2``: ``u v^T`` of the
    largest or smallest singular value, tied values sharing equally as in jax
    (``jnp.max`` of the singular values: the 2-norm of the identity has the
    derivative ``I / n``); ``1``/``-1`` (largest/smallest column sum of magnitudes) and
    ``inf``/``-inf`` (row sum): the slope of ``abs`` on the chosen columns or
    rows, ties sharing equally as in jax.
    """
    row, col = _normalize_axes(axis, x.ndim)
    if ord in ("nuc", 2, -2):
        u, s, vh = xp.linalg.svd(xp.moveaxis(x, (row, col), (-2, -1)), full_matrices=False)
        if ord in (2, -2):
            extreme = s[..., :1] if ord == 2 else s[..., -1:]
            u = u * tie_shares(s, extreme, -1, True)[..., None, :]
        return xp.moveaxis(u @ vh, (-2, -1), (row, col))
    if ord in (1, -1):
        summed, across = row, col
    elif ord in (xp.inf, -xp.inf):
        summed, across = col, row
    else:
        raise ValueError(f"invalid norm order {ord!r} for matrices")
    sums = xp.sum(xp.abs(x), axis=summed, keepdims=True)
    pick = xp.max if ord > 0 else xp.min
    extreme = pick(sums, axis=across, keepdims=True)
    return _abs_slope(x) * tie_shares(sums, extreme, across, True)
