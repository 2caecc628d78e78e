"""Train a small neural network whose parameters live in a dict, on NumPy and on JAX side by side.

What this example teaches:

* Parameters can be a dict of arrays, ``params = {"W1": ..., "b1": ...,
  "W2": ..., "b2": ...}``, as in JAX code: ``s2sgrad.grad(loss)(params, x, y)``
  returns a dict with the same keys and shapes, so an optimizer step is a
  dict comprehension. ``s2sgrad.value_and_grad(loss)`` gives the loss for
  the training curve from the same evaluation. See the generated code with::

      s2sgrad inspect examples/mlp_training.py:loss --wrt params

* The same function differentiated for the JAX backend,
  ``s2sgrad.value_and_grad(loss, backend="jax")``, runs on XLA; it takes NumPy
  or jax arrays and returns jax arrays, and it composes with ``jax.jit``: the
  whole training step below is one compiled function. With
  ``jax_enable_x64`` both backends compute in float64 and give the same loss
  curve, step for step. Add ``--backend jax`` to the command above to read
  that version.
* How to trust a gradient: compare a few entries of every key with central
  finite differences, and the whole dict with ``jax.grad`` of a "jnp twin" of
  the loss: the same function with ``np`` bound to ``jax.numpy``.

The data are noisy samples of a 1-D function, fitted by a 1-32-1 tanh network
with gradient descent with momentum.

Run it with ``python examples/mlp_training.py``. It prints the two loss
curves, then the gradient checks; the exit status is 1 if a check fails, the
loss does not fall or the backends disagree. Without JAX installed it prints a
note and runs the NumPy part only.
"""

from __future__ import annotations

import sys
import types
from functools import partial

import numpy as np

import s2sgrad

try:
    import jax
    import jax.numpy as jnp
except ImportError:  # the NumPy part runs without JAX
    jax = None
else:
    jax.config.update("jax_enable_x64", True)

STEPS = 400
LEARNING_RATE = 0.05
MOMENTUM = 0.9
HIDDEN = 32


def predict(params, x):
    """A one-hidden-layer tanh network: inputs (n, 1) to outputs (n, 1)."""
    h = np.tanh(x @ params["W1"] + params["b1"])
    return h @ params["W2"] + params["b2"]


def loss(params, x, y):
    """Mean squared error of the network on inputs x and targets y."""
    error = predict(params, x) - y
    return np.mean(error**2)


def make_data(rng: np.random.Generator, n: int = 64):
    """y = sin(3 x) + x / 2 on [-1.5, 1.5], with a little noise."""
    x = np.linspace(-1.5, 1.5, n)[:, None]
    y = np.sin(3.0 * x) + 0.5 * x + 0.05 * rng.normal(size=x.shape)
    return x, y


def init_params(rng: np.random.Generator) -> dict:
    return {
        "W1": rng.normal(scale=2.0, size=(1, HIDDEN)),
        "b1": rng.normal(scale=1.0, size=HIDDEN),
        "W2": rng.normal(scale=1.0 / np.sqrt(HIDDEN), size=(HIDDEN, 1)),
        "b2": np.zeros(1),
    }


def momentum_step(value_and_gradient, params: dict, velocity: dict, x, y):
    """One step of gradient descent with momentum; also returns the loss before the step.

    Written once for both backends: with ``backend="jax"`` the arrays are jax
    arrays, but the update is the same arithmetic.
    """
    value, grads = value_and_gradient(params, x, y)  # grads: a dict with the keys of params
    velocity = {k: MOMENTUM * velocity[k] - LEARNING_RATE * grads[k] for k in params}
    params = {k: params[k] + velocity[k] for k in params}
    return value, params, velocity


def train(step, params: dict, x, y) -> list[float]:
    """Runs ``STEPS`` steps; returns the loss before every step and at the end."""
    velocity = {k: np.zeros(np.shape(v)) for k, v in params.items()}
    history = []
    for _ in range(STEPS):
        value, params, velocity = step(params, velocity, x, y)
        history.append(float(value))
    history.append(float(step(params, velocity, x, y)[0]))
    return history


