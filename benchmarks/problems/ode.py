"""The parameters of an ODE through its solver, in the style of GradBench's ``ode``.

``ode_loss`` integrates a chain of linear decays, y_0' = -y_0 and
y_i' = theta_i y_{i-1} - y_i, with explicit Euler steps written as a Python loop over
time (vector operations inside), and returns the sum of the final state: the gradient
is the sensitivity of that output to the coupling parameters ``theta``, which reverse
mode gets in one backward sweep through every step. Sizes: 100 states over 200 steps
(full), 4 states over 5 steps (smoke).

JAX's peer is the same solver written with ``lax.fori_loop`` (``jax_objective``), as a
JAX user writes a long time loop: ``jax.jit`` of the Python loop unrolls every step, and
tracing and compiling 200 of them takes minutes. The trip count is static under jit.
"""

from __future__ import annotations

import numpy as np

from benchmarks.problem import Case, Problem


def inputs(n: int, steps: int) -> tuple:
    rng = np.random.default_rng(0)
    theta = 0.5 + 0.5 * rng.random(n)
    y0 = np.ones(n)
    return theta, y0, 1.0 / steps, steps


def ode_loss(theta, y0, dt, steps):
    y = y0
    for _ in range(steps):
        upstream = np.concatenate([np.zeros(1), y[:-1]])
        y = y + dt * (theta * upstream - y)
    return np.sum(y)


def ode_loss_jax(theta, y0, dt, steps):
    """``ode_loss`` for JAX: the time loop as ``lax.fori_loop``."""
    import jax.numpy as jnp
    from jax import lax

    def step(_, y):
        upstream = jnp.concatenate([jnp.zeros(1), y[:-1]])
        return y + dt * (theta * upstream - y)

    return jnp.sum(lax.fori_loop(0, steps, step, y0))


def _cases(size: str) -> list[Case]:
    if size == "smoke":
        return [Case("4 states, 5 steps", inputs(4, 5))]
    return [Case("100 states, 200 steps", inputs(100, 200))]


PROBLEM = Problem(
    name="ODE parameters (GradBench)",
    objective=ode_loss,
    wrt=("theta",),
    cases=_cases,
    static=("steps",),
    jax_objective=ode_loss_jax,
    vectorized=False,
)
