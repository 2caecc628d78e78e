"""Structured control flow: the shape the derivative transforms can reverse.

Python lets control leave a block from anywhere (``break``, ``continue``,
``return``) and loop over anything iterable. A backward sweep has to replay
the forward sweep's decisions in reverse, which is only easy when every block
is entered at its top and left at its bottom, every loop counts through a
``range`` and every branch decision sits in a variable of its own. This pass
(run after ``normalize``, IR in A-normal form in and out) rewrites a function
into that shape, without changing what it computes:

* **loops count**: ``for row in X`` becomes ``idx_range = range(len(X))``,
  ``for idx in idx_range: row = X[idx]``; ``enumerate`` and ``zip`` (nested
  too) become the same index loop, with ``min`` of the lengths for ``zip``;
  ``for i in range(a, b, c)`` keeps the user's ``i``. Every ``for`` loops a
  plain name over a name bound, just before the loop, to a ``range(...)``
  call. *Assumption*: what a ``for`` iterates over is an indexable sequence
  with a length (an array, a list, a tuple, a range), not a one-shot iterator;
  a sequence rebound inside the loop is copied first, as Python iterates over
  the object it started with.
* **no jumps**: ``continue`` sets a ``skip`` flag (reset at the top of every
  iteration), ``break`` sets a ``broke`` flag (and ``skip``, when the loop has
  one), and every statement after a point that may have set a flag runs under
  ``go = not <flag>; if go: ...``. A loop that can stop early ends its body with
  its only jump, ``if broke: break``.
* **one return, at the end**: an early return assigns ``result`` (and the
  ``returned`` flag when anything after it could still run), sets the flags of
  every loop it leaves, and the function ends with ``return result``. A
  function that can fall off its end returns None, as Python would.
* **recorded decisions**: every ``if`` (also those in a ``while`` test's own
  statements) tests a fresh name assigned just before it (``cond = x > 0;
  if cond: ...``), so the test can be read again after the branch has
  reassigned the user's own variables.

Flags are only created where needed: when one branch of an ``if`` always
leaves the block, the statements after the ``if`` move into the other branch
instead (``if c: return a`` / ``return b`` becomes ``if c: result = a`` /
``else: result = b``), and a ``continue`` (or a ``return``) with nothing after
it in its iteration (or function) is dropped.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from s2sgrad.transforms import dataflow
from s2sgrad.transforms.names import FreshNames
from s2sgrad.transforms.prims import ADD, FALSE, GETITEM, LEN, MIN, NONE, NOT, RANGE, TRUE

from s2sgrad import ir
from s2sgrad.errors import SourceLocation, UnsupportedSyntaxError

# Builtins returning one-shot iterators, which the index loops above cannot read.
_ITERATORS = {builtins.reversed, builtins.map, builtins.filter, builtins.iter}

JUMPS = (ir.Break, ir.Continue, ir.Return)


def structure(fn: ir.FunctionDef) -> ir.FunctionDef:
    """Normalized IR -> the same function with counted loops, no jumps and a single return."""
    return _Structurer(fn).function()


# --------------------------------------------------------------------------- what a block can do


def _exits(stmts: tuple[ir.Stmt, ...] | list[ir.Stmt]) -> set[str]:
    """The ways control may leave ``stmts`` early: "break", "continue", "return".

    A ``break`` or ``continue`` inside a nested loop leaves only that loop, so
    it does not count; a ``return`` anywhere does.
    """
    kinds: set[str] = set()
    for stmt in stmts:
        if isinstance(stmt, ir.Break):
            kinds.add("break")
        elif isinstance(stmt, ir.Continue):
            kinds.add("continue")
        elif isinstance(stmt, ir.Return):
            kinds.add("return")
        elif isinstance(stmt, ir.If):
            kinds |= _exits(stmt.body) | _exits(stmt.orelse)
        elif ir.is_loop(stmt):
            if any(isinstance(s, ir.Return) for s in ir.walk_stmts(stmt.body)):
                kinds.add("return")
    return kinds


def _always_exits(stmts: tuple[ir.Stmt, ...] | list[ir.Stmt]) -> bool:
    """True when every path through ``stmts`` ends in a break, continue or return."""
    return any(
        isinstance(s, JUMPS)
        or (isinstance(s, ir.If) and _always_exits(s.body) and _always_exits(s.orelse))
        for s in stmts
    )


def _reachable(stmts: tuple[ir.Stmt, ...]) -> list[ir.Stmt]:
    """``stmts`` up to the first one after which nothing can run (Python never runs the rest)."""
    out: list[ir.Stmt] = []
    for stmt in stmts:
        out.append(stmt)
        if _always_exits((stmt,)):
            break
    return out


def _merge_rest(stmt: ir.If, rest: Iterable[ir.Stmt]) -> ir.If | None:
    """The ``if`` with the statements after it moved into the one branch that can reach
    them, or None where both can.

    ``if c: return a`` followed by ``return b`` is ``if c: return a else: return b``,
    which needs no flag.
    """
    if _always_exits(stmt.body):
        return replace(stmt, orelse=(*stmt.orelse, *rest))
    if _always_exits(stmt.orelse):
        return replace(stmt, body=(*stmt.body, *rest))
    return None


# --------------------------------------------------------------------------- loops


@dataclass
class _Loop:
    """The flags of one loop being structured."""

    broke: ir.Name | None  # the loop must stop: a break, or a return inside it
    skip: ir.Name | None  # the rest of this iteration must be skipped: a continue

    @property
    def stop(self) -> ir.Name:
        """The flag every early exit from this iteration sets (what guards read)."""
        flag = self.skip or self.broke
        assert flag is not None
        return flag


@dataclass(frozen=True)
class _Counter:
    """The running count ``enumerate`` pairs with each element: ``index + start``."""

    start: Any  # an atom


@dataclass(frozen=True)
class _Items:
    """The elements of the indexable sequence ``seq`` (a name or a global)."""

    seq: Any


# An element tree: what one iteration of a (possibly nested) enumerate/zip yields.
Elements = _Counter | _Items | tuple


def _is_zero(atom: Any) -> bool:
    return isinstance(atom, ir.Const) and type(atom.value) is int and atom.value == 0


# --------------------------------------------------------------------------- the pass


def range_names(body: tuple[ir.Stmt, ...]) -> frozenset[str]:
    """Names that only ever hold ranges: every write is ``name = range(...)``, a slice of
    such a name, a pop from a stack that only ranges are pushed on, or None (derivative
    code saves an inner loop's range for its backward sweep, and starts it as None)."""
    writes: dict[str, list[ir.Stmt]] = {}
    pushed: dict[str, list[ir.Stmt]] = {}
    for stmt in ir.walk_stmts(body):
        for n in dataflow.writes(stmt):
            writes.setdefault(n, []).append(stmt)
        if isinstance(stmt, ir.Push):
            pushed.setdefault(stmt.stack, []).append(stmt)
    ranges = {
        n
        for n, stmts in writes.items()
        if all(
            _is_range_assignment(s) or isinstance(s, ir.Pop) or _range_slice_of(s) or _is_none(s)
            for s in stmts
        )
    }
    while True:  # drop names popped from stacks, or sliced from names, that hold anything else
        kept = {
            n
            for n in ranges
            if any(_is_range_assignment(s) or _range_slice_of(s) in ranges for s in writes[n])
            and all(
                (not isinstance(s, ir.Pop) or _all_ranges(pushed.get(s.stack, []), ranges))
                and (_range_slice_of(s) is None or _range_slice_of(s) in ranges)
                for s in writes[n]
            )
        }
        if kept == ranges:
            return frozenset(ranges)
        ranges = kept


def _is_none(stmt: ir.Stmt) -> bool:
    """``name = None``: derivative code's value of a range no iteration has made yet."""
    return isinstance(stmt, ir.Assign) and stmt.value == ir.Const(None)


def _all_ranges(pushes: list[ir.Push], ranges: set[str]) -> bool:
    return all(isinstance(p.value, ir.Name) and p.value.id in ranges for p in pushes)


def _range_slice_of(stmt: ir.Stmt) -> str | None:
    """``r`` for ``name = r[a:b]`` (a slice of a range is a range), else None."""
    if not (
        isinstance(stmt, ir.Assign)
        and len(stmt.targets) == 1
        and ir.is_call_of(stmt.value, operator.getitem)
        and len(stmt.value.args) == 2
        and isinstance(stmt.value.args[0], ir.Name)
    ):
        return None
    index = stmt.value.args[1]
    items = index.items if isinstance(index, ir.Index) else (index,)
    if len(items) == 1 and isinstance(items[0], ir.Slice):
        return stmt.value.args[0].id
    return None


def _is_range_assignment(stmt: ir.Stmt) -> bool:
    return (
        isinstance(stmt, ir.Assign)
        and len(stmt.targets) == 1
        and ir.is_call_of(stmt.value, builtins.range)
    )


class _Structurer:
    def __init__(self, fn: ir.FunctionDef):
        self.fn = fn
        self.user_names = dataflow.all_local_names(fn)
        # A new local must not shadow a global the function reads either (`result`, `seq`...).
        self.names = FreshNames(self.user_names | _global_roots(fn.body))
        self.temps = set(fn.temps)
        self.loops: list[_Loop] = []
        self.result: ir.Name | None = None  # None while the function keeps its own final return
        self.returned: ir.Name | None = None
        self.flags: set[str] = set()
        self.ranges = range_names(fn.body)

    def fresh(self, base: str) -> ir.Name:
        return ir.Name(self.names.fresh(base))

    def temp(self) -> ir.Name:
        name = self.names.temp()
        self.temps.add(name)
        return ir.Name(name)

    def flag(self, base: str) -> ir.Name:
        name = self.fresh(base)
        self.flags.add(name.id)
        return name

    def builtin(self, ref: ir.Ref, loc: SourceLocation | None) -> ir.Ref:
        """``ref``, after checking that no local variable hides the builtin it is printed as."""
        if ref.source in self.user_names:
            raise UnsupportedSyntaxError(
                f"the local variable `{ref.source}` hides the builtin {ref.source}(), "
                "which s2sgrad needs to lower this loop",
                loc,
                f"rename the variable `{ref.source}`",
            )
        return ref

    # -------------------------------------------------------------- function

    def function(self) -> ir.FunctionDef:
        fn = self.fn
        body = tuple(_reachable(fn.body))
        returns = [s for s in ir.walk_stmts(body) if isinstance(s, ir.Return)]
        if len(returns) == 1 and body and body[-1] is returns[0]:
            new = self.block(body[:-1], tail=False) + [body[-1]]
        else:
            self.result = self.fresh("result")
            new = self.block(body, tail=True)
            prologue: list[ir.Stmt] = []
            if self.returned is not None:
                prologue.append(ir.Assign((self.returned,), FALSE, fn.loc))
            if not _always_exits(body):
                prologue.append(ir.Assign((self.result,), NONE, fn.loc))
            loc = returns[-1].loc if returns else fn.loc
            new = prologue + new + [ir.Return(self.result, loc)]
        new = _drop_unread_flags(tuple(new), self.flags)
        return replace(fn, body=new, temps=frozenset(self.temps))

    # -------------------------------------------------------------- blocks

    def block(self, stmts: tuple[ir.Stmt, ...], tail: bool) -> list[ir.Stmt]:
        """Structure a block; ``tail``: nothing runs after it in its iteration (or function)."""
        out: list[ir.Stmt] = []
        pending = _reachable(stmts)
        k = 0
        while k < len(pending):
            stmt = pending[k]
            k += 1
            if k < len(pending) and isinstance(stmt, ir.If):
                merged = _merge_rest(stmt, islice(pending, k, None))
                if merged is not None:
                    stmt, pending = merged, pending[:k]
            self.statement(stmt, out, tail=tail and k == len(pending))
            if k < len(pending) and _exits((stmt,)):
                out.append(self.guarded(pending[k:], tail, stmt.loc, out))
                break
        return out

    def guarded(self, rest, tail, loc, out: list[ir.Stmt]) -> ir.If:
        """``go = not <flag>; if go: <rest>``: run ``rest`` only if nothing before it jumped."""
        stop = self.loops[-1].stop if self.loops else self.returned_flag()
        go = self.fresh("go")
        out.append(ir.Assign((go,), ir.Call(NOT, (stop,)), loc))
        return ir.If(go, tuple(self.block(tuple(rest), tail)), (), loc)

    def returned_flag(self) -> ir.Name:
        if self.returned is None:
            self.returned = self.flag("returned")
        return self.returned

    def statement(self, stmt: ir.Stmt, out: list[ir.Stmt], tail: bool) -> None:
        loc = stmt.loc
        if isinstance(stmt, ir.If):
            self.branch(stmt, out, tail)
        elif isinstance(stmt, ir.For):
            self.for_loop(stmt, out)
        elif isinstance(stmt, ir.While):
            # The test's own statements (branches, for `and`/`or`) cannot jump: only record
            # their decisions, outside the loop's flags.
            test_block = tuple(self.block(stmt.test_block, tail=False))
            loop = self.open_loop(stmt.body, out, loc)
            body = self.loop_body(loop, [], stmt.body, loc)
            out.append(replace(stmt, test_block=test_block, body=body))
        elif isinstance(stmt, ir.Break):
            loop = self.innermost(stmt)
            out.append(ir.Assign((loop.broke,), TRUE, loc))
            if loop.skip is not None and not tail:
                out.append(ir.Assign((loop.skip,), TRUE, loc))
        elif isinstance(stmt, ir.Continue):
            loop = self.innermost(stmt)
            if not tail:  # a continue with nothing after it in the iteration does nothing
                out.append(ir.Assign((loop.skip,), TRUE, loc))
        elif isinstance(stmt, ir.Return):
            self.early_return(stmt, out, tail)
        else:
            out.append(stmt)

    def innermost(self, stmt: ir.Stmt) -> _Loop:
        if not self.loops:
            raise UnsupportedSyntaxError(
                f"`{type(stmt).__name__.lower()}` outside a loop", stmt.loc
            )
        return self.loops[-1]

    def early_return(self, stmt: ir.Return, out: list[ir.Stmt], tail: bool) -> None:
        """``result = value``, plus the flags that stop everything that would run after it."""
        assert self.result is not None
        loc = stmt.loc
        out.append(ir.Assign((self.result,), stmt.value, loc))
        if tail and not self.loops:
            return
        out.append(ir.Assign((self.returned_flag(),), TRUE, loc))
        for loop in reversed(self.loops):
            for flag in (loop.broke, loop.skip):
                if flag is not None:
                    out.append(ir.Assign((flag,), TRUE, loc))

    def branch(self, stmt: ir.If, out: list[ir.Stmt], tail: bool) -> None:
        """An ``if`` whose decision is kept in a fresh name: ``cond = <test>; if cond: ...``."""
        loc = stmt.loc
        test = stmt.test
        cond = None if isinstance(test, ir.Const) else self.fresh("cond")  # numbered outside-in
        if cond is not None:
            # Defined once, here: codegen may print it inside the `if` when nothing else reads it.
            self.temps.add(cond.id)
        body = tuple(self.block(stmt.body, tail))
        orelse = tuple(self.block(stmt.orelse, tail))
        if not body and not orelse:
            self.drop_test_temp(test, out)
            return
        if cond is None:
            out.append(ir.If(test, body, orelse, loc))
            return
        if not body:
            out.append(ir.Assign((cond,), ir.Call(NOT, (test,)), loc))
            out.append(ir.If(cond, orelse, (), loc))
        else:
            out.append(ir.Assign((cond,), test, loc))
            out.append(ir.If(cond, body, orelse, loc))

    def drop_test_temp(self, test: Any, out: list[ir.Stmt]) -> None:
        """Drop the temporary computed only to test an ``if`` that turned out empty."""
        if (
            isinstance(test, ir.Name)
            and test.id in self.temps
            and out
            and isinstance(out[-1], ir.Assign)
            and out[-1].targets == (test,)
        ):
            out.pop()

    # -------------------------------------------------------------- loops

    def open_loop(self, body: tuple[ir.Stmt, ...], out: list[ir.Stmt], loc) -> _Loop:
        """The flags a loop needs, with ``broke = False`` emitted before it."""
        kinds = _exits(body)
        broke = self.flag("broke") if kinds & {"break", "return"} else None
        skip = self.flag("skip") if "continue" in kinds else None
        if broke is not None:
            out.append(ir.Assign((broke,), FALSE, loc))
        return _Loop(broke, skip)

    def loop_body(self, loop: _Loop, header: list[ir.Stmt], body, loc) -> tuple[ir.Stmt, ...]:
        """``header``, the skip reset, the structured body, and the loop's single ``break``."""
        self.loops.append(loop)
        inner = list(header)
        if loop.skip is not None:
            inner.append(ir.Assign((loop.skip,), FALSE, loc))
        inner += self.block(body, tail=True)
        if loop.broke is not None:
            inner.append(ir.If(loop.broke, (ir.Break(loc),), (), loc))
        self.loops.pop()
        return tuple(inner)

    def for_loop(self, stmt: ir.For, out: list[ir.Stmt]) -> None:
        """Any ``for`` -> ``r = range(...); for i in r: <bind the target from i>; body``."""
        loc = stmt.loc
        pre: list[ir.Stmt] = []
        header: list[ir.Stmt] = []
        if isinstance(stmt.target, ir.Name) and self.over_range_name(stmt.iter):
            # `r = range(..)` once, then `for i in r` or `for i in reversed(r)`: the counted
            # loop as it is (derivative code's form, read back for higher order)
            loop = self.open_loop(stmt.body, out, loc)
            body = self.loop_body(loop, header, stmt.body, loc)
            out.append(replace(stmt, body=body))
            return
        if isinstance(stmt.target, ir.Name) and ir.is_call_of(stmt.iter, builtins.range):
            index, bounds = stmt.target, stmt.iter
        else:
            written = {n for s in ir.walk_stmts(stmt.body) for n in _rebinds(s)}
            elements, seqs = self.elements(stmt.iter, out, pre, written, loc)
            index, elements, pattern = self.index_name(stmt.target, elements)
            self.bind(pattern, elements, index, header, loc)
            bounds = ir.Call(self.builtin(RANGE, loc), (self.length(seqs, pre, loc),))
        out += pre
        loop = self.open_loop(stmt.body, out, loc)
        # `_` -> loop_range; derivative code's `_1` (read back) -> loop_range too
        base = index.id.strip("_")
        indices = self.fresh(f"{base if base.isidentifier() else 'loop'}_range")
        out.append(ir.Assign((indices,), replace(bounds, fn=self.builtin(RANGE, loc)), loc))
        body = self.loop_body(loop, header, stmt.body, loc)
        out.append(replace(stmt, target=index, iter=indices, body=body))

    def over_range_name(self, expr) -> bool:
        """Whether ``expr`` is ``r`` or ``reversed(r)`` for a name ``r`` that holds a range."""
        if ir.is_call_of(expr, builtins.reversed) and len(expr.args) == 1 and not expr.kwargs:
            expr = expr.args[0]
        return isinstance(expr, ir.Name) and expr.id in self.ranges

    def index_name(self, pattern, elements: Elements) -> tuple[ir.Name, Elements, Any]:
        """The loop's counter: the user's own name for ``for i, x in enumerate(xs)``, else fresh.

        Returns the counter, and the elements and target pattern left to bind from it.
        """
        if (
            isinstance(elements, tuple)
            and len(elements) == 2
            and isinstance(elements[0], _Counter)
            and _is_zero(elements[0].start)
            and isinstance(pattern, tuple)
            and len(pattern) == 2
            and isinstance(pattern[0], ir.Name)
        ):
            return pattern[0], elements[1], pattern[1]
        return self.fresh("idx"), elements, pattern

    def elements(self, expr, out, pre, written, loc) -> tuple[Elements, list[Any]]:
        """What each iteration over ``expr`` yields, and the sequences whose lengths bound it."""
        expr = self.inline_temp(expr, out)
        if ir.is_call_of(expr, builtins.enumerate):
            kw = dict(expr.kwargs)
            seq = expr.args[0] if expr.args else kw["iterable"]
            start = expr.args[1] if len(expr.args) > 1 else kw.get("start", ir.Const(0))
            inner, seqs = self.elements(seq, out, pre, written, loc)
            return (_Counter(start), inner), seqs
        if ir.is_call_of(expr, builtins.zip):
            parts = [self.elements(a, out, pre, written, loc) for a in expr.args]
            return tuple(p for p, _ in parts), [s for _, seqs in parts for s in seqs]
        if (
            isinstance(expr, ir.Call)
            and isinstance(expr.fn, ir.Ref)
            and expr.fn.value in _ITERATORS
        ):
            raise UnsupportedSyntaxError(
                f"looping over {expr.fn.source}(...) is not supported",
                loc,
                "loop over an index instead, e.g. for i in range(len(x) - 1, -1, -1)",
            )
        seq = self.sequence(expr, pre, written, loc)
        return _Items(seq), [seq]

    def inline_temp(self, expr, out: list[ir.Stmt]):
        """The call behind a compiler temporary holding a ``zip``/``enumerate`` object.

        ``normalize`` hoists ``zip(a, b)`` out of ``enumerate(zip(a, b))``; those
        objects are never needed once the loop indexes the sequences directly.
        """
        if not (isinstance(expr, ir.Name) and expr.id in self.temps):
            return expr
        for k in range(len(out) - 1, -1, -1):
            stmt = out[k]
            if isinstance(stmt, ir.Assign) and stmt.targets == (expr,):
                if ir.is_call_of(stmt.value, builtins.zip) or ir.is_call_of(
                    stmt.value, builtins.enumerate
                ):
                    del out[k]
                    return stmt.value
                break
        return expr

    def sequence(self, expr, pre: list[ir.Stmt], written: set[str], loc):
        """An atom naming the sequence ``expr``, copied first if the loop rebinds it."""
        if isinstance(expr, ir.Ref) or (isinstance(expr, ir.Name) and expr.id not in written):
            if isinstance(expr, ir.Name):
                self.temps.discard(expr.id)  # now read by len() and every iteration
            return expr
        seq = self.fresh("seq")
        pre.append(ir.Assign((seq,), expr, loc))
        return seq

    def length(self, seqs: list[Any], pre: list[ir.Stmt], loc) -> ir.Name:
        """``len(a)``, or ``min(len(a), len(b), ...)`` for zip, as temporaries before the loop."""
        lengths = []
        for seq in seqs:
            n = self.temp()
            pre.append(ir.Assign((n,), ir.Call(self.builtin(LEN, loc), (seq,)), loc))
            lengths.append(n)
        if len(lengths) == 1:
            return lengths[0]
        n = self.temp()
        pre.append(ir.Assign((n,), ir.Call(self.builtin(MIN, loc), tuple(lengths)), loc))
        return n

    def bind(self, pattern, elements: Elements, index: ir.Name, header: list[ir.Stmt], loc):
        """Assign the loop target ``pattern`` from iteration ``index`` of ``elements``."""
        if isinstance(pattern, tuple) and isinstance(elements, tuple):
            if len(pattern) != len(elements):
                raise UnsupportedSyntaxError(
                    f"cannot unpack {len(elements)} values into {len(pattern)} names", loc
                )
            for sub, part in zip(pattern, elements):
                self.bind(sub, part, index, header, loc)
            return
        self.unpack(pattern, self.value(elements, index, header, loc), header, loc)

    def value(self, elements: Elements, index: ir.Name, header: list[ir.Stmt], loc):
        """The expression for one iteration's element (a tuple of atoms for zip)."""
        if isinstance(elements, _Counter):
            if _is_zero(elements.start):
                return index
            return ir.Call(ADD, (index, elements.start))
        if isinstance(elements, _Items):
            return ir.Call(GETITEM, (elements.seq, ir.Index((index,))))
        atoms = []
        for part in elements:
            value = self.value(part, index, header, loc)
            if isinstance(value, ir.Call):
                t = self.temp()
                header.append(ir.Assign((t,), value, loc))
                value = t
            atoms.append(value)
        return ir.Seq("tuple", tuple(atoms))

    def unpack(self, pattern, value, header: list[ir.Stmt], loc) -> None:
        """``pattern = value`` with getitem for tuple patterns (``a, b = item``)."""
        if isinstance(pattern, ir.Name):
            header.append(ir.Assign((pattern,), value, loc))
            return
        if not isinstance(value, ir.Name):
            item = self.fresh("item")
            header.append(ir.Assign((item,), value, loc))
            value = item
        for k, sub in enumerate(pattern):
            self.unpack(sub, ir.Call(GETITEM, (value, ir.Index((ir.Const(k),)))), header, loc)


def _rebinds(stmt: ir.Stmt) -> list[str]:
    """Names a statement rebinds (not mutates): a loop must not see these change under it."""
    if isinstance(stmt, ir.Assign):
        return [t.id for t in stmt.targets]
    if isinstance(stmt, ir.For):
        return dataflow.pattern_names(stmt.target)
    return []


def _global_roots(body: tuple[ir.Stmt, ...]) -> set[str]:
    """The first part of every global name the function reads (``np`` for ``np.sin``)."""
    roots: set[str] = set()

    def visit(x: Any) -> None:
        if isinstance(x, ir.Ref):
            roots.add(x.source.split(".")[0])
        elif isinstance(x, ir.Call):
            visit(x.fn)
            for a in (*x.args, *(v for _, v in x.kwargs)):
                visit(a)
        elif isinstance(x, ir.Seq):
            for e in x.elts:
                visit(e)
        elif isinstance(x, ir.Index):
            for e in x.items:
                visit(e)
        elif isinstance(x, ir.Slice):
            for e in (x.lower, x.upper, x.step):
                visit(e)

    for stmt in ir.walk_stmts(body):
        for part in ("value", "test", "iter", "index"):
            visit(getattr(stmt, part, None))
    return roots


def _drop_unread_flags(body: tuple[ir.Stmt, ...], flags: set[str]) -> tuple[ir.Stmt, ...]:
    """Remove assignments of flags nothing reads (e.g. ``returned`` set in a function's last loop)."""
    unread = flags - dataflow.deep_reads(body)
    if not unread:
        return body

    def keep(stmts: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out = []
        for s in stmts:
            if isinstance(s, ir.Assign) and s.targets[0].id in unread:
                continue
            out.append(ir.map_blocks(s, keep))
        return tuple(out)

    return keep(body)
