"""Derivative rules: the registry and the built-in rule modules that fill it.

Importing this package registers every built-in rule (the ``elementwise``,
``reductions``, ``shape``, ``linalg`` and ``nondiff`` modules register theirs
when imported; ``special`` only where SciPy is installed). ``RULESET_VERSION``
is part of every cache key: bump it whenever a built-in template changes, so
cached derivative modules generated with the old template are not reused.
"""

from s2sgrad.rules import (  # noqa: F401
    decompositions,
    elementwise,
    indexing,
    linalg,
    nondiff,
    reductions,
    scans,
    sequences,
    shape,
)
from s2sgrad.rules.registry import all_rules, defjvp, defvjp, lookup, nondifferentiable

# SciPy is optional: its rules exist when it is installed (a function calling
# scipy.special needs it anyway), and s2sgrad runs without it.
try:
    import scipy.special  # noqa: F401
except ImportError:
    pass
else:
    from s2sgrad.rules import special  # noqa: F401

RULESET_VERSION = "5"

__all__ = ["RULESET_VERSION", "all_rules", "defjvp", "defvjp", "lookup", "nondifferentiable"]
