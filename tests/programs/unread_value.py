"""Functions whose value ``grad`` throws away: the NumPy backend leaves it uncomputed
where it is provably a real scalar (``transforms.unread_value``), and computes and checks
it everywhere else."""

import numpy as np

import s2sgrad

COMPLEX_GLOBAL = np.array([1.0 + 2.0j, 0.5 - 1.0j, 2.0 + 0.0j])
REAL_GLOBAL = np.array([0.5, 2.0, -1.0])


def chained_squares(x):
    """The vectorized Rosenbrock function: the last reduction is fed by work nothing
    else reads."""
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def mean_square_error(w, x, y):
    return np.mean((x @ w - y) ** 2)


def scaled_by_scalar(x, r):
    return np.sum(np.exp(r * x)) / r + REAL_GLOBAL @ x


def value_after_branch(x):
    if np.sum(x) > 0:
        total = np.sum(np.sin(x) ** 2)
    else:
        total = np.max(np.cos(x))
    return 2.0 * total


def accumulated_in_loop(x):
    total = 0.0
    for i in range(x.shape[0] - 1):
        total = total + (x[i + 1] - x[i]) ** 2
    return total


def with_complex_global(x):
    return np.sum(np.abs(x * COMPLEX_GLOBAL) ** 2)


def complex_linear(x):
    return np.sum(x * COMPLEX_GLOBAL)


def returns_an_array(x):
    return np.sin(x) ** 2


def helper_residual(x):
    return x[1:] - x[:-1] ** 2


def through_a_helper(x):
    return np.sum(helper_residual(x) ** 2)


def complex_helper(x):
    return x * COMPLEX_GLOBAL


def through_a_complex_helper(x):
    return np.sum(np.abs(complex_helper(x)))


COMPLEXIFY = np.vectorize(lambda v: v + 0j)


def complex_from_a_callable_object(x):
    return np.sum(x + COMPLEXIFY(np.ones(3)))


chained_squares_gradient = s2sgrad.grad(chained_squares)


def squared_gradient_norm(x):
    """``grad(f)``, made outside, called inside a differentiated function (a composition)."""
    return np.sum(chained_squares_gradient(x) ** 2)
