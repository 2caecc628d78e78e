"""Runtime helpers for boolean-mask reads lowered as masked computations (``masks.py``).

Under ``jax.jit`` a traced mask cannot index (``x[m]`` has a shape that depends on the
data), so the JAX lowering rewrites a read ``t = x[m]`` whose values only feed
elementwise work ending in full reductions: ``t`` becomes ``masked_read(x, m)``, an
array of ``x``'s own shape, and every sink names the mask (``masked_sum(t, m)``). The
positions ``m`` leaves out hold *filler*: the value ``x`` has at the first selected
position, so everything computed from them is a value the original program computes
anyway and no new inf or NaN appears (the ``exp`` of a huge unselected value would
give inf, and ``0 * inf`` a NaN in an adjoint). The sinks never read the filler: each
selects with ``jnp.where`` first.

A masked value keeps the rank of ``x``; the original ``x[m]`` has one axis for the
mask's axes. The rewrite stays exact only while that axis lines up with itself:
masked values combined elementwise have the same rank (``masked_read``'s ``like=``),
and other arrays broadcast along the trailing axes only (``trailing_operand``). Where
that does not hold, the helpers raise JAX's own ``NonConcreteBooleanIndexError`` at
trace time, the error the original read gives, which the API re-tells at the user's line.

With a concrete mask (a NumPy array, or a call outside ``jit``) every helper is the
operation it replaces, run as written: the code then means exactly the original.

Like the generated code, this module must import fast: it imports nothing from the
compiler.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from s2sgrad.backends import JAX_MASKED_NAMES
from s2sgrad.backends.jax import runtime

__all__ = list(JAX_MASKED_NAMES)


# --------------------------------------------------------------------------- plumbing


def _traced(m: Any) -> bool:
    """Whether the mask is only known when the compiled code runs (the masked path)."""
    return isinstance(m, jax.core.Tracer)


def _refuse(m: Any) -> None:
    """Raise the error the original boolean-mask read gives under ``jit`` (its message
    names the mask's type, ``bool[3]``, as JAX's own does)."""
    raise jax.errors.NonConcreteBooleanIndexError(getattr(m, "aval", m))


def _lead(m: Any, t: Any) -> Any:
    """The mask ``m``, which covers ``t``'s leading axes, broadcastable against ``t``."""
    return jnp.reshape(m, jnp.shape(m) + (1,) * (jnp.ndim(t) - jnp.ndim(m)))


def _rank(t: Any, m: Any) -> int:
    """The rank of the original ``x[m]`` that the masked value ``t`` stands for."""
    return jnp.ndim(t) - jnp.ndim(m) + 1


def _along_trailing_axes(c: Any, t: Any, m: Any) -> bool:
    """Whether ``c`` broadcasts against the masked value ``t`` without meeting the selected
    axis: against ``x[m]`` it would meet a length only the data knows."""
    rank = _rank(t, m)
    return jnp.ndim(c) < rank or (jnp.ndim(c) == rank and jnp.shape(c)[0] == 1)


# --------------------------------------------------------------------------- the read


def masked_read(x: Any, m: Any, like: Any = None) -> Any:
    """``x[m]`` for a boolean ``m`` covering ``x``'s leading axes, as an array of ``x``'s shape.

    Unselected positions hold the value at the first selected one (with no gradient:
    only the selected positions are ``x[m]``). ``like`` is a masked value of the same
    mask read earlier: this one must have its rank, as ``x[m]`` and the earlier read
    combine elementwise.
    """
    if not _traced(m):
        return x[m]
    x = jnp.asarray(x)
    k = jnp.ndim(m)
    if k == 0 or jnp.shape(m) != jnp.shape(x)[:k]:
        _refuse(m)
    if like is not None and jnp.ndim(like) != jnp.ndim(x):
        _refuse(m)
    if x.size == 0:
        return x
    rows = jnp.reshape(x, (-1,) + jnp.shape(x)[k:])
    first = lax.stop_gradient(rows[jnp.argmax(jnp.ravel(m))])
    return jnp.where(_lead(m, x), x, first)


def trailing_operand(c: Any, t: Any, m: Any) -> Any:
    """``c``, an array combined elementwise with the masked value ``t``, checked to
    broadcast along ``t``'s trailing axes only (a number, or a row of ``A[m]``)."""
    if _traced(m) and not _along_trailing_axes(c, t, m):
        _refuse(m)
    return c


# --------------------------------------------------------------------------- reductions


def _select(t: Any, m: Any, identity: Any) -> Any:
    """``t`` with the unselected positions set to a reduction's identity."""
    return jnp.where(_lead(m, t), t, jnp.asarray(identity, dtype=jnp.result_type(t)))


def masked_sum(t: Any, m: Any) -> Any:
    """``np.sum(x[m])`` of the masked value ``t``; 0 for an empty mask, as in NumPy."""
    if not _traced(m):
        return jnp.sum(t)
    return jnp.sum(jnp.where(_lead(m, t), t, 0))


