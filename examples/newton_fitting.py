"""Second order: a robust curve fit by a trust-region Newton method with
``hessp=s2sgrad.hvp(loss)``, then error bars from the Hessian (a Laplace approximation).

What this example teaches:

* ``s2sgrad.hvp(loss)(params, ..., v)`` is the Hessian of ``loss`` times ``v``, computed
  in one forward-over-reverse pass: s2sgrad differentiates (in forward mode) the
  reverse-mode code it wrote for the gradient. The Hessian itself is never formed,
  which is what ``scipy.optimize.minimize(method="Newton-CG", hessp=...)`` and
  ``"trust-krylov"`` want (SciPy passes ``hessp(x, p, *args)``: a lambda puts ``p``
  last). It goes through the loss's ``for`` loop and its
  ``if``/``else`` (a Huber loss, robust to the outliers in the data).
* ``s2sgrad.hessian(loss)`` is the whole Hessian (``jacfwd`` of ``grad``). At the
  optimum of a negative log-likelihood its inverse approximates the covariance of
  the parameters (the Laplace approximation): error bars for the fit.
* How to trust a second derivative: compare ``hvp`` with JAX's ``jvp`` of ``grad`` on
  a ``jax.numpy`` twin of the loss when JAX is installed, and with central
  differences of s2sgrad's gradient in any case.

The model is logistic growth, ``N(t) = K / (1 + exp(-r (t - t0)))``, fitted to 40
noisy counts of which 4 are corrupted. Parameters: carrying capacity ``K``, rate
``r`` and midpoint ``t0``. Run it with ``python examples/newton_cg_fitting.py``;
the exit status is 1 if a check fails or the fit misses the true parameters.
"""

from __future__ import annotations

import sys

import numpy as np

try:
    from scipy.optimize import minimize
except ImportError:
    sys.exit('this example needs SciPy: pip install -e ".[examples]"')

import s2sgrad

NAMES = ("K", "r", "t0")
TRUE = np.array([100.0, 0.8, 6.0])
DELTA = 4.0  # the Huber loss is quadratic within DELTA of the data, linear beyond


def growth(params, t):
    K, r, t0 = params[0], params[1], params[2]
    return K / (1.0 + np.exp(-r * (t - t0)))


def loss(params, t, counts, sigma):
    """Huber loss of the residuals, in units of the noise: a robust negative log-likelihood."""
    predicted = growth(params, t)
    total = 0.0
    for i in range(len(t)):
        z = (predicted[i] - counts[i]) / sigma
        if abs(z) <= DELTA:
            total = total + 0.5 * z**2
        else:
            total = total + DELTA * (abs(z) - 0.5 * DELTA)
    return total


def data(seed: int = 3):
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 12.0, 40)
    sigma = 2.0
    counts = growth(TRUE, t) + rng.normal(0.0, sigma, t.size)
    counts[[5, 17, 26, 33]] += np.array([35.0, -40.0, 30.0, -45.0])  # corrupted points
    return t, counts, sigma


def check_hvp(params, args) -> bool:
    """hvp against central differences of the gradient, and against JAX where installed."""
    v = np.array([0.3, -1.0, 0.5])
    got = s2sgrad.hvp(loss)(params, *args, v)
    gradient = s2sgrad.grad(loss)
    h = 1e-5
    differences = (gradient(params + h * v, *args) - gradient(params - h * v, *args)) / (2 * h)
    ok = np.allclose(got, differences, rtol=1e-5, atol=1e-6)
    print(
        f"hvp vs central differences of the gradient: max |diff| = "
        f"{np.max(np.abs(got - differences)):.2e}  {'ok' if ok else 'FAILED'}"
    )
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        print("hvp vs JAX: skipped (JAX is not installed)")
        return ok
    jax.config.update("jax_enable_x64", True)

    def twin(params, t, counts, sigma):
        K, r, t0 = params[0], params[1], params[2]
        z = (K / (1.0 + jnp.exp(-r * (t - t0))) - counts) / sigma
        return jnp.sum(
            jnp.where(jnp.abs(z) <= DELTA, 0.5 * z**2, DELTA * (jnp.abs(z) - 0.5 * DELTA))
        )

    want = jax.jvp(lambda p: jax.grad(twin)(p, *args), (params,), (v,))[1]
    same = np.allclose(got, np.asarray(want), rtol=1e-10, atol=1e-10)
    print(
        f"hvp vs jax.jvp(jax.grad(twin)):             max |diff| = "
        f"{np.max(np.abs(got - np.asarray(want))):.2e}  {'ok' if same else 'FAILED'}"
    )
    return ok and same


def main() -> int:
    t, counts, sigma = data()
    args = (t, counts, sigma)
    start = np.array([80.0, 0.5, 5.0])
    ok = check_hvp(start, args)

    value_and_gradient = s2sgrad.value_and_grad(loss)
    hvp = s2sgrad.hvp(loss)
    newton = minimize(
        value_and_gradient,
        start,
        args=args,
        jac=True,
        # SciPy calls hessp(x, p, *args); s2sgrad's hvp takes loss's arguments, then v.
        hessp=lambda x, p, *args: hvp(x, *args, p),
        method="trust-krylov",
    )
    quasi = minimize(value_and_gradient, start, args=args, jac=True, method="BFGS")
    print(
        f"\ntrust-krylov, hessp=s2sgrad.hvp(loss): {newton.nit} iterations, "
        f"{newton.nfev} loss evaluations, {newton.nhev} Hessian-vector products"
    )
    print(
        f"BFGS (gradient only), for comparison:  {quasi.nit} iterations, "
        f"{quasi.nfev} loss evaluations"
    )

    hessian = s2sgrad.hessian(loss)(newton.x, *args)
    covariance = np.linalg.inv(hessian)
    errors = np.sqrt(np.diag(covariance))
    print("\nfit (Laplace approximation: error bars from the inverse Hessian at the optimum)")
    print(f"{'':4} {'true':>8} {'fitted':>10} {'+/-':>8}")
    within = True
    for name, true, fitted, error in zip(NAMES, TRUE, newton.x, errors):
        print(f"{name:4} {true:8.3f} {fitted:10.3f} {error:8.3f}")
        within &= abs(fitted - true) < 4 * error
    symmetric = np.allclose(hessian, hessian.T, rtol=1e-10)
    positive = bool(np.all(np.linalg.eigvalsh(hessian) > 0))
    print(
        f"\nHessian symmetric: {symmetric}; positive definite: {positive}; "
        f"true parameters within 4 error bars: {within}"
    )
    return 0 if ok and newton.success and symmetric and positive and within else 1


if __name__ == "__main__":
    sys.exit(main())
