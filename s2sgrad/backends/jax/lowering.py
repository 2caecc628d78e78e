"""Lowering a generated function to JAX: compound statements become functional combinators.

JAX traces Python: a Python loop over a traced trip count cannot be traced, a
Python loop over a static one unrolls (compile time grows with the trip count),
and an ``if`` on a traced value is an error. The IR knows every loop and
branch, so this pass rewrites each one into local functions over an explicit
state and one call of a combinator of ``s2sgrad.backends.jax.control``:

* ``if t: A else: B``  ->  ``def if_true(s..): A; return s..`` (and
  ``if_false``), ``s.. = cond(t, if_true, if_false, s..)``. ``cond`` keeps a
  concrete test a Python ``if`` and lowers a traced one to ``lax.cond``;
* ``for i in r: B``  ->  ``def body(i, c..): B; return c..``,
  ``c.. = for_loop(r, body, c..)`` (``lax.scan``, or ``lax.while_loop`` for a traced
  length). A loop of the forward sweep that pushes saves returns them too
  (``for_loop_recording``); a backward loop that pops them gets this iteration's
  saves as parameters (``replay``). A ``break`` flag guards the rest of the
  iterations (``if not broke: B``): trip counts stay what they were;
* ``while t: B``  ->  ``def test(c..)``, ``def body(c..)``,
  ``c.. = while_loop(test, body, c.., stop=<break flag>)``
  (``while_recording`` with saves: buffers of ``max_steps`` rows).

The state of a compound statement is what it assigns that is read after it (or,
for a loop, read by a later iteration). Pushes and pops of the reverse sweep
become plain assignments: inside a loop body a stack name denotes *this
iteration's* save, and the combinators do the stacking. Nothing here knows about
derivatives: it lowers any structured IR function.
"""

from __future__ import annotations

import builtins
import operator
from dataclasses import replace
from typing import Any

import numpy as np

from s2sgrad import ir
from s2sgrad.backends.jax import control
from s2sgrad.backends.jax.masks import lower_masked_reads
from s2sgrad.errors import S2SGradError
from s2sgrad.transforms import dataflow
from s2sgrad.transforms.names import FreshNames

COND = ir.Ref("if_else", control.if_else)
LOOP = ir.Ref("for_loop", control.for_loop)
LOOP_RECORDING = ir.Ref("for_loop_recording", control.for_loop_recording)
REPLAY = ir.Ref("replay", control.replay)
REPLAY_RECORDING = ir.Ref("replay_recording", control.replay_recording)
WHILE_LOOP = ir.Ref("while_loop", control.while_loop)
WHILE_RECORDING = ir.Ref("while_recording", control.while_recording)
RANGE_OF = ir.Ref("traced_range", control.traced_range)
REVERSED_RANGE = ir.Ref("reversed_range", control.reversed_range)
LOGICAL_NOT = ir.Ref("np.logical_not", np.logical_not)
NONE = ir.Const(None)


_NOTHING: frozenset[str] = frozenset()


class JaxLoweringError(S2SGradError):
    """A construct of a generated function the JAX lowering cannot express."""


def lower_for_jax(fn: ir.FunctionDef, names: FreshNames) -> ir.FunctionDef:
    """``fn`` with every If/For/While rewritten into ``control`` combinator calls, and its
    boolean-mask reads that end in reductions lowered as masked computations (``masks``)."""
    names.reserve(*dataflow.all_local_names(fn))
    lowering = _Lowering(names, fn.temps, _backward_sweep(fn.body))
    body = tuple(lowering.block(fn.body, frozenset()))
    body = _define_before_use(body, set(fn.param_names))
    lowered = replace(fn, body=ir.map_call_fns(body, _jax_ref))
    return lower_masked_reads(lowered, names)


