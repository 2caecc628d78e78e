"""Statement-level dataflow over the IR: what a statement reads, writes and kills, and
which names are live where.

Every pass asks these questions (dead code, copy propagation, what a loop carries,
which temporaries codegen may fold, what the JAX lowering threads through a
combinator), and an answer that differs by one case between two passes is a
silently wrong program. So they are answered here, once, with the conventions
spelled out. Expressions are ``ir.atom_names``'s business; this module is about
statements and blocks, and about which names may share memory (``views``), which
decides when an update in place is a use of another name.

*Shallow* and *deep*. ``reads``/``writes`` are what a statement does itself: for a
branch or loop, its test, iterable or target, not its blocks, which are statements
of their own (walk them with ``ir.walk_stmts``). ``deep_reads``/``deep_writes`` are
everything a block does, nested blocks included. Neither looks into the body of a
local ``def``: that is another function, which reads its captured names when it is
called, not where it is defined.

Stacks: two conventions, chosen by ``slots``.

* ``slots=False`` (the default): the NumPy code's. A stack is a Python list:
  ``NewStack`` binds it, ``Push`` appends to it (reads the stack and the value, binds
  nothing) and ``Pop`` reads it.
* ``slots=True``: the JAX lowering's (``backends/jax/lowering._plain``). Inside a loop body a
  stack name is this iteration's save and the combinators do the stacking, so
  ``Push`` is ``stack = value`` (reads only the value, binds and kills the stack) and
  ``Pop`` is ``target = stack``.

All functions are pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from s2sgrad import ir

Block = tuple[ir.Stmt, ...]


def pattern_names(pattern: Any) -> list[str]:
    """Names bound by an assignment or loop target pattern (a Name or nested tuples)."""
    if isinstance(pattern, ir.Name):
        return [pattern.id]
    if isinstance(pattern, tuple):
        return [n for p in pattern for n in pattern_names(p)]
    return []


def reads(stmt: ir.Stmt, *, slots: bool = False) -> list[str]:
    """Local names a statement reads itself, in order, once per occurrence (codegen and
    the in-place pass count reads): a branch's or loop's test or iterable but not its
    blocks, a return's value, and the surface IR's ``op=`` (target, index, value)."""
    # A while reads its test here. (The old ir.stmt_reads said a while reads nothing;
    # every caller of it added the test itself or never met a while.)
    if isinstance(stmt, (ir.Assign, ir.Unpack, ir.Return)):
        return ir.atom_names(stmt.value)
    if isinstance(stmt, ir.SetItem):
        return [stmt.target.id] + ir.atom_names(stmt.index) + ir.atom_names(stmt.value)
    if isinstance(stmt, ir.AugAssign):
        target = stmt.target if isinstance(stmt.target, ir.Name) else stmt.target[0]
        index = [] if isinstance(stmt.target, ir.Name) else ir.atom_names(stmt.target[1])
        return [target.id, *index, *ir.atom_names(stmt.value)]
    if isinstance(stmt, (ir.If, ir.While)):
        return ir.atom_names(stmt.test)
    if isinstance(stmt, ir.For):
        return ir.atom_names(stmt.iter)
    if isinstance(stmt, ir.Push):
        # A list append reads the list; a slot assignment does not read the slot.
        return ir.atom_names(stmt.value) + ([] if slots else [stmt.stack])
    if isinstance(stmt, ir.Pop):
        return [stmt.stack]
    return []  # Break, Continue, Comment, NewStack, LocalDef (see the module docstring)


def writes(stmt: ir.Stmt, *, slots: bool = False) -> list[str]:
    """Local names a statement binds or updates in place itself (a loop: its target):
    what a later read of the name may see changed, and what a fresh name must avoid."""
    if isinstance(stmt, ir.Assign):
        return [t.id for t in stmt.targets]
    if isinstance(stmt, (ir.SetItem, ir.Pop)):
        return [stmt.target.id]
    if isinstance(stmt, ir.AugAssign):
        return [stmt.target.id if isinstance(stmt.target, ir.Name) else stmt.target[0].id]
    if isinstance(stmt, ir.NewStack):
        # Both conventions: where the stack comes into being (JAX code drops the statement
        # and binds the stack from the loop's combinator; counting it here is conservative).
        return [stmt.stack]
    if isinstance(stmt, ir.Push):
        # A list append changes the list object, which no pass tracks as a write; a slot is
        # assigned.
        return [stmt.stack] if slots else []
    if isinstance(stmt, ir.For):
        return pattern_names(stmt.target)
    if isinstance(stmt, ir.Unpack):
        return pattern_names(stmt.pattern)
    return []


def deep_reads(body: Iterable[ir.Stmt], *, slots: bool = False) -> set[str]:
    """Every name the statements of ``body`` read, nested blocks included: what a block
    needs from outside it, or may see, wherever it runs."""
    return {n for s in ir.walk_stmts(tuple(body)) for n in reads(s, slots=slots)}


def deep_writes(body: Iterable[ir.Stmt], *, slots: bool = False) -> set[str]:
    """Every name the statements of ``body`` may bind or update, nested blocks included:
    what running the block may change (a loop's carried state, facts it invalidates)."""
    return {n for s in ir.walk_stmts(tuple(body)) for n in writes(s, slots=slots)}


def kills(stmt: ir.Stmt, *, slots: bool = False) -> set[str]:
    """Names a statement certainly overwrites, so that their values just before it are
    dead. Updates in place (``x[i] = v``, a list append) kill nothing, and neither does a
    branch or loop: its blocks may not run."""
    if isinstance(stmt, ir.Assign):
        return {t.id for t in stmt.targets}
    if isinstance(stmt, ir.Unpack):
        return set(pattern_names(stmt.pattern))
    if isinstance(stmt, ir.Pop):
        return {stmt.target.id}
    if isinstance(stmt, ir.Push) and slots:
        return {stmt.stack}
    # NewStack overwrites its stack in NumPy code and is nothing in JAX code; nothing
    # that could be dead defines a stack before it, so neither convention counts it.
    return set()


def upward_exposed(stmt: ir.Stmt, *, slots: bool = False) -> set[str]:
    """Names a statement may read before writing them: what it needs live on entry
    whatever is live after it. A branch or loop counts as killing nothing (its blocks may
    not run), so this is conservative for names both branches of an ``if`` assign."""
    if isinstance(stmt, ir.If):
        return (
            set(ir.atom_names(stmt.test))
            | live_in(stmt.body, set(), slots=slots)
            | live_in(stmt.orelse, set(), slots=slots)
        )
    if isinstance(stmt, ir.For):
        return set(ir.atom_names(stmt.iter)) | (
            live_in(stmt.body, set(), slots=slots) - set(pattern_names(stmt.target))
        )
    if isinstance(stmt, ir.While):
        # The test is read after the test block, before the body and after each iteration.
        return live_in(stmt.test_block + stmt.body, set(ir.atom_names(stmt.test)), slots=slots)
    return set(reads(stmt, slots=slots))


def step_back(stmt: ir.Stmt, live: set[str], *, slots: bool = False) -> set[str]:
    """The names live just before ``stmt``, given ``live``, those live just after it (a
    ``return`` ends the function: nothing after it is live through it). ``live`` is
    updated in place and returned: a walk back over a long block then costs what each
    statement touches, not a copy of the live set per step."""
    if isinstance(stmt, ir.Return):
        live.clear()
        live.update(reads(stmt, slots=slots))
        return live
    live -= kills(stmt, slots=slots)
    live |= upward_exposed(stmt, slots=slots)
    return live


def live_in(body: Block, live_out: set[str], *, slots: bool = False) -> set[str]:
    """Names live at the start of ``body`` given those live at its end (backwards over
    structured code; loops need no fixpoint since compound statements kill nothing)."""
    live = set(live_out)
    for stmt in reversed(body):
        step_back(stmt, live, slots=slots)
    return live


def all_local_names(fn: ir.FunctionDef) -> set[str]:
    """Every local name a function binds or reads (the set fresh names must avoid), of
    the surface IR as of the normalized one."""
    return set(fn.param_names) | deep_reads(fn.body) | deep_writes(fn.body)


def views(
    body: Block,
    makes_fresh_array: Callable[[ir.Call], bool],
    roots: Iterable[str] | None = None,
) -> dict[str, set[str]]:
    """For each name (of ``roots``, where given), the names that may share its memory,
    transitively: ``t = x``, and the result of any call ``makes_fresh_array`` does not
    vouch for (``x[1:]``, ``x.T``, a reshape), with each name it reads. Assuming a view is
    only conservative; which calls return new arrays is a fact about primitives, so the
    caller supplies it. (Every name's closure of a long chain of copies is quadratic:
    ask for the roots needed.)"""
    shares: dict[str, set[str]] = {}
    for stmt in ir.walk_stmts(body):
        if not (isinstance(stmt, ir.Assign) and len(stmt.targets) == 1):
            continue
        value = stmt.value
        if isinstance(value, ir.Name):
            sources = [value]
        elif isinstance(value, ir.Call) and not makes_fresh_array(value):
            sources = [a for a in value.args if isinstance(a, ir.Name)]
        else:
            continue
        for source in sources:
            shares.setdefault(source.id, set()).add(stmt.target.id)
    closed: dict[str, set[str]] = {}
    for root in shares if roots is None else set(roots) & shares.keys():
        seen, todo = set(), [root]
        while todo:
            for view in shares.get(todo.pop(), ()):
                if view not in seen:
                    seen.add(view)
                    todo.append(view)
        closed[root] = seen
    return closed
