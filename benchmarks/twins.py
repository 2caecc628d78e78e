"""The same objective on another array library: its source, with ``np`` bound to another module.

autograd and JAX differentiate code written against ``autograd.numpy`` / ``jax.numpy``.
Rather than keep a hand-copied twin of every objective (which could drift from the
source s2sgrad reads), ``rebind(fn, jnp)`` re-creates ``fn`` from its own code object
with the module's ``np`` replaced, and so every function of that module it calls. An
objective that updates arrays in place cannot be rebound this way (JAX arrays are
immutable, autograd does not trace item assignment); its problem module then provides
a hand-written twin instead.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any


def rebind(fn: Callable, numpy_module: Any, name: str = "np", **replace: Callable) -> Callable:
    """``fn`` with the global ``name`` of its module bound to ``numpy_module``.

    Every plain function of the same module is re-created against the new globals too,
    so helpers called by ``fn`` use ``numpy_module`` as well. ``replace`` swaps module
    functions for others of the same module (``predict=predict_immutable``), also rebound.
    """
    old = fn.__globals__
    new: dict[str, Any] = dict(old)
    new[name] = numpy_module
    for key, value in old.items():
        value = replace.get(key, value)
        if isinstance(value, types.FunctionType) and value.__globals__ is old:
            new[key] = _copy(value, new)
    return new[fn.__name__] if new.get(fn.__name__) is not None else _copy(fn, new)


def _copy(fn: types.FunctionType, globals_: dict[str, Any]) -> types.FunctionType:
    copy = types.FunctionType(fn.__code__, globals_, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__ = fn.__qualname__
    copy.__doc__ = fn.__doc__
    return copy
