"""Log-sum-exp, in the style of GradBench's ``lse``.

``logsumexp`` is log(sum(exp(x))) written stably, as a scientist writes it: the maximum
subtracted before the exponentials and added back after. Its gradient is the softmax of
``x``; the maximum's own derivative cancels out, which a correct tool must get right (the
maximum is differentiated, not treated as a constant). Sizes: n = 10^5 and 10^6 (full),
n = 10 (smoke). ``hand_gradient`` is the softmax.
"""

from __future__ import annotations

import numpy as np

from benchmarks.problem import Case, Problem


def inputs(n: int) -> tuple:
    rng = np.random.default_rng(0)
    return (3.0 * rng.standard_normal(n),)


def logsumexp(x):
    top = np.max(x)
    return top + np.log(np.sum(np.exp(x - top)))


def hand_gradient(x):
    shares = np.exp(x - np.max(x))
    return (shares / np.sum(shares),)


def _cases(size: str) -> list[Case]:
    if size == "smoke":
        return [Case("n=10", inputs(10))]
    return [Case("n=1e5", inputs(10**5)), Case("n=1e6", inputs(10**6))]


PROBLEM = Problem(
    name="Log-sum-exp (GradBench)",
    objective=logsumexp,
    wrt=("x",),
    cases=_cases,
    hand_gradient=hand_gradient,
    vectorized=True,
)
