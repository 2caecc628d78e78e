"""Programs whose variable names collide with names s2sgrad likes to generate."""

import numpy as np

from s2sgrad.runtime import unbroadcast as user_helper  # noqa: F401


def shadowy(x, dx, g):
    t1 = x * dx
    dt1 = t1 + g
    out = np.sum(dt1 * x)
    dout = out * 2.0
    return dout


def elementwise_one_input(x):
    z = np.sin(x) * np.cos(x) + x * x / 2.0
    return np.sum(np.exp(-z) ** 2)


def named_like_helpers(y, np_weight):
    """Locals named like what generated modules import (runtime helpers, ``jnp``)."""
    unindex = y[1:] * np_weight
    jnp = np.tanh(unindex)
    unreduce = np.sum(jnp**2)
    return unreduce


def _helper(a):
    return np.sin(a) * a


def named_like_derivatives(x):
    """Locals named like the functions the derivative module makes for ``_helper``."""
    _helper_vjp = _helper(x) * 2.0
    _helper_fwd = _helper_vjp + 1.0
    _helper_jvp = np.sum(_helper_fwd**2)
    return _helper_jvp
