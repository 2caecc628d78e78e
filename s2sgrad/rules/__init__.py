"""Derivative rules: the registry and the built-in rule modules that fill it.

Importing this package registers every built-in rule. The rule modules follow NumPy's
families, one docs section each: ``elementwise``, ``reductions``, ``scans``, ``shape``,
``joins``, ``indexing``, ``linalg``, ``decompositions``, ``nondiff`` (zero derivatives)
and ``special`` (scipy.special, registered once SciPy is imported). The cache key hashes
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

# SciPy is optional, and importing it costs a third of a second: its rules (``special``)
# are registered once the user's code has imported scipy.special (see registry.lookup).

__all__ = [
    "all_rules",
    "deflinear",
    "defjvp",
    "defvjp",
    "lookup",
    "nondifferentiable",
    "restrict",
]
