"""Programs that call callables s2sgrad produced inside a differentiated function."""

import numpy as np

import s2sgrad


def f(x):
    return np.sum(np.sin(x) * x**2)


g = s2sgrad.grad(f)
g_forward = s2sgrad.grad(f, mode="forward")
vg = s2sgrad.value_and_grad(f)


@s2sgrad.grad
def decorated(x):
    return np.sum(np.sin(x) * x**2)


def calls_grad(x):
    return np.sum(g(x))  # <-


def calls_forward_grad(x):
    return np.sum(g_forward(x))  # <-


def calls_value_and_grad(x):
    value, gradient = vg(x)  # <-
    return value + np.sum(gradient)


def calls_decorated(x):
    return np.sum(decorated(x))  # <-


def calls_through_helper(x):
    return helper_calling_grad(x) * 2.0


def helper_calling_grad(x):
    return np.sum(g(x))  # <-


_, vjp_fn = s2sgrad.vjp(f, np.arange(1.0, 4.0))


def calls_vjp_fn(x):
    return np.sum(vjp_fn(x)[0])  # <-


def calls_grad_transformation(x):
    return np.sum(s2sgrad.grad(f)(x))  # <-


def inactive_call_of_grad(x):
    c = np.sum(g(np.ones(3)))  # <-
    return np.sum(x) * c
