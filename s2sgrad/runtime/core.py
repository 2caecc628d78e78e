"""The helpers of derivative code itself, which the compiler emits whatever the program:
summing broadcasts back (``unbroadcast``), adding cotangents of trees (``accumulate``),
zero trees, reads and writes at an index (``unindex``, ``add_at``, ``add_into``,
``set_at``, ``zero_at``, and in place ``zero_into`` with ``part_copy``), and the markers ``foldable`` and ``_host``.

Written once for every backend: see ``s2sgrad/runtime/__init__.py``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy as xp

from s2sgrad.runtime.batched import Batched


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


# Python's and NumPy's scalar types: shape (), so a scalar's cotangent or tangent for
# another scalar needs no shape work (the scalar loops of derivative code, per element).
_SCALAR_TYPES = frozenset(
    {float, int, bool, np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_}
)


def unbroadcast(g: Any, x: Any) -> Any:
    """Sum the cotangent ``g`` of a broadcast result down to the shape of the input ``x``.

    NumPy broadcasting copies ``x`` along new leading axes and along its
    size-1 axes; the adjoint of a copy is a sum, so those axes are summed.
    Returns ``g`` itself, without a copy, when the shapes already match (the
    common case, so it costs one shape comparison). ``x`` may be a Python
    scalar or 0-d; the result's dtype follows ``g``.
    """
    if type(g) is np.ndarray and type(x) is np.ndarray:
        if g.shape == x.shape:  # (without np.shape's dispatch: small arrays in loops)
            return g
    elif type(x) in _SCALAR_TYPES and type(g) in _SCALAR_TYPES:
        return g
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
        g = _sum_kept(g, stretched)
    if xp.shape(g) != x_shape:
        # g is smaller than x (a cotangent that was never broadcast): spread it out.
        g = _spread(g, x_shape)
    return g


# Reduced in columns: a last axis shorter than this (NumPy sums fewer than 8 elements one
# after the other, so adding the columns in order gives its very bits).
_SHORT_AXIS = 8


def _sum_kept(g: Any, axes: tuple[int, ...]) -> Any:
    """``xp.sum(g, axis=axes, keepdims=True)``; a short last axis column by column.

    The cotangent of an (n, 1) factor of an (n, 3) product (a per-point scale of
    points, a per-row norm) is a sum over a last axis of length 3, and that is
    NumPy's slowest reduction: its inner loop runs once per row, 480 µs on
    (36455, 3) where adding the three columns takes 38 µs. For a float array of
    many rows whose only summed axis is a last axis of 2 to 7 elements, the
    columns are added in order, which is the order NumPy adds them in: the
    result is the same to the bit (but for the sign of a sum of negative zeros).
    """
    if (
        type(g) is np.ndarray
        and axes == (g.ndim - 1,)
        and 2 <= g.shape[-1] < _SHORT_AXIS
        and g.dtype.kind == "f"
        and g.size >= 256 * g.shape[-1]
    ):
        out = g[..., 0:1] + g[..., 1:2]
        for j in range(2, g.shape[-1]):
            out += g[..., j : j + 1]
        return out
    return xp.sum(g, axis=axes, keepdims=True)


def _asarray(x: Any) -> Any:
    """``xp.asarray(x)``, except that a batch of tangents (``runtime.batched``: Jacobians
    on NumPy) stays one batch, which the NumPy calls after it take member by member."""
    return x if isinstance(x, Batched) else xp.asarray(x)


# Up to this many elements, a spread float64 number is a filled array, not a view.
_SMALL_SPREAD = 64


def _spread(g: Any, shape: tuple) -> Any:
    """``np.broadcast_to(g, shape)``, a read-only view, at a third of its cost for one value
    (over a few elements, a new array filled with it).

    Spreading a scalar seed or a scalar's cotangent over an array is the most
    common broadcast in derivative code; on small arrays ``np.broadcast_to``'s
    own overhead (about 10 µs) rivals the arithmetic. One value is spread by a
    stride-0 view of a one-element array instead, and a float64 number over a few
    elements by filling a new array (a third of the view's cost again).
    """
    if type(g) is float or type(g) is np.float64:
        if math.prod(shape) <= _SMALL_SPREAD:  # filling is cheaper than making a view
            out = np.empty(shape)
            out.fill(g)
            return out
        cell = np.array((g,), np.float64)
    elif isinstance(g, Batched):
        return np.broadcast_to(g, shape)
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
    if type(ans) in _SCALAR_TYPES and type(t) in _SCALAR_TYPES:
        return t
    shape = xp.shape(ans)
    if xp.shape(t) == shape:
        return t
    if isinstance(ans, (list, tuple)):
        _refuse_sequence_arithmetic()
    return _spread(t, shape)


@_host
def _normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    return tuple(operator.index(ax) % ndim for ax in axes)


def _float_dtype(*values: Any) -> Any:
    """The floating dtype derivatives of ``values`` carry (float32 stays float32)."""
    return xp.result_type(*values, 1.0)


def _is_basic_index(idx: Any) -> bool:
    """True when ``x[idx]`` touches each element of ``x`` at most once (no integer arrays)."""
    if type(idx) is int or type(idx) is slice:
        return True
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
    if type(x) is np.ndarray and type(g) is np.ndarray and g.dtype == x.dtype:
        out = np.zeros(x.shape, x.dtype)  # the common case, without promotion rules
    elif isinstance(x, (tuple, list, dict)):
        return _unindex_container(g, x, idx)
    else:
        out = np.zeros(np.shape(x), dtype=np.result_type(g, x))
    if isinstance(g, Batched):  # a batch of cotangents (Jacobians): a batch of zeros
        out = Batched(np.zeros((g.batch, *out.shape), out.dtype))
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
        isinstance(out, Batched)  # (np.add.at runs member by member on its views)
        or out.ndim < 2
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
    return _spread(xp.zeros((), dtype=xp.result_type(x, 0.0)), xp.shape(x))


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


def _copy_to_write(a: Any, b: Any) -> Any:
    """A copy of ``a`` in the dtype of ``a`` and ``b``, to write ``b`` into: a batch of
    copies when ``b`` is a batch of cotangents (``runtime.batched``) and ``a`` is not."""
    dtype = np.result_type(a, b)
    if isinstance(a, Batched):
        return a.astype(dtype)
    if isinstance(b, Batched):
        return Batched(np.array(np.broadcast_to(np.asarray(a, dtype), (b.batch, *np.shape(a)))))
    return np.array(a, dtype=dtype, copy=True)


def add_at(a: Any, idx: Any, b: Any) -> Any:
    """A copy of ``a`` with ``b`` added at ``idx``; repeated indices accumulate (jax's ``.at[].add``)."""
    out = _copy_to_write(a, b)
    if _is_basic_index(idx):
        out[idx] += b
    else:
        _scatter_add(out, idx, b)
    return out


def add_into(acc: Any, part: Any, idx: Any) -> Any:
    """``acc[idx] += part`` in place, returning ``acc``: a cotangent read ``x[idx]`` adds to ``dx``.

    ``dx = dx + unindex(g, x, idx)`` would allocate zeros the size of ``x`` for every
    read; the compiler writes ``dx = add_into(dx, g, idx)`` instead, but only where
    it has proved that ``dx`` holds an array made by the derivative code itself that
    nothing else refers to (``transforms/inplace.py``). Elsewhere it writes
    ``add_at``, which copies first. Repeated integer indices add up.
    """
    if type(idx) is int and (
        type(part) is acc.dtype.type or type(part) is float and acc.dtype.kind in "fc"
    ):
        acc[idx] += part  # one element, a scalar of acc's own type (scalar loops)
        return acc
    if (
        type(part) is np.ndarray
        and type(acc) is np.ndarray
        and part.dtype == acc.dtype
        and (type(idx) is slice or _is_basic_index(idx))
    ):
        acc[idx] += part  # the common case: one dtype, a slice
        return acc
    dtype = acc.dtype
    part_dtype = getattr(part, "dtype", None)
    if type(part) is not float and (part_dtype is None or part_dtype != dtype):
        if np.result_type(acc, part) != dtype:
            return add_at(acc, idx, part)
    if isinstance(part, Batched) and not isinstance(acc, Batched):
        return add_at(acc, idx, part)  # a batch of accumulators, one per member
    if _is_basic_index(idx):
        acc[idx] += part
    else:
        _scatter_add(acc, idx, part)
    return acc


def set_at(a: Any, idx: Any, b: Any) -> Any:
    """A copy of ``a`` with ``b`` written at ``idx`` (jax's ``.at[].set``); ``a`` is untouched."""
    out = _copy_to_write(a, b)
    out[idx] = b
    return out


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


def _per_element(pieces: list[Any], arrays: Any) -> Any:
    """The cotangent of a sequence argument: a list of pieces for a list or tuple, and one
    array shaped like ``arrays`` when a joining function received an array (whose elements
    along the first axis are the joined items: ``np.vstack(x)`` of a 1-D ``x``)."""
    if isinstance(arrays, (list, tuple)):
        return pieces
    return xp.reshape(xp.stack([xp.asarray(p) for p in pieces]), xp.shape(arrays))


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


def cast_like(d: Any, x: Any) -> Any:
    """``d`` with each leaf in the floating dtype of ``x``'s leaf, as JAX returns gradients.

    The gradient a composition function (``s2sgrad.composition``) returns: the first-order
    code runs with a float64 seed, which NumPy's promotion carries into a float32
    argument's gradient, where ``grad(f)`` (and so ``hessian``) returns float32.
    Python numbers, non-floating leaves and None are left as they are.
    """
    if d is None:
        return None
    if isinstance(x, dict):
        return {k: cast_like(d[k], x[k]) for k in d}
    if isinstance(x, (tuple, list)):
        return _sequence_like(d, [cast_like(a, b) for a, b in zip(d, x, strict=True)])
    dtype = getattr(x, "dtype", None)
    if dtype is None or dtype.kind != "f" or getattr(d, "dtype", None) == dtype:
        return d
    return xp.asarray(d, dtype=dtype)


def stand_in(x: Any) -> Any:
    """An array with ``x``'s shape and dtype that holds none of its memory (a read-only
    stride-0 view of one zero), for a residual read only for its shape and dtype.

    A called function's backward pass reads many of its forward values only as the
    shape to sum a broadcast back to (``unbroadcast(g, t12)``): kept whole, each stays
    alive from the forward pass to the backward pass, and the forward pass cannot reuse
    its memory for the next temporary as the function itself does. The forward pass
    returns this in their place (see ``transforms.residuals``). Anything but a NumPy
    array of at least a page (4 KiB: a smaller one costs the allocator nothing to keep)
    is returned as it is.
    """
    if type(x) is not np.ndarray or x.nbytes < 4096:
        return x
    out = np.ndarray(x.shape, x.dtype, np.zeros(1, x.dtype), 0, (0,) * x.ndim)
    out.flags.writeable = False
    return out


def owned_copy(x: Any) -> Any:
    """A copy of ``x`` that derivative code owns; None (no adjoint yet) stays None.

    Forward mode gives the tangent of an array that is updated in place (``y[i] = v``,
    and derivative code's ``add_into``) an array of its own this way: the tangent could
    otherwise be another value's tangent (the caller's), or None. In a batched pass
    (``runtime.batched``) it makes one copy per member.
    """
    return None if x is None else xp.copy(x)


def zero_at(d: Any, idx: Any) -> Any:
    """A copy of the cotangent ``d`` with ``d[idx]`` zeroed: the adjoint of overwriting ``x[idx]``.

    It copies rather than writing into ``d`` because another adjoint may share
    ``d``'s memory (a first write ``dx = dy`` does not copy).
    """
    if type(d) is np.ndarray and d.dtype.kind == "f":
        out = d.copy()  # the common case, without promotion rules
    else:
        dtype = np.result_type(d, float)
        out = d.astype(dtype) if isinstance(d, Batched) else np.array(d, dtype=dtype, copy=True)
    out[idx] = 0
    return out


def zero_into(d: Any, idx: Any) -> Any:
    """``d`` with ``d[idx]`` zeroed in place, returning ``d``: ``zero_at`` without the copy.

    The adjoint of overwriting ``x[i]`` in a loop zeroes one element of ``dx`` per
    iteration; a copy of all of ``dx`` each time made such loops quadratic. The compiler
    writes it only where ``d`` is an array the derivative code made and nothing else
    refers to (``transforms/inplace.py``), as it does ``add_into``. An adjoint that is
    not a floating array gets ``zero_at``'s floating copy.
    """
    if isinstance(d, (np.ndarray, Batched)) and d.dtype.kind in "fc":
        d[idx] = 0
        return d
    return zero_at(d, idx)


def part_copy(d: Any, idx: Any) -> Any:
    """``d[idx]`` as a value of its own: a copy where indexing gives a view.

    The cotangent of an overwritten part, read just before ``zero_into`` zeroes that
    part of ``d`` in place (a view would be zeroed with it). A scalar is its own value.
    """
    part = d[idx]
    return part.copy() if isinstance(part, (np.ndarray, Batched)) else part
