"""A batch of tangents (or cotangents) that NumPy code treats as one value: vectorized
Jacobians and Hessians on the NumPy backend.

``jacfwd`` and ``hessian`` need one tangent pass per input element, ``jacrev`` one
backward sweep per output element. On the NumPy backend the derivative code runs
once with every seed at once: each tangent is a ``Batched`` holding an array with
a leading batch axis, and every NumPy operation on it acts on each member of the
batch, as ``jax.vmap`` does. The derivative code itself is the same module as
for one seed; primal values never become batched, since no primal value depends
on a tangent.

A ``Batched`` looks like one member of the batch to the code that handles it
(``shape``, ``ndim`` and ``len`` are per member) and NumPy hands every function
and ufunc called on it to ``__array_function__`` / ``__array_ufunc__``. There:

* elementwise ufuncs align each batched operand's own axes with the others' (a
  batched vector meeting a matrix gets its size-1 axes after the batch axis) and
  run once on the whole batch;
* functions with an ``axis`` (sums, means, reshapes, transposes, joins, ...) and
  ``matmul``/``dot`` of up to two-dimensional members run once, their axes shifted
  past the batch axis;
* anything else runs once per member and the results are stacked: always right,
  only slower.

s2sgrad's own runtime helpers are plain functions, so the batch runs a *twin* of
the derivative module (``twin``): the same functions over a copy of its namespace in
which each helper, given a batch it cannot take as a whole, runs once per member.

What cannot be given a batch (``np.asarray`` of one, ``float(t)``, a branch on a
tangent's value, writing a batch into an unbatched array) raises ``BatchingError``,
and the caller (``Backend.over_seeds``) runs one pass per seed instead: a batch
never gives a different answer, at worst the speed of separate passes.
"""

from __future__ import annotations

import functools
import operator
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from s2sgrad import memos


class BatchingError(TypeError):
    """An operation that cannot act on a batch of tangents as a whole: the caller
    falls back to one pass per seed."""


