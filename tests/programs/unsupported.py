"""Programs s2sgrad must refuse, each with the offending line marked `# <-`."""

import numpy as np

TOTAL = [0.0]


class Scale:
    def __call__(self, x):
        return 2.0 * x


scaler = Scale()


def uses_try(x):
    try:  # <-
        y = np.sin(x)
    except ValueError:
        y = x
    return np.sum(y)


def uses_with(x):
    with open("f") as fh:  # <-  # noqa: F841
        y = x * 2
    return np.sum(y)


def uses_global(x):
    global TOTAL  # <-
    return np.sum(x)


def defines_class(x):
    class Local:  # <-
        pass

    return np.sum(x)


def uses_lambda(x):
    f = lambda v: v * 2  # <-  # noqa: E731
    return np.sum(f(x))


def uses_print(x):
    print(x)  # <-
    return np.sum(x)


def uses_comprehension(x):
    ys = [v * 2 for v in x]  # <-
    return np.sum(ys)


def uses_yield(x):
    yield x  # <-


async def is_async(x):  # <-
    return x


def no_rule(x):
    y = np.sin(x)
    return np.sum(scaler(y))  # <-


def active_index(x):
    i = np.sum(x)
    return x[i]  # <-


def undefined_name(x):
    return np.sum(x * not_defined_anywhere)  # <-  # noqa: F821


def recursive_nested(x):
    def fact(n):
        return x if n == 0 else x * fact(n - 1)  # <-

    return np.sum(fact(3))


def nested_as_value(x):
    def f(v):
        return v * 2

    g = f  # <-
    return np.sum(g(x))


def mutates_argument(x):
    x[0] = 1.0  # <-
    return np.sum(x)


def mutates_a_view(x):
    y = x.copy()
    v = y[1:]
    v[0] = 2.0  # <-
    return np.sum(y * x)


def augments_a_view(x):
    """Found by the fuzzer: NumPy's ``v += 1.0`` writes into ``y`` through the view."""
    y = x * 1.0
    v = y[1:]
    v += 1.0  # <-
    return np.sum(y * y)


def augments_a_viewed_array(x):
    """Found by the fuzzer (seed 17-795): ``w *= t`` changes the row ``v`` reads too."""
    w = np.ones((2, 3))
    v = w[-1]
    w *= np.tanh(x)  # <-
    return np.sum(v * x) + np.sum(w)


def updates_through_an_alias(x):
    w = np.ones(3)
    v = w
    w[0] = x[0] * 2.0  # <-
    return np.sum(v * x)


def updates_a_transposed_alias_in_a_loop(x):
    m = np.zeros((3, 3))
    t = m.T
    for i in range(3):
        m[i] = x * i  # <-
        x = x + np.sum(t[i])
    return np.sum(x)


def joins_lists(x):
    rows = [x]
    for i in range(2):
        rows = rows + [x * i]  # <-
    return np.sum(np.stack(rows) ** 2)


def _pair(x):
    return (x, 2.0 * x)


def joins_returned_tuples(x):
    rows = _pair(x) + _pair(3.0 * x)
    return np.sum(np.stack(rows) ** 2)


def alias_rebound_on_one_path_only(x):
    w = np.ones(3)
    v = w
    w *= x  # <-
    if x[0] > 0.0:
        v = np.cos(x)
    return np.sum(v * w)
