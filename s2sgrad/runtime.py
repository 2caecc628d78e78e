"""Runtime helpers that derivative rules call, written once for every backend.

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

One runtime, written once: array computations call ``xp``, the array namespace
(NumPy here), and ``np`` only does host-side work (shapes, axes, Python values).
The JAX runtime (``s2sgrad.backends.jax.runtime``) runs these same functions with ``xp``
bound to ``jax.numpy`` (``backends.rebinding``) and defines only the helpers whose
JAX version differs: in-place updates, scatters, what NumPy does with views. A
helper that uses ``np`` on arrays is NumPy-only, and the JAX runtime must have its own.

Helpers decorated with ``@foldable`` depend only on compile-time constants
(axes, permutations); the compiler evaluates them while generating code when
all their arguments are constants, so ``x.T`` differentiates to
``np.transpose(g)`` rather than ``np.transpose(g, inverse_permutation(None))``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy as xp

__all__ = [
    "trapezoid_weights",
    "unconvolve",
    "uncumulative_sum",
    "undiff",
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
    "unaverage_weights",
    "unbroadcast",
    "unconcatenate",
    "unconcatenate_items",
    "uncumprod",
    "undiag",
    "undiagonal",
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


def _host(fn: Callable) -> Callable:
    """Mark ``fn`` as host-side: it computes with shapes, axes and Python values through
    NumPy, never with a backend's arrays, so every backend's runtime uses it as it is
    (``backends.rebinding`` gives the other backends no copy of it)."""
    fn.__s2sgrad_host__ = True
    return fn


@_host
def foldable(fn: Callable) -> Callable:
    """Mark ``fn`` as a pure function of its arguments, safe to evaluate at compile time.

    The compiler calls a foldable helper while generating code when every
    argument is a constant, and prints the result instead of the call. A function of
    constants is host-side too.
    """
    fn.__s2sgrad_foldable__ = True
    return _host(fn)


_host(_host)


# --------------------------------------------------------------------------- broadcasting


@_host
def _refuse_sequence_arithmetic() -> None:
    """``+`` or ``*`` joined Python lists or tuples at run time (values the compiler could
    not tell were sequences): the array adjoint would be wrong, so stop."""
    from s2sgrad.errors import UnsupportedSyntaxError

    raise UnsupportedSyntaxError(
        "`+` or `*` joined Python lists or tuples of differentiated values (see the line "
        "comment above this frame in the generated code); that is not differentiated",
        hint="write each row into an array made in the function, or use np.concatenate / "
        "np.stack on arrays",
    )


def unbroadcast(g: Any, x: Any) -> Any:
    """Sum the cotangent ``g`` of a broadcast result down to the shape of the input ``x``.

    NumPy broadcasting copies ``x`` along new leading axes and along its
    size-1 axes; the adjoint of a copy is a sum, so those axes are summed.
    Returns ``g`` itself, without a copy, when the shapes already match (the
    common case, so it costs one shape comparison). ``x`` may be a Python
    scalar or 0-d; the result's dtype follows ``g``.
    """
    x_shape = xp.shape(x)
    g_shape = xp.shape(g)
    if g_shape == x_shape:
        return g
    if isinstance(x, (list, tuple)):
        _refuse_sequence_arithmetic()
    lead = len(g_shape) - len(x_shape)
    if lead > 0:
        g = xp.sum(g, axis=tuple(range(lead)))
        g_shape = g_shape[lead:]
    stretched = tuple(
        i for i, n in enumerate(x_shape) if n == 1 and i < len(g_shape) and g_shape[i] != 1
    )
    if stretched:
        g = xp.sum(g, axis=stretched, keepdims=True)
    if xp.shape(g) != x_shape:
        # g is smaller than x (a cotangent that was never broadcast): spread it out.
        g = _spread(g, x_shape)
    return g


def _spread(g: Any, shape: tuple) -> Any:
    """``np.broadcast_to(g, shape)``, a read-only view, at a third of its cost for one value.

    Spreading a scalar seed or a scalar's cotangent over an array is the most
    common broadcast in derivative code; on small arrays ``np.broadcast_to``'s
    own overhead (about 10 µs) rivals the arithmetic. One value is spread by a
    stride-0 view of a one-element array instead.
    """
    if type(g) is float:
        cell = np.array((g,))
    else:
        g = np.asarray(g)
        if g.size != 1 or g.dtype.hasobject:
            return np.broadcast_to(g, shape)
        cell = g.reshape(1)
    out = np.ndarray(shape, cell.dtype, cell, 0, (0,) * len(shape))
    out.flags.writeable = False
    return out


def broadcast_like(t: Any, ans: Any) -> Any:
    """Broadcast a tangent ``t`` to the shape of the result ``ans`` (``t`` itself if it fits).

    Forward rules of broadcasting operations use it where a contribution
    would otherwise keep the smaller shape of its input: the tangent of
    ``x + y`` with only a scalar ``x`` active is ``dx`` spread over ``y``'s shape.
    The result may be a read-only view.
    """
    shape = xp.shape(ans)
    if xp.shape(t) == shape:
        return t
    if isinstance(ans, (list, tuple)):
        _refuse_sequence_arithmetic()
    return _spread(t, shape)


# --------------------------------------------------------------------------- reductions


def unreduce(g: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Broadcast the cotangent ``g`` of a reduction of ``x`` back to ``x``'s shape.

    ``axis`` and ``keepdims`` are the reduction's own arguments (an int, a
    tuple, negative axes, or None for all axes). Without ``keepdims`` the
    reduced axes are re-inserted as size 1 first. The result is a read-only
    view of ``g`` when it is bigger than ``g``; derivative code never writes
    into it.
    """
    x_shape = xp.shape(x)
    if xp.shape(g) == x_shape:
        return g
    if axis is None or xp.size(g) == 1:
        return _spread(g, x_shape)
    if not keepdims:
        g = xp.expand_dims(g, axis)
    return xp.broadcast_to(g, x_shape)


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