class Batched(np.lib.mixins.NDArrayOperatorsMixin):
    """A batch of arrays of one shape: ``data[k]`` is member ``k``."""

    __slots__ = ("data",)

    def __init__(self, data: Any):
        self.data = data

    # -- one member's view -------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape[1:]

    @property
    def ndim(self) -> int:
        return self.data.ndim - 1

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def batch(self) -> int:
        return self.data.shape[0]

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"Batched({self.data!r})"

    # -- what a batch cannot be ----------------------------------------------------------

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise BatchingError("a batch of tangents converted to one array")

    def _refuse(self, *args: Any) -> Any:
        raise BatchingError("a batch of tangents used as one Python value")

    __float__ = __int__ = __complex__ = __index__ = __bool__ = __iter__ = _refuse

    # -- methods, as NumPy's functions -------------------------------------------------

    @property
    def T(self) -> Batched:  # noqa: N802  (ndarray's name)
        return np.transpose(self)

    @property
    def real(self) -> Batched:
        return Batched(self.data.real)

    @property
    def imag(self) -> Batched:
        return Batched(self.data.imag)

    def copy(self, order: str = "K") -> Batched:
        return Batched(self.data.copy(order))

    def astype(self, dtype: Any, *args: Any, **kwargs: Any) -> Batched:
        return Batched(self.data.astype(dtype, *args, **kwargs))

    def conj(self) -> Batched:
        return np.conjugate(self)

    conjugate = conj

    def reshape(self, *shape: Any, order: str = "C") -> Batched:
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = tuple(shape[0])
        return np.reshape(self, shape, order=order)

    def transpose(self, *axes: Any) -> Batched:
        if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], (int, np.integer))):
            axes = axes[0]
        return np.transpose(self, axes or None)

    def ravel(self, order: str = "C") -> Batched:
        return np.ravel(self, order)

    def flatten(self, order: str = "C") -> Batched:
        return np.ravel(self, order).copy()

    def __getattr__(self, name: str) -> Callable:
        """``t.sum(axis=1)``, ``t.dot(b)``, ...: the NumPy function of that name."""
        fn = getattr(np, name, None)
        if name.startswith("_") or not callable(fn):
            raise AttributeError(name)
        return lambda *args, **kwargs: fn(self, *args, **kwargs)

    # -- indexing -----------------------------------------------------------------------

    def __getitem__(self, idx: Any) -> Batched:
        lead = _batched_index(idx)
        if lead is None:
            return _each(operator.getitem, (self, idx), {})
        return Batched(self.data[lead])

    def __setitem__(self, idx: Any, value: Any) -> None:
        lead = _batched_index(idx)
        if lead is None:
            for k in range(self.batch):
                self.data[k][idx] = _member(value, k)
            return
        if isinstance(value, Batched):
            slot_ndim = self.data[lead].ndim - 1
            value = _aligned(value, slot_ndim)
        self.data[lead] = value

    # -- NumPy's protocols -------------------------------------------------------------

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        out = kwargs.pop("out", None)
        if method == "__call__" and ufunc.signature is None and not _has(kwargs, "where"):
            result = _elementwise(ufunc, inputs, kwargs)
        elif method == "__call__" and ufunc is np.matmul and not kwargs:
            result = _matmul(*inputs)
        elif method in ("reduce", "accumulate") and _plain_kwargs(kwargs, "axis", "dtype"):
            a = inputs[0]
            if not isinstance(a, Batched):
                raise BatchingError(f"{ufunc.__name__}.{method} with a batched argument")
            axis = kwargs.pop("axis", 0)
            if axis is None and method == "accumulate":
                raise BatchingError("accumulate over no axis")
            axis = _shifted(axis, a.ndim, every=axis is None)
            result = Batched(getattr(ufunc, method)(a.data, axis=axis, **kwargs))
        elif method == "at" and isinstance(inputs[0], Batched) and not kwargs:
            return _at(ufunc, *inputs)
        else:
            # Member by member, but never into an unbatched array: every member would
            # write into the same one (np.add.at(zeros, idx, batch) summed the batch).
            if method == "at" and not isinstance(inputs[0], Batched):
                raise BatchingError(f"{ufunc.__name__}.at of a batch into an unbatched array")
            if out is not None:
                _require_batched_outputs(out)
                kwargs["out"] = out
            return _each(getattr(ufunc, method), inputs, kwargs)
        if out is None:
            return result
        return _into(out, result)

    def __array_function__(self, func: Callable, types: Any, args: tuple, kwargs: dict) -> Any:
        handler = _HANDLERS.get(func)
        if handler is not None:
            try:
                return handler(*args, **kwargs)
            except _Unhandled:
                pass
        if func in _WRITES_INTO_FIRST and args and not isinstance(args[0], Batched):
            raise BatchingError(f"np.{func.__name__} of a batch into an unbatched array")
        if kwargs.get("out") is not None:
            _require_batched_outputs(kwargs["out"])
        return _each(func, args, kwargs)


class _Unhandled(Exception):
    """A handler's fast path does not cover these arguments: run once per member."""


# --------------------------------------------------------------------------- members


def _batch_size(values: Any) -> int | None:
    if isinstance(values, Batched):
        return values.batch
    if isinstance(values, (list, tuple)):
        sizes = {s for v in values if (s := _batch_size(v)) is not None}
    elif isinstance(values, dict):
        sizes = {s for v in values.values() if (s := _batch_size(v)) is not None}
    else:
        return None
    if len(sizes) > 1:
        raise BatchingError("batches of different sizes")
    return sizes.pop() if sizes else None


