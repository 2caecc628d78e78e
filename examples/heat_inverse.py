"""Recover the initial temperature of a rod from a noisy measurement at a later time.

What this example teaches:

* An explicit finite-difference solver of the 1-D heat equation, written with
  a Python ``for`` loop and an in-place slice update
  (``u[1:-1] = u[1:-1] + r * (u[2:] - 2 * u[1:-1] + u[:-2])``), is
  differentiable as it stands. The in-place update is allowed because ``u`` is
  the function's own array (``u = u0.copy()``); updating the argument ``u0``
  itself would be refused (README: the aliasing rule).
* An inverse problem with 64 unknowns: the gradient of misfit plus Tikhonov
  regularization with respect to the whole initial profile costs one reverse
  sweep, and ``scipy.optimize.minimize`` does the rest. Here it gets
  ``s2sgrad.value_and_grad(objective)`` with ``jac=True``: the value and the
  gradient from one run of the solver (``jac=s2sgrad.grad(objective)`` works
  too, at the price of an extra forward run). See the generated adjoint solver
  (it runs the time loop backwards) with::

      s2sgrad inspect examples/heat_inverse.py:objective

* How to check a gradient of many variables: compare directional derivatives
  ``g @ v`` along a few random directions ``v`` with central finite
  differences, and with forward mode (``s2sgrad.jvp``), which computes
  ``J @ v`` directly.

Diffusion damps the high frequencies of the initial profile almost to nothing,
so recovering them from noisy data is ill-posed: without regularization the
fit amplifies noise (the longer the optimizer runs, the worse the profile),
and the penalty on ``np.diff(u0)`` keeps it smooth.

Run it with ``python examples/heat_inverse.py``. It prints the gradient check,
the error of the profile recovered with and without regularization, and
the optimizer's iterations; the exit status is 1 if the check fails or the
regularized profile is not close to the truth.
"""

from __future__ import annotations

import sys

import numpy as np

try:
    from scipy.optimize import minimize
except ImportError:
    sys.exit('this example needs SciPy: pip install -e ".[examples]"')

import s2sgrad

N = 64  # grid points on [0, 1], both ends held at temperature 0
STEPS = 50
R = 0.4  # kappa * dt / dx**2, below the explicit scheme's stability limit 0.5
NOISE = 0.01  # standard deviation of the measurement noise
REGULARIZATION = 100.0


def diffuse(u0, r, steps):
    """The temperature after ``steps`` explicit Euler steps of the heat equation."""
    u = u0.copy()
    for _ in range(steps):
        u[1:-1] = u[1:-1] + r * (u[2:] - 2.0 * u[1:-1] + u[:-2])
    return u


def objective(u0, observed, r, steps, sigma, alpha):
    """Misfit of the final temperature, in units of the noise, plus a Tikhonov penalty on the
    profile's slope."""
    misfit = (diffuse(u0, r, steps) - observed) / sigma
    return 0.5 * np.sum(misfit**2) + 0.5 * alpha * np.sum(np.diff(u0) ** 2)


def true_profile() -> np.ndarray:
    """Two warm bumps, zero at the ends."""
    x = np.linspace(0.0, 1.0, N)
    u = np.exp(-(((x - 0.3) / 0.08) ** 2)) + 0.6 * np.exp(-(((x - 0.7) / 0.12) ** 2))
    u[0] = u[-1] = 0.0
    return u


def recover(observed, alpha, value_and_gradient, max_iterations, truth):
    """Minimize the objective with L-BFGS from a cold rod; also returns the relative error of
    the iterate after each iteration."""
    errors = []
    result = minimize(
        value_and_gradient,  # jac=True: it returns (value, gradient) from one evaluation
        np.zeros(N),
        args=(observed, R, STEPS, NOISE, alpha),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iterations},
        callback=lambda u0: errors.append(relative_error(u0, truth)),
    )
    return result, errors


def relative_error(profile, truth) -> float:
    return float(np.linalg.norm(profile - truth) / np.linalg.norm(truth))


def main() -> int:
    rng = np.random.default_rng(0)
    truth = true_profile()
    observed = diffuse(truth, R, STEPS) + NOISE * rng.normal(size=N)
    print(f"heat equation, {N} grid points, {STEPS} explicit steps at r = {R}")
    print(f"the measurement's peak is {observed.max():.3f} (the initial peak was 1.0)")

    gradient = s2sgrad.grad(objective)  # d objective / d u0, the first argument
    args = (observed, R, STEPS, NOISE, REGULARIZATION)

    print("directional derivatives at a random profile u, g @ v for random v:")
    u = rng.normal(size=N)
    g = gradient(u, *args)
    ok = True
    eps = 1e-6
    for k in range(3):
        v = rng.normal(size=N)
        reverse = g @ v
        finite = (objective(u + eps * v, *args) - objective(u - eps * v, *args)) / (2 * eps)
        # Forward mode: J @ v with the tangent v for u0 and zero tangents for the rest.
        tangents = (v, np.zeros(N), 0.0, 0, 0.0, 0.0)
        _, forward = s2sgrad.jvp(objective, (u, *args), tangents)
        fd_error = abs(reverse - finite) / abs(finite)
        mode_error = abs(reverse - forward) / abs(forward)
        passed = fd_error < 1e-6 and mode_error < 1e-10
        ok = ok and passed
        print(
            f"  v{k}: reverse {reverse:14.6f}  forward {forward:14.6f}  finite diff. {finite:14.6f}"
            f"  {'ok' if passed else 'FAIL'}"
        )
    print("gradient check passed" if ok else "gradient check FAILED")

    guess = relative_error(observed, truth)
    print(f"relative error of the measurement itself, taken as the initial profile: {guess:.3f}")
    value_and_gradient = s2sgrad.value_and_grad(objective)
    result, unregularized = recover(observed, 0.0, value_and_gradient, 200, truth)
    print("no regularization, relative error of the L-BFGS iterate after")
    for iteration in (25, 50, 100, 200):
        if iteration <= len(unregularized):
            print(f"  {iteration:4d} iterations: {unregularized[iteration - 1]:.3f}")
    print("  (it grows the longer the fit follows the noise)")
    result, errors = recover(observed, REGULARIZATION, value_and_gradient, 1000, truth)
    print(
        f"Tikhonov alpha = {REGULARIZATION:g}: converged in {result.nit} L-BFGS iterations "
        f"({result.nfev} evaluations), relative error {errors[-1]:.3f}"
    )
    good = result.success and errors[-1] < 0.2 and errors[-1] < unregularized[-1]
    print("regularized recovery is close to the truth" if good else "recovery FAILED")
    return 0 if ok and good else 1


if __name__ == "__main__":
    sys.exit(main())
