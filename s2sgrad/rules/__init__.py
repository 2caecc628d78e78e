"""Derivative rules: the registry and the built-in rule modules that fill it.

Importing this package registers every built-in rule (the ``elementwise``,
``reductions``, ``shape``, ``linalg`` and ``nondiff`` modules register theirs
when imported). ``RULESET_VERSION`` is part of every cache key: bump it
whenever a built-in template changes, so cached derivative modules generated
with the old template are not reused.
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
    special,
)
from s2sgrad.rules.registry import all_rules, defjvp, defvjp, lookup, nondifferentiable

RULESET_VERSION = "4"

__all__ = ["RULESET_VERSION", "all_rules", "defjvp", "defvjp", "lookup", "nondifferentiable"]
