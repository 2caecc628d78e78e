"""Clean-ups that make generated derivatives as lean as hand-written ones.

* constant folding of arithmetic on literals and of ``@foldable`` runtime
  helpers whose arguments are all literals (``inverse_permutation(None)``);
* algebraic identities: ``x * 1``, ``1 * x``, ``x + 0``, ``x - 0``, ``x / 1``, ``x ** 1``;
* arguments equal to the called NumPy function's default are dropped, so a
  template's ``np.sum(g, axis=None, keepdims=False)`` prints as ``np.sum(g)``;
* dead-code elimination: a pure assignment nobody reads is removed, which is
  how the entries of a rule for inactive arguments disappear;
* copy propagation, in every block;
* last, index reads accumulate in place where that is provably safe
  (``transforms/inplace.py``).

Each is a pure function over straight-line IR.
"""

from __future__ import annotations

import functools
import inspect
import operator
from dataclasses import replace
from typing import Any

from s2sgrad.transforms import dataflow
from s2sgrad.transforms.analysis import makes_fresh_array
from s2sgrad.transforms.inplace import accumulate_in_place
from s2sgrad.transforms.prims import is_runtime_function, runtime_helper
from s2sgrad.transforms.shapes import SCALAR, infer

from s2sgrad import ir

_FOLDABLE_OPERATORS = ir.ARITHMETIC_OPERATORS


def _const(atom: Any) -> tuple[bool, Any]:
    if isinstance(atom, ir.Const):
        return True, atom.value
    if isinstance(atom, ir.Seq) and atom.kind != "dict":
        vals = [_const(e) for e in atom.elts]
        if all(ok for ok, _ in vals):
            seq = [v for _, v in vals]
            return True, tuple(seq) if atom.kind == "tuple" else seq
    return False, None


def _is(atom: Any, number: float) -> bool:
    ok, value = _const(atom)
    return ok and type(value) in (int, float) and value == number


def _as_atom(value: Any) -> Any:
    if isinstance(value, tuple):
        return ir.Seq("tuple", tuple(_as_atom(v) for v in value))
    if isinstance(value, list):
        return ir.Seq("list", tuple(_as_atom(v) for v in value))
    return ir.Const(value)


def simplify_value(value: Any) -> Any:
    """Fold constants and algebraic identities in one right-hand side."""
    if not isinstance(value, ir.Call) or not isinstance(value.fn, ir.Ref):
        return value
    fn = value.fn.value
    args = value.args
    consts = [_const(a) for a in args] + [_const(v) for _, v in value.kwargs]
    all_const = all(ok for ok, _ in consts)
    if all_const and (fn in _FOLDABLE_OPERATORS or getattr(fn, "__s2sgrad_foldable__", False)):
        try:
            result = fn(
                *[v for _, v in consts[: len(args)]], **{k: _const(v)[1] for k, v in value.kwargs}
            )
        except Exception:  # noqa: BLE001  (leave it to run time, where the error is visible)
            return value
        if isinstance(result, (int, float, bool, str, type(None), tuple, list)):
            return _as_atom(result)
        return value
    if fn is operator.mul and len(args) == 2:
        if _is(args[1], 1):
            return args[0]
        if _is(args[0], 1):
            return args[1]
    if fn in (operator.add,) and len(args) == 2:
        if _is(args[1], 0):
            return args[0]
        if _is(args[0], 0):
            return args[1]
    if fn in (operator.sub,) and len(args) == 2 and _is(args[1], 0):
        return args[0]
    if fn in (operator.truediv, operator.pow) and len(args) == 2 and _is(args[1], 1):
        return args[0]
    return value


# NumPy spells some defaults as a "no value" sentinel; these are what it means.
_SENTINEL_MEANS = {"keepdims": False}


def _defaults(fn: Any) -> tuple[tuple[str, ...], dict[str, Any]] | None:
    """Parameter names and defaults of a NumPy function or runtime helper, when it has a signature."""
    module = getattr(fn, "__module__", "") or ""
    if not (module.startswith("numpy") or is_runtime_function(fn)):
        return None  # checked before the memo: it must never hold a user's function
    return _library_defaults(fn)


