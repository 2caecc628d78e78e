"""Benchmark problems: each module holds the NumPy objective as a scientist writes it
(what s2sgrad differentiates), its inputs, and what the peers need (see benchmarks.problem).

``NAMES`` lists the modules of the side-by-side suite (``python -m benchmarks``); each
defines ``PROBLEM``. ``kepler`` serves the JAX-loops benchmark only.
"""

from __future__ import annotations

import importlib

NAMES = (
    "gmm",
    "ba",
    "lstm",
    "rk4",
    "heat",
    "rosenbrock",
    "rosenbrock_loop",
    "mlp",
    # In the style of the GradBench suite's problems of the same names:
    "kmeans",
    "llsq",
    "lse",
    "ode",
)


def load(name: str):
    """The ``PROBLEM`` of module ``benchmarks.problems.<name>``."""
    return importlib.import_module(f"{__name__}.{name}").PROBLEM
