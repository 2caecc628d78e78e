"""Differentiated code in another module than the rules it relies on."""

import numpy as np

from tests.programs.custom_rules import hard_threshold, softplus


def model(x, w):
    return np.sum(softplus(x * w) * (1.0 + hard_threshold(x)))
