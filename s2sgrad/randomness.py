"""Which callables draw random numbers.

Derivative code reruns parts of the primal: forward mode once per input element,
reverse mode in the backward sweep of called functions and when ``vjp_fn`` is called.
Each rerun of a random draw would draw again, so the value and the derivative would
come from different numbers; the frontend refuses such calls (``RandomDrawError``)
with the help of these predicates.
"""

from __future__ import annotations

import dis
import random
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from s2sgrad import running

_RNG_TYPES = (random.Random, np.random.RandomState, np.random.Generator, np.random.BitGenerator)

# Methods of the generators that draw or reseed (not also methods of arrays).
RNG_METHODS = frozenset(
    name
    for cls in (random.Random, np.random.RandomState, np.random.Generator)
    for name in dir(cls)
    if not name.startswith("_")
) - frozenset(dir(np.ndarray))

RANDOM_HINT = (
    "draw the random numbers outside the differentiated function and pass them in as an "
    "argument (as with JAX's explicit keys)"
)


def is_generator(value: Any) -> bool:
    return isinstance(value, _RNG_TYPES)


def random_draw(value: Any) -> str | None:
    """A description when calling ``value`` draws random numbers (or seeds or makes a
    generator): ``np.random.*``, a generator's methods, the ``random`` module."""
    try:
        owner = getattr(value, "__self__", None)
        if is_generator(owner):
            return f"a method of {type(owner).__module__}.{type(owner).__qualname__}"
        module = getattr(value, "__module__", None)
    except Exception:  # an object with an odd __getattr__
        return None
    if isinstance(module, str) and (
        module == "random" or module.split(".")[:2] == ["numpy", "random"]
    ):
        return f"a function of {module}"
    return None


def draws_in(fn: types.FunctionType, is_user: Callable[[Any], bool]) -> str | None:
    """Where ``fn``, or a user function it can call (``is_user``), draws random numbers,
    judged from the names its code reads: a description, or None.

    For the calls the frontend does not lower (a call whose result carries no
    derivative still runs again in the derivative code).
    """
    seen: set[int] = set()
    stack = [fn]
    while stack:
        f = stack.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        reads = _reads(f.__code__)
        for name in sorted(reads):
            value = running.free_name_binding(f, name)[0]
            if value is running.UNBOUND:
                continue
            where = _random_value(value, reads[name])
            if where is not None:
                return f"`{f.__qualname__}` reads `{name}`, {where}"
            if isinstance(value, types.FunctionType) and is_user(value):
                stack.append(value)
    return None


_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_NAME"})
_ATTRS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def _reads(code: types.CodeType) -> dict[str, set[str]]:
    """Global and closure names ``code`` (and nested code) reads, each with the attributes
    read directly off it (``np.random`` -> {"np": {"random"}})."""
    out: dict[str, set[str]] = {}
    previous = None
    for instr in dis.get_instructions(code):
        if instr.opname in _ATTRS and previous is not None:
            out[previous].add(instr.argval)
        previous = None
        if instr.opname in _LOADS and isinstance(instr.argval, str):
            out.setdefault(instr.argval, set())
            previous = instr.argval
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            for name, attrs in _reads(const).items():
                out.setdefault(name, set()).update(attrs)
    return out


def _random_value(value: Any, attrs: set[str]) -> str | None:
    if value is np.random or value is random:
        return f"the module {value.__name__}"
    if is_generator(value):
        return f"a random number generator ({type(value).__name__})"
    if isinstance(value, types.ModuleType):
        sub = value.__dict__.get("random") if "random" in attrs else None
        if sub is np.random or sub is random:
            return f"whose `.random` is the module {sub.__name__}"
        return None
    if callable(value):
        return random_draw(value)
    return None