@functools.cache
def _library_defaults(fn: Any) -> tuple[tuple[str, ...], dict[str, Any]] | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    names, defaults = [], {}
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            break
        names.append(p.name)
        if p.default is not p.empty:
            default = p.default
            if type(default).__name__ == "_NoValueType":
                if p.name not in _SENTINEL_MEANS:
                    continue
                default = _SENTINEL_MEANS[p.name]
            defaults[p.name] = default
    return tuple(names), defaults


def _same_default(atom: Any, default: Any) -> bool:
    ok, value = _const(atom)
    if not ok or type(value) is not type(default):
        return False
    return value == default


def drop_default_arguments(value: Any) -> Any:
    """``np.sum(g, axis=None)`` -> ``np.sum(g)``: omit arguments that restate a default."""
    if not isinstance(value, ir.Call) or not isinstance(value.fn, ir.Ref):
        return value
    try:
        spec = _defaults(value.fn.value)
    except TypeError:  # unhashable object
        return value
    if spec is None:
        return value
    names, defaults = spec
    kwargs = tuple(
        (k, v) for k, v in value.kwargs if not (k in defaults and _same_default(v, defaults[k]))
    )
    args = list(value.args)
    while args and len(args) <= len(names):
        name = names[len(args) - 1]
        if name in defaults and _same_default(args[-1], defaults[name]):
            args.pop()
        else:
            break
    return replace(value, args=tuple(args), kwargs=kwargs)


def simplify(
    body: tuple[ir.Stmt, ...],
    temps: frozenset[str],
    known: dict[str, Any] | None = None,
    updated: frozenset[str] = frozenset(),
    single: frozenset[str] = frozenset(),
) -> tuple[ir.Stmt, ...]:
    """Fold each right-hand side; propagate temporaries that fold to a literal or a global.

    Only temporaries assigned exactly once are propagated, so replacing their
    uses is safe; nested blocks see what is known where they start. A name later
    updated in place (``u[0] = ...``) keeps its right-hand side as written: folding
    ``u = x * 1.0`` to ``u = x`` would make ``u`` an alias of ``x``, and the update
    would change ``x`` too. Likewise nothing folds to a bare name that is updated in
    place (``v = w * 1.0`` then ``w[1:] = ...``: ``v`` must not see the update).
    """
    if known is None:
        known = {}
        single = frozenset(_single_definitions(body))
        temps = frozenset(t for t in temps if t in single)
        updated = frozenset(s.target.id for s in ir.walk_stmts(body) if isinstance(s, ir.SetItem))
    negations = _Negations()
    out = []
    for stmt in body:
        stmt = _substituted(stmt, temps, known, updated, single)
        if isinstance(stmt, ir.Assign):
            stmt = _folded(stmt, temps, known, updated, negations, single)
        if negations:
            negations.forget_reads_of(dataflow.deep_writes((stmt,)))
        out.append(stmt)
    return tuple(out)


class _Negations:
    """The names of one block, assigned once, that hold ``-y``: name -> ``y``. An entry
    stands for ``y``'s value only until ``y`` is written again; an index from each name
    ``y`` reads to the entries keeps forgetting them proportional to what is written."""

    def __init__(self) -> None:
        self.operand: dict[str, Any] = {}
        self.entries_reading: dict[str, set[str]] = {}

    def __bool__(self) -> bool:
        return bool(self.operand)

    def __contains__(self, name: str) -> bool:
        return name in self.operand

    def __getitem__(self, name: str) -> Any:
        return self.operand[name]

    def add(self, name: str, operand: Any) -> None:
        self.operand[name] = operand
        for r in ir.atom_names(operand):
            self.entries_reading.setdefault(r, set()).add(name)

    def forget_reads_of(self, written) -> None:
        for w in written:
            for name in self.entries_reading.pop(w, ()):
                self.operand.pop(name, None)


