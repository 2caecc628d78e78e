"""What runs when a callable is called: the one place that decides what s2sgrad differentiates.

s2sgrad compiles source code, so it must compile the code that actually runs:

* a plain Python function: itself. A function made by a decorator written with
  ``functools.wraps`` is the decorator's *wrapper*: it is the wrapper's code that
  runs (it calls the decorated function), so the wrapper is what is differentiated;
  its ``__wrapped__`` is never followed.
* a callable s2sgrad produced (``grad(f)``, ``value_and_grad(f)``, a ``vjp_fn``,
  a ``@s2sgrad.grad``-decorated function) or one of s2sgrad's transformations
  (``s2sgrad.grad`` ...): differentiating it needs higher-order differentiation,
  which is not supported yet: ``HigherOrderError``. Only where the *decorated
  function itself* is wanted (``s2sgrad inspect``, ``derivative_source``) does
  ``primal_of`` look through s2sgrad's own wrapper.

Also here, because both the compiler and the cache's hit path need them and this
module imports nothing heavy:

* ``check_source_current``: the source text s2sgrad reads must be the code that
  runs: a module edited after import is refused (``StaleSourceError``);
* ``random_draw``: which callables draw random numbers, which derivative code
  (that reruns parts of the primal) cannot reproduce.
"""

from __future__ import annotations
import __future__

import dis
import functools
import inspect
import linecache
import os
import random
import re
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from s2sgrad.errors import (
    HigherOrderError,
    SourceLocation,
    SourceUnavailableError,
    StaleSourceError,
)

_PRODUCED = "__s2sgrad_produced__"
_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")

HIGHER_ORDER_HINT = (
    "differentiate the original function instead; for second derivatives, until s2sgrad "
    "supports higher order, use central differences of the gradient or jax.hessian on a "
    "jax.numpy version of the function"
)

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
    obj: Any, loc: SourceLocation | None = None, name: str | None = None
) -> HigherOrderError:
    return HigherOrderError(
        f"{describe_produced(obj, name)}: differentiating a derivative (higher order) is not "
        "supported yet",
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


def function_that_runs(obj: Any) -> Any:
    """What runs when ``obj`` is called, as s2sgrad compiles it.

    A plain function is itself, decorated or not (its ``__wrapped__`` is not
    followed: a decorator's wrapper runs its own code). A callable s2sgrad produced
    raises ``HigherOrderError``. Any other object comes back unchanged, for the
    caller's own "not a Python function" refusal.
    """
    if produced(obj) is not None:
        raise higher_order_error(obj)
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


def source_lines(fn: types.FunctionType) -> tuple[list[str], int]:
    """``inspect.getsourcelines`` of ``fn``'s own code.

    Not of ``fn`` itself when it has ``__wrapped__`` (inspect would follow it to another
    function), and not of ``fn.__code__``: for a code object ``inspect.getmodule``
    realpath()s every module's file to find its module, tens of milliseconds on each
    cache hit. A fresh function with the same code has neither problem.
    """
    if "__wrapped__" in fn.__dict__:
        fn = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, None, fn.__closure__)
    return inspect.getsourcelines(fn)


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
    return f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})"


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
    fn = function_that_runs(fn)
    if isinstance(fn, types.FunctionType) and forwarding_parameters(fn) is not None:
        return signature(fn.__dict__["__wrapped__"])
    return inspect.signature(fn, follow_wrapped=False)


# ----------------------------------------------------------------------------- stale source

_FUTURE_FLAGS = functools.reduce(
    lambda acc, name: acc | getattr(__future__, name).compiler_flag, __future__.all_feature_names, 0
)


def check_source_current(fn: types.FunctionType, lines: list[str] | tuple[str, ...]) -> None:
    """Refuse (``StaleSourceError``) when ``lines``, the source s2sgrad read for ``fn``
    (as ``inspect.getsourcelines`` gives it), is not the code ``fn`` runs.

    The lines are compiled as Python would have compiled them in place (same
    indentation, enclosing class and closure cells, ``__future__`` flags) and the
    code object is compared with ``fn.__code__``, ignoring positions, so a function
    that merely moved in its file still matches. Memoized: a few microseconds when
    neither changed.
    """
    code = fn.__code__
    source = "".join(lines)
    top, anywhere = _imported_names(code.co_filename)
    used = _used_names(code)
    if not _matches(code, source, top & used) and not _matches(code, source, anywhere & used):
        filename = fn.__code__.co_filename
        raise StaleSourceError(
            f"the source of {fn.__code__.co_qualname} in {filename} was edited after it was "
            "imported: the file no longer holds the code that runs, and s2sgrad differentiates "
            "the source text",
            SourceLocation(filename, fn.__code__.co_firstlineno, 0),
            "reload the module (importlib.reload) or restart the interpreter / notebook kernel, "
            "so that the running function and its file agree",
        )


