"""Loops marked for binomial checkpointing (``# s2sgrad: checkpoint(snapshots=N)``): time
steppers with a callee, a loop variable read in the body, a carried pair, a value from
before the loop the loop overwrites, the directive on the line above the loop, snapshots
from one to more than the trip count. ``ARGS``: each program's arguments (the trip count
an int, the rest floats)."""

import numpy as np


def rhs(state, params):
    prey, predator = state[0], state[1]
    return np.stack(
        [
            params[0] * prey - params[1] * prey * predator,
            params[2] * prey * predator - params[3] * predator,
        ]
    )


def lotka_volterra_rk2(params, initial, steps, dt):
    state = initial
    for t in range(steps):  # s2sgrad: checkpoint(snapshots=3)
        k1 = rhs(state, params)
        k2 = rhs(state + 0.5 * dt * k1, params)
        state = state + dt * k2 * (1.0 + 0.01 * t)
    return np.sum((state - 1.0) ** 2)


def one_snapshot(params, initial, steps, dt):
    state = initial
    for _ in range(steps):  # s2sgrad: checkpoint(snapshots=1)
        state = state + dt * rhs(state, params)
    return np.sum(state**2)


def more_snapshots_than_steps(params, initial, steps, dt):
    state = initial
    for _ in range(steps):  # s2sgrad: checkpoint(snapshots=50)
        state = state + dt * rhs(state, params)
    return np.sum(state**2)


def heat_with_running_total(u, steps, nu):
    total = 0.0
    # s2sgrad: checkpoint(snapshots=2)
    for _ in range(steps):
        lap = np.roll(u, 1) - 2.0 * u + np.roll(u, -1)
        u = u + nu * np.tanh(lap)
        total = total + np.sum(u**2) * 0.1
    return total


def overwrites_a_value_from_before(x, steps, w):
    y = np.tanh(x)
    s = y * w
    for i in range(2, steps + 2):  # s2sgrad: checkpoint(snapshots=4)
        y = np.sin(s) * 0.5
        s = s + (y * y + np.cos(y)) * w + 0.1 * i
    return np.sum(s * y)


def two_loops(x, steps, c):
    for _ in range(steps):  # s2sgrad: checkpoint(snapshots=2)
        x = np.sin(x) * c + x
    for k in range(0, 2 * steps, 2):  # s2sgrad: checkpoint(snapshots=3)
        x = x * np.cos(x * c) + 0.01 * k
    return np.sum(x**2)


def inside_an_outer_loop(x, c):
    # The schedule of each outer iteration's inner loop is its own: kept per iteration.
    total = 0.0
    for e in range(3):
        y = x * (1.0 + 0.1 * e)
        for _ in range(6):  # s2sgrad: checkpoint(snapshots=2)
            y = np.sin(y) * c + y
        total = total + np.sum(y**2)
    return total


def branches_in_the_body(x, steps, c):
    # A branch on the loop counter and one on the data; a value overwritten in one branch.
    y = x
    for i in range(steps):  # s2sgrad: checkpoint(snapshots=3)
        if i % 3 == 0:
            y = np.sin(y) * c
        else:
            y = y + 0.1 * np.cos(y)
        if np.sum(y) > 0.0:
            z = y * y
            y = y - 0.05 * z
    return np.sum(y**2)


def long_heat(u, steps):
    for _ in range(steps):
        u = u + 0.1 * np.tanh(np.roll(u, 1) - 2.0 * u + np.roll(u, -1))
    return np.sum(u**2)


# While loops (NumPy): the trip count is known when the loop ends (an online schedule).
# ``while_until_small``'s trip count depends on the data: its oracle unrolls as many steps.


def breaks_when_small(x, c, tol):
    # A for loop that may stop early: its trip count is known at its end (NumPy: online).
    r = x
    for k in range(200):  # s2sgrad: checkpoint(snapshots=4)
        if np.max(np.abs(r)) < tol:
            break
        r = r * c + 0.01 * np.sin(r) * k
    return np.sum(r**2)


