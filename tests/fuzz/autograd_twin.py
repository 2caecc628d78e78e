"""``np`` and ``scipy`` for the autograd twin: autograd's, plus the few functions the
generator uses that autograd lacks or cannot differentiate, written with ones it can.

Only the fuzzer's oracle imports this (``from tests.fuzz.autograd_twin import np, scipy``).
"""

from __future__ import annotations

import types

import autograd.numpy as anp
import autograd.scipy.special as asp


def _flip(a, axis=None):
    if axis is None:
        return a[(slice(None, None, -1),) * anp.ndim(a)]
    index = [slice(None)] * anp.ndim(a)
    index[axis] = slice(None, None, -1)
    return a[tuple(index)]


def _cumprod(a, axis=None):
    return anp.exp(anp.cumsum(anp.log(a), axis=axis))  # the generator's cumprod inputs are > 0


def _matrix_power(m, n):
    out = m
    for _ in range(n - 1):
        out = anp.dot(out, m)
    return out


def _softmax(x, axis=None):
    return anp.exp(x - asp.logsumexp(x, axis=axis, keepdims=True))


def _tile(a, reps):
    """autograd's tile gradient is wrong for a (2, 1) array tiled twice (it averages)."""
    if anp.ndim(a) == 0:
        return a * anp.ones(reps)
    return anp.concatenate([a] * reps, axis=-1)


def _where(c, a, b):
    """autograd's where gradient is wrong when its operands broadcast to different shapes."""
    z = anp.zeros(anp.shape(c)) + 0.0 * a + 0.0 * b
    return anp.where(c, a + z, b + z)


_np_overrides = {
    "where": _where,
    "tile": _tile,
    "copy": lambda a: a + 0.0,
    "positive": lambda a: a + 0.0,
    "flip": _flip,
    "ptp": lambda a, axis=None: anp.max(a, axis=axis) - anp.min(a, axis=axis),
    "float_power": anp.power,
    "cumprod": _cumprod,
    "broadcast_to": lambda a, shape: a + anp.zeros(shape),
    "take": lambda a, idx, axis=0: a[(slice(None),) * axis + (anp.array(idx),)],
    "average": anp.mean,
    "cbrt": lambda a: a ** (1.0 / 3.0),  # the generator's cbrt inputs are > 0
    "nansum": anp.sum,
}

np = types.ModuleType("autograd_twin_numpy")
np.__dict__.update({k: v for k, v in vars(anp).items() if not k.startswith("__")})
np.__dict__.update(_np_overrides)
np.linalg = types.ModuleType("autograd_twin_linalg")
np.linalg.__dict__.update({k: v for k, v in vars(anp.linalg).items() if not k.startswith("__")})
np.linalg.matrix_power = _matrix_power

scipy = types.ModuleType("autograd_twin_scipy")
scipy.special = types.ModuleType("autograd_twin_special")
scipy.special.__dict__.update({k: v for k, v in vars(asp).items() if not k.startswith("__")})
scipy.special.softmax = _softmax
scipy.special.xlogy = lambda x, y: x * anp.log(y)
