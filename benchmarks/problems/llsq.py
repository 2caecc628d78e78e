"""Linear least squares, in the style of GradBench's ``llsq``.

``llsq_loss`` is half the squared residual of a linear model, 0.5 ||A x - b||^2, the
textbook loss of a regression, differentiated with respect to the coefficients ``x``.
Sizes: a 4,000 x 400 design matrix (full), 6 x 3 (smoke). ``hand_gradient`` is the normal
equations' A^T (A x - b): two matrix-vector products, what any gradient should cost.
"""

from __future__ import annotations

import numpy as np

from benchmarks.problem import Case, Problem


def inputs(m: int, n: int) -> tuple:
    rng = np.random.default_rng(0)
    design = rng.standard_normal((m, n))
    targets = rng.standard_normal(m)
    coefficients = rng.standard_normal(n) / np.sqrt(n)
    return coefficients, design, targets


def llsq_loss(x, A, b):
    residual = A @ x - b
    return 0.5 * np.sum(residual**2)


def hand_gradient(x, A, b):
    return (A.T @ (A @ x - b),)


def _cases(size: str) -> list[Case]:
    if size == "smoke":
        return [Case("6 x 3", inputs(6, 3))]
    return [Case("4000 x 400", inputs(4000, 400))]


PROBLEM = Problem(
    name="Linear least squares (GradBench)",
    objective=llsq_loss,
    wrt=("x",),
    cases=_cases,
    hand_gradient=hand_gradient,
    vectorized=True,
)