def _substituted(
    stmt: ir.Stmt,
    temps: frozenset[str],
    known: dict[str, Any],
    updated: frozenset[str],
    single: frozenset[str],
) -> ir.Stmt:
    """``stmt`` with the known temporaries replaced, nested blocks simplified."""
    if isinstance(stmt, (ir.Assign, ir.Return, ir.Push)):
        return replace(stmt, value=_substitute(stmt.value, known))
    if isinstance(stmt, ir.SetItem):
        return replace(
            stmt, index=_substitute(stmt.index, known), value=_substitute(stmt.value, known)
        )
    if isinstance(stmt, ir.If):
        stmt = replace(stmt, test=_substitute(stmt.test, known))
    return ir.map_blocks(stmt, lambda block: simplify(block, temps, dict(known), updated, single))


def _folded(
    stmt: ir.Assign,
    temps: frozenset[str],
    known: dict[str, Any],
    updated: frozenset[str],
    negations: _Negations,
    single: frozenset[str],
) -> ir.Assign:
    """``stmt`` with its value folded; records in ``known`` a temporary that folds to a
    literal or a global, and in ``negations`` a name assigned once that holds ``-y``."""
    keep = any(t.id in updated for t in stmt.targets)
    value = stmt.value if keep else simplify_value(stmt.value)
    if isinstance(value, ir.Name) and value.id in updated and value is not stmt.value:
        # `v = w * 1.0` -> `v = w` would make `v` an alias of `w`, and a later
        # update of `w` in place (`w[1:] = ...`) would change `v` too.
        value = stmt.value
    value = drop_default_arguments(value)
    value = _subtract_negations(value, negations)
    stmt = replace(stmt, value=value)
    temp = stmt.target.id if len(stmt.targets) == 1 and stmt.target.id in temps else None
    once = len(stmt.targets) == 1 and stmt.target.id in single and stmt.target.id not in updated
    if (
        once
        and isinstance(value, ir.Call)
        and isinstance(value.fn, ir.Ref)
        and value.fn.value is operator.neg
        and len(value.args) == 1
        and not value.kwargs
    ):
        negations.add(stmt.target.id, value.args[0])
    elif once and isinstance(value, ir.Name) and value.id in negations:
        negations.add(stmt.target.id, negations[value.id])  # a copy of a negation
    if temp is not None and isinstance(value, (ir.Const, ir.Ref)):
        known[temp] = value
    return stmt


def _subtract_negations(value: Any, negations: _Negations) -> Any:
    """``a + (-b)`` -> ``a - b``, ``(-a) + b`` -> ``b - a``, and ``2 * (-b)`` -> ``-2 * b``
    (a number's sign flips exactly): the negation, a pass over an array, then dies
    where nothing else reads it (``dt4 = -dt7; dt3 = 2 * dt4``, a stencil's adjoint)."""
    if not (
        negations
        and isinstance(value, ir.Call)
        and isinstance(value.fn, ir.Ref)
        and value.fn.value in (operator.add, operator.mul)
        and len(value.args) == 2
        and not value.kwargs
    ):
        return value
    a, b = value.args
    if value.fn.value is operator.mul:
        for k, n in ((a, b), (b, a)):
            ok, number = _const(k)
            if ok and type(number) in (int, float) and isinstance(n, ir.Name) and n.id in negations:
                return ir.Call(value.fn, (ir.Const(-number), negations[n.id]))
        return value
    sub = ir.Ref("operator.sub", operator.sub)
    if isinstance(b, ir.Name) and b.id in negations:
        return ir.Call(sub, (a, negations[b.id]))
    if isinstance(a, ir.Name) and a.id in negations:
        return ir.Call(sub, (b, negations[a.id]))
    return value


def _single_definitions(body: tuple[ir.Stmt, ...]) -> set[str]:
    counts: dict[str, int] = {}
    for stmt in ir.walk_stmts(body):
        for name in dataflow.writes(stmt):
            counts[name] = counts.get(name, 0) + 1
    return {n for n, c in counts.items() if c == 1}


def _substitute(atom: Any, known: dict[str, Any]) -> Any:
    if not known:
        return atom
    from s2sgrad.transforms.templates import substitute

    return substitute(atom, known)


