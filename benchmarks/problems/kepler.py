"""A ``while``-loop solver differentiated in reverse mode: Newton's method on Kepler's equation.

For each mean anomaly M the eccentric anomaly E solves ``E - e sin E = M``; Newton's
iteration runs until every residual is below ``tol``, so the trip count depends on the
data. The loss compares the resulting points of the orbit with targets and is
differentiated with respect to the eccentricity ``e`` and every ``M``.

``jax.grad`` refuses the natural JAX translation (``lax.while_loop``): "Reverse-mode
differentiation does not work for lax.while_loop". The usual workarounds are a loop of
fixed length (``fori_twin``: always pays for the worst case) or implicit differentiation
by hand. ``implicit_gradient`` is that hand derivation, used here as the oracle.
"""

from __future__ import annotations

import numpy as np

TOL = 1e-12
ECCENTRICITY = 0.7
FIXED_ITERATIONS = 30  # what a fori_loop twin must run to be safe for e <= 0.9


def inputs(n: int) -> tuple:
    """Arguments of ``orbit_loss`` for ``n`` points of the orbit."""
    rng = np.random.default_rng(0)
    mean_anomaly = np.linspace(0.1, 2 * np.pi - 0.1, n)
    target_x = np.cos(mean_anomaly) + 0.05 * rng.standard_normal(n)
    target_y = np.sin(mean_anomaly) + 0.05 * rng.standard_normal(n)
    return (ECCENTRICITY, mean_anomaly, target_x, target_y, TOL)


def solve_kepler(mean_anomaly, e, tol):
    """Newton's method for E - e sin E = M, until every residual is below tol."""
    anomaly = mean_anomaly + e * np.sin(mean_anomaly)
    residual = anomaly - e * np.sin(anomaly) - mean_anomaly
    while np.max(np.abs(residual)) > tol:
        anomaly = anomaly - residual / (1.0 - e * np.cos(anomaly))
        residual = anomaly - e * np.sin(anomaly) - mean_anomaly
    return anomaly


def orbit_loss(e, mean_anomaly, target_x, target_y, tol):
    anomaly = solve_kepler(mean_anomaly, e, tol)
    x = np.cos(anomaly) - e
    y = np.sqrt(1.0 - e**2) * np.sin(anomaly)
    return np.sum((x - target_x) ** 2 + (y - target_y) ** 2)


def implicit_gradient(e, mean_anomaly, target_x, target_y, tol):
    """d(orbit_loss)/d(e, M) derived by hand with the implicit function theorem."""
    anomaly = solve_kepler(mean_anomaly, e, tol)
    x = np.cos(anomaly) - e
    root = np.sqrt(1.0 - e**2)
    y = root * np.sin(anomaly)
    gx, gy = 2.0 * (x - target_x), 2.0 * (y - target_y)
    d_anomaly = gx * -np.sin(anomaly) + gy * root * np.cos(anomaly)  # dL/dE
    denominator = 1.0 - e * np.cos(anomaly)  # dF/dE for F = E - e sin E - M
    de_direct = np.sum(-gx + gy * (-e / root) * np.sin(anomaly))
    de = de_direct + np.sum(d_anomaly * np.sin(anomaly) / denominator)
    dm = d_anomaly / denominator
    return de, dm


def jax_twins():
    """(loss_while, loss_fori): the lax.while_loop translation (which jax.grad refuses)
    and the fixed-length fori_loop one a JAX user writes instead."""
    import jax.numpy as jnp
    from jax import lax

    def residual(anomaly, mean_anomaly, e):
        return anomaly - e * jnp.sin(anomaly) - mean_anomaly

    def newton(anomaly, mean_anomaly, e):
        return anomaly - residual(anomaly, mean_anomaly, e) / (1.0 - e * jnp.cos(anomaly))

    def points(anomaly, e, target_x, target_y):
        x = jnp.cos(anomaly) - e
        y = jnp.sqrt(1.0 - e**2) * jnp.sin(anomaly)
        return jnp.sum((x - target_x) ** 2 + (y - target_y) ** 2)

    def loss_while(e, mean_anomaly, target_x, target_y, tol):
        start = mean_anomaly + e * jnp.sin(mean_anomaly)
        anomaly = lax.while_loop(
            lambda a: jnp.max(jnp.abs(residual(a, mean_anomaly, e))) > tol,
            lambda a: newton(a, mean_anomaly, e),
            start,
        )
        return points(anomaly, e, target_x, target_y)

    def loss_fori(e, mean_anomaly, target_x, target_y, tol):
        start = mean_anomaly + e * jnp.sin(mean_anomaly)
        anomaly = lax.fori_loop(0, FIXED_ITERATIONS, lambda _, a: newton(a, mean_anomaly, e), start)
        return points(anomaly, e, target_x, target_y)

    return loss_while, loss_fori
