"""Vector-valued programs, for Jacobians (``jacfwd``/``jacrev`` against ``jax.jacfwd``).

Each takes float arrays or floats and returns an array, or a tuple of them, written
as a scientist would: a softmax layer, a few explicit integration steps in a loop, a
polar-to-Cartesian map returning a pair, a clipped map with a branch per element
expressed through ``np.where``, and a running product in a loop.
``ARGS`` gives each program's argument shapes (``()`` is a float).
"""

import numpy as np


def softmax_layer(W, x):
    z = W @ x
    e = np.exp(z - np.max(z))
    return e / np.sum(e)


def damped_oscillator(y, h):
    for _ in range(5):
        v = np.array([y[1], -y[0] - 0.3 * y[1]])
        y = y + h * v
    return y


def polar_to_cartesian(r, theta):
    return r * np.cos(theta), r * np.sin(theta)


def clipped_map(x):
    y = np.where(x > 0.2, np.sin(x) * x, 0.5 * x**2)
    return np.cumsum(y) * np.tanh(x)


def running_product(x, c):
    p = 1.0
    out = 0.0 * x
    for i in range(len(x)):
        p = p * (1.0 + c * x[i])
        out = out + p * np.eye(len(x))[i]
    return out


ARGS = {
    "softmax_layer": [(4, 3), (3,)],
    "damped_oscillator": [(2,), ()],
    "polar_to_cartesian": [(3,), (3,)],
    "clipped_map": [(5,)],
    "running_product": [(4,), ()],
}
