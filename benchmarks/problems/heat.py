"""Inverse heat problem: explicit finite-difference stepping of the 1-D heat equation.

``loss`` steps u_t = D u_xx on a grid with Dirichlet ends (the end values never change)
by forward Euler, each step one vectorized slice update ``new[1:-1] = u[1:-1] + r * (...)``
with ``r = D dt / dx**2`` (stable for r <= 0.5), and compares the final profile with an
observed one. The gradient is taken with respect to the initial condition ``u0`` and the
diffusion number ``r``: what an inverse solver recovering both from a measurement needs.
Sizes: 1000 grid points and 500 steps (full), 20 points and 10 steps (smoke).

Hand twins: the objective updates a copy in place (``new[1:-1] = ...``), which neither
``jax.numpy`` (immutable arrays) nor autograd (no item assignment) can trace, so the
rebound twins cannot run. ``loss_autograd`` builds each new profile with
``np.concatenate``; ``loss_jax`` uses ``.at[1:-1].set`` in a ``lax.fori_loop``, since a
Python loop under ``jax.jit`` would unroll all 500 steps. ``hand_gradient`` is the
adjoint written by hand: the transposed stencil stepped backwards over the stored
profiles.
"""

from __future__ import annotations

import numpy as np

from benchmarks.problem import Case, Problem

R = 0.4  # diffusion number D dt / dx**2; explicit Euler is stable for r <= 0.5


def inputs(points: int, steps: int) -> tuple:
    """Arguments of ``loss``: a noisy initial guess, r, and an observation of the true
    profile (two Gaussian bumps) after ``steps`` steps, with measurement noise."""
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 1.0, points)
    true_u0 = np.exp(-(((x - 0.3) / 0.05) ** 2)) + 0.5 * np.exp(-(((x - 0.7) / 0.1) ** 2))
    observed = loss_profile(true_u0, R, steps) + 0.01 * rng.standard_normal(points)
    u0 = true_u0 + 0.1 * rng.standard_normal(points)
    return (u0, R, observed, steps)


def loss_profile(u0, r, steps):
    """The profile after ``steps`` explicit steps (to make the observation)."""
    u = u0.copy()
    for _ in range(steps):
        new = u.copy()
        new[1:-1] = u[1:-1] + r * (u[2:] - 2 * u[1:-1] + u[:-2])
        u = new
    return u


def loss(u0, r, observed, steps):
    u = u0.copy()
    for _ in range(steps):
        new = u.copy()
        new[1:-1] = u[1:-1] + r * (u[2:] - 2 * u[1:-1] + u[:-2])
        u = new
    return np.sum((u - observed) ** 2)


def loss_autograd(u0, r, observed, steps):
    """autograd twin: each new profile assembled with concatenate instead of a slice update."""
    import autograd.numpy as anp

    u = u0
    for _ in range(steps):
        interior = u[1:-1] + r * (u[2:] - 2 * u[1:-1] + u[:-2])
        u = anp.concatenate([u[:1], interior, u[-1:]])
    return anp.sum((u - observed) ** 2)


def loss_jax(u0, r, observed, steps):
    """JAX twin: ``.at[1:-1].set`` in a ``lax.fori_loop`` (a rolled loop under jit)."""
    import jax.numpy as jnp
    from jax import lax

    def step(_, u):
        return u.at[1:-1].set(u[1:-1] + r * (u[2:] - 2 * u[1:-1] + u[:-2]))

    u = lax.fori_loop(0, steps, step, u0)
    return jnp.sum((u - observed) ** 2)


def hand_gradient(u0, r, observed, steps):
    """d loss / d(u0, r) by hand: store every profile, then step the adjoint backwards.

    A step is new = u + r L u on the interior (L the [1, -2, 1] stencil), identity at
    the ends; its transpose sends the adjoint g to g + L^T(r g_interior), and the
    step's contribution to d/dr is g_interior . (L u)_interior.
    """
    history = [u0]
    u = u0
    for _ in range(steps):
        new = u.copy()
        new[1:-1] = u[1:-1] + r * (u[2:] - 2 * u[1:-1] + u[:-2])
        history.append(new)
        u = new
    g = 2.0 * (u - observed)
    dr = 0.0
    for u in reversed(history[:-1]):
        inner = g[1:-1]
        dr += inner @ (u[2:] - 2 * u[1:-1] + u[:-2])
        scaled = r * inner
        g = g.copy()
        g[1:-1] -= 2 * scaled
        g[2:] += scaled
        g[:-2] += scaled
    return g, dr


def _cases(size: str) -> list[Case]:
    points, steps = (20, 10) if size == "smoke" else (1000, 500)
    return [Case(f"{points} points, {steps} steps", inputs(points, steps))]


PROBLEM = Problem(
    name="Heat equation, inverse",
    objective=loss,
    wrt=("u0", "r"),
    cases=_cases,
    static=("steps",),
    jax_objective=loss_jax,
    autograd_objective=loss_autograd,
    hand_gradient=hand_gradient,
    vectorized=True,
)
