"""Inlining of nested functions at their call sites.

A ``def`` inside the differentiated function is a closure: it reads the
enclosing function's variables when it is called. Inlining its (normalized,
structured) body at each call, with fresh names for its own variables and the
enclosing variables' current values for what it captures, keeps exactly that
meaning and leaves nothing special for the derivative transforms to handle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from s2sgrad.transforms import dataflow
from s2sgrad.transforms.names import FreshNames
from s2sgrad.transforms.templates import substitute

from s2sgrad import ir
from s2sgrad.errors import SourceLocation, UnsupportedSyntaxError


def own_names(fn: ir.FunctionDef) -> set[str]:
    """The names a function binds itself: parameters and everything it assigns."""
    return set(fn.param_names) | dataflow.deep_writes(fn.body)


def inline_call(
    inner: ir.FunctionDef,
    args: tuple[Any, ...],
    kwargs: tuple[tuple[str, Any], ...],
    names: FreshNames,
    captured: Callable[[str], Any],
    loc: SourceLocation | None,
) -> tuple[list[ir.Stmt], ir.Name, set[str]]:
    """Statements computing ``inner(*args, **kwargs)``, the name holding the result, and
    the fresh names of ``inner``'s temporaries (still single-use after renaming)."""
    params = [p.name for p in inner.params]
    bound: dict[str, Any] = dict(zip(params, args))
    if len(args) > len(params):
        raise UnsupportedSyntaxError(f"too many arguments for `{inner.name}`", loc)
    for key, value in kwargs:
        if key not in params or key in bound:
            raise UnsupportedSyntaxError(f"`{inner.name}` got a bad keyword argument `{key}`", loc)
        bound[key] = value
    for p in inner.params:
        if p.name not in bound:
            if p.default is None:
                raise UnsupportedSyntaxError(f"`{inner.name}` is missing argument `{p.name}`", loc)
            bound[p.name] = p.default
    mapping: dict[str, Any] = {}
    for name in sorted(own_names(inner)):
        mapping[name] = ir.Name(names.fresh(f"{inner.name}_{name}"))
    for stmt in ir.walk_stmts(inner.body):
        for name in dataflow.reads(stmt):
            if name not in mapping:
                mapping[name] = captured(name)
    stmts: list[ir.Stmt] = [ir.Assign((mapping[p],), bound[p], loc) for p in params]
    *body, ret = inner.body
    stmts += [rename(s, mapping) for s in body]
    result = ir.Name(names.fresh(f"{inner.name}_result"))
    stmts.append(ir.Assign((result,), substitute(ret.value, mapping), ret.loc))
    temps = {mapping[t].id for t in inner.temps if t in mapping}
    return stmts, result, temps


def rename(stmt: ir.Stmt, m: dict[str, Any]) -> ir.Stmt:
    """A statement with every name (read or written) replaced through ``m``."""

    def target(t):
        if isinstance(t, ir.Name):
            return m.get(t.id, t)
        return tuple(target(x) for x in t)

    def block(b):
        return tuple(rename(s, m) for s in b)

    if isinstance(stmt, ir.Assign):
        return replace(
            stmt, targets=tuple(target(t) for t in stmt.targets), value=substitute(stmt.value, m)
        )
    if isinstance(stmt, ir.SetItem):
        return replace(
            stmt,
            target=target(stmt.target),
            index=substitute(stmt.index, m),
            value=substitute(stmt.value, m),
        )
    if isinstance(stmt, (ir.If, ir.While)):
        stmt = replace(stmt, test=substitute(stmt.test, m))
    elif isinstance(stmt, ir.For):
        stmt = replace(stmt, target=target(stmt.target), iter=substitute(stmt.iter, m))
    elif isinstance(stmt, ir.Return):
        return replace(stmt, value=substitute(stmt.value, m))
    return ir.map_blocks(stmt, block)
