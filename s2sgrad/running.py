"""What runs when a callable is called: the one place that decides what s2sgrad differentiates.

s2sgrad compiles source code, so it must compile the code that actually runs:

* a plain Python function: itself. A function made by a decorator written with
  ``functools.wraps`` is the decorator's *wrapper*: it is the wrapper's code that
  runs (it calls the decorated function), so the wrapper is what is differentiated;
  its ``__wrapped__`` is never followed.
* ``grad(f)`` or ``value_and_grad(f)`` (a ``@s2sgrad.grad``-decorated function too):
  what runs is ``f``'s derivative module, so what is differentiated is that module,
  through a composition function (``s2sgrad.composition``), whether it is passed to a
  transformation or called inside a differentiated function. Other callables s2sgrad
  produced (a ``vjp_fn``) and s2sgrad's transformations themselves raise
  ``HigherOrderError``. Only where the *decorated function itself* is wanted
  (``s2sgrad inspect``, ``derivative_source``) does ``primal_of`` look through
  s2sgrad's own wrapper.

The source s2sgrad reads for it is checked in ``s2sgrad.sources``; random draws are
found by ``s2sgrad.randomness``.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import linecache
import os
import sys
import types
from collections.abc import Callable
from typing import Any

from s2sgrad import sources
from s2sgrad.errors import (
    HigherOrderError,
    SourceLocation,
    SourceUnavailableError,
)

_PRODUCED = "__s2sgrad_produced__"
_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")

HIGHER_ORDER_HINT = (
    "what composes is s2sgrad.grad(f) and s2sgrad.value_and_grad(f), made outside the "
    "differentiated function (g = s2sgrad.grad(f)) and passed to a transformation or called "
    "through a global or closure variable; for a vjp_fn, differentiate a function that computes "
    "the same product with g, or use s2sgrad.hvp / s2sgrad.hessian"
)

# ----------------------------------------------------------------------------- free names

#: The value ``free_name_binding`` gives a name that is not bound.
UNBOUND = object()


def free_name_binding(fn: types.FunctionType, name: str) -> tuple[Any, Any, Any]:
    """Where Python finds ``name`` when ``fn`` runs: its closure cell, else its globals,
    else its builtins. The one lookup of the compiler (what a name denotes), the cache
    (what the key assumed) and the randomness check.

    Returns ``(value, container, key)``: ``value`` is ``UNBOUND`` when the name is not
    bound; ``container[key]`` (the cell's contents where ``key`` is None) re-reads the
    binding later, to see whether it still holds.
    """
    code = fn.__code__
    if name in code.co_freevars and fn.__closure__ is not None:
        cell = fn.__closure__[code.co_freevars.index(name)]
        try:
            return cell.cell_contents, cell, None
        except ValueError:  # a cell not filled yet
            return UNBOUND, cell, None
    if name in fn.__globals__:
        return fn.__globals__[name], fn.__globals__, name
    table = fn.__globals__.get("__builtins__", builtins)
    table = table if isinstance(table, dict) else vars(table)
    return table.get(name, UNBOUND), table, name


# ----------------------------------------------------------------------------- produced


def mark_produced(fn: Callable, kind: str, primal: Callable | None) -> Callable:
    """Mark ``fn`` as made by s2sgrad (``kind``: "grad", "vjp_fn", ...; ``primal``: the
    function it differentiates, None for the transformations themselves)."""
    setattr(fn, _PRODUCED, (kind, primal))
    return fn


def produced(obj: Any) -> tuple[str, Callable | None] | None:
    """``(kind, primal)`` when s2sgrad made ``obj``, else None.

    Only plain functions are looked at, through their ``__dict__``: never a
    ``getattr`` on an arbitrary object (a mock answers every attribute).
    """
    if not isinstance(obj, types.FunctionType):
        return None
    mark = obj.__dict__.get(_PRODUCED)
    if isinstance(mark, tuple) and len(mark) == 2:
        return mark
    return None


def primal_of(obj: Any) -> Any:
    """The function a ``@s2sgrad.grad``-style wrapper was made from, else ``obj``: for the
    places where the decorated function itself is the target (inspect, derivative_source)."""
    for _ in range(100):
        mark = produced(obj)
        if mark is None or mark[1] is None:
            return obj
        obj = mark[1]
    return obj


def describe_produced(obj: Any, name: str | None = None) -> str:
    kind, primal = produced(obj) or ("callable", None)
    subject = f"`{name}`" if name else "the function given"
    if primal is None:
        return f"{subject} is s2sgrad's own `{kind}` transformation"
    primal_name = getattr(primal, "__qualname__", getattr(primal, "__name__", repr(primal)))
    what = {"vjp_fn": f"the vjp_fn that s2sgrad.vjp returned for `{primal_name}`"}.get(
        kind, f"s2sgrad.{kind}(`{primal_name}`)"
    )
    return f"{subject} is {what}, a derivative s2sgrad produced"


def higher_order_error(
    obj: Any,
    loc: SourceLocation | None = None,
    name: str | None = None,
    *,
    detail: str | None = None,
    called: bool = False,
) -> HigherOrderError:
    """The refusal of a higher-order case that does not compose (yet): ``detail`` says
    why; ``called``: the derivative is called inside a differentiated function."""
    if detail is None:
        detail = (
            "differentiating a function that calls a derivative (higher order) is not "
            "supported yet"
            if called
            else "differentiating it (higher order) is not supported yet"
        )
    return HigherOrderError(
        f"{describe_produced(obj, name)}: {detail}",
        loc if loc is not None else user_location(),
        HIGHER_ORDER_HINT,
    )


def user_location() -> SourceLocation | None:
    """The innermost frame outside s2sgrad and the standard library: the user's call line."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        module = str(frame.f_globals.get("__name__", ""))
        ours = module == "s2sgrad" or module.startswith("s2sgrad.")
        if not ours and not filename.startswith(_PACKAGE_DIR) and not _stdlib_file(filename):
            line = frame.f_lineno or frame.f_code.co_firstlineno
            col = 0
            try:
                positions = list(frame.f_code.co_positions())
                pos = positions[frame.f_lasti // 2]
                if pos[2] is not None and pos[0] == line:
                    col = pos[2]
            except (AttributeError, IndexError, ValueError):
                pass
            return SourceLocation(filename, line, col, linecache.getline(filename, line))
        frame = frame.f_back
    return None


def _stdlib_file(filename: str) -> bool:
    return filename.startswith(os.path.join(os.path.dirname(functools.__file__), ""))


# ----------------------------------------------------------------------------- what runs


def function_that_runs(obj: Any, options: Any = ()) -> Any:
    """What runs when ``obj`` is called, as s2sgrad compiles it.

    A plain function is itself, decorated or not (its ``__wrapped__`` is not
    followed: a decorator's wrapper runs its own code). ``grad(f)`` and
    ``value_and_grad(f)`` are their composition function for arguments of
    structure ``options`` (``s2sgrad.composition``); other callables s2sgrad
    produced raise ``HigherOrderError``. Any other object comes back unchanged,
    for the caller's own "not a Python function" refusal.
    """
    if produced(obj) is not None:
        from s2sgrad import composition

        return composition.composed(obj, options)
    return obj


def python_function_that_runs(obj: Any) -> types.FunctionType:
    """``function_that_runs``, refusing what is not a plain Python function."""
    fn = function_that_runs(obj)
    if isinstance(fn, types.FunctionType):
        return fn
    wrapped = _wrapped(fn)
    detail = ""
    if wrapped is not None:
        detail = (
            f"; it wraps {getattr(wrapped, '__qualname__', wrapped)!r}, but what runs is the "
            "wrapper, whose code s2sgrad cannot read"
        )
    raise SourceUnavailableError(
        f"{fn!r} is not a Python function, so it has no source to transform{detail}",
        hint="differentiate a Python function that calls it; give it a rule with "
        "s2sgrad.defvjp/defjvp if it has none",
    )


def _wrapped(obj: Any) -> Any:
    try:
        return getattr(obj, "__wrapped__", None)
    except Exception:  # an object with an odd __getattr__
        return None


def decorator_wrapper(fn: Any) -> types.FunctionType | None:
    """``fn`` when it is the wrapper a ``functools.wraps`` decorator made around another
    function (it has a ``__wrapped__``), else None."""
    if isinstance(fn, types.FunctionType) and "__wrapped__" in fn.__dict__:
        return fn
    return None


def describe_wrapper(fn: types.FunctionType) -> str:
    """``deco.<locals>.wrapper (file.py:12)``: the wrapper's real name and place (functools.wraps
    copies the decorated function's ``__name__`` and ``__qualname__`` onto it)."""
    code = fn.__code__
    return f"{sources.code_qualname(fn)} ({code.co_filename}:{code.co_firstlineno})"


def forwarding_parameters(fn: types.FunctionType) -> tuple[str | None, str | None] | None:
    """``(args, kwargs)`` names when ``fn`` is a wrapper taking exactly ``(*args, **kwargs)``
    (or ``(*args)``), else None."""
    if decorator_wrapper(fn) is None:
        return None
    code = fn.__code__
    if code.co_argcount or code.co_kwonlyargcount or code.co_posonlyargcount:
        return None
    names = code.co_varnames
    star = names[0] if code.co_flags & inspect.CO_VARARGS else None
    if star is None:
        return None
    starstar = names[1] if code.co_flags & inspect.CO_VARKEYWORDS else None
    return star, starstar


def signature(fn: Callable) -> inspect.Signature:
    """The signature of what runs: the function's own, except that a forwarding wrapper
    (``def wrapper(*args, **kwargs): ... fn(*args, **kwargs)``) takes the parameters
    of the function it wraps."""
    if produced(fn) is not None:  # its primal's, without compiling anything
        from s2sgrad import composition

        return composition.signature(fn)
    if isinstance(fn, types.FunctionType) and forwarding_parameters(fn) is not None:
        return signature(fn.__dict__["__wrapped__"])
    return inspect.signature(fn, follow_wrapped=False)


def parameters(fn: Callable) -> list[inspect.Parameter]:
    """The parameters of what runs when ``fn`` is called (see ``signature``)."""
    return list(signature(fn).parameters.values())