def lower_compilation(compilation: Any) -> list[tuple[ir.FunctionDef, str | None]]:
    """A compilation's functions lowered for JAX (``lower_for_jax``), plus a JAX copy of
    every user function they call as a primal (the user's own would run NumPy on traced
    values). Each user function is first checked for ``is None`` tests JAX would answer
    wrongly (``none_tests``). Derivative code s2sgrad generated (higher order) is not: its
    ``is None`` tests are on adjoints, where zeros stand for None exactly; the user
    functions it was made from are checked instead."""
    from s2sgrad import cache, composition, running
    from s2sgrad.backends.jax.none_tests import refuse_ambiguous_none_tests
    from s2sgrad.frontend import is_derivative_code
    from s2sgrad.pipeline import lower
    from s2sgrad.transforms.analysis import is_user_function

    def check(fn: Any, lowered: ir.FunctionDef) -> None:
        if not is_derivative_code(fn):
            refuse_ambiguous_none_tests(lowered)

    for fn in compilation.differentiated_functions():
        check(fn, lower(fn))
        made = composition.origin(fn)  # grad(f)'s composition: check f and its callees
        if made is not None:
            user = composition.primal_chain(made[0])[-1]
            for f in cache.reachable_functions(user):
                check(f, lower(f))
    copies: dict[Any, str] = {}
    pending: list[tuple[ir.FunctionDef, str | None]] = list(compilation.functions)
    out: list[tuple[ir.FunctionDef, str | None]] = []
    while pending:
        fn_ir, foreign = pending.pop(0)

        def primal_copy(value: Any) -> str:
            target = running.function_that_runs(value)
            if target not in copies:
                name = compilation.module_names.fresh(target.__name__)
                copies[target] = name
                module = compilation.foreign(target)
                primal = lower(target)
                check(target, primal)
                pending.append((replace(primal, name=name), module))
            return copies[target]

        def to_copy(ref: ir.Ref) -> ir.Ref:
            if callable(ref.value) and is_user_function(ref.value):
                return ir.generated_ref(primal_copy(ref.value))
            return ref

        fn_ir = replace(fn_ir, body=ir.map_call_fns(fn_ir.body, to_copy))
        names = FreshNames(
            dataflow.all_local_names(fn_ir)
            | set(compilation.requests.values())
            | set(copies.values())
        )
        out.append((lower_for_jax(fn_ir, names), foreign))
    return out


# --------------------------------------------------------------------------- stacks


def _stacks(loop: ir.For | ir.While, kind: type) -> tuple[str, ...]:
    """The stacks a loop pushes (kind=Push) or pops (kind=Pop), nested loops included."""
    inner = ir.iteration(loop)
    return _stacks_in(inner, kind)


def _stacks_in(body: tuple[ir.Stmt, ...], kind: type) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for stmt in ir.walk_stmts(body):
        if isinstance(stmt, kind):
            seen.setdefault(stmt.stack, None)
    return tuple(seen)


def _plain(stmt: ir.Stmt) -> list[ir.Stmt]:
    """Push -> ``stack = value``, Pop -> ``target = stack``, NewStack -> nothing: inside a
    loop body a stack name is this iteration's slot; the combinators do the stacking."""
    if isinstance(stmt, ir.Push):
        return [ir.Assign((ir.Name(stmt.stack),), stmt.value, stmt.loc)]
    if isinstance(stmt, ir.Pop):
        return [ir.Assign((stmt.target,), ir.Name(stmt.stack), stmt.loc)]
    if isinstance(stmt, ir.NewStack):
        return []
    return [stmt]


# --------------------------------------------------------------------------- state


def _ordered(names: set[str], body: tuple[ir.Stmt, ...]) -> tuple[str, ...]:
    """``names`` in order of first appearance in ``body``: deterministic output (the state
    of a combinator is a tuple, and a set's order would change with the hash seed)."""
    order: dict[str, None] = {}
    for stmt in ir.walk_stmts(body):
        # Its writes as the NumPy code has them (a Push binds nothing), then its reads as
        # the lowering has them, nested blocks' included: the order this has always used,
        # so only the ties a set used to break (by hash seed) come out differently.
        reads = [n for s in ir.walk_stmts((stmt,)) for n in dataflow.reads(s, slots=True)]
        for n in [*dataflow.writes(stmt), *reads]:
            if n in names:
                order.setdefault(n, None)
    return tuple(order) + tuple(sorted(names - set(order)))


