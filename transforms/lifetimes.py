"""Releasing dead values early in generated NumPy code.

A Python function keeps every local variable until it returns, so a derivative
function written as straight-line code holds each of its intermediate arrays to the
end: its peak memory is the sum of them all, not the most that is ever needed at once.
On large arrays that is memory, and time too: memory the allocator must map afresh
on each call (a gradient of the Rosenbrock function at n = 1e6 took 3,840 page faults
and 25 ms holding its 12 intermediates; 1,616 faults and 14 ms releasing them).

This pass adds ``del a, b`` (``ir.Release``) after the statement at the top level of a
function after which nothing reads ``a`` and ``b`` any more. Only names assigned at the
top level, before that point, by a plain assignment whose value may be an array (not a
constant, nor a shape, size or length), so a release never meets an unbound name or
lists a number. Inside loops nothing is added: rebinding a name each iteration frees its
previous value already.
"""

from __future__ import annotations

import builtins
import operator
from dataclasses import replace

import numpy as np
from s2sgrad.transforms import dataflow

from s2sgrad import ir

# Calls whose results are numbers or shapes: small, and not worth a line.
_SMALL = frozenset({np.shape, np.ndim, np.size, builtins.len, range})


def release_dead_values(fn: ir.FunctionDef, folded: frozenset[str] = frozenset()) -> ir.FunctionDef:
    """``fn`` with a ``Release`` after each top-level statement that is the last to read
    (or write) a releasable name. ``folded``: the temporaries the printer writes into the
    expression that reads them (``codegen.fold_candidates``), whose reads happen there."""
    releasable = _releasable(fn.body) - folded
    if not releasable:
        return fn
    definitions = {
        s.target.id: s.value
        for s in ir.walk_stmts(fn.body)
        if isinstance(s, ir.Assign) and len(s.targets) == 1 and s.target.id in folded
    }

    def printed_reads(names: set[str]) -> set[str]:
        out: set[str] = set()
        todo = list(names)
        while todo:
            n = todo.pop()
            if n in definitions:
                todo += ir.atom_names(definitions[n])
            else:
                out.add(n)
        return out

    last: dict[str, int] = {}  # name -> the last top-level statement that touches it
    first: dict[str, int] = {}  # name -> its first top-level assignment
    for k, stmt in enumerate(fn.body):
        if isinstance(stmt, ir.Assign) and stmt.targets[0].id in definitions:
            continue  # printed where it is read
        touched = printed_reads(dataflow.deep_reads((stmt,))) | dataflow.deep_writes((stmt,))
        for n in touched & releasable:
            last[n] = k
        if isinstance(stmt, ir.Assign):
            for t in stmt.targets:
                first.setdefault(t.id, k)
    # Nothing is released by the return or right before it: returning releases it all.
    ends = {k for k, s in enumerate(fn.body) if isinstance(s, ir.Return)}
    ends |= {k - 1 for k in ends}
    after: dict[int, list[str]] = {}
    for n, k in last.items():
        if n in first and first[n] <= k and k not in ends:
            after.setdefault(k, []).append(n)
    body: list[ir.Stmt] = []
    for k, stmt in enumerate(fn.body):
        body.append(stmt)
        if k in after:
            body.append(ir.Release(tuple(sorted(after[k]))))
    return replace(fn, body=tuple(body))


def _releasable(body: tuple[ir.Stmt, ...]) -> set[str]:
    """Names assigned at the top level, each time from a value that may be an array."""
    small = set()
    names = set()
    for stmt in body:
        if isinstance(stmt, ir.Assign):
            for t in stmt.targets:
                if _small(stmt.value, small):
                    small.add(t.id)
                else:
                    names.add(t.id)
    inner = dataflow.deep_writes(
        tuple(s for stmt in body for block in ir.child_blocks(stmt) for s in block)
    )
    return names - small - inner


def _small(value: object, small: set[str]) -> bool:
    if isinstance(value, ir.Const):
        return True
    if isinstance(value, ir.Name):
        return value.id in small
    if isinstance(value, ir.Call) and isinstance(value.fn, ir.Ref):
        fn = value.fn.value
        if fn in _SMALL:
            return True
        return (
            fn is operator.getitem
            and isinstance(value.args[0], ir.Name)
            and (value.args[0].id in small)
        )
    return False
