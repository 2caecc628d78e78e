"""Rules for reductions: sum, mean, prod, max/min, var/std, norm, cumsum.

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
from s2sgrad.runtime import norm_direction, prod_of_others, tie_shares, unreduce


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


# var = sum((a - mean)**2) / (n - ddof); the mean's own derivative cancels, as sum(a - mean) = 0.
@defjvp(np.var)
def var_jvp(ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, da):
    centered = a - np.mean(a, axis=axis, keepdims=True)
    n = np.size(a) / np.size(ans)
    return np.sum(centered * da, axis=axis, keepdims=keepdims) * 2 / (n - ddof)


@defvjp(np.var)
def var_vjp(g, ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    centered = a - np.mean(a, axis=axis, keepdims=True)
    n = np.size(a) / np.size(ans)
    return unreduce(g * 2 / (n - ddof), a, axis, keepdims) * centered


@defjvp(np.std)
def std_jvp(ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, da):
    centered = a - np.mean(a, axis=axis, keepdims=True)
    n = np.size(a) / np.size(ans)
    return np.sum(centered * da, axis=axis, keepdims=keepdims) / ((n - ddof) * ans)


@defvjp(np.std)
def std_vjp(g, ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    centered = a - np.mean(a, axis=axis, keepdims=True)
    n = np.size(a) / np.size(ans)
    return unreduce(g / ((n - ddof) * ans), a, axis, keepdims) * centered


@defjvp(np.linalg.norm)
def norm_jvp(ans, x, ord=None, axis=None, keepdims=False, *, dx):
    return np.sum(dx * norm_direction(x, ans, ord, axis, keepdims), axis=axis, keepdims=keepdims)


@defvjp(np.linalg.norm)
def norm_vjp(g, ans, x, ord=None, axis=None, keepdims=False):
    return unreduce(g, x, axis, keepdims) * norm_direction(x, ans, ord, axis, keepdims)


@defjvp(np.cumsum)
def cumsum_jvp(ans, a, axis=None, dtype=None, out=None, *, da):
    return np.cumsum(da, axis=axis)


@defvjp(np.cumsum)
def cumsum_vjp(g, ans, a, axis=None, dtype=None, out=None):
    # Each input element feeds every later partial sum: a reversed cumulative sum.
    return np.reshape(np.flip(np.cumsum(np.flip(g, axis), axis), axis), np.shape(a))
