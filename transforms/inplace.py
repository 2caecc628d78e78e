"""Index reads accumulate their cotangents in place, not through dense zeros.

Every read ``x[idx]`` of a differentiated array contributes
``dx = dx + unindex(g, x, idx)``: zeros the size of ``x``, ``g`` written at
``idx``, and a full-size add. A stencil reads ``u`` three times per step, a
scalar loop reads ``x[i]`` once per element (n reads of n zeros: quadratic).
Hand-written adjoints do ``dx[idx] += g`` instead. That is only safe where the
array ``dx`` holds was made by the derivative code and nothing else refers to
it (no view, no alias, no saved copy), so this pass proves it:

* a name is *owned* after an assignment of a fresh array (``unindex``,
  ``zero_at``, ``add_at``, ``add_into``, ``np.zeros_like``) until anything reads it, other than the
  accumulation itself;
* ``d = d + t`` with ``t = unindex(g, x, idx)`` (read nowhere else) becomes
  ``d = add_into(d, g, idx)`` where ``d`` is owned, else ``d = add_at(d, idx, g)``
  (one copy, no zeros); either way ``d`` is owned afterwards;
* ``t = d[idx]`` followed by ``d = zero_at(d, idx)`` (the adjoint of overwriting
  ``x[idx]``: read the part's cotangent, then zero it) becomes ``t = part_copy(d, idx)``
  and ``d = zero_into(d, idx)`` where ``d`` is owned: the part is copied (a view would
  be zeroed with it), not all of ``d``, so an element loop stays linear;
* ``d = unindex(g, x, idx)``, then only in-place accumulations into ``d``, then
  ``d = d + y`` with ``y`` an owned array made before the ``unindex`` and read nowhere
  else, becomes ``d = add_into(y, g, idx)`` at the ``unindex``, and the sum goes: the
  contributions land in ``y`` (a stencil step's ``dnew``), with no zeros and no full-size
  add. Both sides of an accumulation are cotangents of one variable, so one shape;
* a loop keeps a name owned across iterations when it is owned on entry and at
  the end of the body (a fixpoint); a branch keeps what both arms keep.

Arithmetic (``d = a + b``, ``-a``...) makes a fresh array too. The unindex statements
left unread are removed by dead-code elimination.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass, field, replace

from s2sgrad.transforms import dataflow
from s2sgrad.transforms.prims import ADD, GETITEM, PART_COPY, ZERO_AT, ZERO_INTO, ZEROS_LIKE

from s2sgrad import ir, runtime

ADD_INTO = ir.Ref("add_into", runtime.add_into)
ADD_AT = ir.Ref("add_at", runtime.add_at)
# Runtime helpers and operators that return a new array nothing else refers to.
_FRESH = (
    runtime.unindex,
    runtime.zero_at,
    runtime.zero_into,
    runtime.add_at,
    runtime.add_into,
    ZEROS_LIKE.value,
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.neg,
)


def accumulate_in_place(fn: ir.FunctionDef) -> ir.FunctionDef:
    """Rewrite ``d = d + unindex(g, x, idx)`` as an in-place (or one-copy) index add."""
    reads = Counter(n for s in ir.walk_stmts(fn.body) for n in dataflow.reads(s))
    body, _ = _Pass(reads, fn.temps).block(fn.body, frozenset())
    return replace(fn, body=body)


def _handover(stmt: ir.Stmt, starts: dict) -> str | None:
    """``t`` where ``stmt`` is ``d = t`` of a started ``t``, else None."""
    if (
        isinstance(stmt, ir.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.value, ir.Name)
        and stmt.value.id in starts
        and stmt.value.id != stmt.target.id
    ):
        return stmt.value.id
    return None


@dataclass
class _Start:
    """A ``d = unindex(g, x, idx)`` at ``position`` in the block's output, the names owned
    just before it, and the names written since."""

    position: int
    stmt: ir.Assign
    owned: frozenset[str]
    written: set[str] = field(default_factory=set)


def _call_of(value, fns) -> bool:
    return isinstance(value, ir.Call) and isinstance(value.fn, ir.Ref) and value.fn.value in fns


class _Pass:
    def __init__(self, reads: Counter, temps: frozenset[str]):
        self.reads = reads
        self.temps = temps

    def block(
        self, body: tuple[ir.Stmt, ...], owned: frozenset[str]
    ) -> tuple[tuple[ir.Stmt, ...], frozenset[str]]:
        owned = set(owned)
        gathers: dict[str, ir.Call] = {}  # temp -> its `unindex(g, x, idx)`, in this block
        zeroed: set[int] = set()  # id of each `d = zero_at(d, idx)` to do in place
        starts: dict[str, _Start] = {}  # d -> its `d = unindex(g, x, idx)`, still fusable
        out: list[ir.Stmt] = []
        for k, stmt in enumerate(body):
            if self.fuse_start(stmt, starts, owned, out):
                continue
            handed = _handover(stmt, starts)
            if handed:  # `d = t` of a started `t`: follow `d`
                starts[stmt.target.id] = starts.pop(handed)
            starting = self.is_start(stmt)
            owned_before = frozenset(owned) if starting else None
            if id(stmt) in zeroed:  # `d` stayed owned since its part was copied out
                stmt = replace(stmt, value=replace(stmt.value, fn=ZERO_INTO))
                owned.add(stmt.target.id)
            elif isinstance(stmt, ir.Assign) and len(stmt.targets) == 1:
                zero = self.zeroing_after(stmt, body, k, owned)
                if zero is not None:
                    zeroed.add(id(zero))
                    stmt = replace(stmt, value=replace(stmt.value, fn=PART_COPY))
                    owned.discard(stmt.target.id)
                else:
                    stmt = self.assign(stmt, owned, gathers)
            elif isinstance(stmt, ir.If):
                owned -= set(ir.atom_names(stmt.test))
                b, owned_b = self.block(stmt.body, frozenset(owned))
                o, owned_o = self.block(stmt.orelse, frozenset(owned))
                stmt = replace(stmt, body=b, orelse=o)
                owned = set(owned_b & owned_o)
            elif ir.is_loop(stmt):
                stmt, owned = self.loop(stmt, frozenset(owned))
                owned = set(owned)
            else:
                owned -= set(dataflow.reads(stmt)) | set(dataflow.writes(stmt))
            if not handed:
                self.follow_starts(stmt, starts)
            if starting:
                starts[stmt.target.id] = _Start(len(out), stmt, owned_before)
            out.append(stmt)
        return tuple(out), frozenset(owned)

    @staticmethod
    def is_start(stmt: ir.Stmt) -> bool:
        """A contribution ``d = unindex(g, x, idx)`` that may start a fused sum."""
        return (
            isinstance(stmt, ir.Assign)
            and len(stmt.targets) == 1
            and _call_of(stmt.value, (runtime.unindex,))
            and len(stmt.value.args) == 3
            and not stmt.value.kwargs
        )

    def fuse_start(
        self, stmt: ir.Stmt, starts: dict[str, _Start], owned: set[str], out: list[ir.Stmt]
    ) -> bool:
        """``d = d + y`` (or ``y + d``) closing a ``d = unindex(g, x, idx)`` of ``starts``:
        the ``unindex`` becomes ``d = add_into(y, g, idx)`` in ``out``, the sum goes."""
        if not (
            isinstance(stmt, ir.Assign)
            and len(stmt.targets) == 1
            and stmt.target.id in starts
            and _call_of(stmt.value, (ADD.value,))
            and len(stmt.value.args) == 2
            and not stmt.value.kwargs
            and all(isinstance(a, ir.Name) for a in stmt.value.args)
        ):
            return False
        d = stmt.target.id
        a, b = (v.id for v in stmt.value.args)
        y = b if a == d else a if b == d else None
        start = starts[d]
        if (
            y is None
            or y == d
            or y not in owned
            or y not in start.owned
            or y in start.written
            or self.reads[y] != 1
        ):
            return False
        g, _, idx = start.stmt.value.args
        out[start.position] = replace(start.stmt, value=ir.Call(ADD_INTO, (ir.Name(y), g, idx)))
        del starts[d]
        owned.discard(y)
        owned.add(d)
        return True

    @staticmethod
    def follow_starts(stmt: ir.Stmt, starts: dict[str, _Start]) -> None:
        """Forget each start whose array ``stmt`` (as rewritten) reads other than to add into
        it in place, ``d = add_into(d, ...)``; note the names it writes."""
        if not starts:
            return
        touched = set(dataflow.deep_reads((stmt,))) | set(dataflow.deep_writes((stmt,)))
        accumulating = None
        if isinstance(stmt, ir.Assign) and len(stmt.targets) == 1:
            value = stmt.value
            first = value.args[0] if isinstance(value, ir.Call) and value.args else None
            if (
                _call_of(value, (ADD_INTO.value,))
                and first == stmt.target
                and stmt.target.id not in ir.atom_names(ir.Seq("tuple", value.args[1:]))
            ):
                accumulating = stmt.target.id
        for d in list(starts):
            if d in touched and d != accumulating:
                del starts[d]
            else:
                starts[d].written.update(dataflow.deep_writes((stmt,)))

    def assign(self, stmt: ir.Assign, owned: set[str], gathers: dict[str, ir.Call]) -> ir.Stmt:
        d = stmt.target.id
        value = stmt.value
        if (
            _call_of(value, (ADD.value,))
            and len(value.args) == 2
            and all(isinstance(a, ir.Name) for a in value.args)
            and value.args[0].id == d
            and value.args[1].id in gathers
        ):
            g, _, idx = gathers.pop(value.args[1].id).args
            if d in owned:
                stmt = replace(stmt, value=ir.Call(ADD_INTO, (value.args[0], g, idx)))
            else:
                stmt = replace(stmt, value=ir.Call(ADD_AT, (value.args[0], idx, g)))
            owned -= set(ir.atom_names(g)) | set(ir.atom_names(idx))
            owned.add(d)
            return stmt
        # `d = t`, the only read of an owned temporary `t`, hands the array over.
        handed_over = isinstance(value, ir.Name) and value.id in owned and self.reads[value.id] == 1
        owned -= set(ir.atom_names(value))
        owned.discard(d)
        if _call_of(value, _FRESH) or handed_over:
            owned.add(d)
        if (
            _call_of(value, (runtime.unindex,))
            and len(value.args) == 3
            and not value.kwargs
            and d in self.temps
            and self.reads[d] == 1
        ):
            gathers[d] = value
        return stmt

    def zeroing_after(self, stmt: ir.Assign, body, k: int, owned: set[str]) -> ir.Stmt | None:
        """For ``t = d[idx]`` with ``d`` owned, the ``d = zero_at(d, idx)`` that is the next
        statement of the block to touch ``d``, or None."""
        value = stmt.value
        if not (
            _call_of(value, (GETITEM.value,))
            and len(value.args) == 2
            and isinstance(value.args[0], ir.Name)
            and value.args[0].id in owned
        ):
            return None
        d, idx = value.args
        if d.id in ir.atom_names(idx) or stmt.target.id == d.id:
            return None
        for j in range(k + 1, len(body)):
            later = body[j]
            if d.id not in dataflow.deep_reads((later,)) | dataflow.deep_writes((later,)):
                continue
            if (
                isinstance(later, ir.Assign)
                and later.targets == (d,)
                and _call_of(later.value, (ZERO_AT.value,))
                and later.value.args == (d, idx)
                and not later.value.kwargs
            ):
                return later
            return None
        return None

    def loop(
        self, loop: ir.For | ir.While, owned: frozenset[str]
    ) -> tuple[ir.Stmt, frozenset[str]]:
        header = set(ir.atom_names(loop.iter)) if isinstance(loop, ir.For) else set()
        if isinstance(loop, ir.For):
            header |= set(dataflow.pattern_names(loop.target))
        entry = owned - header
        inner = ir.iteration(loop)
        if any(isinstance(s, (ir.Break, ir.Continue)) for s in ir.walk_stmts(inner)):
            # Leaving or restarting the body midway: keep it simple, own nothing across it.
            entry = frozenset()
            if isinstance(loop, ir.While):
                test, _ = self.block(loop.test_block, entry)
                body, _ = self.block(loop.body, entry)
                return replace(loop, test_block=test, body=body), frozenset()
            body, _ = self.block(loop.body, entry)
            return replace(loop, body=body), frozenset()
        while True:
            if isinstance(loop, ir.While):
                test, after_test = self.block(loop.test_block, entry)
                after_test -= set(ir.atom_names(loop.test))
                body, end = self.block(loop.body, after_test)
                new = replace(loop, test_block=test, body=body)
                exit_owned = after_test
            else:
                body, end = self.block(loop.body, entry)
                new = replace(loop, body=body)
                exit_owned = entry
            if entry <= end:  # what every iteration starts with, it also ends with
                return new, exit_owned
            entry = entry & end
