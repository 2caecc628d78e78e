"""Rules for reductions: sum, mean, prod, max/min, cumsum.

Parameters mirror NumPy's signatures (``a, axis=None, dtype=None, out=None,
keepdims=False``) so that positional and keyword arguments bind as they do in
NumPy. ``dtype`` and ``out`` are accepted and ignored: derivatives follow the
dtype of the tangent or cotangent. ``initial=`` and ``where=`` are not
parameters of these rules, so the compiler rejects calls that pass them
rather than differentiating them wrongly.

The reverse rules broadcast the cotangent back over the reduced axes with
``unreduce``.
"""

from __future__ import annotations

import numpy as np

from s2sgrad.rules.registry import defjvp, defvjp
from s2sgrad.runtime import prod_of_others, tie_shares, unreduce


@defjvp(np.sum)
def sum_jvp(ans, a, axis=None, dtype=None, out=None, keepdims=False, *, da):
    return np.sum(da, axis=axis, keepdims=keepdims)


@defvjp(np.sum)
def sum_vjp(g, ans, a, axis=None, dtype=None, out=None, keepdims=False):
    return unreduce(g, a, axis, keepdims)


@defjvp(np.mean)
def mean_jvp(ans, a, axis=None, dtype=None, out=None, keepdims=False, *, da):
    return np.mean(da, axis=axis, keepdims=keepdims)


@defvjp(np.mean)
def mean_vjp(g, ans, a, axis=None, dtype=None, out=None, keepdims=False):
    n = np.size(a) / np.size(ans)  # how many elements each mean averages
    return unreduce(g / n, a, axis, keepdims)


@defjvp(np.prod)
def prod_jvp(ans, a, axis=None, dtype=None, out=None, keepdims=False, *, da):
    # prod_of_others, not ans / a: exact when a contains zeros, like jax.
    return np.sum(da * prod_of_others(a, axis), axis=axis, keepdims=keepdims)


@defvjp(np.prod)
def prod_vjp(g, ans, a, axis=None, dtype=None, out=None, keepdims=False):
    return unreduce(g, a, axis, keepdims) * prod_of_others(a, axis)


# max and min send the derivative to the elements equal to the result; ties share it
# equally, as in jax.
@defjvp(np.max, np.amax, np.min, np.amin)
def max_jvp(ans, a, axis=None, out=None, keepdims=False, *, da):
    return np.sum(da * tie_shares(a, ans, axis, keepdims), axis=axis, keepdims=keepdims)


@defvjp(np.max, np.amax, np.min, np.amin)
def max_vjp(g, ans, a, axis=None, out=None, keepdims=False):
    return unreduce(g, a, axis, keepdims) * tie_shares(a, ans, axis, keepdims)


@defjvp(np.cumsum)
def cumsum_jvp(ans, a, axis=None, dtype=None, out=None, *, da):
    return np.cumsum(da, axis=axis)


@defvjp(np.cumsum)
def cumsum_vjp(g, ans, a, axis=None, dtype=None, out=None):
    # Each input element feeds every later partial sum: a reversed cumulative sum.
    return np.reshape(np.flip(np.cumsum(np.flip(g, axis), axis), axis), np.shape(a))
