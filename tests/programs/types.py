"""Programs for the argument-type tests (test_types.py): real code that users call with
float32/float16, integer, boolean or complex values."""

import numpy as np

COMPLEX_GLOBAL = np.array([1.0 + 2.0j, 0.5 - 1.0j])


def sin_square(x):
    return np.sum(np.sin(x) * x**2)


def scaled(x, n):
    return np.sum(x * n)


def abs_square(z):
    return np.sum(np.abs(z) ** 2)


def imaginary_literal(x):
    return np.sum(np.abs(x * 1j))


def complex_global(x):
    return np.sum(np.abs(x * COMPLEX_GLOBAL))


def complex_dtype(x):
    y = np.asarray(x, dtype=complex)
    return np.sum(np.real(y * y))


def complex128_dtype(x):
    return np.sum(np.real(x.astype(np.complex128)))


def elementwise(x):
    return np.sin(x) * x


def mlp(params, x):
    h = np.tanh(x @ params["W"] + params["b"])
    return np.sum(h * h)


def two_outputs(x):
    return np.sum(x), np.sum(x * x)


def scalar_and_array(x):
    return np.sum(x), x * 2.0


def list_output(x):
    return [np.sum(x), np.sum(x * x)]


def dict_output(x):
    return {"a": np.sum(x)}


def norm_plus_square(x, y):
    return np.linalg.norm(x) + np.sum(y * y)


def sqrt_plus_square(x, y):
    return np.sum(np.sqrt(x)) + np.sum(y * y)


def weighted_power(x, w=1.5, *, power=3.0):
    return np.sum(w * x**power)