@functools.lru_cache(maxsize=1024)
def _matches(code: types.CodeType, source: str, imported: frozenset[str] = frozenset()) -> bool:
    if code.co_name == "<lambda>":
        return True  # several lambdas may share a line; the frontend refuses lambdas anyway
    compiled = _compile_in_place(code, source, imported)
    if compiled is None:
        return False
    return _shape(compiled) == _shape(code)


def _compile_in_place(
    code: types.CodeType, source: str, imported: frozenset[str]
) -> types.CodeType | None:
    lines = source.splitlines(True)
    first = next((ln for ln in lines if ln.strip()), "")
    indent = first[: len(first) - len(first.lstrip())]
    parts = code.co_qualname.split(".")
    cls = parts[-2] if len(parts) > 1 and parts[-2] != "<locals>" else None
    cells = [v for v in code.co_freevars if not (cls and v == "__class__")]
    headers: list[str] = []
    if cells and cls:
        if len(indent) < 2:
            return None
        inner = indent[:1]
        headers = ["def __s2sgrad_outer__():\n"]
        headers += [f"{inner}{v} = None\n" for v in cells]
        headers.append(f"{inner}class {cls}:\n")
    elif cells:
        if not indent:
            return None
        headers = ["def __s2sgrad_outer__():\n"] + [f"{indent}{v} = None\n" for v in cells]
    elif cls:
        if not indent:
            return None
        headers = [f"class {cls}:\n"]
    elif indent:
        headers = ["if True:\n"]
    # CPython compiles `m.f(x)` differently when `m` was bound by a module-level import.
    imports = "".join(f"import sys as {name}\n" for name in sorted(imported))
    text = imports + "".join(headers) + source
    try:
        module = compile(
            text, code.co_filename, "exec", flags=code.co_flags & _FUTURE_FLAGS, dont_inherit=True
        )
    except (SyntaxError, ValueError):
        return None
    level = [module]
    while level:
        for candidate in level:
            if candidate.co_name == code.co_name and candidate is not module:
                return candidate
        level = [c for parent in level for c in parent.co_consts if isinstance(c, types.CodeType)]
    return None


_IMPORT_RE = re.compile(
    r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]+(\([^)]*\)|[^\n#;]*(?:\\\n[^\n#;]*)*)",
    re.MULTILINE,
)
_imported_memo: dict[str, tuple[int, tuple[frozenset[str], frozenset[str]]]] = {}


def _imported_names(filename: str) -> tuple[frozenset[str], frozenset[str]]:
    """Names bound by unindented import statements in the file, and by any import statement:
    the module-level imports the compiler knew of lie in between (a cheap approximation)."""
    lines = linecache.getlines(filename)
    memo = _imported_memo.get(filename)
    if memo is not None and memo[0] == id(lines):
        return memo[1]
    top: set[str] = set()
    anywhere: set[str] = set()
    for match in _IMPORT_RE.finditer("".join(lines)):
        unindented = not match.group(0)[:1].isspace()
        for item in match.group(1).strip("()").replace("\\\n", " ").split(","):
            words = item.split()
            name = words[-1] if len(words) >= 3 and words[-2] == "as" else (words or [""])[0]
            name = name.split(".")[0]
            if name.isidentifier():
                anywhere.add(name)
                if unindented:
                    top.add(name)
    result = (frozenset(top), frozenset(anywhere))
    _imported_memo[filename] = (id(lines), result)
    return result


def _used_names(code: types.CodeType) -> frozenset[str]:
    """Every name ``code`` and its nested code use (any may be the base of ``m.f(x)``)."""
    names = {*code.co_names, *code.co_varnames, *code.co_freevars, *code.co_cellvars}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _used_names(const)
    return frozenset(names)


def _shape(code: types.CodeType) -> tuple:
    return (
        code.co_name,
        code.co_code,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS | inspect.CO_GENERATOR),
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        tuple(_const_key(c) for c in code.co_consts),
    )


def _const_key(value: Any) -> Any:
    if isinstance(value, types.CodeType):
        return ("code", _shape(value))
    if isinstance(value, tuple):
        return ("tuple", tuple(_const_key(v) for v in value))
    if isinstance(value, frozenset):
        return ("frozenset", tuple(sorted(repr(_const_key(v)) for v in value)))
    return (type(value).__name__, repr(value))


# ----------------------------------------------------------------------------- randomness

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
            found, value = _lookup(f, name)
            if not found:
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


def _lookup(f: types.FunctionType, name: str) -> tuple[bool, Any]:
    code = f.__code__
    if f.__closure__ and name in code.co_freevars:
        try:
            return True, f.__closure__[code.co_freevars.index(name)].cell_contents
        except ValueError:
            return False, None
    if name in f.__globals__:
        return True, f.__globals__[name]
    return False, None


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
