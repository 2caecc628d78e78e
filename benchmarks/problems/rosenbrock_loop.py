"""The Rosenbrock function as a scalar Python loop over the index.

Same function as ``rosenbrock``, sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2, written
the way it is written before anyone vectorizes it: a running total over ``i`` with one
scalar term per iteration, differentiated with respect to ``x``. The trip count comes from
the array's shape (static under jit). Sizes: n = 100 (full), n = 5 (smoke). This is the
per-operation-overhead problem: every term is a handful of scalar operations.

The peers get the rebound twin of the same source. Under ``jax.jit(jax.grad(...))`` the
jnp twin's Python loop unrolls into 99 copies of the body; at n = 100 that traces and
compiles in about 5-8 s on a 2-core CPU (well under the 30 s after which a hand-rolled
``lax.fori_loop`` twin would be warranted), so no hand twin is given: the first-call time
is part of what the suite shows. ``hand_gradient`` is the vectorized textbook gradient.
"""

from __future__ import annotations

import numpy as np

from benchmarks.problem import Case, Problem
from benchmarks.problems.rosenbrock import hand_gradient  # the same function, vectorized


def inputs(n: int) -> tuple:
    """Arguments of ``rosenbrock``: a point scattered around the minimum at all ones."""
    rng = np.random.default_rng(0)
    return (1.0 + 0.5 * rng.standard_normal(n),)


def rosenbrock(x):
    n = x.shape[0]
    total = 0.0
    for i in range(n - 1):
        total = total + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return total


def _cases(size: str) -> list[Case]:
    n = 5 if size == "smoke" else 100
    return [Case(f"n={n}", inputs(n))]


PROBLEM = Problem(
    name="Rosenbrock, scalar loop",
    objective=rosenbrock,
    wrt=("x",),
    cases=_cases,
    hand_gradient=hand_gradient,
    vectorized=False,
)
