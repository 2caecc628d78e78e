"""One runtime written once: the NumPy runtime's helpers, run with another array namespace.

``s2sgrad.runtime`` (one module per family) writes every helper that both backends share against ``xp``, the
array namespace (NumPy there), and uses ``np`` only for host-side work: shapes, axes,
Python values. A backend's runtime module defines what truly differs (in-place updates,
scatters, anything NumPy does with views), sets its own ``xp`` (``jax.numpy``), and then
calls ``adopt_shared_helpers``, which places into that module a copy of every other
helper whose global names resolve in the backend's module. The copies share the
helpers' code (a debugger steps through ``s2sgrad/runtime/``'s lines), and a shared helper
that calls another helper calls the backend's version where it has one.

Host-side helpers (marked ``@_host`` or ``@foldable`` in the runtime: shapes, axes,
index layouts, computed with NumPy from static values) are not copied: every backend
uses the NumPy ones themselves, and so does every helper they call.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any


def adopt_shared_helpers(families: Iterable[types.ModuleType], namespace: dict[str, Any]) -> None:
    """Copy into ``namespace`` (a backend runtime module's globals) each function of the
    runtime's ``families`` (``s2sgrad.runtime.FAMILIES``, plumbing first) that the
    namespace does not define, bound to the namespace's globals.
    A name the module imported from ``shared`` (so that readers and linters see where
    it comes from) counts as not defined: the import is replaced by the copy.

    Every other global of ``shared`` that the namespace lacks (constants, ``foldable``
    helpers, the modules it imports) is added as it is, so the copies find the names
    they read; ``xp`` and the backend's own helpers are the namespace's.
    """
    for shared in families:
        _adopt(shared, namespace)


def _adopt(shared: types.ModuleType, namespace: dict[str, Any]) -> None:
    module = namespace["__name__"]
    for name, value in vars(shared).items():
        if name.startswith("__") or namespace.get(name, value) is not value:
            continue  # the backend's own (an import of the shared one is replaced)
        if not _is_shared_helper(value, shared):
            namespace[name] = value
            continue
        copy = types.FunctionType(
            value.__code__, namespace, value.__name__, value.__defaults__, value.__closure__
        )
        copy.__kwdefaults__ = value.__kwdefaults__
        copy.__dict__.update(value.__dict__)
        copy.__doc__ = value.__doc__
        copy.__annotations__ = value.__annotations__
        copy.__qualname__ = value.__qualname__
        copy.__module__ = module
        namespace[name] = copy


def _is_shared_helper(value: Any, shared: types.ModuleType) -> bool:
    """A function defined in ``shared`` that computes with arrays (not a host-side one)."""
    return (
        isinstance(value, types.FunctionType)
        and value.__module__ == shared.__name__
        and not getattr(value, "__s2sgrad_host__", False)
    )
