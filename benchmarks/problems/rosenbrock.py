"""The Rosenbrock function, vectorized: one expression over slices of ``x``.

``rosenbrock`` is the classic chained test function of optimization,
sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2, written as a scientist writes it in
NumPy (shifted slices, no loop), differentiated with respect to ``x``. Sizes:
n = 10**3 and n = 10**6 (full: the second is memory-bound, where per-operation
overheads vanish and only the number of passes over the data counts), n = 10 (smoke).

No hand twins for the peers: the source rebinds to ``jax.numpy`` and ``autograd.numpy``
as it is. ``hand_gradient`` is the vectorized textbook gradient.
"""

from __future__ import annotations

import numpy as np

from benchmarks.problem import Case, Problem


def inputs(n: int) -> tuple:
    """Arguments of ``rosenbrock``: a point scattered around the minimum at all ones."""
    rng = np.random.default_rng(0)
    return (1.0 + 0.5 * rng.standard_normal(n),)


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def hand_gradient(x):
    """d rosenbrock / dx by hand: each term touches x_i and x_{i+1}."""
    head, tail = x[:-1], x[1:]
    residual = 200.0 * (tail - head**2)
    g = np.zeros_like(x)
    g[:-1] = -2.0 * head * residual - 2.0 * (1.0 - head)
    g[1:] += residual
    return (g,)


def _cases(size: str) -> list[Case]:
    if size == "smoke":
        return [Case("n=10", inputs(10))]
    return [Case("n=1e3", inputs(10**3)), Case("n=1e6", inputs(10**6))]


PROBLEM = Problem(
    name="Rosenbrock",
    objective=rosenbrock,
    wrt=("x",),
    cases=_cases,
    hand_gradient=hand_gradient,
    vectorized=True,
)