def _names(ids: tuple[str, ...]) -> tuple[ir.Name, ...]:
    return tuple(ir.Name(n) for n in ids)


def _tuple(ids: tuple[str, ...]) -> ir.Seq:
    return ir.Seq("tuple", _names(ids))


# --------------------------------------------------------------------------- the pass


def _backward_sweep(body: tuple[ir.Stmt, ...]) -> frozenset[int]:
    """The ids of the top-level statements of an adjoint function's backward sweep."""
    from s2sgrad.transforms.residuals import sweep_start

    return frozenset(id(s) for s in body[sweep_start(body) + 1 :])


class _Lowering:
    def __init__(self, names: FreshNames, temps: frozenset[str], backward: frozenset[int]):
        self.names = names
        self.temps = temps  # foldable compiler temporaries, also inside the local functions
        # Statements of the backward sweep: its loops are ``replay``s, saves or none, whose
        # Nones are adjoints not yet accumulated into (see control._infer_carry).
        self.backward = backward
        self.in_backward = False

    def block(self, body: tuple[ir.Stmt, ...], live_after: frozenset[str]) -> list[ir.Stmt]:
        lowered: list[list[ir.Stmt]] = []  # last statement's first
        live = set(live_after)
        for stmt in reversed(body):
            # Only a compound statement reads what is live after it (a copy per statement
            # would make a long block quadratic).
            after = frozenset(live) if isinstance(stmt, (ir.If, ir.For, ir.While)) else _NOTHING
            lowered.append(self.statement(stmt, after))
            dataflow.step_back(stmt, live, slots=True)
        return [s for part in reversed(lowered) for s in part]

    def statement(self, stmt: ir.Stmt, live: frozenset[str]) -> list[ir.Stmt]:
        if id(stmt) in self.backward and not self.in_backward:
            self.in_backward = True
            try:
                return self.statement(stmt, live)
            finally:
                self.in_backward = False
        if isinstance(stmt, ir.If):
            return self.if_(stmt, live)
        if isinstance(stmt, ir.For):
            return self.for_(stmt, live)
        if isinstance(stmt, ir.While):
            return self.while_(stmt, live)
        if isinstance(stmt, (ir.Break, ir.Continue)):
            raise JaxLoweringError(
                f"a `{type(stmt).__name__.lower()}` the structuring pass left in place",
                stmt.loc,
            )
        return _plain(stmt)

    def local(self, base: str, params: tuple[str, ...], body: list[ir.Stmt], loc) -> tuple:
        name = self.names.fresh(base)
        fn = ir.FunctionDef(
            name=name,
            params=tuple(ir.Param(p) for p in params),
            body=tuple(body),
            loc=loc,
            temps=self.temps,
        )
        return ir.LocalDef(fn, loc), ir.Name(name)

    # ------------------------------------------------------------------ if

    def if_(self, stmt: ir.If, live: frozenset[str]) -> list[ir.Stmt]:
        branches = stmt.body + stmt.orelse
        written = dataflow.deep_writes((stmt,), slots=True)
        exposed = dataflow.live_in(stmt.body, set(), slots=True) | dataflow.live_in(
            stmt.orelse, set(), slots=True
        )
        state = _ordered(written & (live | exposed), branches)
        if not state:
            return []  # assigns nothing anyone reads: dead
        ret = ir.Return(_tuple(state), stmt.loc)
        out: list[ir.Stmt] = []
        line = stmt.loc.line if stmt.loc else 0
        then_def, then_name = self.local(
            f"if_line{line}", state, [*self.block(stmt.body, frozenset(state)), ret], stmt.loc
        )
        out.append(then_def)
        else_name: Any = NONE
        if stmt.orelse:
            else_def, else_name = self.local(
                f"else_line{line}",
                state,
                [*self.block(stmt.orelse, frozenset(state)), ret],
                stmt.loc,
            )
            out.append(else_def)
        call = ir.Call(COND, (stmt.test, then_name, else_name, *_names(state)))
        out.append(ir.Unpack(_names(state), call, stmt.loc))
        return out

    # ------------------------------------------------------------------ for

    def for_(self, stmt: ir.For, live: frozenset[str]) -> list[ir.Stmt]:
        pushed, popped = _stacks(stmt, ir.Push), _stacks(stmt, ir.Pop)
        if not isinstance(stmt.target, ir.Name):
            raise JaxLoweringError("a loop over something other than a range", stmt.loc)
        target = stmt.target.id
        body, flag = _strip_break(stmt.body)
        out: list[ir.Stmt] = []
        if flag is not None:
            # The flag is False whenever the loop starts (its initialisation may have been
            # dropped as dead: Python reads it only after setting it).
            out.append(ir.Assign((flag,), ir.Const(False), stmt.loc))
            # `if broke: break` at the end of an iteration = skip the iterations after it.
            go = ir.Name(self.names.fresh("go"))
            body = (
                ir.Assign(
                    (go,), ir.Call(ir.Ref("operator.not_", operator.not_), (flag,)), stmt.loc
                ),
                ir.If(go, body, (), stmt.loc),
            )
        written = dataflow.deep_writes(body, slots=True) - {target} - set(pushed)
        carried = written & (set(live) | dataflow.live_in(body, set(), slots=True))
        carried = _ordered(carried, body)
        line = stmt.loc.line if stmt.loc else 0
        if popped and pushed:
            # A backward loop of derivative code, differentiated again (reverse over
            # reverse): it replays the first-order saves and records its own.
            result = ir.Seq("tuple", (_tuple(carried), _tuple(pushed)))
            params = (target, *popped, *carried)
            inner = [
                *self.block(body, frozenset(carried) | set(pushed)),
                ir.Return(result, stmt.loc),
            ]
            body_def, body_name = self.local(f"loop_line{line}_back", params, inner, stmt.loc)
            call = ir.Call(
                REPLAY_RECORDING, (stmt.iter, body_name, _tuple(popped), *_names(carried))
            )
            pattern = (_names(carried), _names(pushed))
            return [*out, body_def, ir.Unpack(pattern, call, stmt.loc)]
        if popped or (self.in_backward and not pushed and carried):
            params = (target, *popped, *carried)
            inner = [*self.block(body, frozenset(carried)), ir.Return(_tuple(carried), stmt.loc)]
            body_def, body_name = self.local(f"loop_line{line}_back", params, inner, stmt.loc)
            call = ir.Call(REPLAY, (stmt.iter, body_name, _tuple(popped), *_names(carried)))
            return [*out, body_def, ir.Unpack(_names(carried), call, stmt.loc)]
        if pushed:
            result = ir.Seq("tuple", (_tuple(carried), _tuple(pushed)))
            inner = [
                *self.block(body, frozenset(carried) | set(pushed)),
                ir.Return(result, stmt.loc),
            ]
            body_def, body_name = self.local(
                f"loop_line{line}", (target, *carried), inner, stmt.loc
            )
            call = ir.Call(LOOP_RECORDING, (stmt.iter, body_name, *_names(carried)))
            pattern = (_names(carried), _names(pushed))
            return [*out, body_def, ir.Unpack(pattern, call, stmt.loc)]
        if not carried:
            return out  # a loop whose results nobody reads
        inner = [*self.block(body, frozenset(carried)), ir.Return(_tuple(carried), stmt.loc)]
        body_def, body_name = self.local(f"loop_line{line}", (target, *carried), inner, stmt.loc)
        call = ir.Call(LOOP, (stmt.iter, body_name, *_names(carried)))
        return [*out, body_def, ir.Unpack(_names(carried), call, stmt.loc)]

    # ------------------------------------------------------------------ while

    def while_(self, stmt: ir.While, live: frozenset[str]) -> list[ir.Stmt]:
        pushed = _stacks(stmt, ir.Push)
        if _stacks_in(stmt.test_block, ir.Push):
            raise JaxLoweringError(
                "a while test whose values the backward sweep needs",
                stmt.loc,
                hint="compute the test's operands in the loop body instead",
            )
        body, flag = _strip_break(stmt.body)
        whole = stmt.test_block + body
        written = dataflow.deep_writes(whole, slots=True) - set(pushed)
        test = set(ir.atom_names(stmt.test))
        state = written & (set(live) | dataflow.live_in(whole, test, slots=True))
        out: list[ir.Stmt] = []
        if flag is not None:
            state.add(flag.id)
            out.append(ir.Assign((flag,), ir.Const(False), stmt.loc))
        state = _ordered(state, whole)
        line = stmt.loc.line if stmt.loc else 0
        test_body = [
            *self.block(stmt.test_block, frozenset(ir.atom_names(stmt.test))),
            ir.Return(stmt.test, stmt.loc),
        ]
        test_def, test_name = self.local(f"test_line{line}", state, test_body, stmt.loc)
        kwargs = (("stop", ir.Const(state.index(flag.id))),) if flag is not None else ()
        if pushed:
            result = ir.Seq("tuple", (_tuple(state), _tuple(pushed)))
            inner = [*self.block(body, frozenset(state) | set(pushed)), ir.Return(result, stmt.loc)]
            body_def, body_name = self.local(f"loop_line{line}", state, inner, stmt.loc)
            call = ir.Call(WHILE_RECORDING, (test_name, body_name, *_names(state)), kwargs)
            pattern = (_names(state), _names(pushed))
            return [*out, test_def, body_def, ir.Unpack(pattern, call, stmt.loc)]
        inner = [*self.block(body, frozenset(state)), ir.Return(_tuple(state), stmt.loc)]
        body_def, body_name = self.local(f"loop_line{line}", state, inner, stmt.loc)
        call = ir.Call(WHILE_LOOP, (test_name, body_name, *_names(state)), kwargs)
        return [*out, test_def, body_def, ir.Unpack(_names(state), call, stmt.loc)]


