"""Decorators defined in their own module, as a library of the user's would define them."""

import functools

SCALE = 1000.0  # a global of this module only: wrappers read it, decorated functions must not


def times_ten(fn):
    @functools.wraps(fn)
    def wrapper(x):
        return fn(x) * 10.0

    return wrapper


def forwarding(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) * 10.0

    return wrapper


def scaled_by(factor):
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            return out * factor + SCALE

        return wrapper

    return decorate


def squares_input(fn):
    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        return fn(x * x, *args, **kwargs)

    return wrapper


def inspects_args(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        first = args[0]
        return fn(first, **kwargs)

    return wrapper


def fixes_weight(fn):
    @functools.wraps(fn)
    def wrapper(x):
        return fn(x, 3.0)

    return wrapper


def renames(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        x = fn(*args, **kwargs)  # a local named like the decorated function's parameter
        return x * x

    return wrapper


def offset_by(SCALE):  # noqa: N803 - a cell named like a global the decorated function reads
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(x):
            return fn(x) + SCALE * x[0]

        return wrapper

    return decorate
