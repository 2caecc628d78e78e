"""Gradient of an RK4 integration: a Python ``for`` loop over time steps.

The model is the Lotka–Volterra predator–prey system (as in examples/ode_sensitivity.py);
the loss is the squared distance of the final state to a target, differentiated with
respect to the four rate parameters.

``loss`` is what s2sgrad differentiates. ``loss_jnp`` is the same source with ``jnp``:
``jax.grad`` of it traces the Python loop, so XLA sees ``steps`` unrolled copies of the
body. ``loss_fori`` is the hand-rolled ``lax.fori_loop`` version a JAX user would have
to write to get a rolled loop.
"""

from __future__ import annotations

import numpy as np

from benchmarks.problem import Case, Problem

PARAMS = np.array([1.1, 0.4, 0.1, 0.4])  # alpha, beta, delta, gamma
INITIAL = np.array([10.0, 10.0])  # prey, predator
TARGET = np.array([3.0, 6.0])
DT = 0.01  # time step: stable at any trip count (the orbits are periodic)


def inputs(steps: int) -> tuple:
    """Arguments of ``loss`` for ``steps`` steps of DT."""
    return (PARAMS, INITIAL, TARGET, steps, DT)


def lotka_volterra(state, params):
    prey, predator = state[0], state[1]
    alpha, beta, delta, gamma = params[0], params[1], params[2], params[3]
    return np.stack(
        [alpha * prey - beta * prey * predator, delta * prey * predator - gamma * predator]
    )


def loss(params, initial, target, steps, dt):
    state = initial
    for _ in range(steps):
        k1 = lotka_volterra(state, params)
        k2 = lotka_volterra(state + 0.5 * dt * k1, params)
        k3 = lotka_volterra(state + 0.5 * dt * k2, params)
        k4 = lotka_volterra(state + dt * k3, params)
        state = state + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return np.sum((state - target) ** 2)


def _jax_twins():
    import jax.numpy as jnp
    from jax import lax

    def rhs(state, params):
        prey, predator = state[0], state[1]
        alpha, beta, delta, gamma = params[0], params[1], params[2], params[3]
        return jnp.stack(
            [alpha * prey - beta * prey * predator, delta * prey * predator - gamma * predator]
        )

    def rk4_step(state, params, dt):
        k1 = rhs(state, params)
        k2 = rhs(state + 0.5 * dt * k1, params)
        k3 = rhs(state + 0.5 * dt * k2, params)
        k4 = rhs(state + dt * k3, params)
        return state + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    def loss_jnp(params, initial, target, steps, dt):
        state = initial
        for _ in range(steps):
            state = rk4_step(state, params, dt)
        return jnp.sum((state - target) ** 2)

    def loss_fori(params, initial, target, steps, dt):
        state = lax.fori_loop(0, steps, lambda _, s: rk4_step(s, params, dt), initial)
        return jnp.sum((state - target) ** 2)

    return loss_jnp, loss_fori


def jax_twins():
    """(loss_jnp, loss_fori): the Python-loop jnp twin and the hand-rolled fori_loop one."""
    return _jax_twins()


def loss_rolled(params, initial, target, steps, dt):
    """The hand-rolled ``lax.fori_loop`` twin: what ``jax.grad`` gets in the side-by-side
    suite, because XLA takes minutes to compile the unrolled Python loop at 200 steps
    (see benchmarks/results/jax_loops.md)."""
    return jax_twins()[1](params, initial, target, steps, dt)


def _cases(size: str) -> list[Case]:
    steps = 20 if size == "smoke" else 200
    return [Case(f"{steps} steps", inputs(steps))]


PROBLEM = Problem(
    name="RK4, Lotka–Volterra",
    objective=loss,
    wrt=("params",),
    cases=_cases,
    static=("steps",),
    jax_objective=loss_rolled,
    vectorized=False,
)
