"""Loops whose backward sweep may rerun the body instead of reading saved values
(transforms.remat): time steppers that save a dozen intermediates per step and carry one
state, and the cases around them the rerun must get right (a value from before the loop
that the loop overwrites, a loop inside another, a body that calls a helper, a carried
pair, a counter read in the body). ``ARGS`` gives each program's arguments; ``KEPT`` are
loops the compiler must leave saving (a matrix product, a branch, a call of a helper it
cannot read, which the derivative calls as it is)."""

import numpy as np


def rhs(state, params):
    prey, predator = state[0], state[1]
    a, b, c, d = params[0], params[1], params[2], params[3]
    return np.stack([a * prey - b * prey * predator, c * prey * predator - d * predator])


def rk4(params, initial, dt):
    state = initial
    for _ in range(40):
        k1 = rhs(state, params)
        k2 = rhs(state + 0.5 * dt * k1, params)
        k3 = rhs(state + 0.5 * dt * k2, params)
        k4 = rhs(state + dt * k3, params)
        state = state + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return np.sum((state - 1.0) ** 2)


def value_from_before_the_loop(x, w):
    # `y`'s adjoint before the loop reads y (tanh's derivative is 1 - y**2), which the loop
    # overwrites before reading it: the backward sweep must see tanh(x) again there.
    y = np.tanh(x)
    s = y * w
    for i in range(5):
        y = np.sin(s) * 0.5
        z = y * y + np.cos(y)
        s = s + z * w + i
    return np.sum(s * y)


def inside_an_outer_loop(x, w):
    total = 0.0
    for j in range(3):
        v = x * (j + 1)
        for _ in range(4):
            a = np.sin(v)
            b = a * w + np.cos(a)
            c = b * b
            v = v + 0.1 * c - 0.05 * a
        total = total + np.sum(v * v)
    return total


def carried_pair(q0, p0, k):
    # Symplectic Euler: two carried arrays, each step's values read both.
    q, p = q0, p0
    for _ in range(25):
        f = -k * np.sin(q)
        p = p + 0.1 * f
        g = p * p
        h = np.tanh(g)
        e = np.exp(-g)
        m = np.sin(h) * e
        r = h * e + m * m
        q = q + 0.1 * p + 0.01 * r
    return np.sum(q * q) + np.sum(np.cos(p))


def counter_in_the_body(x):
    y = x
    for i in range(6):
        t = y * (i + 1.0)
        u = np.exp(-t * t)
        v = u * np.sin(t)
        y = y + 0.1 * v + 0.01 * u
    return np.sum(y)


def scalar_state(a, x0):
    x = x0
    for _ in range(30):
        u = a * x
        v = 1.0 - x
        w = u * v
        x = 0.5 * x + 0.5 * w
    return x


def matrix_step(W, h0):
    h = h0
    for _ in range(4):
        z = W @ h
        a = np.tanh(z)
        b = a * a
        c = np.sin(b)
        h = h + 0.1 * c
    return np.sum(h)


def branch_in_the_step(x):
    y = x
    for _ in range(5):
        a = np.sin(y)
        if np.sum(a) > 0.0:
            a = a * 2.0
        b = a * a
        c = np.cos(b)
        y = y + 0.1 * c
    return np.sum(y)


rng = np.random.default_rng(3)
ARGS = {
    "rk4": (np.array([1.1, 0.4, 0.1, 0.4]), np.array([1.0, 0.5]), 0.05),
    "value_from_before_the_loop": (rng.normal(size=4), rng.normal(size=4)),
    "inside_an_outer_loop": (rng.normal(size=3) * 0.5, rng.normal(size=3)),
    "carried_pair": (rng.normal(size=3), rng.normal(size=3), 1.3),
    "counter_in_the_body": (rng.normal(size=4) * 0.3,),
    "scalar_state": (3.2, 0.3),
    "matrix_step": (rng.normal(size=(3, 3)) * 0.5, rng.normal(size=3)),
    "branch_in_the_step": (rng.normal(size=3),),
    "calls_an_unreadable_helper": (rng.normal(size=3),),
}
KEPT = {"matrix_step", "branch_in_the_step", "calls_an_unreadable_helper"}
# The JAX backend compiles every function the derivative calls, and refuses this helper.
NUMPY_ONLY = {"calls_an_unreadable_helper"}


def _unreadable_weight(k):
    return float(sum([j * 0.5 for j in range(k)]))  # (a comprehension: not compiled)


def calls_an_unreadable_helper(x):
    total = 0.0
    for k in range(4):
        a = np.sin(x) * _unreadable_weight(k)
        b = a * x + np.cos(a)
        total = total + np.sum(b * b)
    return total
