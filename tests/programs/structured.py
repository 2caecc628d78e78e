"""Structured arguments and results, and calls of other user functions."""

import numpy as np

from tests.programs import physics


def mlp(params, x, y):
    h = np.tanh(x @ params["W1"] + params["b1"])
    pred = h @ params["W2"]
    return np.mean((pred - y) ** 2)


def nested(params, x):
    layer = params["layer"]
    return np.sum(np.sin(x @ layer["W"]) * params["scale"])


def tuple_params(p, x):
    W, b = p
    return np.sum(np.tanh(x @ W + b) ** 2) + np.sum(p[0])


def tuple_indexed_twice(p):
    return np.sum(p[0] * p[1]) + np.sum(p[0])


def list_params(ws, x):
    h = x
    for w in ws:
        h = np.tanh(h @ w)
    return np.sum(h)


def with_aux(w, x):
    r = x @ w
    loss = np.sum(r**2)
    return loss, {"residual": r, "n": 3}


def returns_pair(x):
    return np.sin(x), {"double": 2.0 * x}


def helper(a, b):
    return np.tanh(a) * b


def calls_helper(x, y):
    z = helper(x, y) + helper(y, 2.0)
    return np.sum(z * x)


def recursive_power(x, n):
    if n == 0:
        return np.ones_like(x)
    return x * recursive_power(x, n - 1)


def uses_recursion(x):
    return np.sum(recursive_power(x, 4) + np.cos(x))


def calls_other_module(p, y0):
    y = y0
    for _ in range(20):
        y = physics.euler_step(y, p)
    return np.sum(y**2)


def make_scaled_loss(scale):
    def scaled(x):
        return scale * np.sum(np.exp(x))

    return scaled


def nested_defs(x, w):
    scale = 2.0

    def layer(v, bias=0.5):
        h = np.tanh(v * w + bias)
        if np.sum(h) > 100.0:
            return h * 0.0
        return h * scale

    def twice(v):
        return layer(layer(v), bias=0.1)

    return np.sum(twice(x) ** 2)


def logdet_unpacked(A):
    # A named-tuple result, unpacked: the seed reaches the rule as a plain float.
    sign, logdet = np.linalg.slogdet(A)
    return logdet


def logdet_indexed(A):
    # A named-tuple result, indexed: its cotangent is rebuilt as a named tuple.
    return np.linalg.slogdet(A)[1]
