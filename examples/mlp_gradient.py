"""Train a small two-layer neural network with gradients that s2sgrad writes as NumPy code.

What this example teaches:

* The model and its loss are plain NumPy: no special array type, no tracing,
  no tape. ``s2sgrad.grad(loss, wrt=("W1", "b1", "W2", "b2"))`` reads the
  source of ``loss`` and generates a new Python function that computes the
  gradient with respect to those four parameters (a tuple, in that order).
  The same works as a decorator: ``@s2sgrad.grad(wrt=...)``.
* The generated gradient is ordinary code you can read. Print it with::

      s2sgrad inspect examples/mlp_gradient.py:loss --wrt W1,b1,W2,b2

  It is cached as a module on disk (``s2sgrad cache list``), so the second
  run of this script does not run the compiler at all.
* How to trust a gradient: compare it with central finite differences,
  ``(f(p + eps) - f(p - eps)) / (2 eps)``, element by element.

The differentiated function here is straight-line code, but it need not be:
loops, ``if``/``while``, calls of your own functions and dicts of parameters
are differentiated too. See ``ode_sensitivity.py`` and ``ode_fitting.py`` (a
``for`` loop of RK4 steps), ``heat_inverse.py`` (in-place updates in a loop),
``newton_solver.py`` (a ``while`` loop with a data-dependent trip count) and
``mlp_training.py`` (a network whose parameters are a dict, on NumPy and JAX).

Run it with ``python examples/mlp_gradient.py``. It prints the loss falling
over a few steps of gradient descent, then the gradient check; the exit status
is 1 if the check fails or the loss does not fall.
"""

from __future__ import annotations

import sys

import numpy as np

import s2sgrad

PARAMS = ("W1", "b1", "W2", "b2")


def loss(W1, b1, W2, b2, x, y):
    """Mean squared error of a one-hidden-layer tanh network on inputs x, targets y."""
    h = np.tanh(x @ W1 + b1)
    prediction = h @ W2 + b2
    error = prediction - y
    return np.mean(error * error)


# The gradient of `loss` with respect to the weights; the data x, y are just inputs.
loss_gradient = s2sgrad.grad(loss, wrt=PARAMS)


def make_data(rng: np.random.Generator, n: int = 128, d: int = 3):
    """A smooth nonlinear target with a little noise: y = sin(x @ w) + 0.5 * x_0^2 + noise."""
    x = rng.normal(size=(n, d))
    w = rng.normal(size=(d, 1))
    y = np.sin(x @ w) + 0.5 * x[:, :1] ** 2 + 0.05 * rng.normal(size=(n, 1))
    return x, y


def init_params(rng: np.random.Generator, d: int = 3, hidden: int = 16) -> dict:
    return {
        "W1": rng.normal(scale=1.0 / np.sqrt(d), size=(d, hidden)),
        "b1": np.zeros(hidden),
        "W2": rng.normal(scale=1.0 / np.sqrt(hidden), size=(hidden, 1)),
        "b2": np.zeros(1),
    }


def train(params: dict, x, y, steps: int = 300, learning_rate: float = 0.1) -> list[float]:
    """Plain gradient descent; returns the loss before each logged step and at the end."""
    history = []
    for step in range(steps + 1):
        if step % 50 == 0:
            value = float(loss(*(params[p] for p in PARAMS), x, y))
            history.append(value)
            print(f"step {step:4d}   loss {value:.6f}")
        if step == steps:
            break
        grads = loss_gradient(*(params[p] for p in PARAMS), x, y)
        for name, grad in zip(PARAMS, grads, strict=True):
            params[name] = params[name] - learning_rate * grad
    return history


def finite_difference_gradient(params: dict, x, y, eps: float = 1e-6) -> tuple:
    """Central differences of `loss` in every element of every parameter (float64)."""
    grads = []
    for name in PARAMS:
        grad = np.zeros_like(params[name])
        for index in np.ndindex(params[name].shape):
            values = []
            for sign in (+1.0, -1.0):
                shifted = dict(params)
                shifted[name] = params[name].copy()
                shifted[name][index] += sign * eps
                values.append(loss(*(shifted[p] for p in PARAMS), x, y))
            grad[index] = (values[0] - values[1]) / (2 * eps)
        grads.append(grad)
    return tuple(grads)


def check_gradient(params: dict, x, y, tolerance: float = 1e-6) -> bool:
    """Compare s2sgrad's gradient with finite differences, relative to the gradient's size."""
    exact = loss_gradient(*(params[p] for p in PARAMS), x, y)
    approx = finite_difference_gradient(params, x, y)
    ok = True
    for name, g, fd in zip(PARAMS, exact, approx, strict=True):
        if np.shape(g) != np.shape(fd):
            print(f"  {name}: gradient shape {np.shape(g)}, parameter shape {np.shape(fd)}  FAIL")
            ok = False
            continue
        error = np.max(np.abs(g - fd)) / max(np.max(np.abs(fd)), 1e-12)
        status = "ok" if error < tolerance else "FAIL"
        print(f"  {name:>2}: max relative difference {error:.2e}  {status}")
        ok = ok and error < tolerance
    return ok


def main() -> int:
    rng = np.random.default_rng(0)
    x, y = make_data(rng)
    params = init_params(rng)

    print("gradient descent on a 3-16-1 tanh network, 128 samples")
    history = train(params, x, y)
    learned = history[-1] < 0.5 * history[0]
    print(f"loss {history[0]:.4f} -> {history[-1]:.4f}" + ("" if learned else "  (did not fall!)"))

    print("gradient check against central finite differences:")
    ok = check_gradient(params, x, y)
    print("gradient check passed" if ok else "gradient check FAILED")
    return 0 if ok and learned else 1


if __name__ == "__main__":
    sys.exit(main())
