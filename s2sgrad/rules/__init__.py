"""Derivative rules: the registry and the built-in rule modules that fill it.

Importing this package registers every built-in rule. The rule modules follow NumPy's
families, one docs section each: ``elementwise``, ``reductions``, ``scans``, ``shape``,
``joins``, ``indexing``, ``linalg``, ``decompositions``, ``nondiff`` (zero derivatives)
and ``special`` (scipy.special, only where SciPy is installed). The cache key hashes
every file of the package, these included, so a changed built-in template never
reuses a module generated with the old one; nothing needs bumping by hand.
"""

from s2sgrad.rules import (  # noqa: F401
    core,
    decompositions,
    elementwise,
    indexing,
    joins,
    linalg,
    nondiff,
    reductions,
    scans,
    shape,
)
from s2sgrad.rules.registry import (
    all_rules,
    defjvp,
    deflinear,
    defvjp,
    lookup,
    nondifferentiable,
    restrict,
)

# SciPy is optional: its rules exist when it is installed (a function calling
# scipy.special needs it anyway), and s2sgrad runs without it.
try:
    import scipy.special  # noqa: F401
except ImportError:
    pass
else:
    from s2sgrad.rules import special  # noqa: F401

__all__ = [
    "all_rules",
    "deflinear",
    "defjvp",
    "defvjp",
    "lookup",
    "nondifferentiable",
    "restrict",
]
