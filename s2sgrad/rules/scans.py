"""Rules for cumulative scans: cumprod, nancumsum, nancumprod (``np.cumsum`` is in reductions.py).

Parameters mirror NumPy's ``(a, axis=None, dtype=None, out=None)``; with
``axis=None`` the scan runs over the flattened array. ``cumprod`` is exact
where ``a`` has zeros, as in jax (see ``runtime.cumprod_tangent``). The
``nan`` scans treat NaN as the identity of the scan (0 for sums, 1 for
products), so NaN entries receive no derivative, as jax's ``where``-based
versions give.
"""

from __future__ import annotations

import numpy as np

from s2sgrad.rules.registry import defjvp, defvjp
from s2sgrad.runtime import cumprod_tangent, uncumprod


@defjvp(np.cumprod)
def cumprod_jvp(ans, a, axis=None, dtype=None, out=None, *, da):
    return cumprod_tangent(da, a, axis)


@defvjp(np.cumprod)
def cumprod_vjp(g, ans, a, axis=None, dtype=None, out=None):
    return uncumprod(g, a, axis)


@defjvp(np.nancumsum)
def nancumsum_jvp(ans, a, axis=None, dtype=None, out=None, *, da):
    return np.cumsum(np.where(np.isnan(a), 0.0, da), axis=axis)


@defvjp(np.nancumsum)
def nancumsum_vjp(g, ans, a, axis=None, dtype=None, out=None):
    # A reversed cumulative sum, as for np.cumsum, with NaN entries cut off.
    scanned = np.reshape(np.flip(np.cumsum(np.flip(g, axis), axis), axis), np.shape(a))
    return np.where(np.isnan(a), 0.0, scanned)


@defjvp(np.nancumprod)
def nancumprod_jvp(ans, a, axis=None, dtype=None, out=None, *, da):
    missing = np.isnan(a)
    return cumprod_tangent(np.where(missing, 0.0, da), np.where(missing, 1.0, a), axis)


@defvjp(np.nancumprod)
def nancumprod_vjp(g, ans, a, axis=None, dtype=None, out=None):
    missing = np.isnan(a)
    return np.where(missing, 0.0, uncumprod(g, np.where(missing, 1.0, a), axis))