def finite_difference_check(gradient: dict, params: dict, x, y, rng, per_key: int = 3) -> bool:
    """Compare ``per_key`` random entries of every key with central differences (float64)."""
    ok = True
    eps = 1e-6
    for name, value in params.items():
        errors = []
        for flat in rng.choice(value.size, size=min(per_key, value.size), replace=False):
            index = np.unravel_index(flat, value.shape)
            values = []
            for sign in (+1.0, -1.0):
                shifted = dict(params)
                shifted[name] = value.copy()
                shifted[name][index] += sign * eps
                values.append(loss(shifted, x, y))
            approx = (values[0] - values[1]) / (2 * eps)
            errors.append(abs(gradient[name][index] - approx) / max(abs(approx), 1e-8))
        passed = max(errors) < 1e-6
        ok = ok and passed
        print(
            f"  {name:>2}: {len(errors)} entries, max relative difference {max(errors):.2e}"
            f"  {'ok' if passed else 'FAIL'}"
        )
    return ok


def max_relative_difference(a: dict, b: dict) -> float:
    return max(
        float(
            np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k]))) / max(np.max(np.abs(b[k])), 1e-12)
        )
        for k in b
    )


def jnp_twin():
    """`loss` with `np` bound to jax.numpy: the same code objects, new globals (an independent
    reference for jax.grad, which cannot differentiate NumPy code)."""
    twin_globals = dict(loss.__globals__, np=jnp)
    twin_globals["predict"] = types.FunctionType(predict.__code__, twin_globals)
    return types.FunctionType(loss.__code__, twin_globals)


def report(what: str, error: float, limit: float) -> bool:
    print(f"  {what}: max relative difference {error:.2e}  {'ok' if error < limit else 'FAIL'}")
    return error < limit


def main() -> int:
    rng = np.random.default_rng(0)
    x, y = make_data(rng)
    initial = init_params(rng)
    print(f"a 1-{HIDDEN}-1 tanh network, {len(x)} samples, {STEPS} steps of momentum descent")

    # Both w.r.t. the first argument, the dict `params`: the gradient is a dict too.
    gradient = s2sgrad.grad(loss)
    value_and_gradient = s2sgrad.value_and_grad(loss)
    curves = {"NumPy backend": train(partial(momentum_step, value_and_gradient), initial, x, y)}

    if jax is None:
        print("JAX is not installed: training on the NumPy backend only")
    else:
        jax_value_and_gradient = s2sgrad.value_and_grad(loss, backend="jax")
        # It composes with jax.jit: here the whole training step is compiled once.
        jax_step = jax.jit(partial(momentum_step, jax_value_and_gradient))
        curves["JAX backend"] = train(jax_step, initial, x, y)

    print(f"{'step':>6}" + "".join(f"{name:>18}" for name in curves))
    for step in range(0, STEPS + 1, 50):
        print(f"{step:6d}" + "".join(f"{curve[step]:18.10f}" for curve in curves.values()))
    first, last = curves["NumPy backend"][0], curves["NumPy backend"][-1]
    ok = last < 0.1 * first
    print(f"loss {first:.4f} -> {last:.4f}" + ("" if ok else " (did not fall!)"))
    if jax is not None:
        gap = float(np.max(np.abs(np.subtract(*curves.values()))))
        agree = gap < 1e-8
        ok = ok and agree
        print(f"the two curves differ by at most {gap:.1e}  {'ok' if agree else 'FAIL'}")

    # The checks, at the initial parameters (where the gradient is large).
    grads = gradient(initial, x, y)
    print("gradient check against central finite differences:")
    ok = finite_difference_check(grads, initial, x, y, rng) and ok
    if jax is not None:
        print("gradient check against jax.grad of the jnp twin of the loss:")
        # One jax.jit for both, so XLA compiles once.
        jax_grads, reference = jax.jit(
            lambda p, x, y: (
                s2sgrad.grad(loss, backend="jax")(p, x, y),
                jax.grad(jnp_twin())(p, x, y),
            )
        )(initial, x, y)
        ok = report("NumPy backend", max_relative_difference(grads, reference), 1e-10) and ok
        ok = report("JAX backend", max_relative_difference(jax_grads, reference), 1e-10) and ok
    print("all checks passed" if ok else "a check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