def eliminate_dead_code(
    body: tuple[ir.Stmt, ...], live: set[str] | None = None
) -> tuple[ir.Stmt, ...]:
    """Drop assignments whose targets are never read afterwards (liveness over structured code).

    ``x[idx] = v`` is live while ``x`` or any name that may be a view of ``x`` is: the
    backward sweep's restore of ``u[1:-1]`` is what a saved slice ``t = u[1:-1]`` of the
    same step reads through.
    """
    set_arrays = {s.target.id for s in ir.walk_stmts(body) if isinstance(s, ir.SetItem)}
    views = dataflow.views(body, makes_fresh_array, set_arrays) if set_arrays else {}
    pops: dict[int, tuple[str, bool]] = {}  # id(Pop) -> (its stack, its value is read)
    kept, _ = _dce_block(body, set() if live is None else set(live), views, pops)
    unread = _unread_stacks(pops)
    if not unread:
        return kept
    # A stack whose every pop restores a value nothing reads: drop its pops, pushes and
    # creation, then what computed only the pushed values.
    return eliminate_dead_code(_without_stacks(kept, unread), live)


def _unread_stacks(pops: dict[int, tuple[str, bool]]) -> set[str]:
    read = {stack for stack, is_read in pops.values() if is_read}
    return {stack for stack, _ in pops.values()} - read


def _without_stacks(body: tuple[ir.Stmt, ...], stacks: set[str]) -> tuple[ir.Stmt, ...]:
    out = []
    for stmt in body:
        if isinstance(stmt, (ir.Push, ir.Pop, ir.NewStack)) and stmt.stack in stacks:
            continue
        out.append(ir.map_blocks(stmt, lambda block: _without_stacks(block, stacks)))
    return tuple(out)


def _dce_block(
    body: tuple[ir.Stmt, ...],
    live: set[str],
    views: dict[str, set[str]],
    pops: dict[int, tuple[str, bool]],
) -> tuple[tuple[ir.Stmt, ...], set[str]]:
    """(the block without dead statements, names live at its start), given names live after
    it; notes in ``pops`` whether each Pop's value is read (a loop's last pass decides)."""
    live = set(live)
    kept: list[ir.Stmt] = []
    for stmt in reversed(body):
        if isinstance(stmt, ir.Pop):
            pops[id(stmt)] = (stmt.stack, stmt.target.id in live)
        if isinstance(stmt, ir.Assign) and not any(t.id in live for t in stmt.targets):
            continue
        if (
            isinstance(stmt, ir.SetItem)
            and stmt.target.id not in live
            and not views.get(stmt.target.id, set()) & live
        ):
            continue
        if isinstance(stmt, ir.If):
            b, live_b = _dce_block(stmt.body, live, views, pops)
            o, live_o = _dce_block(stmt.orelse, live, views, pops)
            if not b and not o:
                continue
            stmt = replace(stmt, body=b, orelse=o)
            live = live_b | live_o | set(ir.atom_names(stmt.test))
        elif ir.is_loop(stmt):
            stmt, live = _dce_loop(stmt, live, views, pops)
        else:  # a statement kept, or one dead code elimination never drops (Push, Pop, ...)
            live = dataflow.step_back(stmt, live)
        kept.append(stmt)
    return tuple(reversed(kept)), live


def _dce_loop(loop, live_after: set[str], views: dict[str, set[str]], pops: dict):
    """A loop's body sees, at its end, what is live after the loop and at its own start."""
    header = (
        set(ir.atom_names(loop.iter)) if isinstance(loop, ir.For) else set(ir.atom_names(loop.test))
    )
    targets = set(dataflow.pattern_names(loop.target)) if isinstance(loop, ir.For) else set()
    at_start = set(live_after) | header
    while True:
        end = live_after | at_start
        if isinstance(loop, ir.While):
            body, live_b = _dce_block(loop.body, end | header, views, pops)
            test_block, live_t = _dce_block(
                loop.test_block, live_b | live_after | header, views, pops
            )
            new_start = live_t
        else:
            body, live_b = _dce_block(loop.body, end, views, pops)
            new_start = (live_b - targets) | header
        if new_start <= at_start:
            break
        at_start |= new_start
    if isinstance(loop, ir.While):
        return replace(loop, body=body, test_block=test_block), live_after | at_start
    return replace(loop, body=body), live_after | at_start | header


# Runtime helpers that only adapt a shape: identity when their operands' shapes agree.
_SHAPE_ADAPTERS = ("unbroadcast", "broadcast_like", "unreduce")