def masked_mean(t: Any, m: Any) -> Any:
    """``np.mean(x[m])``; NaN for an empty mask, as in NumPy (without its warning)."""
    if not _traced(m):
        return jnp.mean(t)
    return (masked_sum(t, m) / masked_size(t, m)).astype(runtime._float_dtype(t))


def _lowest(dtype: Any) -> Any:
    if jnp.issubdtype(dtype, jnp.inexact):
        return -jnp.inf
    return False if dtype == jnp.bool_ else jnp.iinfo(dtype).min


def _highest(dtype: Any) -> Any:
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.inf
    return True if dtype == jnp.bool_ else jnp.iinfo(dtype).max


def masked_max(t: Any, m: Any) -> Any:
    """``np.max(x[m])``; for an empty mask -inf (the lowest integer), where NumPy raises."""
    if not _traced(m):
        return jnp.max(t)
    return jnp.max(_select(t, m, _lowest(jnp.result_type(t))))


def masked_min(t: Any, m: Any) -> Any:
    """``np.min(x[m])``; for an empty mask +inf (the highest integer), where NumPy raises."""
    if not _traced(m):
        return jnp.min(t)
    return jnp.min(_select(t, m, _highest(jnp.result_type(t))))


def masked_prod(t: Any, m: Any) -> Any:
    """``np.prod(x[m])``; 1 for an empty mask, as in NumPy."""
    if not _traced(m):
        return jnp.prod(t)
    return jnp.prod(_select(t, m, 1))


# --------------------------------------------------------------------------- counts


def masked_len(t: Any, m: Any) -> Any:
    """``len(x[m])`` (and ``x[m].shape[0]``): how many positions the mask selects."""
    if not _traced(m):
        return len(t)
    return jnp.sum(m)


def masked_size(t: Any, m: Any) -> Any:
    """``np.size(x[m])``: the selected positions times the size of the trailing axes."""
    if not _traced(m):
        return jnp.size(t)
    return jnp.sum(m) * math.prod(jnp.shape(t)[jnp.ndim(m) :])


def masked_shape(t: Any, m: Any) -> tuple:
    """``np.shape(x[m])``: its first length is traced (a count only the data knows)."""
    if not _traced(m):
        return jnp.shape(t)
    return (jnp.sum(m),) + tuple(jnp.shape(t)[jnp.ndim(m) :])


# --------------------------------------------------------------------------- adjoints


def masked_unindex(g: Any, x: Any, m: Any) -> Any:
    """The cotangent of ``x`` for the read ``x[m]`` (``runtime.unindex``), ``g`` masked:
    ``g`` at the selected positions, zeros elsewhere (the filler gets nothing)."""
    if not _traced(m):
        return runtime.unindex(g, x, m)
    k = jnp.ndim(m)
    if k == 0 or jnp.shape(m) != jnp.shape(x)[:k]:
        _refuse(m)
    dtype = jnp.result_type(g, x)
    zero = jnp.zeros((), dtype=dtype)
    return jnp.broadcast_to(jnp.where(_lead(m, x), g, zero), jnp.shape(x)).astype(dtype)


def masked_add_at(a: Any, m: Any, b: Any) -> Any:
    """``runtime.add_at(a, m, b)`` (and ``add_into(a, b, m)``) for a masked ``b``: ``a`` plus
    ``b`` at the selected positions, the way adjoints of several reads of ``x`` add up."""
    if not _traced(m):
        return runtime.add_at(a, m, b)
    dtype = jnp.result_type(a, b)
    return (jnp.asarray(a, dtype=dtype) + masked_unindex(b, a, m)).astype(dtype)


def masked_unbroadcast(g: Any, x: Any, m: Any) -> Any:
    """``runtime.unbroadcast(g, x)`` for a masked ``g`` and an ``x`` that is not: the sum over
    the selected positions only, down to ``x``'s shape."""
    if not _traced(m):
        return runtime.unbroadcast(g, x)
    if not _along_trailing_axes(x, g, m):
        _refuse(m)
    return runtime.unbroadcast(jnp.where(_lead(m, g), g, 0), x)


def masked_tie_shares(a: Any, ans: Any, m: Any) -> Any:
    """``runtime.tie_shares(a, ans)`` of a full max or min: ties counted among the selected
    positions only (the filler may equal the extremum)."""
    if not _traced(m):
        return runtime.tie_shares(a, ans)
    winners = (a == ans) & _lead(m, a)
    return jnp.asarray(winners / jnp.sum(winners), dtype=runtime._float_dtype(a))


def masked_prod_of_others(a: Any, m: Any) -> Any:
    """``runtime.prod_of_others(a)`` over the selected positions (the others count as 1)."""
    if not _traced(m):
        return runtime.prod_of_others(a)
    return runtime.prod_of_others(_select(a, m, 1))


def masked_prod_of_others_tangent(a: Any, t: Any, m: Any) -> Any:
    """``runtime.prod_of_others_tangent(a, t)`` over the selected positions."""
    if not _traced(m):
        return runtime.prod_of_others_tangent(a, t)
    t = jnp.broadcast_to(t, jnp.shape(a))
    return runtime.prod_of_others_tangent(_select(a, m, 1), _select(t, m, 0))
