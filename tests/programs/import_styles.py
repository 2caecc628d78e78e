"""One function per import style: rules are found by object identity, not by spelling."""

import numpy
import numpy as onp
from numpy import exp as e
from numpy import sin, sum


def plain_numpy(x):
    return numpy.sum(numpy.sin(x) * numpy.exp(x))


def renamed_module(x):
    return onp.sum(onp.sin(x) * onp.exp(x))


def from_imports(x):
    return sum(sin(x) * e(x))