def drop_redundant_broadcasts(fn: ir.FunctionDef, same_shape: dict[str, str]) -> ir.FunctionDef:
    """``unbroadcast(g, x)`` -> ``g`` where the shape analysis proves g and x alike."""
    if not any(
        isinstance(stmt, ir.Assign) and runtime_helper(stmt.value) in _SHAPE_ADAPTERS
        for stmt in fn.body
    ):
        return fn  # nothing to prove: skip the shape walks
    body = []
    for stmt, env in infer(fn, same_shape):
        value = getattr(stmt, "value", None)
        if (
            isinstance(stmt, ir.Assign)
            and runtime_helper(value) in _SHAPE_ADAPTERS
            and len(value.args) >= 2
            and env.of(value.args[0]) == env.of(value.args[1])
        ):
            stmt = replace(stmt, value=value.args[0])
        body.append(stmt)
    return replace(fn, body=tuple(body))


_SCALAR_ARITHMETIC = frozenset(
    {operator.mul, operator.truediv, operator.add, operator.sub, operator.neg}
)


def keep_seeds_scalar(fn: ir.FunctionDef, same_shape: dict[str, str]) -> ir.FunctionDef:
    """``d = unreduce(s, t)``, the cotangent of a full sum, spreads the number ``s`` over
    ``t``'s shape; where every use of ``d`` is elementwise arithmetic with numbers (``d * 2``,
    ``100.0 * d``: again a number spread, followed the same way) or with an array the
    shape analysis proves of ``t``'s shape (``d2 * t8``: there broadcasting spreads it),
    ``d = s`` means the same and saves a pass over the array per number operation (the
    Rosenbrock gradient's ``dt10 * 2``, ``100.0 * dt10``, ``dt5 * 2``). Top level only;
    any other use (a return, an index, a reduction, a helper) keeps the spread."""
    if not any(isinstance(s, ir.Assign) and runtime_helper(s.value) == "unreduce" for s in fn.body):
        return fn
    defs: dict[str, int] = {}
    for stmt in ir.walk_stmts(fn.body):
        for n in dataflow.writes(stmt):
            defs[n] = defs.get(n, 0) + 1
    nested = dataflow.deep_reads(
        tuple(s for stmt in fn.body for block in ir.child_blocks(stmt) for s in block)
    )
    spread: dict[str, str] = {}  # a spread number -> the unreduce it comes from
    witness: dict[str, ir.Name] = {}  # the unreduce -> the array whose shape it has
    safe: dict[str, bool] = {}  # the unreduce -> whether every use allows the number
    for stmt, env in infer(fn, same_shape):
        value = getattr(stmt, "value", None)
        reads = set(dataflow.reads(stmt))
        families = {spread[n] for n in reads if n in spread}
        if (
            isinstance(stmt, ir.Assign)
            and runtime_helper(value) == "unreduce"
            and len(value.args) == 2
            and not value.kwargs
            and env.of(value.args[0]) == SCALAR
            and isinstance(value.args[1], ir.Name)
            and defs.get(stmt.target.id) == 1
            and defs.get(value.args[1].id, 0) <= 1
        ):
            spread[stmt.target.id] = stmt.target.id
            witness[stmt.target.id] = value.args[1]
            safe[stmt.target.id] = stmt.target.id not in nested
            continue
        if not families:
            continue
        use = _spread_use(stmt, spread, witness, env)
        if use is None:
            for family in families:
                safe[family] = False
        elif use == "number":
            target = stmt.target.id
            if len(families) == 1 and defs.get(target) == 1 and target not in nested:
                spread[target] = families.pop()
            else:  # two spreads met, or a name assigned again: keep them arrays
                for family in families:
                    safe[family] = False
    if not any(safe.values()):
        return fn
    body = tuple(
        (
            replace(s, value=s.value.args[0])
            if isinstance(s, ir.Assign) and safe.get(s.target.id if len(s.targets) == 1 else "")
            else s
        )
        for s in fn.body
    )
    return replace(fn, body=body)


