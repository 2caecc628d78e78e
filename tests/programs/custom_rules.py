"""A user's own primitives with hand-written rules, as a library would register them."""

import numpy as np

import s2sgrad


def _softplus_slope(x):
    return 1.0 / (1.0 + np.exp(-x))


class Opaque:
    """Stands for a compiled function s2sgrad cannot read: it needs a rule."""

    def __call__(self, x):
        return np.log1p(np.exp(x))


softplus = Opaque()


@s2sgrad.defjvp(softplus, check=True)
def softplus_jvp(ans, x, *, dx):
    return dx * _softplus_slope(x)


@s2sgrad.defvjp(softplus, check=True)
def softplus_vjp(g, ans, x):
    return g * _softplus_slope(x)


def hard_threshold(x):
    return (x > 0.0) * 1.0


s2sgrad.nondifferentiable(hard_threshold)