def continues_on_a_third(x, steps, c):
    for k in range(steps):  # s2sgrad: checkpoint(snapshots=2)
        if k % 3 == 1:
            continue
        x = np.sin(x) * c + x
    return np.sum(x**2)


def returns_from_the_loop(x, c):
    # (NumPy: a loop that may stop early; its oracle is central differences)
    for _ in range(9):  # s2sgrad: checkpoint(snapshots=2)
        if np.sum(x) > 3.0:
            return np.sum(x)
        x = np.sin(x) * c + x
    return np.sum(x**2)


def heat_in_place(u0, steps, r):
    # The state is updated in place: the snapshots are copies.
    u = u0.copy()
    for _ in range(steps):  # s2sgrad: checkpoint(snapshots=3)
        u[1:-1] = u[1:-1] + r * np.tanh(u[2:] - 2.0 * u[1:-1] + u[:-2])
    return np.sum(np.sin(u) ** 2)


def recurrence_in_place(x, c):
    # Element by element: each iteration writes one entry from the one before.
    y = np.zeros_like(x)
    y[0] = x[0]
    for i in range(1, len(x)):  # s2sgrad: checkpoint(snapshots=2)
        y[i] = np.sin(y[i - 1]) * c + x[i]
    return np.sum(y**2)


# Loops the directive cannot be taken for (tests/test_checkpointing.py: the errors).


def misspelt(x):
    for _ in range(3):  # s2sgrad: checkpiont(snapshots=2)
        x = np.sin(x)
    return np.sum(x)


def no_snapshots(x):
    for _ in range(3):  # s2sgrad: checkpoint(snapshots=0)
        x = np.sin(x)
    return np.sum(x)


def inner_loop_in_the_body(x):
    for _ in range(3):  # s2sgrad: checkpoint(snapshots=2)
        for _ in range(2):
            x = np.sin(x)
        x = x * 2.0
    return np.sum(x)


def while_counted(x, c):
    k = 0
    r = x
    while k < 7:  # s2sgrad: checkpoint(snapshots=3)
        r = r - 0.1 * (np.sin(r) * c - x)
        k = k + 1
    return np.sum(r**2)


def while_until_small(x, c, tol):
    r = x
    while np.max(np.abs(r)) > tol:  # s2sgrad: checkpoint(snapshots=4)
        r = r * c + 0.01 * np.sin(r)
    return np.sum(r**2)


IN_PLACE = {"heat_in_place", "recurrence_in_place"}  # (checked against central differences)

PARAMS = np.array([1.1, 0.4, 0.1, 0.4])
INITIAL = np.array([1.3, 0.8])

ARGS = {
    "lotka_volterra_rk2": (PARAMS, INITIAL, 37, 0.05),
    "one_snapshot": (PARAMS, INITIAL, 12, 0.05),
    "more_snapshots_than_steps": (PARAMS, INITIAL, 9, 0.05),
    "heat_with_running_total": (np.sin(np.linspace(0.0, 3.0, 16)), 23, 0.2),
    "overwrites_a_value_from_before": (np.linspace(-1.0, 1.0, 5), 17, 0.3),
    "two_loops": (np.linspace(-1.0, 1.0, 4), 11, 0.7),
    "inside_an_outer_loop": (np.linspace(-1.0, 1.0, 4), 0.7),
    "branches_in_the_body": (np.linspace(-1.0, 0.6, 4), 13, 0.8),  # (both ways, off the edge)
    "continues_on_a_third": (np.linspace(-1.0, 1.0, 4), 10, 0.7),
    "heat_in_place": (np.sin(np.linspace(0.0, 3.0, 12)), 17, 0.3),
    "recurrence_in_place": (np.linspace(-1.0, 1.0, 9), 0.8),
}


def directive_on_an_assignment(x):
    for _ in range(3):
        x = np.sin(x)  # s2sgrad: checkpoint(snapshots=2)
    return np.sum(x)
