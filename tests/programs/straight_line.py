"""Straight-line NumPy programs, written as a scientist would, for the corpus test.

``SHAPES`` gives each program's argument shapes (``()`` is a Python float).
Every program returns a scalar, so it can be checked with grad in both modes;
test_corpus.py also checks jvp/vjp on each.
"""

import numpy as np

SCALE = 0.5


def mlp_loss(W, b, x):
    h = np.tanh(x @ W + b)
    return np.sum(h**2) / h.shape[0]


def two_layer(W1, b1, W2, x):
    h = np.maximum(x @ W1 + b1, 0.01 * (x @ W1 + b1))
    y = np.exp(-h) @ W2
    return np.mean((y - 1.0) ** 2)


def reassign_and_augment(x, y):
    z = x * y
    z = z + np.sin(x)
    z *= 2.0
    z -= y / 3.0
    z **= 2
    return z.sum()


def swap_unpack(a, b):
    a, b = b, a * 2.0
    c, d = a + b, a - b
    return np.sum(c * d)


def methods_and_attributes(x):
    s = x.sum(axis=0, keepdims=True)
    m = x.mean(axis=1)
    t = x.T @ x
    r = x.reshape(2, 6)
    return np.sum(s * x) + np.sum(m**2) + r.max() + t.sum() / x.size


def subscripts(x):
    first = x[0]
    last_col = x[:, -1]
    block = x[1:3, ::2]
    picked = x[np.array([0, 2, 2])]
    expanded = x[:, None, :]
    return (
        np.sum(first * 3.0)
        + np.sum(last_col**2)
        + np.sum(np.cos(block))
        + np.sum(picked)
        + np.sum(expanded * 0.5)
    )


def unary_and_constants(x, s):
    y = -x + +x * 2.0 - 1
    z = SCALE * y / s - 3.0 / (1.0 + s**2)
    return np.sum(z * np.abs(x + 10.0))


def power_with_variable_exponent(x, p):
    return np.sum(np.exp(x) ** p) + np.sum((x**2 + 0.5) ** 2.5 + np.sqrt(np.exp(x)))


def comparisons_select(x):
    mask = x > 0.1
    y = np.where(mask, x**2, -0.5 * x)
    z = np.clip(x, -0.5, 0.5)
    return np.sum(y) + np.sum(z * x)


def reductions(x):
    return (
        np.prod(x[:2, :2] + 2.0)
        + np.max(x, axis=1).sum()
        + np.min(x)
        + np.mean(x, axis=(0, 1))
        + np.sum(np.square(x), axis=-1).mean()
    )


def transcendental(x):
    u = 0.3 * np.tanh(x)
    return np.sum(
        np.log(2.0 + np.sin(x))
        + np.log1p(np.exp(u))
        + np.expm1(u)
        + np.arctan(x)
        + np.arcsin(u)
        + np.arccos(u)
        + np.sinh(u)
        + np.cosh(u)
        + np.tan(u)
    )


def shape_ops(x, y):
    a = np.concatenate([x, y], axis=0)
    b = np.stack([x, y], axis=-1)
    c = np.expand_dims(np.squeeze(x[:1]), 0)
    d = np.transpose(b, (2, 0, 1))
    return np.sum(a**2) + np.sum(b * 0.5) + np.sum(c) + np.sum(d[0] * d[1])


def linear_algebra(A, v):
    w = np.dot(A, v)
    o = np.outer(w, v)
    return np.sum(o * A) + np.dot(w, w) + np.matmul(v, A.T @ v)


def python_scalar_only(s, t):
    u = s * t + s / t
    return u**2 - t


SHAPES = {
    "mlp_loss": [(3, 4), (4,), (5, 3)],
    "two_layer": [(3, 4), (4,), (4, 2), (5, 3)],
    "reassign_and_augment": [(3, 2), (2,)],
    "swap_unpack": [(4,), (4,)],
    "methods_and_attributes": [(3, 4)],
    "subscripts": [(4, 5)],
    "unary_and_constants": [(3, 2), ()],
    "power_with_variable_exponent": [(4,), ()],
    "comparisons_select": [(3, 4)],
    "reductions": [(3, 4)],
    "transcendental": [(6,)],
    "shape_ops": [(2, 3), (2, 3)],
    "linear_algebra": [(3, 3), (3,)],
    "python_scalar_only": [(), ()],
}
