"""Differentiate through Newton's method: a ``while`` loop whose trip count depends on the data.

What this example teaches:

* An iterative solver written as a plain ``while`` loop that stops when the
  Newton step is small (``while np.max(np.abs(step)) > tol and iterations <
  max_iter:``) is differentiable in reverse mode as it stands. The generated
  code runs the loop forward, counts its trips and saves what the backward
  sweep needs, then runs the backward sweep that many times. See it with::

      s2sgrad inspect examples/newton_solver.py:misfit --wrt e,mean_anomaly

* ``has_aux=True`` (as in JAX) lets the function return something beside the
  value it is differentiated for, here the number of Newton iterations:
  ``s2sgrad.grad(misfit, has_aux=True)`` returns ``(gradient, iterations)``.
* The derivative of the converged iterate is the implicit-function-theorem
  derivative. For Kepler's equation ``E - e sin E = M``::

      dE/de = sin E / (1 - e cos E)        dE/dM = 1 / (1 - e cos E)

  and the script checks s2sgrad's gradient against that formula and against
  central finite differences.
* The JAX backend (``backend="jax"``) turns the loop into a jitted
  ``lax.while_loop`` with a recorded trip count and differentiates it in
  reverse mode, which ``jax.grad`` of a ``lax.while_loop`` cannot do: the
  script shows the error ``jax.grad`` raises. Read the JAX version by adding
  ``--backend jax`` to the command above.

The model: positions on an ellipse with semi-major axis 1 and eccentricity
``e`` at mean anomalies ``M`` (times along the orbit); the eccentric anomaly
``E`` solves Kepler's equation, and the position is
``(cos E - e, sqrt(1 - e**2) sin E)``. The loss is the squared misfit to noisy
observed positions.

Run it with ``python examples/newton_solver.py``. It prints the iteration
counts, the gradient from reverse mode, the implicit-function formula and
finite differences, and the JAX backend's result; the exit status is 1 if a
check fails.
"""

from __future__ import annotations

import sys

import numpy as np

import s2sgrad

TOL = 1e-12
MAX_ITER = 50
TRUE_E = 0.6
GUESS_E = 0.5


def solve_kepler(e, mean_anomaly, tol, max_iter):
    """Newton's method for E - e sin E = M, elementwise; returns E and the number of steps."""
    E = mean_anomaly + e * np.sin(mean_anomaly)  # a good first guess for moderate e
    step = np.ones_like(E)
    iterations = 0
    while np.max(np.abs(step)) > tol and iterations < max_iter:
        step = (E - e * np.sin(E) - mean_anomaly) / (1.0 - e * np.cos(E))
        E = E - step
        iterations = iterations + 1
    return E, iterations


def misfit(e, mean_anomaly, observed, tol, max_iter):
    """Squared distance of the orbit's positions to the observed ones; aux: Newton steps."""
    E, iterations = solve_kepler(e, mean_anomaly, tol, max_iter)
    x = np.cos(E) - e
    y = np.sqrt(1.0 - e**2) * np.sin(E)
    loss = np.sum((x - observed[:, 0]) ** 2 + (y - observed[:, 1]) ** 2)
    return loss, iterations


def implicit_function_gradient(e, mean_anomaly, observed):
    """d misfit / d(e, M) by hand, with dE/de and dE/dM from the implicit-function theorem."""
    E, _ = solve_kepler(e, mean_anomaly, TOL, MAX_ITER)
    dE_de = np.sin(E) / (1.0 - e * np.cos(E))
    dE_dM = 1.0 / (1.0 - e * np.cos(E))
    root = np.sqrt(1.0 - e**2)
    rx = 2.0 * (np.cos(E) - e - observed[:, 0])  # d loss / d x
    ry = 2.0 * (root * np.sin(E) - observed[:, 1])  # d loss / d y
    dx_dE, dy_dE = -np.sin(E), root * np.cos(E)
    de = np.sum(rx * (dx_dE * dE_de - 1.0) + ry * (dy_dE * dE_de - e / root * np.sin(E)))
    dM = (rx * dx_dE + ry * dy_dE) * dE_dM
    return de, dM


def finite_differences(e, mean_anomaly, observed, eps: float = 1e-6):
    """Central differences of `misfit` in e and in each mean anomaly (float64)."""

    def f(e, m):
        return misfit(e, m, observed, TOL, MAX_ITER)[0]

    de = (f(e + eps, mean_anomaly) - f(e - eps, mean_anomaly)) / (2 * eps)
    dM = np.array(
        [
            (f(e, mean_anomaly + eps * u) - f(e, mean_anomaly - eps * u)) / (2 * eps)
            for u in np.eye(mean_anomaly.size)
        ]
    )
    return de, dM


