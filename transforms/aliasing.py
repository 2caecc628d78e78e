"""Updates seen through another name: refused before they are compiled wrongly.

NumPy updates arrays in place: after ``v = w`` (or ``v = w[1:]``, ``v = w.T``),
``w[0] = 1.0`` and ``w *= 2.0`` change what ``v`` holds too. s2sgrad's derivative
code treats every name as holding a value, so a name that shares memory with an
updated array and is read after the update would be differentiated as if it still
held the old value: a silently wrong derivative (and, for ``w *= 2.0``, which the
compiler writes as ``w = w * 2.0``, a wrong value too).

This pass runs on the surface IR (before normalization, so the names are the
user's) and refuses such an update at its line. Names that may share memory are
grouped through assignments that can make views: a plain alias, indexing, the
``.T``/``.real`` attributes, view methods and functions (``reshape``, ``ravel``,
``np.asarray`` ...) and iteration over an array's rows. A read counts as "after"
the update when it comes later in the function, or anywhere in a loop around the
update while the alias was bound outside that loop.

The caller's own arrays (updates of an argument) are covered by the aliasing rule
in ``analysis.check_inplace_updates``; the API never hands the caller's arrays to
code that could change them.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np
from s2sgrad.transforms import dataflow

from s2sgrad import ir
from s2sgrad.errors import UnsupportedSyntaxError

# Methods and functions whose result may be a view of their first argument.
VIEW_METHODS = frozenset(
    {"reshape", "ravel", "view", "transpose", "swapaxes", "squeeze", "diagonal"}
)
VIEW_FUNCTIONS = (
    np.reshape,
    np.ravel,
    np.transpose,
    np.swapaxes,
    np.moveaxis,
    np.squeeze,
    np.expand_dims,
    np.asarray,
    np.asanyarray,
    np.atleast_1d,
    np.atleast_2d,
    np.atleast_3d,
    np.diagonal,
    np.broadcast_to,
    np.real,
    np.imag,
)
VIEW_ATTRIBUTES = frozenset({"T", "mT", "real", "imag", "flat"})


@dataclass
class _Program:
    """The statements of a function in order, with the loops around each one."""

    order: list[tuple[ir.Stmt, tuple[int, ...]]] = field(default_factory=list)
    loop_spans: dict[int, tuple[int, int]] = field(default_factory=dict)
    # The compound statements (branches and loops) around each statement.
    enclosing: list[tuple[int, ...]] = field(default_factory=list)

    def add(self, body: tuple[ir.Stmt, ...], loops: tuple[int, ...], around=()) -> None:
        for stmt in body:
            position = len(self.order)
            self.order.append((stmt, loops))
            self.enclosing.append(around)
            if isinstance(stmt, ir.If):
                self.add(stmt.body, loops, (*around, position))
                self.add(stmt.orelse, loops, (*around, -position - 1))
            elif ir.is_loop(stmt):
                inner = (*loops, position)
                if isinstance(stmt, ir.While):
                    self.add(stmt.test_block, inner, (*around, position))
                self.add(stmt.body, inner, (*around, position))
                self.loop_spans[position] = (position, len(self.order) - 1)

    def surely_runs_after(self, first: int, then: int) -> bool:
        """Whether the statement at ``then`` surely runs once the one at ``first`` has (it
        comes later, in no branch or loop that ``first`` is not also in)."""
        outer = self.enclosing[then]
        return first < then and self.enclosing[first][: len(outer)] == outer

    def runs_before(self, first: int, then: int) -> bool:
        """Whether the statement at ``first`` surely runs before the one at ``then`` (it
        comes earlier, outside any branch or loop that ``then`` is not also in)."""
        outer = self.enclosing[first]
        return first < then and self.enclosing[then][: len(outer)] == outer


def _bound(stmt: ir.Stmt) -> list[str]:
    """Names a statement binds afresh (an update in place binds nothing new)."""
    if isinstance(stmt, (ir.Assign, ir.Unpack, ir.For)):
        return dataflow.writes(stmt)
    return []


def _updated(stmt: ir.Stmt) -> tuple[str, bool] | None:
    """``(name, is_item_update)`` for ``name[...] = v``, ``name[...] op= v`` and ``name op= v``."""
    if isinstance(stmt, ir.SetItem):
        return stmt.target.id, True
    if isinstance(stmt, ir.AugAssign):
        if isinstance(stmt.target, ir.Name):
            return stmt.target.id, False
        return stmt.target[0].id, True
    return None


def _view_base(value, *, integer_index_views: bool) -> str | None:
    """The name whose memory ``value`` may share, if it can be a view of one."""
    if isinstance(value, ir.Name):
        return value.id
    if isinstance(value, ir.Attribute) and value.attr in VIEW_ATTRIBUTES:
        return _name_of(value.value)
    if isinstance(value, ir.MethodCall) and value.method in VIEW_METHODS:
        return _name_of(value.obj)
    if isinstance(value, ir.Call) and isinstance(value.fn, ir.Ref) and value.args:
        fn = value.fn.value
        if fn is operator.getitem:
            if not integer_index_views and not _has_slice(value.args[1]):
                return None  # x[i] of a 1-D array is a number, not a view
            return _name_of(value.args[0])
        if any(fn is f for f in VIEW_FUNCTIONS):
            return _name_of(value.args[0])
    return None


def _name_of(atom) -> str | None:
    return atom.id if isinstance(atom, ir.Name) else None


def _has_slice(index) -> bool:
    items = index.items if isinstance(index, ir.Index) else (index,)
    return any(
        isinstance(it, ir.Slice) or (isinstance(it, ir.Const) and it.value in (None, Ellipsis))
        for it in items
    )


def _sharing_groups(program: _Program, *, integer_index_views: bool) -> dict[str, set[str]]:
    """For each name, the names that may share its memory (itself included)."""
    parent: dict[str, str] = {}

    def find(n: str) -> str:
        while parent.setdefault(n, n) != n:
            n = parent[n]
        return n

    for stmt, _ in program.order:
        base = None
        if isinstance(stmt, ir.Assign) and len(stmt.targets) == 1:
            base = _view_base(stmt.value, integer_index_views=integer_index_views)
            target = stmt.targets[0].id
        elif isinstance(stmt, ir.For) and isinstance(stmt.target, ir.Name):
            base = _name_of(stmt.iter)  # `for row in A`: each row is a view of A
            target = stmt.target.id
        if base is not None and base != target:
            parent[find(target)] = find(base)
    groups: dict[str, set[str]] = {}
    for n in list(parent):
        groups.setdefault(find(n), set()).add(n)
    return {n: groups[find(n)] for n in parent}


def check_updates_seen_through_aliases(fn: ir.FunctionDef) -> None:
    """Refuse an in-place update when another name that may share the updated memory is
    read after it (see the module docstring)."""
    program = _Program()
    program.add(fn.body, ())
    reads: dict[str, list[int]] = {}
    binds: dict[str, list[int]] = {}
    for position, (stmt, _) in enumerate(program.order):
        for name in dataflow.reads(stmt):
            reads.setdefault(name, []).append(position)
        for name in _bound(stmt):
            binds.setdefault(name, []).append(position)
    groups = {item: _sharing_groups(program, integer_index_views=item) for item in (True, False)}
    element_names = {
        stmt.targets[0].id
        for stmt, _ in program.order
        if isinstance(stmt, ir.Assign)
        and len(stmt.targets) == 1
        and _view_base(stmt.value, integer_index_views=True) is not None
        and _view_base(stmt.value, integer_index_views=False) is None
    }
    for position, (stmt, loops) in enumerate(program.order):
        updated = _updated(stmt)
        if updated is None:
            continue
        name, item_update = updated
        # `acc = x[0]; acc += v` most likely updates a number: x[0] of a 1-D array is a
        # copy. Only there does an integer index not count as making a view.
        views = item_update or name not in element_names
        for other in sorted(groups[views].get(name, {name}) - {name}):
            if _read_after(other, position, loops, program, reads, binds):
                raise UnsupportedSyntaxError(
                    f"in-place update of `{name}`: `{other}` may share memory with it (a view "
                    f"or an alias) and is read afterwards; NumPy changes `{other}` too, which "
                    "s2sgrad's derivative would not see",
                    stmt.loc,
                    f"make `{other}` a copy (`np.copy(...)` or `.copy()`), or compute a new "
                    f"array (`{name} = {name} * ...` / `np.where(...)`) instead of updating "
                    f"`{name}` in place",
                )


def _read_after(
    name: str,
    position: int,
    loops: tuple[int, ...],
    program: _Program,
    reads: dict[str, list[int]],
    binds: dict[str, list[int]],
) -> bool:
    """Whether ``name`` may be read after the statement at ``position`` runs, still bound
    as it was then: later in the function, or in a loop around it that does not rebind it."""
    later = [r for r in reads.get(name, ()) if r > position]
    for r in later:
        rebound = any(
            position < b < r
            and (program.runs_before(b, r) or program.surely_runs_after(position, b))
            for b in binds.get(name, ())
        )
        if not rebound:
            return True
    for loop in loops:
        start, end = program.loop_spans[loop]
        if any(start <= b <= end for b in binds.get(name, ())):
            continue  # bound afresh on each iteration before it is read there
        if any(start <= r <= end for r in reads.get(name, ())):
            return True
    return False