def _member(value: Any, k: int) -> Any:
    """Member ``k`` of every batch in ``value`` (lists, tuples and dicts looked into)."""
    if isinstance(value, Batched):
        return value.data[k]
    if isinstance(value, list):
        return [_member(v, k) for v in value]
    if isinstance(value, tuple):
        return tuple(_member(v, k) for v in value)
    if isinstance(value, dict):
        return {key: _member(v, k) for key, v in value.items()}
    return value


def _each(func: Callable, args: tuple, kwargs: dict) -> Any:
    """``func`` once per member, the results stacked: right for any function of one
    member's values, whatever it does."""
    n = _batch_size((args, kwargs))
    if n is None:
        return func(*args, **kwargs)
    results = [func(*_member(args, k), **_member(kwargs, k)) for k in range(n)]
    return _stacked(results)


def _stacked(results: list) -> Any:
    first = results[0]
    if first is None and all(r is None for r in results):
        return None
    if isinstance(first, (tuple, list)) and not isinstance(first, np.ndarray):
        parts = [_stacked([r[i] for r in results]) for i in range(len(first))]
        return type(first)(parts) if isinstance(first, list) else tuple(parts)
    if isinstance(first, (bool, int)) and not isinstance(first, np.generic):
        if any(r != first for r in results):
            raise BatchingError("a Python number that differs across the batch")
        return first
    if isinstance(first, (np.ndarray, np.generic, float, complex)):
        return Batched(np.stack([np.asarray(r) for r in results]))
    raise BatchingError(f"a result of type {type(first).__name__} for a batch")


#: NumPy functions that write into their first argument: given a batch to write into an
#: unbatched array, running them member by member would write every member into it.
_WRITES_INTO_FIRST = frozenset(
    {np.copyto, np.put, np.place, np.putmask, np.fill_diagonal, np.put_along_axis}
)


def _require_batched_outputs(out: Any) -> None:
    for o in out if isinstance(out, tuple) else (out,):
        if not isinstance(o, Batched):
            raise BatchingError("a batch written into an unbatched array (out=)")


def _into(out: Any, result: Any) -> Any:
    """Write ``result`` into ``out`` (a ufunc's ``out=``: in-place operators)."""
    outs = out if isinstance(out, tuple) else (out,)
    results = result if isinstance(result, tuple) else (result,)
    for o, r in zip(outs, results, strict=True):
        if not isinstance(o, Batched):
            raise BatchingError("a batch written into an unbatched array")
        o.data[...] = r.data if isinstance(r, Batched) else r
    return out if isinstance(out, Batched) or len(outs) > 1 else outs[0]


# --------------------------------------------------------------------------- axes


def _normalized(axis: int, ndim: int) -> int:
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim


def _shifted(axis: Any, ndim: int, every: bool = False) -> Any:
    """A member's ``axis`` (an int, a tuple, or None for all of them when ``every``) as
    the batch's: past the batch axis."""
    if axis is None:
        if not every:
            raise _Unhandled
        return tuple(range(1, ndim + 1))
    if isinstance(axis, (tuple, list)):
        return tuple(_normalized(a, ndim) + 1 for a in axis)
    return _normalized(axis, ndim) + 1


def _aligned(a: Batched, ndim: int) -> np.ndarray:
    """The data of ``a`` with size-1 axes after the batch axis up to ``ndim`` member axes:
    it then broadcasts against unbatched operands of ``ndim`` axes member by member."""
    if a.ndim >= ndim:
        return a.data
    return a.data.reshape((a.batch,) + (1,) * (ndim - a.ndim) + a.shape)


def _has(kwargs: dict, name: str) -> bool:
    return name in kwargs and kwargs[name] is not True


def _plain_kwargs(kwargs: dict, *allowed: str) -> bool:
    return all(k in allowed for k in kwargs)