def relative_difference(a, b) -> float:
    return float(np.max(np.abs(np.subtract(a, b))) / max(np.max(np.abs(b)), 1e-12))


def while_loop_twin_error(mean_anomaly, observed) -> str | None:
    """What jax.grad says about the same solver written with lax.while_loop."""
    import jax
    import jax.numpy as jnp

    def loss(e):
        def cond(state):
            _, step, iterations = state
            return (jnp.max(jnp.abs(step)) > TOL) & (iterations < MAX_ITER)

        def body(state):
            E, _, iterations = state
            step = (E - e * jnp.sin(E) - mean_anomaly) / (1.0 - e * jnp.cos(E))
            return E - step, step, iterations + 1

        start = mean_anomaly + e * jnp.sin(mean_anomaly)
        E, _, _ = jax.lax.while_loop(cond, body, (start, jnp.ones_like(start), 0))
        x, y = jnp.cos(E) - e, jnp.sqrt(1.0 - e**2) * jnp.sin(E)
        return jnp.sum((x - observed[:, 0]) ** 2 + (y - observed[:, 1]) ** 2)

    try:
        jax.jit(jax.grad(loss))(GUESS_E)  # under jit it fails while tracing, quickly
    except Exception as error:  # jax raises ValueError; only its message matters here
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return None


def main() -> int:
    rng = np.random.default_rng(0)
    mean_anomaly = np.sort(rng.uniform(0.0, 2.0 * np.pi, size=12))
    E_true, _ = solve_kepler(TRUE_E, mean_anomaly, TOL, MAX_ITER)
    observed = np.stack([np.cos(E_true) - TRUE_E, np.sqrt(1 - TRUE_E**2) * np.sin(E_true)], axis=1)
    observed = observed + 0.01 * rng.normal(size=observed.shape)

    for e in (0.1, 0.5, 0.9, 0.99):
        _, iterations = solve_kepler(e, mean_anomaly, TOL, MAX_ITER)
        print(f"e = {e:<5}: Newton converges to {TOL:g} in {iterations} iterations")

    gradient = s2sgrad.grad(misfit, wrt=("e", "mean_anomaly"), has_aux=True)
    (de, dM), iterations = gradient(GUESS_E, mean_anomaly, observed, TOL, MAX_ITER)
    ift_de, ift_dM = implicit_function_gradient(GUESS_E, mean_anomaly, observed)
    fd_de, fd_dM = finite_differences(GUESS_E, mean_anomaly, observed)
    print(f"misfit at e = {GUESS_E} (data from e = {TRUE_E}); the loop ran {iterations} times")
    print(f"{'':>14}{'s2sgrad':>16}{'implicit fn.':>16}{'finite diff.':>16}")
    print(f"{'d/de':>14}{de:16.10f}{ift_de:16.10f}{fd_de:16.10f}")
    for i in range(3):
        print(f"{f'd/dM[{i}]':>14}{dM[i]:16.10f}{ift_dM[i]:16.10f}{fd_dM[i]:16.10f}")
    print(f"{'...':>14}")
    checks = {
        "s2sgrad vs implicit-function theorem": (
            max(relative_difference(de, ift_de), relative_difference(dM, ift_dM)),
            1e-10,
        ),
        "s2sgrad vs finite differences": (
            max(relative_difference(de, fd_de), relative_difference(dM, fd_dM)),
            1e-6,
        ),
    }

    try:
        import jax
    except ImportError:
        print("JAX is not installed: skipping the JAX backend")
    else:
        jax.config.update("jax_enable_x64", True)
        jax_gradient = s2sgrad.grad(misfit, wrt=("e", "mean_anomaly"), has_aux=True, backend="jax")
        (jax_de, jax_dM), jax_iterations = jax_gradient(
            GUESS_E, mean_anomaly, observed, TOL, MAX_ITER
        )
        print(
            f"JAX backend (jitted lax.while_loop, {int(jax_iterations)} trips): d/de {float(jax_de):.10f}"
        )
        checks["JAX backend vs NumPy backend"] = (
            max(relative_difference(jax_de, de), relative_difference(jax_dM, dM)),
            1e-12,
        )
        message = while_loop_twin_error(mean_anomaly, observed)
        print("jax.grad of the same solver written with lax.while_loop:")
        print(f"  {message}" if message else "  (it worked: this JAX differentiates while_loop)")

    print("checks:")
    ok = True
    for what, (error, limit) in checks.items():
        status = "ok" if error < limit else "FAIL"
        ok = ok and error < limit
        print(f"  {what}: max relative difference {error:.2e}  {status}")
    print("gradient check passed" if ok else "gradient check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
