"""Sensitivity of an ODE solution to its parameters, through a hand-written RK4 loop.

What this example teaches:

* An ODE solver written the way scientists write one, a plain Python ``for``
  loop over time steps calling a NumPy right-hand side, is differentiable as
  it stands: ``s2sgrad.grad(loss, wrt="params")`` gives d(loss)/d(params)
  for a loss of the final state. Nothing has to be rewritten with
  ``lax.fori_loop``, a special array type or an adjoint ODE solver.
* In reverse mode the generated code runs the loop forward, saving per step
  only what the backward sweep needs (in explicit lists you can read), then
  runs it backward. See it with::

      s2sgrad inspect examples/ode_sensitivity.py:loss --wrt params

* Forward mode computes the same gradient with one tangent pass per parameter:
  with four parameters both are cheap, and their agreement is a check in itself.
* How to trust a gradient: compare it with central finite differences.

The model is the Lotka–Volterra predator–prey system::

    d prey / dt     = alpha * prey - beta * prey * predator
    d predator / dt = delta * prey * predator - gamma * predator

Run it with ``python examples/ode_sensitivity.py``. It prints the final state,
the gradient from both modes and the finite-difference check; the exit status
is 1 if the check fails.
"""

from __future__ import annotations

import sys

import numpy as np

import s2sgrad

PARAMS = np.array([1.1, 0.4, 0.1, 0.4])  # alpha, beta, delta, gamma
INITIAL = np.array([10.0, 10.0])  # prey, predator
TARGET = np.array([3.0, 6.0])
STEPS = 400
DT = 0.025


def lotka_volterra(state, params):
    """The right-hand side d(prey, predator)/dt."""
    prey, predator = state[0], state[1]
    alpha, beta, delta, gamma = params[0], params[1], params[2], params[3]
    return np.stack(
        [alpha * prey - beta * prey * predator, delta * prey * predator - gamma * predator]
    )


def loss(params, initial, target, steps, dt):
    """Squared distance of the state after ``steps`` classical RK4 steps to ``target``."""
    state = initial
    for _ in range(steps):
        k1 = lotka_volterra(state, params)
        k2 = lotka_volterra(state + 0.5 * dt * k1, params)
        k3 = lotka_volterra(state + 0.5 * dt * k2, params)
        k4 = lotka_volterra(state + dt * k3, params)
        state = state + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return np.sum((state - target) ** 2)


def finite_difference_gradient(params, eps: float = 1e-6) -> np.ndarray:
    """Central differences of `loss` in each parameter (float64)."""
    grad = np.zeros_like(params)
    for i in range(params.size):
        step = np.zeros_like(params)
        step[i] = eps
        up = loss(params + step, INITIAL, TARGET, STEPS, DT)
        down = loss(params - step, INITIAL, TARGET, STEPS, DT)
        grad[i] = (up - down) / (2 * eps)
    return grad


def relative_difference(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def main() -> int:
    value = loss(PARAMS, INITIAL, TARGET, STEPS, DT)
    print(f"loss after {STEPS} RK4 steps of {DT}: {value:.6f}")

    reverse = s2sgrad.grad(loss, wrt="params")(PARAMS, INITIAL, TARGET, STEPS, DT)
    forward = s2sgrad.grad(loss, wrt="params", mode="forward")(PARAMS, INITIAL, TARGET, STEPS, DT)
    approx = finite_difference_gradient(PARAMS)
    names = ("alpha", "beta", "delta", "gamma")
    print(f"{'':>8}{'reverse':>16}{'forward':>16}{'finite diff.':>16}")
    for name, r, f, a in zip(names, reverse, forward, approx, strict=True):
        print(f"{name:>8}{r:16.8f}{f:16.8f}{a:16.8f}")

    tolerance = 1e-6
    checks = {
        "reverse vs finite differences": relative_difference(reverse, approx),
        "forward vs finite differences": relative_difference(forward, approx),
        "reverse vs forward": relative_difference(reverse, forward),
    }
    ok = True
    for what, error in checks.items():
        # The two modes should agree to rounding; finite differences only to ~1e-8.
        limit = 1e-10 if what == "reverse vs forward" else tolerance
        status = "ok" if error < limit else "FAIL"
        ok = ok and error < limit
        print(f"  {what}: max relative difference {error:.2e}  {status}")
    print("gradient check passed" if ok else "gradient check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
