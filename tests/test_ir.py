"""The IR's generic traversal: the one table of nested blocks, and what walks it.

Passes that only care about a few statement kinds descend through
``ir.child_blocks``/``ir.map_blocks``/``ir.Transformer``; these tests pin what
those promise, and that a compound statement cannot be added without saying
where its blocks are.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest

from s2sgrad import ir


def _assign(name: str, value: int) -> ir.Assign:
    return ir.Assign((ir.Name(name),), ir.Const(value))


def _nested() -> tuple[ir.Stmt, ...]:
    """``a = 1; while t: (t = 2); b = 3; if c: (d = 4) else: (for i in r: e = 5)``."""
    loop = ir.For(ir.Name("i"), ir.Name("r"), (_assign("e", 5),))
    return (
        _assign("a", 1),
        ir.While((_assign("t", 2),), ir.Name("t"), (_assign("b", 3),)),
        ir.If(ir.Name("c"), (_assign("d", 4),), (loop,)),
    )


def test_every_field_holding_statements_is_a_registered_block():
    """A statement type with a field of statements must list it in ``BLOCK_FIELDS``,
    or generic passes would silently skip what is inside it."""
    hints_of = {t: typing.get_type_hints(t, vars(ir)) for t in typing.get_args(ir.Stmt)}
    for kind, hints in hints_of.items():
        block_fields = tuple(
            f.name
            for f in dataclasses.fields(kind)
            if typing.get_origin(hints[f.name]) is tuple
            and typing.get_args(hints[f.name])[0] is ir.Stmt
        )
        assert ir.BLOCK_FIELDS.get(kind, ()) == block_fields, kind.__name__


def test_child_blocks_run_in_order_and_iteration_concatenates_them():
    a, loop, branch = _nested()
    assert ir.child_blocks(a) == ()
    assert ir.child_blocks(loop) == (loop.test_block, loop.body)
    assert ir.child_blocks(branch) == (branch.body, branch.orelse)
    assert ir.iteration(loop) == loop.test_block + loop.body
    assert [ir.is_compound(s) for s in (a, loop, branch)] == [False, True, True]
    assert [ir.is_loop(s) for s in (a, loop, branch)] == [False, True, False]


def test_walks_visit_every_statement_outside_in():
    body = _nested()
    names = [s.target.id for s in ir.walk_stmts(body) if isinstance(s, ir.Assign)]
    assert names == ["a", "t", "b", "d", "e"]
    assert len(list(ir.blocks(body))) == 6  # the body, test, loop body, then, else, for body


def test_map_blocks_rewrites_only_nested_blocks():
    a, loop, branch = _nested()
    assert ir.map_blocks(a, lambda b: pytest.fail("a simple statement has no blocks")) is a
    emptied = ir.map_blocks(branch, lambda b: ())
    assert (emptied.test, emptied.body, emptied.orelse) == (branch.test, (), ())


class _DoubleAssigns(ir.Transformer):
    """Duplicates every assignment, wherever it is nested; leaves the rest to the base."""

    def statement(self, stmt):
        if isinstance(stmt, ir.Assign):
            return (stmt, stmt)
        return super().statement(stmt)


def test_transformer_descends_by_default_and_splices_several_statements():
    doubled = _DoubleAssigns().block(_nested())
    names = [s.target.id for s in ir.walk_stmts(doubled) if isinstance(s, ir.Assign)]
    assert names == ["a", "a", "t", "t", "b", "b", "d", "d", "e", "e"]
    assert [type(s) for s in doubled] == [ir.Assign, ir.Assign, ir.While, ir.If]