def _strip_break(body: tuple[ir.Stmt, ...]) -> tuple[tuple[ir.Stmt, ...], ir.Name | None]:
    """A loop body without its final ``if <flag>: break``, and that flag (the only form of
    ``break`` the structuring pass leaves)."""
    if (
        body
        and isinstance(body[-1], ir.If)
        and body[-1].body
        and isinstance(body[-1].body[-1], ir.Break)
        and not body[-1].orelse
        and isinstance(body[-1].test, ir.Name)
        and len(body[-1].body) == 1
    ):
        return body[:-1], body[-1].test
    return body, None


# --------------------------------------------------------------------------- after lowering


def _define_before_use(body: tuple[ir.Stmt, ...], defined: set[str]) -> tuple[ir.Stmt, ...]:
    """Start a function with ``x = None`` for each local ``x`` it hands to a combinator
    before assigning it (a value set on some paths only, or only inside a loop); the
    combinators give such values their type. Names the function never assigns are
    read from the enclosing function and need nothing."""
    assigned = {n for stmt in body for n in dataflow.writes(stmt)}
    missing: dict[str, None] = {}
    defined = set(defined)
    out: list[ir.Stmt] = []
    for stmt in body:
        if isinstance(stmt, ir.LocalDef):
            fn = stmt.function
            inner = _define_before_use(fn.body, set(fn.param_names))
            out.append(replace(stmt, function=replace(fn, body=inner)))
            defined.add(fn.name)
            continue
        if isinstance(stmt, ir.Unpack):
            for n in ir.atom_names(stmt.value):
                if n in assigned and n not in defined:
                    missing.setdefault(n, None)
        defined.update(dataflow.writes(stmt))
        out.append(stmt)
    inits = [ir.Assign((ir.Name(n),), NONE) for n in missing]
    return tuple(inits + out)


_REPLACEMENTS = {
    builtins.range: RANGE_OF,
    builtins.reversed: REVERSED_RANGE,
    operator.not_: LOGICAL_NOT,
}


def _jax_ref(ref: ir.Ref) -> ir.Ref:
    """``range``/``reversed`` -> ranges whose bounds may be traced; ``not`` -> logical_not."""
    try:
        return _REPLACEMENTS.get(ref.value, ref)
    except TypeError:  # an unhashable callable
        return ref