@_host
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
    counts = xp.sum(winners, axis=axis, keepdims=True)
    return xp.asarray(winners / counts, dtype=_float_dtype(a))


def resolved_spread(ans: Any, a: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """The standard deviation ``ans`` of ``a`` along ``axis``, inf where it is rounding noise.

    The derivative of std is ``centered / ans``, 0 / 0 where a slice's entries are
    equal. Entries equal by construction (``np.std(np.broadcast_to(s, (3,)))``) need
    not give a std of exactly 0: their mean may round away from them (XLA sums in
    another order than NumPy), and ``centered / ans`` is then O(1) noise where the
    function is constant (fuzz seed 31-4619). A spread within ``n * eps * max|a|`` (the
    rounding of the mean of ``n`` entries) cannot be told from 0 and counts as 0: the
    rules divide by inf there, a derivative of 0, as over a single entry. NaN entries
    (``np.nanstd``) are left out of the maximum.
    """
    n = xp.size(a) / max(xp.size(ans), 1)
    biggest = xp.max(xp.where(xp.isnan(a), 0.0, xp.abs(a)), axis=axis, keepdims=keepdims)
    rounding = n * xp.finfo(_float_dtype(ans)).eps * biggest
    return xp.where(ans <= rounding, xp.inf, ans)


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


def unaverage_weights(g: Any, weights: Any, a: Any, axis: Any = None) -> Any:
    """The cotangent of ``weights`` from the cotangent ``g`` of ``average_weights(a, axis, weights)``.

    The adjoint of that spreading: ``g`` summed over the axes the weights were
    broadcast along and laid out in the weights' own axis order.
    """
    shape = xp.shape(a)
    if xp.shape(weights) == shape:
        return g
    if xp.ndim(weights) == 0:
        return xp.sum(g)
    axes = _normalize_axes(axis, len(shape))
    g = xp.sum(g, axis=tuple(i for i in range(len(shape)) if i not in axes))
    return xp.transpose(g, tuple(np.argsort(np.argsort(axes)).tolist()))


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


def cumprod_tangent(da: Any, a: Any, axis: Any = None) -> Any:
    """The tangent of ``np.cumprod(a, axis)`` along the input tangent ``da``.

    ``cumprod(a) * cumsum(da / a)`` when ``a`` has no zeros (linear time);
    otherwise the exact quadratic form of ``_cumprod_partials``, as jax is
    exact at zeros.
    """
    a_last, moved = _scan_last(a, axis)
    da_last, _ = _scan_last(np.broadcast_to(da, np.shape(a)), axis)
    if np.all(a_last != 0):
        t = np.cumprod(a_last, axis=-1) * np.cumsum(da_last / a_last, axis=-1)
    else:
        t = np.einsum("...ji,...j->...i", _cumprod_partials(a_last), da_last)
    return np.moveaxis(t, -1, moved)


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


def logsumexp_shares(
    a: Any, ans: Any, axis: Any = None, keepdims: bool = False, b: Any = None
) -> Any:
    """``b * exp(a - ans)`` for ``ans = scipy.special.logsumexp(a, axis, b, keepdims)``.

    The derivative of ``logsumexp`` by ``a`` (by ``b`` with ``b=None``: ``exp(a -
    ans)``, the softmax of ``a`` over ``axis``). ``ans`` is re-expanded over the
    reduced axes, so the result has the broadcast shape of ``a`` and ``b``.
    """
    ans = xp.asarray(ans)
    if not keepdims and axis is not None:
        ans = xp.expand_dims(ans, axis)
    shares = xp.exp(a - ans)
    return shares if b is None else shares * b


def norm_direction(
    x: Any, ans: Any, ord: Any = None, axis: Any = None, keepdims: bool = False
) -> Any:
    """The derivative of the norm ``ans = np.linalg.norm(x, ord, axis, keepdims)`` by ``x``.

    Vector norms: the 2-norm and Frobenius norm (``ord`` None, 2 or "fro": ``x /
    ans``), ``ord=1`` (the slope of ``abs``, 1 at 0 as in jax), ``ord=inf`` and
    ``-inf`` (that slope on the largest or smallest magnitudes, ties sharing
    equally as jax does), ``ord=0`` (a count: zero) and any other ``p``-norm.
    Matrix norms (``axis`` a pair, or None for a 2-D ``x``): see
    ``_matrix_norm_direction``.
    """
    ndim = xp.ndim(x)
    matrix = (axis is None and ndim == 2) or (isinstance(axis, tuple) and len(axis) == 2)
    if ord is None or ord == "fro" or (ord == 2 and not matrix):
        return x / unreduce(ans, x, axis, keepdims)
    if matrix:
        return _matrix_norm_direction(xp.asarray(x), ord, (0, 1) if axis is None else axis)
    if ord == 0:
        return xp.zeros(xp.shape(x), dtype=_float_dtype(x))
    if ord == 1:
        return _abs_slope(x)
    if ord in (xp.inf, -xp.inf):
        return _abs_slope(x) * tie_shares(xp.abs(x), ans, axis, keepdims)
    p = float(ord)
    return xp.sign(x) * xp.abs(x) ** (p - 1) / unreduce(ans, x, axis, keepdims) ** (p - 1)


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


# --------------------------------------------------------------------------- non-smooth points


def _float_dtype(*values: Any) -> Any:
    """The floating dtype derivatives of ``values`` carry (float32 stays float32)."""
    return xp.result_type(*values, 1.0)


@foldable
def power_slope_exponent(y: Any) -> Any:
    """The exponent ``e`` of ``d/dx x**y = y * x**e``: ``y - 1``, but 0 where ``y == 0``.

    ``x**0`` is the constant 1, and ``y * x**(y - 1)`` would be ``0 * inf`` at ``x == 0``
    (jax's ``integer_pow`` gives 0 there too). Written with operators only, so it runs
    on Python numbers (and folds while generating code), arrays and jax tracers alike.
    """
    return y - 1 + (y == 0)


def greater_share(x: Any, y: Any) -> Any:
    """``x``'s share of the derivative of ``np.maximum(x, y)``: 1 where x > y, 1/2 at ties, else 0.

    Splitting ties equally is jax's convention (``jax.grad(lambda x:
    jnp.maximum(x, 1.0))(1.0) == 0.5``); ``np.minimum(x, y)`` gives ``x`` the
    share ``greater_share(y, x)``.
    """
    share = xp.where(x > y, 1.0, xp.where(x == y, 0.5, 0.0))
    return xp.asarray(share, dtype=_float_dtype(x, y))


def clip_shares(a: Any, a_min: Any, a_max: Any) -> tuple[Any, Any, Any]:
    """The shares of ``a``, ``a_min`` and ``a_max`` in the derivative of ``np.clip(a, a_min, a_max)``.

    jax computes clip as ``minimum(maximum(a, a_min), a_max)``, so at a bound
    the derivative is split half and half (``jax.grad(lambda x: jnp.clip(x,
    0.0, 1.0))(0.0) == 0.5``); we follow that. A bound of None is absent.
    """
    if a_min is None:
        lower, a_lower_share = a, xp.ones(xp.shape(a), dtype=_float_dtype(a))
    else:
        lower = xp.maximum(a, a_min)
        a_lower_share = greater_share(a, a_min)
    if a_max is None:
        upper_share = xp.ones(xp.shape(lower), dtype=_float_dtype(lower))
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
        _scatter_add(out, idx, g)
    return out


def _scatter_add(out: np.ndarray, idx: Any, g: Any) -> None:
    """``np.add.at(out, idx, g)``: ``out[idx] += g`` in place, repeated indices adding up.

    The gather ``table[rows]`` of a table of rows (camera parameters per observation,
    embeddings per token) has this as its adjoint, and ``np.add.at`` on a 2-D table
    is slow: about 4x slower than one ``np.bincount`` over the flattened positions,
    which is what this does for an integer array indexing the first axis of a float
    table. Anything else goes to ``np.add.at`` (1-D tables are already fast there).
    """
    rows = idx[0] if type(idx) is tuple and len(idx) == 1 else idx
    if (
        out.ndim < 2
        or out.dtype not in (np.float64, np.float32)
        or type(rows) is not np.ndarray
        or rows.dtype.kind not in "iu"
        or rows.size == 0
    ):
        np.add.at(out, idx, g)
        return
    n = out.shape[0]
    lowest, highest = rows.min(), rows.max()
    if lowest < -n or highest >= n:
        np.add.at(out, idx, g)  # raises NumPy's own IndexError
        return
    if lowest < 0:
        rows = np.where(rows < 0, rows + n, rows)
    width = out.size // n
    g = np.broadcast_to(g, rows.shape + out.shape[1:])
    flat = (rows.reshape(-1, 1) * width + np.arange(width)).reshape(-1)
    out += np.bincount(flat, weights=g.reshape(-1), minlength=out.size).reshape(out.shape)


@_host
def _sequence_like(x: Any, items: Any) -> Any:
    """A list or tuple of the kind of ``x`` holding ``items``; a named tuple (the result of
    ``np.linalg.slogdet``, say) is rebuilt by position, as its constructor wants."""
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*items)
    return type(x)(items)


