"""Backends: the array libraries generated code targets, one ``Backend`` object each.

Everything that differs between backends is a field or method here, so the rest of
s2sgrad asks the backend instead of comparing its name: how generated code names its
array module and where its helpers come from (``codegen``), how a compilation's
functions are lowered (``pipeline``: NumPy prints them as they are, JAX rewrites
control flow into ``lax`` combinators), how a generated function is called (JAX:
jitted), and which library versions the cache key holds. Adding a backend means one
``Backend`` here and the modules it names.

The JAX backend's modules are imported only when it is used: the NumPy path never
imports JAX (seconds of start-up).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# The names s2sgrad.jax_control exports, which generated JAX modules import. Listed here,
# not read from that module, so the NumPy backend never imports JAX (seconds of start-up);
# jax_control.__all__ is this list; tests/test_jax_backend.py checks each name is defined there.
JAX_CONTROL_NAMES = (
    "Range",
    "Tape",
    "LoopBoundExceeded",
    "if_else",
    "for_loop",
    "for_loop_recording",
    "replay",
    "raise_if_overflowed",
    "reversed_range",
    "traced_range",
    "recording",
    "while_loop",
    "while_recording",
)

#: The NumPy runtime: the helpers generated code imports, named as rules name them.
RUNTIME_MODULE = "s2sgrad.runtime"


@dataclass(frozen=True)
class Backend:
    """One array library generated code can target. The methods give NumPy's behaviour;
    a backend that differs overrides them (and imports its modules inside them)."""

    name: str
    #: How generated code names its array module, and the import that binds the name.
    array_alias: str
    array_import: str
    #: Where rules' helper modules come from: module a rule names -> module this backend
    #: imports instead (a backend's helpers keep the NumPy runtime's names).
    runtime_modules: Mapping[str, str]
    #: ``y[i] = v`` prints as ``y = y.at[i].set(v)``: the arrays are immutable.
    functional_updates: bool = False
    #: Libraries whose versions the generated code depends on (in the cache key).
    libraries: tuple[str, ...] = ("numpy",)
    #: A paragraph for the generated module's docstring ("" for none).
    header_note: str = ""
    #: The primal value comes from the generated forward code (so ``vjp`` works under a
    #: caller's ``jax.jit``, where the user's NumPy code would not), not from ``fun``.
    primal_from_generated_code: bool = False

    def spelling(self, numpy_spelling: Any) -> Any:
        """How this backend writes what NumPy code writes as ``numpy_spelling``
        (a ``codegen.Spelling``); raises ``codegen.NoJaxEquivalentError`` where it cannot."""
        return numpy_spelling

    def lower(self, compilation: Any) -> list:
        """The compilation's functions as this backend prints them."""
        return list(compilation.functions)

    def runner(self, entry: Callable, max_steps: int | None) -> Callable:
        """The generated function as the API calls it."""
        return entry

    def as_arrays(self, value: Any) -> Any:
        """``value`` with its leaves as this backend's arrays (what its users expect back)."""
        return value


@dataclass(frozen=True)
class _Jax(Backend):
    """JAX: control flow lowered to ``lax`` (``backends.jax``), code run under ``jax.jit``."""

    def spelling(self, numpy_spelling: Any) -> Any:
        from s2sgrad.backends.jax_spelling import spelling

        return spelling(numpy_spelling, self)

    def lower(self, compilation: Any) -> list:
        from s2sgrad.backends.jax import lower_compilation

        return lower_compilation(compilation)

    def runner(self, entry: Callable, max_steps: int | None) -> Callable:
        from s2sgrad import jax_api

        return lambda *args: jax_api.call(entry, args, max_steps)

    def as_arrays(self, value: Any) -> Any:
        from s2sgrad import jax_api

        return jax_api.as_arrays(value)


NUMPY = Backend(
    name="numpy",
    array_alias="np",
    array_import="import numpy as np",
    runtime_modules={RUNTIME_MODULE: RUNTIME_MODULE},
)

JAX = _Jax(
    name="jax",
    array_alias="jnp",
    array_import="import jax.numpy as jnp",
    runtime_modules={
        RUNTIME_MODULE: "s2sgrad.runtime_jax",
        "s2sgrad.jax_control": "s2sgrad.jax_control",
        "s2sgrad.runtime_jax": "s2sgrad.runtime_jax",
    },
    functional_updates=True,
    libraries=("numpy", "jax", "jaxlib"),
    header_note=(
        "Lowered for JAX: loops are lax.scan / lax.while_loop, traced ifs lax.cond "
        "(s2sgrad.jax_control)."
    ),
    primal_from_generated_code=True,
)

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


def helper_modules() -> frozenset[str]:
    """Every module a backend's generated code imports helpers from."""
    return frozenset(m for b in BACKENDS.values() for m in b.runtime_modules.values())