def _elementwise(ufunc: np.ufunc, inputs: tuple, kwargs: dict) -> Any:
    ndim = max(x.ndim if isinstance(x, Batched) else np.ndim(x) for x in inputs)
    args = [_aligned(x, ndim) if isinstance(x, Batched) else x for x in inputs]
    if any(isinstance(x, (list, tuple)) and _batch_size(x) is not None for x in inputs):
        raise BatchingError("a batch inside a list given to a ufunc")
    result = ufunc(*args, **kwargs)
    if isinstance(result, tuple):
        return tuple(Batched(r) for r in result)
    return Batched(result)


def _at(ufunc: np.ufunc, a: Batched, idx: Any, *b: Any) -> None:
    """``ufunc.at(a, idx, b)`` (``np.add.at``: repeated indices add up), in place on the
    whole batch where the index means the same past the batch axis."""
    lead = _batched_index(idx)
    if lead is None:
        _each(ufunc.at, (a, idx, *b), {})
        return
    if b and isinstance(b[0], Batched):
        b = (_aligned(b[0], a.data[lead].ndim - 1),)
    ufunc.at(a.data, lead, *b)


# --------------------------------------------------------------------------- products


def _matmul(a: Any, b: Any) -> Batched:
    """``a @ b`` member by member, for members of up to two axes on the batched side
    and operands of up to two axes on the other; stacks of matrices run per member."""
    if isinstance(a, Batched) and isinstance(b, Batched):
        if a.ndim == b.ndim == 2:
            return Batched(np.matmul(a.data, b.data))
        if a.ndim == 1 and b.ndim == 2:
            return Batched(np.matmul(a.data[:, None, :], b.data)[:, 0])
        if a.ndim == 2 and b.ndim == 1:
            return Batched(np.matmul(a.data, b.data[:, :, None])[..., 0])
        if a.ndim == b.ndim == 1:
            return Batched(np.einsum("bi,bi->b", a.data, b.data))
        return _each(np.matmul, (a, b), {})
    if isinstance(a, Batched):
        if np.ndim(b) in (1, 2) and a.ndim >= 1:
            return Batched(np.matmul(a.data, b))  # (B, ..., n) @ (n[, k])
        return _each(np.matmul, (a, b), {})
    if np.ndim(a) == 2 and b.ndim == 1:
        return Batched(np.matmul(b.data, np.transpose(a)))  # A v = v Aᵀ, row by row
    if np.ndim(a) in (1, 2) and b.ndim >= 2:
        return Batched(np.matmul(a, b.data))  # A broadcasts over the batch (and stacks)
    if np.ndim(a) == 1 and b.ndim == 1:
        return Batched(np.matmul(b.data, a))
    return _each(np.matmul, (a, b), {})


def _dot(a: Any, b: Any, out: Any = None) -> Any:
    if out is not None:
        raise _Unhandled
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return np.multiply(a, b)
    if np.ndim(a) <= 2 and np.ndim(b) <= 2:
        return _matmul(a, b)
    raise _Unhandled


# --------------------------------------------------------------------------- functions


def _batched(a: Any) -> Batched:
    if not isinstance(a, Batched):
        raise _Unhandled
    return a


def _reduction(func: Callable) -> Callable:
    def handler(a: Any, axis: Any = None, *args: Any, **kwargs: Any) -> Batched:
        a = _batched(a)
        if args or any(k not in ("dtype", "keepdims", "ddof") for k in kwargs):
            raise _Unhandled
        return Batched(func(a.data, axis=_shifted(axis, a.ndim, every=True), **kwargs))

    return handler


