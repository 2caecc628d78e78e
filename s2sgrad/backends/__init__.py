"""Backends: the array libraries generated code targets, one ``Backend`` object each.

Everything that differs between backends is a field or method here, so the rest of
s2sgrad asks the backend instead of comparing its name: how generated code names its
array module and where its helpers come from (``codegen``), how a compilation's
functions are lowered (``pipeline``: NumPy prints them as they are, JAX rewrites
control flow into ``lax`` combinators), how a generated function is called (JAX:
jitted), and which library versions the cache key holds. The protocol is
``base.Backend``; each backend is one module or package here (``numpy``, ``jax/``), and
adding one means that, plus its entry in ``BACKENDS`` below.

The JAX backend's modules are imported only when it is used: the NumPy path never
imports JAX (seconds of start-up).
"""

from __future__ import annotations

import functools

from s2sgrad.backends.base import RUNTIME_MODULE, Backend
from s2sgrad.backends.jax import JAX, JAX_CONTROL_NAMES, JAX_MASKED_NAMES
from s2sgrad.backends.numpy import NUMPY

__all__ = [
    "Backend",
    "BACKENDS",
    "JAX",
    "JAX_CONTROL_NAMES",
    "JAX_MASKED_NAMES",
    "NUMPY",
    "RUNTIME_MODULE",
    "get",
    "helper_modules",
]

#: Every backend by name: what ``backend=`` and ``--backend`` accept.
BACKENDS: dict[str, Backend] = {b.name: b for b in (NUMPY, JAX)}


def get(backend: str | Backend) -> Backend:
    """The backend named ``backend`` (a ``Backend`` is returned as is)."""
    if isinstance(backend, Backend):
        return backend
    from s2sgrad.errors import UsageError

    try:
        return BACKENDS[backend]
    except (KeyError, TypeError):
        raise UsageError(
            f"backend must be one of {tuple(BACKENDS)}, not {backend!r}",
            hint="s2sgrad generates code for these array libraries only",
        ) from None


@functools.cache
def helper_modules() -> frozenset[str]:
    """Every module a backend's generated code imports helpers from (the registry is fixed,
    and codegen asks once per printed reference)."""
    return frozenset(m for b in BACKENDS.values() for m in b.runtime_modules.values())


def helper_module_of(value: object) -> str | None:
    """The module generated code imports ``value`` from, if it is a runtime helper: a
    helper of a family module of ``s2sgrad.runtime`` is imported from the package."""
    module = getattr(value, "__module__", None)
    if not isinstance(module, str):
        return None
    for candidate in helper_modules():
        if module == candidate or module.startswith(candidate + "."):
            return candidate
    return None
