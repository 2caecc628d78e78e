"""Functions that draw random numbers inside a differentiated function (refused)."""

import random

import numpy as np

RNG = np.random.default_rng(0)


def noisy(x):
    noise = np.random.normal(size=x.shape)  # <-
    return np.sum((x + noise) ** 2)


def calls_noisy(x):
    return noisy(x) * 2.0


def uses_global_generator(x):
    noise = RNG.normal(size=x.shape)  # <-
    return np.sum(x * noise)


def makes_generator(x):
    rng = np.random.default_rng(1)  # <-
    return np.sum(x * rng.uniform(size=x.shape))


def generator_argument(x, rng):
    return np.sum(x * rng.standard_normal(x.shape))  # <-


def stdlib_random(x):
    return np.sum(x) * random.random()  # <-


def dropout(x):
    mask = np.random.rand(*x.shape) > 0.5  # <-
    return np.sum(x * mask)


def noise_passed_in(x, noise):
    return np.sum((x + noise) ** 2)


def passes_generator(x):
    return np.sum(x * draw_with(RNG, x.shape))  # <-


def draw_with(rng, shape):
    return np.ones(shape)


def make_noise(shape):
    return np.random.normal(size=shape)  # <-


def inactive_helper_draws(x):
    noise = make_noise(x.shape)
    return np.sum((x + noise) ** 2)


def helper_of_helper(shape):
    return make_noise(shape) * 2.0


def inactive_helper_of_helper_draws(x):
    return np.sum(x * helper_of_helper(x.shape))
