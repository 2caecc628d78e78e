"""A user module called from another: its globals must be found through it."""

import numpy as np

DT = 0.05


def rate(y, p):
    return np.array([p[0] * y[0] - p[1] * y[0] * y[1], p[1] * y[0] * y[1] - p[2] * y[1]])


def euler_step(y, p):
    return y + DT * rate(y, p)
