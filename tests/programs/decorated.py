"""User functions under decorators written with functools.wraps: what runs is the wrapper."""

import functools

import numpy as np

from tests.programs.decorator_lib import (
    fixes_weight,
    forwarding,
    inspects_args,
    offset_by,
    renames,
    scaled_by,
    squares_input,
    times_ten,
)

SCALE = 2.0  # not the decorator module's SCALE


def local_times_ten(fn):
    @functools.wraps(fn)
    def wrapper(x):
        return fn(x) * 10.0

    return wrapper


@local_times_ten
def sin_sum(x):
    return np.sum(np.sin(x) * x**2)


@times_ten
def sin_sum_other_module(x):
    return np.sum(np.sin(x) * x**2) * SCALE


@forwarding
def weighted(x, w, *, power=2.0):
    return np.sum(w * x**power)


@scaled_by(3.0)
def cubic(x, y):
    return np.sum(x**3 * y) * SCALE


@forwarding
@scaled_by(0.5)
def stacked(x):
    return np.sum(np.tanh(x))


@squares_input
def mixed_forwarding(x):
    return np.sum(np.sin(x))


@inspects_args
def uses_args(x):
    return np.sum(x)


def calls_decorated(x):
    return sin_sum(x) + 1.0  # <-


@fixes_weight
def weight_fixed(x, w):
    return np.sum(np.exp(x * w))


@renames
def renamed(x):
    return np.sum(np.cos(x))


@offset_by(7.0)
def reads_scale(x):
    return np.sum(x**2) * SCALE


def local_offset(SCALE):  # noqa: N803 - a cell named like the global below
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(x):
            return fn(x) + SCALE * x[0]

        return wrapper

    return decorate


@local_offset(7.0)
def reads_scale_same_module(x):
    return np.sum(x**2) * SCALE
