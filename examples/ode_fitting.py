"""Fit the parameters of an ODE model to noisy data with SciPy's optimizer and s2sgrad's gradient.

What this example teaches:

* A loss built on a hand-written RK4 loop plugs straight into
  ``scipy.optimize.minimize``: ``jac=s2sgrad.grad(loss)`` is the gradient with
  respect to the first argument (the parameter vector SciPy passes as a float64
  1-D array); the data go through ``args=(...)`` and are not differentiated.
  Integer arguments (the step count, the observation indices) never are.
* Keeping a trajectory inside differentiated code: preallocate it
  (``trajectory = np.zeros((steps + 1, 2))``) and write each step into its row
  (``trajectory[i + 1] = state``). That in-place write is fine because the
  function made the array itself (README: the aliasing rule); ``list.append``
  is refused. The misfit then reads the observed rows with fancy indexing.
* In reverse mode the generated code runs the loop forward, pushing onto
  explicit per-loop lists the values of each step that the backward sweep
  reads, then runs the loop backwards, popping them. See it with::

      s2sgrad inspect examples/ode_fitting.py:loss

* How to trust a gradient before handing it to an optimizer: compare it with
  central finite differences at the initial guess, and with forward mode.

The model is a damped harmonic oscillator with unknown frequency ``omega``,
damping ratio ``zeta`` and initial displacement ``x0`` (it starts at rest)::

    dx/dt = v
    dv/dt = -omega**2 * x - 2 * zeta * omega * v

observed (position only, with noise) at 25 times. Run it with
``python examples/ode_fitting.py``. It prints the gradient check, the
optimizer's iterations and function evaluations, and the fitted parameters
beside the true ones; the exit status is 1 if the gradient check fails or the
fit does not recover the parameters.
"""

from __future__ import annotations

import sys

import numpy as np

try:
    from scipy.optimize import minimize
except ImportError:
    sys.exit('this example needs SciPy: pip install -e ".[examples]"')

import s2sgrad

NAMES = ("omega", "zeta", "x0")
TRUE_THETA = np.array([2.0, 0.15, 1.0])
INITIAL_GUESS = np.array([1.6, 0.4, 0.6])
STEPS = 200
DT = 0.05  # integrate over t in [0, 10]
NOISE = 0.02


def oscillator(state, theta):
    """The right-hand side d(x, v)/dt of the damped oscillator."""
    x, v = state[0], state[1]
    omega, zeta = theta[0], theta[1]
    return np.stack([v, -(omega**2) * x - 2.0 * zeta * omega * v])


def simulate(theta, steps, dt):
    """The trajectory (x, v) at steps + 1 equally spaced times, by classical RK4."""
    state = np.stack([theta[2], 0.0 * theta[2]])
    trajectory = np.zeros((steps + 1, 2))
    trajectory[0] = state
    for i in range(steps):
        k1 = oscillator(state, theta)
        k2 = oscillator(state + 0.5 * dt * k1, theta)
        k3 = oscillator(state + 0.5 * dt * k2, theta)
        k4 = oscillator(state + dt * k3, theta)
        state = state + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        trajectory[i + 1] = state
    return trajectory


def loss(theta, observed_steps, observations, steps, dt):
    """Sum of squared misfits between simulated and observed positions."""
    trajectory = simulate(theta, steps, dt)
    misfit = trajectory[observed_steps, 0] - observations
    return np.sum(misfit**2)


def make_observations(rng: np.random.Generator):
    """Noisy positions of the true model at 25 random time steps (data for the fit)."""
    observed_steps = np.sort(rng.choice(np.arange(1, STEPS + 1), size=25, replace=False))
    clean = simulate(TRUE_THETA, STEPS, DT)[observed_steps, 0]
    return observed_steps, clean + NOISE * rng.normal(size=clean.shape)


def finite_difference_gradient(theta, args, eps: float = 1e-6) -> np.ndarray:
    """Central differences of `loss` in each parameter (float64)."""
    grad = np.zeros_like(theta)
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = eps
        grad[i] = (loss(theta + step, *args) - loss(theta - step, *args)) / (2 * eps)
    return grad


def relative_difference(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def main() -> int:
    rng = np.random.default_rng(0)
    observed_steps, observations = make_observations(rng)
    args = (observed_steps, observations, STEPS, DT)
    loss_gradient = s2sgrad.grad(loss)  # d loss / d theta, the first argument

    print(f"damped oscillator, {STEPS} RK4 steps of {DT}, {observations.size} noisy observations")
    print(f"loss at the initial guess: {loss(INITIAL_GUESS, *args):.6f}")
    reverse = loss_gradient(INITIAL_GUESS, *args)
    forward = s2sgrad.grad(loss, mode="forward")(INITIAL_GUESS, *args)
    approx = finite_difference_gradient(INITIAL_GUESS, args)
    print(f"{'':>8}{'reverse':>16}{'forward':>16}{'finite diff.':>16}")
    for name, r, f, a in zip(NAMES, reverse, forward, approx, strict=True):
        print(f"{name:>8}{r:16.8f}{f:16.8f}{a:16.8f}")
    checks = {
        "reverse vs finite differences": (relative_difference(reverse, approx), 1e-6),
        "reverse vs forward": (relative_difference(reverse, forward), 1e-10),
    }
    ok = True
    for what, (error, limit) in checks.items():
        status = "ok" if error < limit else "FAIL"
        ok = ok and error < limit
        print(f"  {what}: max relative difference {error:.2e}  {status}")

    result = minimize(
        loss,
        INITIAL_GUESS,
        args=args,
        jac=loss_gradient,
        method="L-BFGS-B",
        bounds=[(0.1, 10.0), (0.0, 2.0), (-5.0, 5.0)],
    )
    print(f"L-BFGS-B: {result.message}")
    print(f"  {result.nit} iterations, {result.nfev} loss and gradient evaluations")
    print(f"  final loss {result.fun:.6f} (noise floor ~ {observations.size * NOISE**2:.6f})")
    print(f"{'':>8}{'true':>12}{'initial':>12}{'fitted':>12}")
    for name, t, g, x in zip(NAMES, TRUE_THETA, INITIAL_GUESS, result.x, strict=True):
        print(f"{name:>8}{t:12.5f}{g:12.5f}{x:12.5f}")
    # With 2% noise the parameters come back to within a few percent.
    recovered = result.success and relative_difference(result.x, TRUE_THETA) < 0.05
    print("fit recovered the true parameters" if recovered else "fit did NOT recover them")

    print("gradient check passed" if ok else "gradient check FAILED")
    return 0 if ok and recovered else 1


if __name__ == "__main__":
    sys.exit(main())
