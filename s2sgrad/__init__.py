"""s2sgrad: source-to-source automatic differentiation for NumPy-style Python.

``grad``, ``value_and_grad``, ``jvp`` and ``vjp`` compile derivative source
code from the user's function (see ``s2sgrad inspect``), cache it on disk as an
importable module, and run it with NumPy (or JAX). They compose: a derivative is
code s2sgrad differentiates again (``hessian``, ``hvp``, ``jacfwd``, ``jacrev``).
"""

from s2sgrad._version import __version__
from s2sgrad.api import derivative_source, grad, jvp, value_and_grad, vjp
from s2sgrad.errors import (
    HigherOrderError,
    LoopBoundExceeded,
    NeedsConcreteValueError,
    NoDerivativeRuleError,
    NonDifferentiableError,
    RandomDrawError,
    S2SGradError,
    SourceUnavailableError,
    StaleSourceError,
    UnsupportedSyntaxError,
    UsageError,
)
from s2sgrad.jacobians import hessian, hvp, jacfwd, jacobian, jacrev
from s2sgrad.rules import defjvp, deflinear, defvjp, nondifferentiable

__all__ = [
    "__version__",
    "grad",
    "value_and_grad",
    "jvp",
    "vjp",
    "jacfwd",
    "jacrev",
    "jacobian",
    "hessian",
    "hvp",
    "derivative_source",
    "deflinear",
    "defjvp",
    "defvjp",
    "nondifferentiable",
    "S2SGradError",
    "UnsupportedSyntaxError",
    "NoDerivativeRuleError",
    "NeedsConcreteValueError",
    "NonDifferentiableError",
    "SourceUnavailableError",
    "StaleSourceError",
    "UsageError",
    "HigherOrderError",
    "RandomDrawError",
    "LoopBoundExceeded",
]