def _scan(func: Callable) -> Callable:
    def handler(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Batched:
        a = _batched(a)
        if out is not None or axis is None:
            raise _Unhandled
        return Batched(func(a.data, axis=_shifted(axis, a.ndim), dtype=dtype))

    return handler


def _reshape(a: Any, shape: Any = None, order: str = "C", *, newshape: Any = None, copy=None):
    a = _batched(a)
    shape = newshape if shape is None else shape
    if order != "C" or shape is None or copy is not None:
        raise _Unhandled
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return Batched(np.reshape(a.data, (a.batch, *shape)))


def _ravel(a: Any, order: str = "C") -> Batched:
    a = _batched(a)
    if order != "C":
        raise _Unhandled
    return Batched(np.reshape(a.data, (a.batch, -1)))


def _transpose(a: Any, axes: Any = None) -> Batched:
    a = _batched(a)
    if axes is None:
        order = tuple(range(a.ndim, 0, -1))
    else:
        order = tuple(_normalized(x, a.ndim) + 1 for x in axes)
    return Batched(np.transpose(a.data, (0, *order)))


def _swapaxes(a: Any, axis1: int, axis2: int) -> Batched:
    a = _batched(a)
    return Batched(np.swapaxes(a.data, _shifted(axis1, a.ndim), _shifted(axis2, a.ndim)))


def _moveaxis(a: Any, source: Any, destination: Any) -> Batched:
    a = _batched(a)
    return Batched(np.moveaxis(a.data, _shifted(source, a.ndim), _shifted(destination, a.ndim)))


def _expand_dims(a: Any, axis: Any) -> Batched:
    a = _batched(a)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    return Batched(np.expand_dims(a.data, _shifted(tuple(axes), a.ndim + len(axes))))


def _squeeze(a: Any, axis: Any = None) -> Batched:
    a = _batched(a)
    if axis is None:
        axis = tuple(i for i, n in enumerate(a.shape) if n == 1)
    return Batched(np.squeeze(a.data, _shifted(axis, a.ndim)))


def _flip(a: Any, axis: Any = None) -> Batched:
    a = _batched(a)
    return Batched(np.flip(a.data, _shifted(axis, a.ndim, every=True)))


def _roll(a: Any, shift: Any, axis: Any = None) -> Batched:
    a = _batched(a)
    if axis is None:  # the flattened member, rolled, in its shape
        flat = np.roll(np.reshape(a.data, (a.batch, -1)), shift, axis=1)
        return Batched(np.reshape(flat, a.data.shape))
    return Batched(np.roll(a.data, shift, axis=_shifted(axis, a.ndim)))


def _diff(a: Any, n: int = 1, axis: int = -1, **kwargs: Any) -> Batched:
    a = _batched(a)
    if kwargs:
        raise _Unhandled
    return Batched(np.diff(a.data, n, axis=_shifted(axis, a.ndim)))


def _all_batched(arrays: Any, ndim: int | None = None) -> tuple[list, int]:
    """The members of a join as batches of one size (unbatched ones repeated)."""
    n = _batch_size(list(arrays))
    if n is None:
        raise _Unhandled
    out = []
    for x in arrays:
        if isinstance(x, Batched):
            out.append(x.data)
        else:
            x = np.asarray(x)
            out.append(np.broadcast_to(x, (n, *x.shape)))
    return out, n


def _concatenate(arrays: Any, axis: Any = 0, out: Any = None, **kwargs: Any) -> Batched:
    if out is not None or axis is None or kwargs:
        raise _Unhandled
    datas, _ = _all_batched(arrays)
    return Batched(np.concatenate(datas, axis=_shifted(axis, datas[0].ndim - 1)))


def _stack(arrays: Any, axis: int = 0, out: Any = None, **kwargs: Any) -> Batched:
    if out is not None or kwargs:
        raise _Unhandled
    datas, _ = _all_batched(arrays)
    return Batched(np.stack(datas, axis=_shifted(axis, datas[0].ndim)))


def _where(condition: Any, *xy: Any) -> Batched:
    if len(xy) != 2:
        raise _Unhandled
    return _elementwise_function(np.where, (condition, *xy))


def _elementwise_function(func: Callable, inputs: tuple) -> Batched:
    ndim = max(x.ndim if isinstance(x, Batched) else np.ndim(x) for x in inputs)
    return Batched(func(*(_aligned(x, ndim) if isinstance(x, Batched) else x for x in inputs)))


def _broadcast_to(array: Any, shape: Any, subok: bool = False) -> Batched:
    a = _batched(array)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return Batched(np.broadcast_to(_aligned(a, len(shape)), (a.batch, *shape)))


def _like(func: Callable) -> Callable:
    def handler(a: Any, *args: Any, **kwargs: Any) -> Batched:
        a = _batched(a)
        if kwargs.get("shape") is not None or _batch_size((args, kwargs)) is not None:
            raise _Unhandled
        return Batched(func(a.data, *args, **kwargs))

    return handler


def _copy(a: Any, *args: Any, **kwargs: Any) -> Batched:
    return Batched(np.copy(_batched(a).data, *args, **kwargs))


def _on_data(func: Callable) -> Callable:
    """Functions of dtypes only (``result_type``): the data stands for the batch."""

    def handler(*args: Any, **kwargs: Any) -> Any:
        return func(*_data(args), **_data(kwargs))

    return handler


def _data(value: Any) -> Any:
    if isinstance(value, Batched):
        return value.data
    if isinstance(value, (list, tuple)):
        return type(value)(_data(v) for v in value)
    if isinstance(value, dict):
        return {k: _data(v) for k, v in value.items()}
    return value


def _shape(a: Any) -> tuple[int, ...]:
    return _batched(a).shape


def _ndim(a: Any) -> int:
    return _batched(a).ndim


def _size(a: Any, axis: Any = None) -> int:
    a = _batched(a)
    return a.size if axis is None else a.shape[axis]


def _real(a: Any) -> Batched:
    return Batched(np.real(_batched(a).data))


def _imag(a: Any) -> Batched:
    return Batched(np.imag(_batched(a).data))


_HANDLERS: dict[Callable, Callable] = {
    np.shape: _shape,
    np.ndim: _ndim,
    np.size: _size,
    np.result_type: _on_data(np.result_type),
    np.iscomplexobj: _on_data(np.iscomplexobj),
    np.isrealobj: _on_data(np.isrealobj),
    np.copy: _copy,
    np.zeros_like: _like(np.zeros_like),
    np.ones_like: _like(np.ones_like),
    np.empty_like: _like(np.empty_like),
    np.full_like: _like(np.full_like),
    np.reshape: _reshape,
    np.ravel: _ravel,
    np.transpose: _transpose,
    np.swapaxes: _swapaxes,
    np.moveaxis: _moveaxis,
    np.expand_dims: _expand_dims,
    np.squeeze: _squeeze,
    np.flip: _flip,
    np.diff: _diff,
    np.roll: _roll,
    np.concatenate: _concatenate,
    np.stack: _stack,
    np.where: _where,
    np.broadcast_to: _broadcast_to,
    np.dot: _dot,
    np.real: _real,
    np.imag: _imag,
    np.cumsum: _scan(np.cumsum),
    np.cumprod: _scan(np.cumprod),
    **{
        f: _reduction(f)
        for f in (np.sum, np.mean, np.prod, np.max, np.min, np.amax, np.amin, np.std, np.var)
    },
}


def _batched_index(idx: Any) -> tuple | None:
    """``idx`` past the batch axis, where it means the same there as on one member:
    basic indices, or one integer or boolean array with no other integer beside it
    (NumPy moves the axes of several separated advanced indices to the front)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    advanced = 0
    ints = 0
    for item in items:
        if isinstance(item, Batched):
            raise BatchingError("an index that depends on a tangent")
        if isinstance(item, (list, np.ndarray)) and not (
            isinstance(item, np.ndarray) and item.ndim == 0
        ):
            advanced += 1
        elif isinstance(item, (int, np.integer)) or (
            isinstance(item, np.ndarray) and item.ndim == 0
        ):
            ints += 1
        elif not (item is None or item is Ellipsis or isinstance(item, slice)):
            return None
    if advanced > 1 or (advanced and ints):
        return None
    return (slice(None), *items)


def batch(data: np.ndarray) -> Batched:
    """Seeds stacked on their leading axis, as one batched value."""
    return Batched(np.asarray(data))


def unbatch(value: Any, n: int) -> np.ndarray:
    """The stacked members of a result: a batch's data, or an unbatched value (one that
    no seed reached, such as zeros) repeated ``n`` times."""
    if isinstance(value, Batched):
        return value.data
    value = np.asarray(value)
    return np.broadcast_to(value, (n, *value.shape))


# --------------------------------------------------------------------------- the twin module


def twin(entry: Callable, n: int) -> Callable:
    """``entry`` over a copy of its module's namespace in which s2sgrad's runtime helpers
    take batches of ``n`` (``_member_wise``); the module's other functions are copied
    too, so the calls between them stay in the twin. Made once per derivative function
    and batch size, and brought up to date with the module on every call: the cache
    rebinds a module's free names (the globals the user's function reads) before each
    use, and the twin must read what the module reads."""
    twins = memos.table_of(entry, "batched_twins")  # batch size -> (namespace, own)
    original = entry.__globals__
    made = twins.get(n)
    if made is None:
        made = twins[n] = ({}, {})
    namespace, own = made  # own: name -> the module's value it stands in for
    for name, value in original.items():
        if own.get(name, _ABSENT) is value:
            continue
        if _is_runtime_helper(value):
            namespace[name], own[name] = _member_wise(value, n), value
        elif isinstance(value, types.FunctionType) and value.__globals__ is original:
            namespace[name], own[name] = _rebound(value, namespace), value
        else:
            own.pop(name, None)
            namespace[name] = value
    for name in [k for k in namespace if k not in original]:
        del namespace[name]
        own.pop(name, None)
    return namespace.get(entry.__name__, entry)


_ABSENT = object()


def _rebound(fn: types.FunctionType, namespace: dict) -> types.FunctionType:
    copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    return copy


def _is_runtime_helper(value: Any) -> bool:
    return (
        isinstance(value, types.FunctionType)
        and value.__module__.startswith("s2sgrad.runtime")
        and value.__module__ != __name__
    )


@functools.cache
def _member_wise(helper: Callable, n: int) -> Callable:
    """``helper`` as it is where it can take a batch whole, else once per member.

    A helper that cannot take a batch fails (``BatchingError``, or NumPy's own error
    where it takes a batch for a sequence) before it changes anything, so running it
    again member by member is safe, except for a helper that adds into its first
    argument (``add_into``, which makes a batch of its own when the part added is one):
    into an unbatched array, every member would add into the same one, so that refuses.
    ``owned_copy`` makes a batch of what is not one: the tangent that derivative code
    then updates in place (every member updates its own); it alone needs ``n``.
    """
    if helper.__name__ == "owned_copy":
        return lambda x: x if x is None else _spread_copy(x, n)

    @functools.wraps(helper)
    def run(*args: Any, **kwargs: Any) -> Any:
        if _batch_size((args, kwargs)) is None:
            return helper(*args, **kwargs)
        try:
            return helper(*args, **kwargs)
        except Exception:  # noqa: BLE001  (NumPy refuses a batch in several ways)
            if helper.__name__ in _UPDATES_FIRST and not isinstance(args[0], Batched):
                raise BatchingError(
                    f"{helper.__name__} of a batch into an unbatched array"
                ) from None
            return _each(helper, args, kwargs)

    return run


#: Runtime helpers that update their first argument in place.
_UPDATES_FIRST = frozenset({"add_into", "zero_into"})


def _spread_copy(x: Any, n: int) -> Batched:
    """A batch of ``n`` copies of ``x`` (itself if it is a batch), each its own memory."""
    if isinstance(x, Batched):
        return x.copy()
    x = np.asarray(x)
    return Batched(np.array(np.broadcast_to(x, (n, *x.shape))))
