"""Helpers of the elementwise rules (``rules/elementwise.py``): slopes of powers and of
the non-smooth ``maximum``/``minimum``/``clip``.

Written once for every backend: see ``s2sgrad/runtime/__init__.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as xp

from s2sgrad.runtime.core import _float_dtype, foldable


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