def _zeros_like_tree(x: Any) -> Any:
    if x is None:  # a None argument (`prev=None`): no tangent
        return None
    if isinstance(x, dict):
        return {k: _zeros_like_tree(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return _sequence_like(x, [_zeros_like_tree(v) for v in x])
    return xp.zeros(xp.shape(x), dtype=xp.result_type(x, 0.0))


def _unindex_container(g: Any, x: Any, idx: Any) -> Any:
    # The other leaves are zero views: no memory, and `accumulate` skips them.
    if isinstance(x, dict):
        out = {k: (g if k == idx else _zero_view_tree(v)) for k, v in x.items()}
        return out
    positions = range(len(x))[idx]
    if isinstance(positions, int):
        chosen = {positions: g}
    else:
        chosen = dict(zip(positions, g, strict=True))
    return _sequence_like(
        x, [chosen[i] if i in chosen else _zero_view_tree(v) for i, v in enumerate(x)]
    )


def _zero_view_tree(x: Any) -> Any:
    """Zeros shaped like ``x`` as read-only views of one zero (``_spread``).

    The cotangent of ``params["b"]`` is ``params`` with zeros everywhere but at "b";
    as real arrays those zeros cost an allocation and an add per read of a leaf
    (the weight matrices of a network, once per bias read). ``accumulate`` knows
    these views are zero and skips them; ``zeros_if_none`` turns what is left into
    ordinary arrays before gradients reach the user.
    """
    if isinstance(x, dict):
        return {k: _zero_view_tree(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return _sequence_like(x, [_zero_view_tree(v) for v in x])
    return _spread(np.zeros((), dtype=np.result_type(x, 0.0)), np.shape(x))


def _is_zero_view(a: Any) -> bool:
    """True for an array whose elements all share one memory cell holding 0: identically zero."""
    return (
        type(a) is np.ndarray
        and a.ndim > 0
        and not any(a.strides)
        and a.size > 0
        and not a.flags.writeable
        and a.flat[0] == 0
    )


def add_at(a: Any, idx: Any, b: Any) -> Any:
    """A copy of ``a`` with ``b`` added at ``idx``; repeated indices accumulate (jax's ``.at[].add``)."""
    out = np.array(a, dtype=np.result_type(a, b), copy=True)
    if _is_basic_index(idx):
        out[idx] += b
    else:
        _scatter_add(out, idx, b)
    return out


def add_into(acc: Any, g: Any, idx: Any) -> Any:
    """``acc[idx] += g`` in place, returning ``acc``: a cotangent read ``x[idx]`` adds to ``dx``.

    ``dx = dx + unindex(g, x, idx)`` would allocate zeros the size of ``x`` for every
    read; the compiler writes ``dx = add_into(dx, g, idx)`` instead, but only where
    it has proved that ``dx`` holds an array made by the derivative code itself that
    nothing else refers to (``transforms/inplace.py``). Elsewhere it writes
    ``add_at``, which copies first. Repeated integer indices add up.
    """
    dtype = acc.dtype
    g_dtype = getattr(g, "dtype", None)
    if type(g) is not float and (g_dtype is None or g_dtype != dtype):
        if np.result_type(acc, g) != dtype:
            return add_at(acc, idx, g)
    if _is_basic_index(idx):
        acc[idx] += g
    else:
        _scatter_add(acc, idx, g)
    return acc


def set_at(a: Any, idx: Any, b: Any) -> Any:
    """A copy of ``a`` with ``b`` written at ``idx`` (jax's ``.at[].set``); ``a`` is untouched."""
    out = np.array(a, dtype=np.result_type(a, b), copy=True)
    out[idx] = b
    return out


# --------------------------------------------------------------------------- products


def _matmul_operands(g: Any, a: Any, b: Any) -> tuple[Any, Any, Any]:
    """Promote 1-D operands as matmul does: ``a`` to a row, ``b`` to a column, ``g`` to match."""
    a, b, g = xp.asarray(a), xp.asarray(b), xp.asarray(g)
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
        pieces = xp.split(xp.ravel(g), _split_points(sizes))
        pieces = [xp.reshape(p, xp.shape(e)) for p, e in zip(pieces, arrays, strict=True)]
        return _per_element(pieces, arrays)
    lengths = [xp.shape(e)[axis] for e in arrays]
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


def _per_element(pieces: list[Any], arrays: Any) -> Any:
    """The cotangent of a sequence argument: a list of pieces for a list or tuple, and one
    array shaped like ``arrays`` when a joining function received an array (whose elements
    along the first axis are the joined items: ``np.vstack(x)`` of a 1-D ``x``)."""
    if isinstance(arrays, (list, tuple)):
        return pieces
    return xp.reshape(xp.stack([xp.asarray(p) for p in pieces]), xp.shape(arrays))


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
        keys = list(acc) + [k for k in c if k not in acc]  # deterministic order
        return {k: _accumulate_leaf(acc.get(k), c.get(k)) for k in keys}
    if isinstance(acc, (tuple, list)):
        return _sequence_like(acc, [_accumulate_leaf(a, b) for a, b in zip(acc, c, strict=True)])
    return acc + c


def _accumulate_leaf(acc: Any, c: Any) -> Any:
    """``accumulate`` inside a container, where leaves may be zero views (see ``unindex``)."""
    if _is_zero_view(c):
        return acc
    if _is_zero_view(acc):
        return c
    return accumulate(acc, c)


def zeros_like_tree(x: Any) -> Any:
    """Zeros shaped like ``x``, leaf by leaf when ``x`` is a tuple, list or dict."""
    return _zeros_like_tree(x)


def zeros_if_none(d: Any, x: Any) -> Any:
    """The cotangent ``d`` of ``x``, or zeros shaped like ``x`` when nothing reached it.

    In a tuple, list or dict, leaves that are None or zero views (see ``unindex``)
    become ordinary zero arrays: gradients reach the user as arrays they can write.
    """
    if d is None:
        return _zeros_like_tree(x)
    if isinstance(d, (tuple, list, dict)):
        return _completed(d, x)
    return d


def _completed(d: Any, x: Any) -> Any:
    if isinstance(d, dict):
        return {k: _completed(d.get(k), x[k]) for k in x}
    if isinstance(d, (tuple, list)):
        return _sequence_like(d, [_completed(a, b) for a, b in zip(d, x, strict=True)])
    if d is None or _is_zero_view(d):
        return _zeros_like_tree(x)
    return d


def zero_at(d: Any, idx: Any) -> Any:
    """A copy of the cotangent ``d`` with ``d[idx]`` zeroed: the adjoint of overwriting ``x[idx]``.

    It copies rather than writing into ``d`` because another adjoint may share
    ``d``'s memory (a first write ``dx = dy`` does not copy).
    """
    out = np.array(d, dtype=np.result_type(d, float), copy=True)
    out[idx] = 0
    return out


# --------------------------------------------------------------------------- joining and splitting


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


# --------------------------------------------------------------------------- copies of elements


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
    return np.argsort(a, axis=axis, kind="stable")


def negated_shift(shift: Any) -> Any:
    """The shift that undoes ``roll(x, shift)``: an int, or a tuple of ints, stays static."""
    if isinstance(shift, (tuple, list)):
        return tuple(-s for s in shift)
    return -shift


# --------------------------------------------------------------------------- more products


@_host
def _normalize_tensordot_axes(axes: Any, a_nd: int, b_nd: int) -> tuple[list[int], list[int]]:
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        return list(range(a_nd - n, a_nd)), list(range(n))
    a_axes, b_axes = axes
    a_axes = [a_axes] if isinstance(a_axes, (int, np.integer)) else list(a_axes)
    b_axes = [b_axes] if isinstance(b_axes, (int, np.integer)) else list(b_axes)
    return [int(x) % a_nd for x in a_axes], [int(x) % b_nd for x in b_axes]


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
    (not the subscripts string, a sublist, or the output sublist that ends the sublist form)."""
    if isinstance(subscripts, str):
        return k >= 0
    count = 1 + sum(op is not None for op in operands)  # arguments of the call
    position = k + 1
    return position % 2 == 0 and not (count % 2 and position == count - 1)


def einsum_tangent(subscripts: Any, operands: Any, k: int, t: Any) -> Any:
    """``np.einsum(subscripts, *operands)`` with the ``k``-th operand replaced by the tangent ``t``.

    Entries of ``operands`` that are None (operands the call did not pass) are dropped.
    In the sublist form (``subscripts`` is the first operand) ``k == -1`` names it.
    """
    if not _einsum_operand(subscripts, operands, k):
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


def _power_factors(a: Any, n: int) -> tuple[Any, int]:
    """The base and exponent of ``matrix_power(a, n)`` as a non-negative power (``inv(a)`` for n < 0)."""
    return (xp.linalg.inv(a), -n) if n < 0 else (a, n)


def thin_svd_factor(u: Any, a: Any, full_matrices: Any = True) -> Any:
    """``u`` of ``np.linalg.svd(a, full_matrices)``, checked to be the thin factor.

    The svd rules (jax's formulas) differentiate the thin SVD; with ``full_matrices=True``
    a non-square ``a`` has a square ``u`` or ``vt`` whose extra columns are not unique,
    and jax refuses it too. Raises a clear error there instead of a shape mismatch.
    """
    _check_thin_svd(xp.shape(a), full_matrices)
    return u


@_host
def _check_thin_svd(shape: tuple[int, ...], full_matrices: Any) -> None:
    m, n = shape[-2:]
    if full_matrices and m != n:
        from s2sgrad.errors import NonDifferentiableError

        raise NonDifferentiableError(
            f"np.linalg.svd of a non-square {m}x{n} matrix with full_matrices=True has no "
            "derivative: the extra singular vectors are not unique",
            hint="pass full_matrices=False (the thin SVD), which s2sgrad differentiates",
        )


def matrix_power_tangent(a: Any, n: int, t: Any) -> Any:
    """The tangent of ``np.linalg.matrix_power(a, n)`` given the tangent ``t`` of ``a``.

    ``sum_k M^k dM M^(m-1-k)`` with ``M = a`` and ``m = n`` (``M = inv(a)``,
    ``dM = -M t M``, ``m = -n`` for a negative ``n``).
    """
    m_, m = _power_factors(a, operator.index(n))
    dm = -m_ @ t @ m_ if n < 0 else t
    powers = [xp.broadcast_to(xp.eye(xp.shape(a)[-1]), xp.shape(a))]
    for _ in range(m - 1):
        powers.append(powers[-1] @ m_)
    total = xp.zeros(xp.shape(a), dtype=xp.result_type(a, t, 1.0))
    for k in range(m):
        total = total + powers[k] @ dm @ powers[m - 1 - k]
    return total


def matrix_power_adjoint(g: Any, a: Any, n: int) -> Any:
    """The cotangent of ``a`` in ``np.linalg.matrix_power(a, n)`` (the transpose of the tangent map)."""
    m_, m = _power_factors(a, operator.index(n))
    mt = xp.swapaxes(m_, -1, -2)
    powers = [xp.broadcast_to(xp.eye(xp.shape(a)[-1]), xp.shape(a))]
    for _ in range(m - 1):
        powers.append(powers[-1] @ mt)
    total = xp.zeros(xp.shape(a), dtype=xp.result_type(a, g, 1.0))
    for k in range(m):
        total = total + powers[k] @ g @ powers[m - 1 - k]
    if n < 0:
        total = -mt @ total @ mt
    return total


# --------------------------------------------------------------------------- sequences


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
    be 1-D (along ``axis``) or shaped like ``y``.
    """
    n = np.shape(y)[axis]
    if x is None:
        widths = np.full(n - 1, float(dx))
        shape = [1] * np.ndim(y)
        shape[axis] = n
        w = np.zeros(n)
        w[:-1] += widths / 2
        w[1:] += widths / 2
        return np.reshape(w, shape)
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        shape = [1] * np.ndim(y)
        shape[axis] = n
        x = np.reshape(x, shape)
    widths = np.diff(x, axis=axis)
    pad_left = [(0, 0)] * widths.ndim
    pad_right = [(0, 0)] * widths.ndim
    pad_left[axis] = (1, 0)
    pad_right[axis] = (0, 1)
    return (np.pad(widths, pad_left) + np.pad(widths, pad_right)) / 2


def unconvolve(g: Any, a: Any, v: Any, mode: str = "full") -> Any:
    """The cotangent of ``np.convolve(a, v, mode)`` with respect to ``a``.

    The adjoint of a full convolution with ``v`` is a valid correlation with ``v``;
    'same' and 'valid' outputs are the centred part of the full one, so ``g`` is
    first placed back at that offset in a zero full-length cotangent.
    """
    full = math.prod(np.shape(a)) + math.prod(np.shape(v)) - 1
    size = math.prod(np.shape(g))
    start = (full - size) // 2
    padded = xp.pad(xp.ravel(xp.asarray(g, dtype=_float_dtype(g))), (start, full - start - size))
    return xp.correlate(padded, xp.asarray(v), mode="valid")
