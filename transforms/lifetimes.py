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

A name that later statements read only for its shape and dtype (the backward sweep's
``unbroadcast(g, t4)``) is replaced, after the last statement that reads its values, by
``t4 = stand_in(t4)``: an array of that shape and dtype without the memory
(``runtime.stand_in``), so the forward sweep frees it where the function itself would.
"""

from __future__ import annotations

import builtins
import operator
from dataclasses import replace

import numpy as np
from s2sgrad.transforms import dataflow
from s2sgrad.transforms.residuals import (
    STAND_IN,
    new_array,
    shape_reads,
    sweep_start,
    value_reads,
)

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
    folded_stmts = {
        s.target.id: s
        for s in ir.walk_stmts(fn.body)
        if isinstance(s, ir.Assign) and len(s.targets) == 1 and s.target.id in folded
    }
    definitions = {n: s.value for n, s in folded_stmts.items()}

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

    def printed_value_reads(stmt: ir.Stmt) -> set[str]:
        out: set[str] = set()
        todo = [stmt]
        while todo:
            s = todo.pop()
            for n in value_reads((s,)):
                if n not in folded_stmts:
                    out.add(n)
                elif folded_stmts[n] is not s:
                    todo.append(folded_stmts[n])
        return out

    # A value the forward sweep made and the backward sweep reads only for its shape is
    # a stand-in from its last other read on (not another name for a value something
    # else holds: see residuals.new_array). Candidates: the names read for their shape after the
    # sweep starts, or in a temporary printed there.
    sweep = sweep_start(fn.body)
    candidates = releasable & (
        set(shape_reads(fn.body[sweep + 1 :])) | set(shape_reads(tuple(folded_stmts.values())))
    )
    last: dict[str, int] = {}  # name -> the last top-level statement that touches it
    last_value: dict[str, int] = {}  # ... that reads more than its shape, or writes it
    first: dict[str, int] = {}  # name -> its first top-level assignment
    for k, stmt in enumerate(fn.body):
        if isinstance(stmt, ir.Assign) and stmt.targets[0].id in definitions:
            continue  # printed where it is read
        touched = printed_reads(dataflow.deep_reads((stmt,))) | dataflow.deep_writes((stmt,))
        for n in touched & releasable:
            last[n] = k
        valued = printed_value_reads(stmt) if touched & candidates else touched
        for n in valued & releasable:
            last_value[n] = k
        if isinstance(stmt, ir.Assign):
            for t in stmt.targets:
                first.setdefault(t.id, k)
    made = {n: new_array(fn.body[k]) for n, k in first.items()}
    # Nothing is released by the return or right before it: returning releases it all.
    ends = {k for k, s in enumerate(fn.body) if isinstance(s, ir.Return)}
    ends |= {k - 1 for k in ends}
    after: dict[int, list[str]] = {}
    shape_from: dict[int, list[str]] = {}
    for n, k in last.items():
        if n in first and first[n] <= k and k not in ends:
            after.setdefault(k, []).append(n)
        kv = last_value.get(n)
        if n in first and kv is not None and first[n] <= kv < sweep < k and made[n]:
            shape_from.setdefault(kv, []).append(n)
    body: list[ir.Stmt] = []
    for k, stmt in enumerate(fn.body):
        body.append(stmt)
        if k in shape_from:
            shaped = sorted(shape_from[k])
            listed = ", ".join(shaped)
            if len(shaped) == 1:
                note = f"only the shape of {listed} is read from here on: its memory goes"
            else:
                note = f"only the shapes of {listed} are read from here on: their memory goes"
            body.append(ir.Comment(note, note=True))
            for n in shaped:
                body.append(ir.Assign((ir.Name(n),), ir.Call(STAND_IN, (ir.Name(n),))))
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
