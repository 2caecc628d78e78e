"""The source s2sgrad compiles must be the code that runs.

s2sgrad reads a function's source text from its file; after the file is edited (and
before the module is reloaded) that text is not what the running function was
compiled from, and differentiating it would be silently wrong. ``check_source_current``
compiles the text in place and compares code objects (``StaleSourceError`` when they
differ). Light (no libcst): the cache's hit path calls it too.
"""

from __future__ import annotations
import __future__

import functools
import inspect
import linecache
import re
import types
from typing import Any

from s2sgrad.errors import SourceLocation, StaleSourceError


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


def code_qualname(fn: types.FunctionType) -> str:
    """The qualified name of the code ``fn`` runs.

    Not ``fn.__qualname__``: ``functools.wraps`` copies the wrapped function's onto a
    decorator's wrapper. Python 3.11 keeps the code's own on ``co_qualname``; 3.10 has
    none, so there a wrapper is named by its code's bare name (``wrapper``).
    """
    code = fn.__code__
    qualname = getattr(code, "co_qualname", None)  # Python 3.11+
    if qualname is not None:
        return qualname
    if "__wrapped__" not in fn.__dict__:
        return fn.__qualname__
    return _nested_qualname(code, fn.__globals__) or code.co_name


def _nested_qualname(code: types.CodeType, namespace: dict) -> str | None:
    """Python 3.10: the qualified name of ``code`` as a function nested in one of the
    namespace's functions (a decorator's wrapper: ``deco.<locals>.wrapper``), found by
    looking for ``code`` among their nested code objects."""

    def path_to(parent: types.CodeType) -> list[str] | None:
        for const in parent.co_consts:
            if const is code:
                return [code.co_name]
            if isinstance(const, types.CodeType):
                inner = path_to(const)
                if inner is not None:
                    return [const.co_name, *inner]
        return None

    for value in list(namespace.values()):
        if isinstance(value, types.FunctionType) and value.__globals__ is namespace:
            path = path_to(value.__code__)
            if path is not None:
                return ".<locals>.".join([value.__qualname__, *path])
    return None


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
    qualname = code_qualname(fn)
    top, anywhere = _imported_names(code.co_filename)
    used = _used_names(code)
    if not _matches(code, qualname, source, top & used) and not _matches(
        code, qualname, source, anywhere & used
    ):
        filename = fn.__code__.co_filename
        raise StaleSourceError(
            f"the source of {qualname} in {filename} was edited after it was "
            "imported: the file no longer holds the code that runs, and s2sgrad differentiates "
            "the source text",
            SourceLocation(filename, fn.__code__.co_firstlineno, 0),
            "reload the module (importlib.reload) or restart the interpreter / notebook kernel, "
            "so that the running function and its file agree",
        )


@functools.lru_cache(maxsize=1024)
def _matches(
    code: types.CodeType, qualname: str, source: str, imported: frozenset[str] = frozenset()
) -> bool:
    if code.co_name == "<lambda>":
        return True  # several lambdas may share a line; the frontend refuses lambdas anyway
    compiled = _compile_in_place(code, qualname, source, imported)
    if compiled is None:
        return False
    return _shape(compiled) == _shape(code)


def _compile_in_place(
    code: types.CodeType, qualname: str, source: str, imported: frozenset[str]
) -> types.CodeType | None:
    lines = source.splitlines(True)
    first = next((ln for ln in lines if ln.strip()), "")
    indent = first[: len(first) - len(first.lstrip())]
    parts = qualname.split(".")
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
