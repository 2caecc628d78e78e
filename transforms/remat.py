"""Per-iteration rematerialization: loops whose backward sweep reruns each iteration.

Reverse mode saves, per iteration, the values its backward sweep reads: for an RK4 step
a dozen arrays and four residual tuples, where the state the step starts from would be
enough to compute all of them again. Where a loop's body is cheap to run again
(elementwise arithmetic, indexing, stacking, and calls of user functions that are
cheap in the same sense) and saves several times what it carries from one iteration to
the next, the compiler saves only that carried state at the top of each iteration and
reruns the body at the top of each backward iteration: what ``jax.checkpoint`` on a
scan body does, chosen here by the compiler. On XLA the rerun fuses into the backward
step and the saved stacks shrink to the state; on NumPy each rerun operation costs its
dispatch again, so there it is a trade of time for memory (``Backend``'s
``rematerializes_loops`` says which backends make it).

This module decides; ``transforms.reverse`` generates the code (``_Reverse.replay``).
The loops it takes are counted ``for`` loops (over a ``range``) whose body is straight
assignments: no branch, nested loop, in-place update or early exit, so the rerun is
the body itself.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
from s2sgrad.transforms import dataflow

from s2sgrad import ir

#: How many values a loop must save per iteration, per value it carries, before its
#: body is rerun instead: a body that saves little more than its state gains nothing.
SAVES_PER_CARRIED = 3

# Calls a rerun body may make besides elementwise ufuncs: cheap per element, no
# reductions or products whose cost grows faster than the data they read.
_CHEAP_CALLS = frozenset(
    {
        *ir.ARITHMETIC_OPERATORS,
        operator.getitem,
        operator.neg,
        operator.pos,
        np.stack,
        np.array,
        np.asarray,
        np.concatenate,
        np.hstack,
        np.vstack,
        np.where,
        np.clip,
        np.shape,
        len,
    }
)


def carried(body: tuple[ir.Stmt, ...]) -> tuple[str, ...]:
    """The names an iteration reads before it writes them and then writes: the state one
    iteration hands to the next, in order of first appearance. A name both branches of
    an ``if`` write before anything reads it (``choice`` of a conditional expression) is
    this iteration's own, not state."""
    exposed: set[str] = set()
    _read_first(body, set(), exposed)
    written = dataflow.deep_writes(body)
    order = dict.fromkeys(
        n for s in ir.walk_stmts(body) for n in (*dataflow.reads(s), *dataflow.writes(s))
    )
    return tuple(n for n in order if n in exposed and n in written)


def _read_first(body: tuple[ir.Stmt, ...], defined: set[str], exposed: set[str]) -> set[str]:
    """Add to ``exposed`` the names ``body`` may read before writing them, given those
    written on every path so far (``defined``); return those written on every path after."""
    defined = set(defined)
    for stmt in body:
        exposed.update(n for n in dataflow.reads(stmt) if n not in defined)
        if isinstance(stmt, ir.If):
            then = _read_first(stmt.body, defined, exposed)
            defined = then & _read_first(stmt.orelse, defined, exposed)
        elif ir.is_compound(stmt):  # a loop, which may not run: its writes are not certain
            exposed.update(n for n in dataflow.deep_reads((stmt,)) if n not in defined)
        else:
            defined.update(dataflow.writes(stmt))
    return defined


def worth_rerunning(
    loop: ir.Stmt,
    needed: set[str],
    callee_body: Callable[[ir.Assign], tuple[ir.Stmt, ...] | None],
    ranges: set[str],
) -> bool:
    """Whether to rerun ``loop``'s body in its backward sweep rather than save its values:
    a counted ``for`` whose straight-line, cheap body saves at least ``SAVES_PER_CARRIED``
    values per value it carries (``needed``: the names the backward sweep reads).
    ``callee_body(stmt)``: the body of the user function a statement calls, else None."""
    if not (
        isinstance(loop, ir.For)
        and isinstance(loop.target, ir.Name)
        and (ir.is_call_of(loop.iter, range) or _names_range(loop.iter, ranges))
        and _straight_and_cheap(loop.body, callee_body, depth=0)
    ):
        return False
    saves = {n for s in loop.body for n in dataflow.writes(s) if n in needed}
    return len(saves) >= SAVES_PER_CARRIED * max(1, len(carried(loop.body)))


def _names_range(it: Any, ranges: set[str]) -> bool:
    return isinstance(it, ir.Name) and it.id in ranges


def _straight_and_cheap(body, callee_body, depth: int) -> bool:
    for stmt in body:
        if not isinstance(stmt, ir.Assign):
            if isinstance(stmt, ir.Return) and depth:
                continue  # a callee's return
            return False
        value = stmt.value
        if not isinstance(value, ir.Call):
            continue
        fn = value.fn.value if isinstance(value.fn, ir.Ref) else None
        inner = callee_body(stmt)
        if inner is not None:
            # One level of user functions (a right-hand side called from a stepper).
            if depth or not _straight_and_cheap(inner, callee_body, depth + 1):
                return False
        elif not _cheap(fn):
            return False
    return True


def _cheap(fn: Any) -> bool:
    if isinstance(fn, np.ufunc):
        return fn.signature is None  # elementwise, not np.matmul
    try:
        return fn in _CHEAP_CALLS
    except TypeError:  # an unhashable callable
        return False