def _spread_use(stmt, spread: dict[str, str], witness: dict[str, ir.Name], env) -> str | None:
    """How ``stmt`` uses spread numbers: ``"number"`` (a copy, or arithmetic with numbers:
    its result is one too), ``"array"`` (arithmetic with an array of the spread's shape), or None
    (anything else)."""
    value = stmt.value if isinstance(stmt, ir.Assign) and len(stmt.targets) == 1 else None
    if isinstance(value, ir.Name):
        return "number"  # a copy: the same spread number
    if not (
        isinstance(value, ir.Call)
        and isinstance(value.fn, ir.Ref)
        and value.fn.value in _SCALAR_ARITHMETIC
        and not value.kwargs
    ):
        return None
    arrays = [a for a in value.args if not (isinstance(a, ir.Name) and a.id in spread)]
    if all(env.of(a) == SCALAR for a in arrays):
        return "number"
    if stmt.target in value.args:
        # `d = d + s`, a cotangent accumulating the spread: kept an array, which the
        # in-place pass may then add index contributions into (`accumulate_in_place`).
        return None
    shapes = {
        env.of(witness[spread[a.id]])
        for a in value.args
        if isinstance(a, ir.Name) and a.id in spread
    }
    if len(arrays) == 1 and shapes == {env.of(arrays[0])}:
        return "array"
    return None


def propagate_copies(
    body: tuple[ir.Stmt, ...], protected: frozenset[str], temps: frozenset[str]
) -> tuple[ir.Stmt, ...]:
    """After ``a = b``, read ``b`` where the code reads ``a`` (until either is re-assigned).

    Only for names the compiler introduced (adjoints, tangents); the user's own
    variables keep their names. Returns are left alone, so results keep their
    descriptive names (``dW``). A copy *of a temporary* is left for codegen, which
    prints the temporary's expression in place (``dh = <expr>``).
    """
    from s2sgrad.transforms.templates import substitute

    copies: dict[str, ir.Name] = {}
    readers: dict[str, set[str]] = {}  # b -> the names a with a copy ``a = b`` known
    out = []

    def end_copies(written) -> None:
        for name in written:
            source = copies.pop(name, None)
            if source is not None:
                readers[source.id].discard(name)
            for copy in readers.pop(name, ()):
                del copies[copy]

    for stmt in body:
        if isinstance(stmt, ir.Assign) and copies:
            stmt = replace(stmt, value=substitute(stmt.value, copies))
            if stmt.targets == (stmt.value,):
                continue  # `a = a`, a copy propagated onto itself: a does not change
        # A nested block starts with no copies known (a loop body runs again after itself).
        stmt = ir.map_blocks(stmt, lambda block: propagate_copies(block, protected, temps))
        if not isinstance(stmt, ir.Assign):
            # Anything a statement may write (in any nested block) ends the copies it touches.
            end_copies(dataflow.deep_writes((stmt,)))
        if isinstance(stmt, ir.Assign):
            end_copies([t.id for t in stmt.targets])
            value = stmt.value
            if (
                len(stmt.targets) == 1
                and isinstance(value, ir.Name)
                and value.id not in temps
                and stmt.target.id not in protected
            ):
                copies[stmt.target.id] = value
                readers.setdefault(value.id, set()).add(stmt.target.id)
        out.append(stmt)
    return tuple(out)


def optimize(
    fn: ir.FunctionDef,
    same_shape: dict[str, str] | None = None,
    protected: frozenset[str] = frozenset(),
) -> ir.FunctionDef:
    """Simplify, drop provably redundant broadcasts, remove dead code, until nothing changes.

    ``same_shape`` maps parameters of a derivative function to the names whose
    shape they have (see transforms.shapes.infer); ``protected`` are the user's
    own variable names, which copy propagation keeps.
    """
    # Dead code first: a dead read of a spread seed would keep it an array.
    fn = replace(fn, body=eliminate_dead_code(fn.body))
    while True:
        new = replace(fn, body=simplify(fn.body, fn.temps))
        new = drop_redundant_broadcasts(new, same_shape or {})
        new = keep_seeds_scalar(new, same_shape or {})
        body = propagate_copies(new.body, protected | set(fn.param_names), fn.temps)
        new = replace(new, body=eliminate_dead_code(body))
        if new.body == fn.body:
            new = accumulate_in_place(new)
            return replace(new, body=eliminate_dead_code(new.body))
        fn = new
