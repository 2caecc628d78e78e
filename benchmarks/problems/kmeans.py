"""k-means: the clustering cost of a set of centers, in the style of GradBench's ``kmeans``.

``kmeans_cost`` is the sum over points of the squared distance to the nearest center,
written with broadcasting (every point against every center) and a minimum over the
centers, differentiated with respect to the centers: the gradient an optimizer of the
centers (or Newton's method, as GradBench's reference uses) needs. The minimum makes it
piecewise smooth; at random inputs no point is equidistant from two centers. Sizes:
n = 10,000 points in d = 8 dimensions, k = 20 centers (full); 20 points, 2 dimensions, 3
centers (smoke). ``hand_gradient``: each center pulls on the points assigned to it.
"""

from __future__ import annotations

import numpy as np

from benchmarks.problem import Case, Problem


def inputs(n: int, d: int, k: int) -> tuple:
    rng = np.random.default_rng(0)
    points = rng.standard_normal((n, d))
    centers = rng.standard_normal((k, d))
    return centers, points


def kmeans_cost(centers, points):
    diff = points[:, None, :] - centers[None, :, :]
    distances = np.sum(diff**2, axis=2)
    return np.sum(np.min(distances, axis=1))


def hand_gradient(centers, points):
    """d cost / d centers: 2 (c_k - x_i) summed over the points nearest to c_k."""
    distances = np.sum((points[:, None, :] - centers[None, :, :]) ** 2, axis=2)
    nearest = np.argmin(distances, axis=1)
    counts = np.bincount(nearest, minlength=centers.shape[0])
    sums = np.zeros_like(centers)
    np.add.at(sums, nearest, points)
    return (2.0 * (counts[:, None] * centers - sums),)


def _cases(size: str) -> list[Case]:
    if size == "smoke":
        return [Case("n=20 d=2 k=3", inputs(20, 2, 3))]
    return [Case("n=10000 d=8 k=20", inputs(10_000, 8, 20))]


PROBLEM = Problem(
    name="k-means (GradBench)",
    objective=kmeans_cost,
    wrt=("centers",),
    cases=_cases,
    hand_gradient=hand_gradient,
    vectorized=True,
)
