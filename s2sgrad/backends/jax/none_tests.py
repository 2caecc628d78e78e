"""Refuse, for the JAX backend, an ``is None`` test that JAX would answer wrongly.

JAX runs a loop as one ``lax`` loop and a traced ``if`` as one ``lax.cond``, each
with one type per variable, so the generated code treats None as "not set yet":
zeros of the type the variable gets elsewhere, or the constant another path
gives it. That is right for the temporaries s2sgrad generates, which nothing
tests for None, and wrong for a user's variable that is None on one path and a
value on another and then tested::

    prev = None
    for i in range(n):
        if prev is None: ...     # JAX: the first iteration sees zeros, not None
        prev = x[i]

This pass follows, through the user's (primal) function, which variables may
be None (set from the literal ``None``) and which may hold a value, merging
both branches of every ``if`` and every iteration of every loop. A test ``v is
None`` / ``v is not None`` where ``v`` may be either is refused at its line.
It merges branches whose test is a Python constant too, which JAX would run as
a Python ``if``: a rare false alarm, with backend='numpy' as the way out.
``control`` checks, at trace time, the case this cannot see: a None that
comes in as an argument and meets a loop whose body tests it.
"""

from __future__ import annotations

import operator

from s2sgrad import ir
from s2sgrad.errors import UnsupportedSyntaxError

_NONE, _VALUE = "None", "a value"
_IS_TESTS = (operator.is_, operator.is_not)

State = dict[str, frozenset]


def refuse_ambiguous_none_tests(fn: ir.FunctionDef) -> None:
    """Raise ``UnsupportedSyntaxError`` at the first ``is None`` test in ``fn`` whose
    variable may be None on one path and a value on another."""
    _Flow().block(fn.body, {})


def _merge(*states: State) -> State:
    out: State = {}
    for state in states:
        for name, kinds in state.items():
            out[name] = out.get(name, frozenset()) | kinds
    return out


class _Flow:
    def __init__(self) -> None:
        # Per enclosing loop: the states at its `break`s and at its `continue`s.
        self.jumps: list[tuple[list[State], list[State]]] = []

    def block(self, body: tuple[ir.Stmt, ...], state: State) -> State:
        for stmt in body:
            state = self.statement(stmt, state)
        return state

    def statement(self, stmt: ir.Stmt, state: State) -> State:
        if isinstance(stmt, ir.Assign):
            _check(stmt, state)
            kinds = _kinds_of(stmt.value, state) if len(stmt.targets) == 1 else {_VALUE}
            return {**state, **{t.id: frozenset(kinds) for t in stmt.targets}}
        if isinstance(stmt, ir.Unpack):
            return {**state, **dict.fromkeys(_pattern_names(stmt.pattern), frozenset({_VALUE}))}
        if isinstance(stmt, ir.If):
            return _merge(self.block(stmt.body, dict(state)), self.block(stmt.orelse, dict(state)))
        if ir.is_loop(stmt):
            return self.loop(stmt, state)
        if isinstance(stmt, (ir.Break, ir.Continue)) and self.jumps:
            self.jumps[-1][isinstance(stmt, ir.Continue)].append(dict(state))
        return state

    def loop(self, loop: ir.For | ir.While, state: State) -> State:
        """The state after any number of iterations (zero included), or at a ``break``:
        the fixed point of the state at the loop's head (entry, and the end of the body
        or a ``continue``), merged with the state at every ``break``."""
        targets = _pattern_names(loop.target) if isinstance(loop, ir.For) else []
        head = dict(state)
        while True:
            self.jumps.append(([], []))
            start = {**head, **dict.fromkeys(targets, frozenset({_VALUE}))}
            if isinstance(loop, ir.While):
                start = self.block(loop.test_block, start)  # it also runs before leaving
            end = self.block(loop.body, start)
            broke, continued = self.jumps.pop()
            merged = _merge(head, end, *continued)
            if merged == head:
                return _merge(head, start, *broke)
            head = merged


def _pattern_names(pattern) -> list[str]:
    if isinstance(pattern, ir.Name):
        return [pattern.id]
    if isinstance(pattern, (tuple, list)):
        return [n for p in pattern for n in _pattern_names(p)]
    return list(ir.atom_names(pattern))


def _kinds_of(value, state: State) -> set:
    if isinstance(value, ir.Const) and value.value is None:
        return {_NONE}
    if isinstance(value, ir.Name):
        return set(state.get(value.id, {_VALUE}))
    return {_VALUE}


def _check(stmt: ir.Assign, state: State) -> None:
    call = stmt.value
    if not (isinstance(call, ir.Call) and isinstance(call.fn, ir.Ref) and len(call.args) == 2):
        return
    if not any(call.fn.value is test for test in _IS_TESTS):  # identity: any callable
        return
    a, b = call.args
    if isinstance(a, ir.Const) and a.value is None:
        a, b = b, a
    if not (isinstance(a, ir.Name) and isinstance(b, ir.Const) and b.value is None):
        return
    if state.get(a.id, frozenset()) >= {_NONE, _VALUE}:
        raise UnsupportedSyntaxError(
            f"`{a.id}` may be None or a value here, depending on a branch or on how many "
            "times a loop ran, and the JAX backend cannot tell the two apart: it runs "
            "each loop and traced branch with one type per variable, None being zeros",
            stmt.loc,
            f"keep a separate flag (`have_{a.id} = False`, set True where `{a.id}` is set) "
            "and test that, or use backend='numpy'",
        )
