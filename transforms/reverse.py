"""Reverse mode: a forward sweep that saves what it must, then a backward sweep.

The backward sweep walks the (structured) function backwards: blocks in
reverse order, ``if`` on the same recorded decision, loops backwards over the
same iterations. It keeps one invariant: *when it reaches a statement, every
primal variable holds the value it had just after that statement ran in the
forward sweep*. Then each adjoint statement can read its primal operands
directly, and a statement that overwrote a variable restores the old value
once its adjoint is done.

What the forward sweep saves is decided by analysis, not "push every
assignment": a variable is saved before it is overwritten only if the backward
sweep reads it (an adjoint reads it, or it is a branch decision, a loop range
or a trip count) and it can already hold a value at that point (it is assigned
in a loop or more than once). Saves are explicit ``Push``/``Pop`` statements on
one stack per variable and loop, so backends can lower them (lists for NumPy,
scan outputs for JAX). Straight-line code is in SSA form after normalization
and saves nothing.

Adjoints are tracked as ZERO (never written on any path so far: the next
contribution is a plain assignment), SET (written on every path) or MAYBE
(written on some paths: the variable is ``None`` on the others, and code
checks). So straight-line code gets first writes (``dx = ...``) rather than
zero-initialisation and accumulation.

The generated function takes the primals and the cotangent of the output and
returns ``(out, (d_wrt1, d_wrt2, ...))``.
"""

from __future__ import annotations

import builtins
import copy
import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from s2sgrad.transforms import checkpointing, dataflow
from s2sgrad.transforms.analysis import (
    analyze,
    bind_user_call,
    container_positions,
    is_user_function,
    makes_fresh_array,
    may_be_containers,
    require_structured,
)
from s2sgrad.transforms.builder import DerivativeBuilder, split_aux
from s2sgrad.transforms.names import FreshNames
from s2sgrad.transforms.optimize import eliminate_dead_code
from s2sgrad.transforms.prims import (
    ACCUMULATE,
    ADD,
    COPY,
    GETITEM,
    IS_NOT,
    NONE,
    RANGE,
    REVERSED,
    SUM,
    UNBROADCAST,
    VDOT,
    ZERO_AT,
    ZEROS_IF_NONE,
    ZEROS_LIKE,
    ZEROS_LIKE_TREE,
    runtime_helper,
)
from s2sgrad.transforms.remat import carried, worth_rerunning
from s2sgrad.transforms.residuals import BACKWARD_SWEEP
from s2sgrad.transforms.shapes import SCALAR, ShapeEnv, statement_shapes, walk_shapes
from s2sgrad.transforms.structure import range_names
from s2sgrad.transforms.templates import bind_call, instantiate, lower_template, substitute
from s2sgrad.transforms.unread_value import value_is_real_scalar

from s2sgrad import ir
from s2sgrad.errors import NoDerivativeRuleError, S2SGradError
from s2sgrad.rules import lookup

ZERO, SET, MAYBE = "zero", "set", "maybe"

# Runtime helpers that read their second argument only for its shape.
_SHAPE_READERS = ("unbroadcast", "unreduce", "unindex")


def _join(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    out = {}
    for k in set(a) | set(b):
        x, y = a.get(k, ZERO), b.get(k, ZERO)
        out[k] = x if x == y else MAYBE
    return out


class _Reverse(DerivativeBuilder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.real_names = self.names  # adjoint and stack names: never from a dry run's scratch copy
        self.adjoint: dict[str, str] = {}
        self.stacks: dict[tuple, str] = {}
        self.adjoint_stacks: dict[str, str] = {}  # derivative code's stack -> its adjoint's
        self.none_assigned = {  # names that may hold None (derivative code's unset adjoints)
            t.id
            for st in ir.walk_stmts(self.fn.body)
            if isinstance(st, ir.Assign) and st.value == NONE
            for t in st.targets
        }
        self.counters: dict[int, str] = {}  # id(loop) -> trip-count variable
        self.bookkeeping: set[int] = set()  # ids of trip-count increments
        self.maybe_unset: set[str] = set()  # adjoints that need `= None` up front
        self.primal = dataflow.all_local_names(self.fn)
        self.defs: Counter[str] = Counter(self.fn.param_names)
        self.loop_defined: set[str] = set()
        self.saved: set[str] = set()
        self.prior: set[tuple[int, str]] = set()  # (id(stmt), name): name may hold a value there
        # Per loop: values defined once per iteration and not carried to the next one. They
        # are recorded after their definition and restored at the top of each backward
        # iteration ("this iteration's values"), instead of old-value saves at each definition.
        self.taped: dict[int, list[tuple[ir.Name, ir.Assign]]] = {}
        self.taped_names: set[str] = set()
        # Per loop: the assignments the backward sweep recomputes instead of restoring
        # (``t = i + 1``, ``u = x[t]``: index work on names that never change), in order.
        self.recomputed: dict[int, list[ir.Assign]] = {}
        self.recomputed_names: set[str] = set()
        self.shape_envs: dict[int, ShapeEnv] = {}  # id(stmt) -> primal shapes before it
        self.end_shapes: ShapeEnv | None = None  # the primal shapes at its end
        self.witnesses: tuple[str, ...] = ()  # names never overwritten, to read shapes from
        self.range_names = range_names(self.fn.body)  # names holding range(...)
        self.split_calls: dict[int, _SplitCall] = {}  # id(stmt) -> `y, G_residuals = G_fwd(..)`
        # Loops whose backward sweep reruns each iteration (``transforms.remat``): id(loop) ->
        # the names carried from one iteration to the next, saved at the top of each.
        self.rerun: dict[int, tuple[str, ...]] = {}
        # ... and the names such a loop overwrites whose value from before it the backward
        # sweep reads after the loop's: saved once around the loop.
        self.rerun_entry: dict[int, tuple[str, ...]] = {}
        # Rerun loops that keep their state only where a binomial schedule says so
        # (``transforms.checkpointing``): id(loop) -> (snapshots, the schedule's name).
        self.checkpointed: dict[int, tuple[int, str]] = {}
        # While the backward sweep of a rerun body is generated: (id(stmt), name) where the
        # name holds a value of this iteration before stmt (else None).
        self._replay_prior: set[tuple[int, str]] | None = None

    # ------------------------------------------------------------------ setup

    def add_counters(self, body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        """Give every loop that can stop early a trip count (`k = 0` before, `k += 1` inside)."""
        out: list[ir.Stmt] = []
        for stmt in body:
            stmt = ir.map_blocks(stmt, self.add_counters)
            if isinstance(stmt, ir.While) or (isinstance(stmt, ir.For) and _breaks(stmt.body)):
                k = ir.Name(self.names.fresh("trips"))
                out.append(ir.Assign((k,), ir.Const(0), stmt.loc))
                inc = ir.Assign((k,), ir.Call(ADD, (k, ir.Const(1))), stmt.loc)
                self.bookkeeping.add(id(inc))
                stmt = replace(stmt, body=(inc, *stmt.body))
                self.counters[id(stmt)] = k.id
            out.append(stmt)
        return tuple(out)

    def count_definitions(self, body: tuple[ir.Stmt, ...], depth: int) -> None:
        for stmt in body:
            names = []
            if isinstance(stmt, ir.Assign) and id(stmt) not in self.bookkeeping:
                names = [t.id for t in stmt.targets]
            elif isinstance(stmt, ir.Pop):
                names = [stmt.target.id]
            elif isinstance(stmt, ir.For):
                names = dataflow.pattern_names(stmt.target)
            self.defs.update(names)
            if depth:
                self.loop_defined.update(names)
            inner = depth + 1 if ir.is_loop(stmt) else depth
            for child in ir.child_blocks(stmt):
                self.count_definitions(child, inner)

    def may_hold_value(self, name: str) -> bool:
        return self.defs[name] > 1 or name in self.loop_defined

    def has_prior(self, stmt: Any, name: str) -> bool:
        return (id(stmt), name) in self.prior

    # ------------------------------------------------------------------ adjoints of one statement

    def adjoint_name(self, name: str) -> ir.Name:
        if name not in self.adjoint:
            self.adjoint[name] = self.real_names.fresh("d" + name)
        return ir.Name(self.adjoint[name])

    def contributions(
        self, stmt: ir.Assign, g: Any, ans: Any
    ) -> tuple[list[ir.Stmt], list[tuple[Any, Any]]]:
        """Statements computing the cotangents of a statement's operands, and (operand, cotangent) pairs."""
        value = stmt.value
        if not isinstance(value, ir.Call):
            return [], [(value, g)]
        if id(stmt) in self.split_calls:
            return self.split_call_contributions(stmt, g)
        if is_user_function(value.fn.value) and self.act.atom_active(value):
            return self.user_call_contributions(stmt, g)
        rule = lookup(value.fn.value)
        if (rule is not None and rule.nondifferentiable) or not self.act.atom_active(value):
            return [], []  # e.g. `z = np.zeros(n)` whose later in-place updates make z active
        if rule is None or rule.vjp is None:
            raise NoDerivativeRuleError(
                f"no reverse-mode (vjp) rule for `{value.fn.source}`",
                stmt.loc,
                f"register one with @s2sgrad.defvjp({value.fn.source}), or use mode='forward'",
            )
        template = lower_template(rule.vjp, "vjp")
        bindings = bind_call(template, value, stmt.loc, rule)
        bindings["g"] = g
        bindings["ans"] = ans
        body, mapping = instantiate(template, bindings, self.names, self.temps, stmt.loc)
        entries = template.entries if template.entries is not None else (template.result,)
        pairs = []
        for param, entry in zip(template.primal_params, entries):
            if isinstance(entry, ir.Const) and entry.value is None:
                continue
            if self.act.atom_active(bindings[param]):
                pairs.append((bindings[param], substitute(entry, mapping)))
        env = self.shape_env(stmt, {g: stmt.value, ans: stmt.value})
        if env is not None and isinstance(ans, ir.Name) and ans.id in ir.atom_names(value):
            # `y = f(y)` read the old y, which the backward sweep sees under the same name as
            # the result (the old value was not saved): its shape is not known.
            env.set(ans.id, env.fresh())
        if env is not None:
            body = self.tighten_shapes(body, env)
        return body, pairs

    # ------------------------------------------------------------------ shapes

    def setup_shapes(self, fn: ir.FunctionDef, scalars: frozenset[str], ranks: dict) -> None:
        """Primal shapes before every statement and at the end, and the names shapes may be
        read from."""
        self.shape_envs, self.end_shapes = walk_shapes(fn, scalars, ranks, self.callee_result)
        kept = [
            n
            for n in (
                *fn.param_names,
                *(n for s in ir.walk_stmts(fn.body) for n in dataflow.writes(s)),
            )
            if self.defs[n] == 1 and n not in self.loop_defined and n not in self.containers
        ]
        self.witnesses = tuple(dict.fromkeys(kept))

    def user_call(self, stmt: ir.Stmt) -> tuple[Any, tuple] | None:
        """``(function, arguments)`` of the user function ``stmt`` calls (also as a split
        call, ``y, G_residuals = G_fwd(a)``), else None."""
        split = self.split_calls.get(id(stmt))
        if split is not None:
            return split.callee, stmt.value.args
        return _user_call(stmt)

    def callee_result(self, stmt: ir.Assign, env: ShapeEnv) -> Any:
        """The shape of what a call of a user function returns (``_call_result``)."""
        call = self.user_call(stmt)
        if call is None or self.compilation is None:
            return None
        return _call_result(self.compilation, *call, env)

    def shape_env(self, stmt: Any, values: dict[Any, Any]) -> ShapeEnv | None:
        """The primal shapes where ``stmt``'s adjoint runs, with ``values``: atom -> primal
        expression whose shape the atom has (the cotangent has the shape of the result)."""
        before = self.shape_envs.get(id(stmt))
        if before is None:
            return None
        env = before.copy()
        shapes: dict[int, Any] = {}  # one symbol per expression, even when it is a fresh one
        for atom, value in values.items():
            if isinstance(atom, ir.Name):
                if id(value) not in shapes:
                    shapes[id(value)] = env.value_shape(value)
                env.set(atom.id, shapes[id(value)])
        return env

    def tighten_shapes(self, body: list[ir.Stmt], env: ShapeEnv) -> list[ir.Stmt]:
        """Use what the shape analysis proves in a rule's adjoint code.

        ``unbroadcast(g, x)`` / ``unreduce(g, x)`` become ``g`` where ``g`` and ``x``
        provably have the same shape. Where ``x`` is read only for its shape (those
        two, and ``unindex(g, x, idx)``) and the backward sweep would need a saved
        copy of it (it changes in a loop), the shape is read from a value that never
        changes instead: a parameter or a once-defined name of that shape, or ``0.0``
        for a scalar. Fewer reads of loop values mean fewer saves (TBR).
        """
        out = []
        for stmt in body:
            value = stmt.value
            helper = runtime_helper(value)
            if isinstance(stmt, ir.Assign) and helper in _SHAPE_READERS and len(value.args) >= 2:
                g, x = value.args[0], value.args[1]
                if helper != "unindex" and env.of(g) == env.of(x):
                    stmt = replace(stmt, value=g)
                elif helper == "unbroadcast" and env.of(x) == SCALAR:
                    stmt = replace(stmt, value=_total(g, out, body, env))
                elif helper == "unbroadcast" and (k := env.summed_axes(g, x)) is not None:
                    if k == 0:
                        stmt = replace(stmt, value=g)
                    else:
                        axis = ir.Const(0 if k == 1 else tuple(range(k)))
                        stmt = replace(stmt, value=ir.Call(SUM, (g,), (("axis", axis),)))
                elif isinstance(x, ir.Name) and self.may_hold_value(x.id):
                    shape = env.of(x)
                    if shape == SCALAR and helper != "unindex":
                        witness: Any = ir.Const(0.0)
                    else:
                        name = env.witness(shape, self.witnesses)
                        witness = ir.Name(name) if name is not None else None
                    if witness is not None:
                        args = (g, witness, *value.args[2:])
                        stmt = replace(stmt, value=replace(value, args=args))
            if isinstance(stmt, ir.Assign):
                env.assign(stmt)
            out.append(stmt)
        return out

    def user_call_contributions(self, stmt: ir.Assign, g: Any) -> tuple[list[ir.Stmt], list]:
        """Cotangents of ``y = G(a, b)``'s arguments from the callee's generated vjp.

        ``G_vjp`` recomputes G's forward sweep: calls are differentiated by
        recomputation, so no saves cross function boundaries (and recursion works).
        """
        args = bind_user_call(stmt.value, stmt.loc)
        active = tuple(i for i, a in enumerate(args) if self.act.atom_active(a))
        env = self.shape_envs.get(id(stmt))
        ranks, scalars = env.argument_ranks(args) if env is not None else ((), ())
        name = self.compilation.request(
            stmt.value.fn.value,
            "reverse",
            active,
            container_positions(args, self.containers),
            scalars=scalars,
            ranks=ranks,
        )
        result = self.temp()
        code: list[ir.Stmt] = [
            ir.Assign((result,), ir.Call(ir.generated_ref(name), (*args, g)), stmt.loc)
        ]
        grads = self.temp()
        code.append(
            ir.Assign((grads,), ir.Call(GETITEM, (result, ir.Index((ir.Const(1),)))), stmt.loc)
        )
        return code, self.argument_cotangents(grads, args, active, code, stmt.loc)

    def argument_cotangents(self, grads: ir.Name, args, active, code: list[ir.Stmt], loc):
        """``(args[i], grads[k])`` for the k-th active argument i: what a callee's derivative
        returns, one cotangent per active argument, taken apart (into ``code``)."""
        pairs = []
        for k, i in enumerate(active):
            c = self.temp()
            code.append(ir.Assign((c,), ir.Call(GETITEM, (grads, ir.Index((ir.Const(k),)))), loc))
            pairs.append((args[i], c))
        return pairs

    def split_call_contributions(self, stmt: ir.Assign, g: Any) -> tuple[list[ir.Stmt], list]:
        """Cotangents of ``y, G_residuals = G_fwd(a, b)``'s arguments: ``G_bwd(G_residuals,
        dy)`` (``transforms.residuals``)."""
        call = self.split_calls[id(stmt)]
        grads = self.temp()
        backward = ir.Call(ir.generated_ref(call.bwd), (*stmt.targets[1:], g))
        code: list[ir.Stmt] = [ir.Assign((grads,), backward, stmt.loc)]
        return code, self.argument_cotangents(grads, stmt.value.args, call.active, code, stmt.loc)

    def primal_reads(self, stmts: list[ir.Stmt]) -> set[str]:
        return dataflow.deep_reads(stmts) & self.primal

    # ------------------------------------------------------------------ what the backward sweep reads

    def needed(self, body: tuple[ir.Stmt, ...]) -> set[str]:
        """Primal names the backward sweep reads, to a fixpoint with the saves they imply."""
        scratch = copy.deepcopy(self.names)
        reads: set[str] = set()
        for stmt in ir.walk_stmts(body):
            if (
                isinstance(stmt, ir.Assign)
                and (len(stmt.targets) == 1 or id(stmt) in self.split_calls)
                and self.act.active(stmt.targets[0].id)
            ):
                saved_names, saved_temps = self.names, self.temps
                self.names, self.temps = scratch, set()
                code, pairs = self.contributions(stmt, ir.Name("__g__"), stmt.targets[0])
                self.names, self.temps = saved_names, saved_temps
                results = {n for _, c in pairs for n in ir.atom_names(c)}
                # Only what feeds an active operand's cotangent: entries for inactive ones
                # are computed by the template too, and removed later as dead code.
                feeding = eliminate_dead_code(tuple(code), results)
                reads |= self.primal_reads(list(feeding)) | results & self.primal
            elif isinstance(stmt, ir.SetItem) and self.act.active(stmt.target.id):
                reads |= set(ir.atom_names(stmt.index))
                if self.act.atom_active(stmt.value):
                    saved_names, saved_temps = self.names, self.temps
                    self.names, self.temps = scratch, set()
                    code = self.setitem_value_adjoint(stmt, ir.Name("__d__"), self.temp())
                    self.names, self.temps = saved_names, saved_temps
                    reads |= self.primal_reads(code)
            elif isinstance(stmt, ir.Pop) and self.act.active(stmt.stack):
                reads.add(stmt.target.id)  # the shape of its adjoint's zeros (backward_pop)
            elif id(stmt) in self.rerun:
                # Its backward sweep reruns the body: it reads what the body reads on entry.
                reads |= dataflow.live_in(self.rerun_body(stmt), set()) & self.primal
        while True:
            self.saved = {n for n in reads if any(name == n for _, name in self.prior)}
            more = set(reads)
            self._control_reads(body, more)
            if more == reads:
                return reads
            reads = more

    def find_iteration_values(self, body: tuple[ir.Stmt, ...], needed: set[str]) -> None:
        """Fill ``self.taped``: per loop, the needed names assigned exactly once in the whole
        function, at the top level of that loop's body, and not read before that in the body."""
        # Names changed after their definition (trip counts, in-place updates) are not
        # "the value defined in this iteration" at the end of it.
        changed = {
            n
            for st in ir.walk_stmts(body)
            if id(st) in self.bookkeeping or isinstance(st, ir.SetItem)
            for n in dataflow.writes(st)
        }
        unchanging: set[str] | None = None  # (computed for the first loop that needs it)
        for stmt in ir.walk_stmts(body):
            if not ir.is_loop(stmt) or id(stmt) in self.rerun:
                continue
            seen_reads: set[str] = set(dataflow.reads(stmt))
            if isinstance(stmt, ir.While):
                seen_reads |= dataflow.deep_reads(stmt.test_block)
            chosen = []
            for inner in stmt.body:
                if isinstance(inner, ir.Assign) and id(inner) not in self.bookkeeping:
                    for target in self.tapeable_targets(inner):
                        name = target.id
                        if (
                            name in needed
                            and name not in changed
                            and self.defs[name] == 1
                            and name not in seen_reads
                            and name not in ir.atom_names(inner.value)
                        ):
                            chosen.append((target, inner))
                seen_reads |= dataflow.deep_reads((inner,))
            if chosen:
                self.taped[id(stmt)] = chosen
                self.taped_names.update(t.id for t, _ in chosen)
                if unchanging is None:
                    unchanging = self.unchanging_names(changed)
                self.find_recomputable(stmt, chosen, unchanging, changed)

    def tapeable_targets(self, stmt: ir.Assign) -> tuple[ir.Name, ...]:
        """The names ``stmt`` assigns that an iteration may save once it has them: a
        single target, or both of a split call's (``y, G_residuals = G_fwd(a)``), whose
        residuals, saved before they were overwritten instead, would be the loop's carried
        state (on JAX, every callee's residuals copied through each iteration)."""
        if len(stmt.targets) == 1 or id(stmt) in self.split_calls:
            return stmt.targets
        return ()

    def unchanging_names(self, changed: set[str]) -> set[str]:
        """Names that hold one value for the whole function once they have it: parameters
        and names assigned once outside loops, neither updated in place nor sharing memory
        with an array that is (``changed``: the names updated after their definition)."""
        tainted = set(changed)
        for name, views in dataflow.views(self.fn.body, makes_fresh_array).items():
            if name in changed or views & changed:
                tainted |= views | {name}
        return {
            n
            for n, count in self.defs.items()
            if count == 1 and n not in self.loop_defined and n not in tainted
        }

    def find_recomputable(
        self,
        loop: ir.Stmt,
        chosen: list[tuple[ir.Name, ir.Assign]],
        unchanging: set[str],
        changed: set[str],
    ):
        """Of a counted loop's iteration values, those the backward sweep recomputes rather
        than saves: index arithmetic (``t3 = i + 1``) and index reads (``t4 = x[t3]``, a
        scalar or a view) of the loop's counter, integer constants, parameters and names
        assigned once before any loop and never updated (nor any array they share memory
        with: ``unchanging``). Recomputing one costs about what pushing and popping it
        does, and it is never stored. Arithmetic on the values read (``1.0 - x[i]``) is saved: on NumPy
        scalars it costs several times a save."""
        if not (
            isinstance(loop, ir.For)
            and isinstance(loop.target, ir.Name)
            and (
                ir.is_call_of(loop.iter, range)
                or isinstance(loop.iter, ir.Name)
                and loop.iter.id in self.range_names
            )
        ):
            return
        stable = unchanging | {loop.target.id}
        indices = {loop.target.id}  # integer values: the counter, index arithmetic
        chain: dict[str, ir.Assign] = {}  # recomputable values of this iteration, in order
        for inner in loop.body:
            if not (
                isinstance(inner, ir.Assign)
                and len(inner.targets) == 1
                and id(inner) not in self.bookkeeping
                and self.defs[inner.target.id] == 1
                and inner.target.id not in changed
                and isinstance(inner.value, ir.Call)
                and isinstance(inner.value.fn, ir.Ref)
                and not inner.value.kwargs
                and set(ir.atom_names(inner.value)) <= stable | set(chain)
            ):
                continue
            fn, args = inner.value.fn.value, inner.value.args
            if fn in _INDEX_ARITHMETIC and all(_is_index(a, indices) for a in args):
                indices.add(inner.target.id)
                chain[inner.target.id] = inner
            elif fn is operator.getitem and not set(ir.atom_names(args[1])) - indices - stable:
                chain[inner.target.id] = inner
        wanted = [t.id for t, _ in chosen if t.id in chain]
        if not wanted:
            return
        keep: set[str] = set()
        todo = list(wanted)
        while todo:
            name = todo.pop()
            if name not in keep:
                keep.add(name)
                todo += [n for n in ir.atom_names(chain[name].value) if n in chain]
        self.recomputed[id(loop)] = [a for n, a in chain.items() if n in keep]
        self.recomputed_names.update(wanted)

    def find_checkpointed(
        self, body: tuple[ir.Stmt, ...], needed: set[str], default: int | None
    ) -> bool:
        """Fill ``self.checkpointed`` (and ``self.rerun``) with the loops reversed by a
        binomial schedule: those with a checkpoint directive, and with ``default``
        (``grad(..., checkpoint=N)``) every loop that saves values; whether there are any."""
        for stmt in ir.walk_stmts(body):
            if not ir.is_loop(stmt):
                continue
            # (whether it saves values matters only to the option: not computed without it)
            saves = default is not None and bool(dataflow.deep_writes((stmt,)) & needed)
            snapshots = checkpointing.snapshots_for(stmt, default, saves)
            if snapshots is None:
                continue
            body = self.rerun_body(stmt)
            online = id(stmt) in self.counters  # (a while loop, or one that may break)
            checkpointing.require_checkpointable(
                stmt, body, self.range_names, self.compilation, online
            )
            carried_state = carried(body)
            self.rerun[id(stmt)] = carried_state
            named = [n for n in carried_state if self.act.active(n)] or [*carried_state, "loop"]
            base = named[0]
            self.checkpointed[id(stmt)] = (snapshots, self.real_names.fresh(f"{base}_checkpoints"))
        return bool(self.checkpointed)

    def find_reruns(self, body: tuple[ir.Stmt, ...], needed: set[str]) -> bool:
        """Fill ``self.rerun`` with the loops whose backward sweep reruns their body
        (``transforms.remat`` decides); whether there are any."""
        for stmt in ir.walk_stmts(body):
            if (
                ir.is_loop(stmt)
                and id(stmt) not in self.rerun
                and worth_rerunning(stmt, needed, self.callee_body, self.range_names)
            ):
                self.rerun[id(stmt)] = carried(stmt.body)
        return bool(self.rerun)

    def find_rerun_entries(self, body: tuple[ir.Stmt, ...]) -> None:
        """Per rerun loop, the names it overwrites (not its carried state) that may hold a
        value before it which the backward sweep reads: a parameter, or a name also
        assigned outside the loop."""
        for stmt in ir.walk_stmts(body):
            if id(stmt) in self.rerun:
                inside = Counter(n for s in self.rerun_body(stmt) for n in dataflow.writes(s))
                self.rerun_entry[id(stmt)] = tuple(
                    n
                    for n in inside
                    if n in self.saved
                    and n not in self.rerun[id(stmt)]
                    and self.defs[n] > inside[n]  # (parameters count as one definition)
                )

    def callee_body(self, stmt: ir.Stmt) -> tuple[ir.Stmt, ...] | None:
        """The body of the user function ``stmt`` calls; None where it calls none, or one
        the compiler cannot read (then it is no cheap call: a loop calling it saves)."""
        call = self.user_call(stmt)
        if call is None or self.compilation is None:
            return None
        callee = _callee_ir(self.compilation, call[0])
        return callee.body if callee is not None else None

    def _control_reads(self, body: tuple[ir.Stmt, ...], reads: set[str]) -> bool:
        """Add decisions, ranges and trip counts of compound statements with backward work."""
        work = False
        for stmt in body:
            if isinstance(stmt, ir.Assign):
                work |= any(self.act.active(t.id) or t.id in self.saved for t in stmt.targets)
            elif isinstance(stmt, ir.SetItem):
                if self.act.active(stmt.target.id) or stmt.target.id in self.saved:
                    work = True
                    if stmt.target.id in self.saved:
                        reads.update(ir.atom_names(stmt.index))
            elif isinstance(stmt, (ir.Push, ir.Pop)):
                work |= self.act.active(stmt.stack)
            elif ir.is_compound(stmt):
                inner = False
                for child in ir.child_blocks(stmt):
                    inner |= self._control_reads(child, reads)
                if inner:
                    if isinstance(stmt, ir.If):
                        reads.update(ir.atom_names(stmt.test))
                    if isinstance(stmt, ir.For):
                        reads.update(ir.atom_names(stmt.iter))
                    if id(stmt) in self.counters:
                        reads.add(self.counters[id(stmt)])
                work |= inner
        return work

    # ------------------------------------------------------------------ forward sweep

    def stack(self, name: str, loop: str | None, stmt: Any, part: bool = False) -> str:
        """One stack per variable, loop and saving statement; outside loops, one slot per
        saving statement.

        ``part``: the stack of the parts ``x[idx] = v`` overwrote, apart from whole
        values of ``x``, one per update statement: JAX records each stack as one array,
        so its shape is fixed, and two updates (``x[i] = ...`` in one branch, ``x[:1] *= ...``
        in the other) overwrite parts of different shapes.
        """
        if loop is None:
            key, base = (name, None, id(stmt)), f"{name}_saved"
        elif loop is REPLAY and part:
            key, base = (name, REPLAY, ("part", id(stmt))), f"{name}_part_before"
        elif loop is REPLAY:
            key, base = (name, REPLAY, id(stmt)), f"{name}_before"
        elif part:
            key, base = (name, loop, ("part", id(stmt))), f"{name}_part_stack"
        else:
            # One per saving statement too (``stmt`` None: the loop's taped assignments):
            # JAX records one value per stack and iteration, so two saves of ``v`` in one
            # iteration (``v = np.sin(v); v = v * 2``) need two stacks.
            key, base = (name, loop, None if stmt is None else id(stmt)), f"{name}_stack"
        if key not in self.stacks:
            self.stacks[key] = self.real_names.fresh(base)
        return self.stacks[key]

    def forward_sweep(self, body: tuple[ir.Stmt, ...], loop: str | None) -> list[ir.Stmt]:
        out: list[ir.Stmt] = []
        for stmt in body:
            if isinstance(stmt, ir.Assign) and id(stmt) not in self.bookkeeping:
                taped = [t for t in self.tapeable_targets(stmt) if t.id in self.taped_names]
                for t in stmt.targets:
                    if t.id in self.saved and self.has_prior(stmt, t.id) and t not in taped:
                        out.append(ir.Push(self.stack(t.id, loop, stmt), t, loop, stmt.loc))
                out.append(stmt)
                out += [
                    ir.Push(self.stack(t.id, loop, None), t, loop, stmt.loc)
                    for t in taped
                    if t.id not in self.recomputed_names
                ]
            elif isinstance(stmt, ir.Pop):
                t = stmt.target
                if t.id in self.saved and self.has_prior(stmt, t.id):
                    out.append(ir.Push(self.stack(t.id, loop, stmt), t, loop, stmt.loc))
                out.append(stmt)
            elif isinstance(stmt, ir.SetItem) and stmt.target.id in self.saved:
                part = self.temp()
                out.append(
                    ir.Assign((part,), ir.Call(GETITEM, (stmt.target, stmt.index)), stmt.loc)
                )
                kept = self.temp()
                out.append(ir.Assign((kept,), ir.Call(COPY, (part,)), stmt.loc))
                out.append(
                    ir.Push(self.stack(stmt.target.id, loop, stmt, part=True), kept, loop, stmt.loc)
                )
                out.append(stmt)
            elif id(stmt) in self.rerun:
                out += self.rerun_forward(stmt, loop)
            elif ir.is_compound(stmt):
                # A loop's saves are per iteration, under its own label; a branch's are its loop's.
                label = self.loop_label(stmt) if ir.is_loop(stmt) else loop
                if isinstance(stmt, ir.For):
                    for n in dataflow.pattern_names(stmt.target):
                        if n in self.saved and self.has_prior(stmt, n):
                            push = ir.Push(self.stack(n, loop, stmt), ir.Name(n), loop, stmt.loc)
                            out.append(push)
                out.append(ir.map_blocks(stmt, partial(self.forward_sweep, loop=label)))
            else:
                out.append(stmt)
        return out

    def rerun_forward(self, loop: ir.For | ir.While, outer: str | None) -> list[ir.Stmt]:
        """A rerun loop runs its body as written and saves the state it carries at the top
        of each iteration; around it, once, the values it overwrites that the backward
        sweep reads after its own (``rerun_entry``)."""
        label = self.loop_label(loop)
        targets = [
            n
            for n in (dataflow.pattern_names(loop.target) if isinstance(loop, ir.For) else ())
            if n in self.saved and self.has_prior(loop, n)
        ]
        out: list[ir.Stmt] = [
            ir.Push(self.stack(n, outer, loop), ir.Name(n), outer, loop.loc)
            for n in (*self.rerun_entry[id(loop)], *targets)
        ]
        if id(loop) in self.checkpointed:
            # Only where the binomial schedule says: `c = store_checkpoint(c, (state,))`.
            count, name = self.checkpointed[id(loop)]
            state = self.rerun[id(loop)]
            body = tuple(self.value_only(stmt) for stmt in loop.body)
            online = id(loop) in self.counters
            out += checkpointing.create(ir.Name(name), count, loop, state, online, body)
            store = checkpointing.store(ir.Name(name), state, loop.loc)
            out.append(replace(loop, body=(store, *body)))
            if outer is not None:  # in a loop: each of its iterations' schedule, kept
                out.append(ir.Push(self.stack(name, outer, loop), ir.Name(name), outer, loop.loc))
            return out
        snapshots = tuple(
            ir.Push(self.snapshot(n, loop), ir.Name(n), label, loop.loc)
            for n in self.rerun[id(loop)]
        )
        out.append(replace(loop, body=snapshots + loop.body))
        return out

    def snapshot(self, name: str, loop: ir.For) -> str:
        """The stack of ``name``'s values at the top of each iteration of a rerun loop."""
        return self.stack(name, self.loop_label(loop), loop)

    def replay(self, loop: ir.For, state: dict[str, str]) -> list[ir.Stmt]:
        """One backward iteration of a rerun loop: restore the state it started from, run
        the body again (keeping each value of this iteration that an assignment overwrites
        and the backward sweep reads, in ``<name>_before``), then the body's backward sweep."""
        if id(loop) in self.checkpointed:
            name = ir.Name(self.checkpointed[id(loop)][1])
            bounds = tuple(
                ir.Name(self.real_names.fresh(n)) for n in ("kept", "start", "stop", "_")
            )
            rerun = tuple(self.value_only(stmt) for stmt in self.rerun_body(loop))
            out = checkpointing.restore_and_advance(name, loop, self.rerun[id(loop)], rerun, bounds)
        else:
            out = [
                ir.Pop(ir.Name(n), self.snapshot(n, loop), self._loop, loop.loc)
                for n in reversed(self.rerun[id(loop)])
            ]
        body = self.rerun_body(loop)
        return out + self.rerun_keeping(body) + self.backward(body, state)

    def rerun_keeping(self, body: tuple[ir.Stmt, ...]) -> list[ir.Stmt]:
        """``body`` again (a copy: later passes key statements by identity), each value an
        assignment overwrites that the backward sweep restores kept first, as
        ``<name>_before``; into branches (a checkpointed loop's body may branch)."""
        out: list[ir.Stmt] = []
        for stmt in body:
            if isinstance(stmt, ir.If):
                then, orelse = self.rerun_keeping(stmt.body), self.rerun_keeping(stmt.orelse)
                out.append(replace(stmt, body=tuple(then), orelse=tuple(orelse)))
                continue
            if isinstance(stmt, ir.SetItem) and stmt.target.id in self.saved:
                # The part `x[idx] = v` overwrites: a copy, as the forward sweep would push.
                part = self.temp()
                out.append(
                    ir.Assign((part,), ir.Call(GETITEM, (stmt.target, stmt.index)), stmt.loc)
                )
                slot = ir.Name(self.stack(stmt.target.id, REPLAY, stmt, part=True))
                out.append(ir.Assign((slot,), ir.Call(COPY, (part,)), stmt.loc))
            else:
                for t in dataflow.writes(stmt):
                    if self.restores(stmt, t):
                        slot = ir.Name(self.stack(t, REPLAY, stmt))
                        out.append(ir.Assign((slot,), ir.Name(t), stmt.loc))
            out.append(replace(stmt))
        return out

    def rerun_body(self, loop: ir.For | ir.While) -> tuple[ir.Stmt, ...]:
        """What a rerun of one iteration runs: a while loop's test block and body, without
        the trip count's increment (``add_counters``) and the loop's own ``if broke:
        break``, which a rerun inside the backward sweep's loop must not take."""
        return tuple(
            s
            for s in ir.iteration(loop)
            if id(s) not in self.bookkeeping and not checkpointing.is_loop_exit(s)
        )

    def value_only(self, stmt: ir.Stmt) -> ir.Stmt:
        """A copy of ``stmt`` for code that wants its value alone: a split call is the
        call of the user's function again (``y = G(a)``), without residuals to build."""
        if ir.is_compound(stmt):
            return ir.map_blocks(stmt, lambda b: tuple(self.value_only(s) for s in b))
        split = self.split_calls.get(id(stmt))
        return replace(split.original if split is not None else stmt)

    def restores(self, stmt: Any, name: str) -> bool:
        """Whether the backward sweep restores the value ``stmt`` overwrote in ``name``."""
        if name not in self.saved:
            return False
        if self._replay_prior is not None:
            return (id(stmt), name) in self._replay_prior
        return self.has_prior(stmt, name)

    def restoring(self, target: ir.Name, stmt: Any) -> ir.Stmt:
        """``target = <the value stmt overwrote>``: popped, or in a rerun iteration, kept."""
        if self._replay_prior is not None:
            return ir.Assign((target,), ir.Name(self.stack(target.id, REPLAY, stmt)), stmt.loc)
        return ir.Pop(target, self.stack(target.id, self._loop, stmt), self._loop, stmt.loc)

    def loop_label(self, loop: ir.For | ir.While) -> str:
        line = loop.loc.line if loop.loc else 0
        return f"line{line}"

    # ------------------------------------------------------------------ backward sweep

    def accumulate(
        self, name: str, c: Any, state: dict[str, str], out: list[ir.Stmt], loc, maybe=False
    ) -> None:
        """``d<name> += c``. ``maybe``: ``c`` may be None (the adjoint popped for a value
        derivative code saved before it was set), so the adjoint may be unset after."""
        d = self.adjoint_name(name)
        s = state.get(name, ZERO)
        if s == ZERO:
            out.append(ir.Assign((d,), c, loc))
        elif s == SET and name not in self.containers and not maybe:
            out.append(ir.Assign((d,), ir.Call(ADD, (d, c)), loc))
        else:
            self.maybe_unset.add(name)
            out.append(ir.Assign((d,), ir.Call(ACCUMULATE, (d, c)), loc))
        if maybe:
            self.maybe_unset.add(name)
        state[name] = MAYBE if maybe else SET

    def accumulate_atom(self, atom: Any, c: Any, state, out, loc) -> None:
        """Send a cotangent to the active names of an atom (a name, or a sequence of atoms)."""
        if isinstance(atom, ir.Name):
            if self.act.active(atom.id):
                self.accumulate(atom.id, c, state, out, loc)
            return
        if isinstance(atom, ir.Seq) and atom.kind == "dict" and self.act.atom_active(atom):
            for key, elt in zip(atom.keys, atom.elts):
                if self.act.atom_active(elt):
                    part = self.temp()
                    out.append(ir.Assign((part,), ir.Call(GETITEM, (c, ir.Index((key,)))), loc))
                    self.accumulate_atom(elt, part, state, out, loc)
        elif isinstance(atom, ir.Seq) and self.act.atom_active(atom):
            parts = [self.temp() for _ in atom.elts]
            if len(parts) == 1:  # `(t,) = c` would print as `t = c`: index instead
                first = ir.Call(GETITEM, (c, ir.Index((ir.Const(0),))))
                out.append(ir.Assign((parts[0],), first, loc))
            else:
                out.append(ir.Assign(tuple(parts), c, loc))
            for elt, part in zip(atom.elts, parts):
                self.accumulate_atom(elt, part, state, out, loc)

    def guarded(
        self, name: str, code: list[ir.Stmt], state_before, state_after, loc
    ) -> list[ir.Stmt]:
        """Run ``code`` only when the adjoint of ``name`` is not None (it may be unset)."""
        self.maybe_unset.add(name)
        test = self.temp()
        check = ir.Assign((test,), ir.Call(IS_NOT, (self.adjoint_name(name), NONE)), loc)
        merged = _join(state_before, state_after)
        state_after.clear()
        state_after.update(merged)
        return [check, ir.If(test, tuple(code), (), loc)]

    def backward_assign(self, stmt: ir.Assign, state: dict[str, str]) -> list[ir.Stmt]:
        out: list[ir.Stmt] = []
        if id(stmt) in self.bookkeeping:
            return out
        if len(stmt.targets) > 1 and id(stmt) not in self.split_calls:
            return self.backward_unpack(stmt, state)
        target, *residuals = stmt.targets  # (a callee's residuals: `y, G_residuals = G_fwd(a)`)
        y = target.id
        restore = self.restores(stmt, y) and y not in self.taped_names
        pop = self.restoring(target, stmt) if restore else None
        # The residuals are read by this statement's adjoint: restored after it.
        residual_pops = [
            self.restoring(r, stmt)
            for r in reversed(residuals)
            if self.restores(stmt, r.id) and r.id not in self.taped_names
        ]
        if not self.act.active(y) or state.get(y, ZERO) == ZERO:
            return ([pop] if pop else []) + residual_pops
        reads_y = y in ir.atom_names(stmt.value)
        # Before this statement y held another value, whose adjoint starts from zero here.
        resets = self.has_prior(stmt, y)
        g: Any = self.adjoint_name(y)
        ans: Any = target
        before = dict(state) if state.get(y) == MAYBE else None
        if restore and reads_y:
            # The statement read the value it overwrote: keep its result, restore the old one.
            ans = self.temp()
            out.append(ir.Assign((ans,), target, stmt.loc))
            out.append(pop)
        code: list[ir.Stmt] = []
        if reads_y and resets:
            g_copy = self.temp()
            code.append(ir.Assign((g_copy,), g, stmt.loc))
            g = g_copy
            code.append(ir.Assign((self.adjoint_name(y),), NONE, stmt.loc))
            state[y] = ZERO
        stmts, pairs = self.contributions(stmt, g, ans)
        code += stmts
        for atom, c in pairs:
            self.accumulate_atom(atom, c, state, code, stmt.loc)
        if resets and not reads_y:
            code.append(ir.Assign((self.adjoint_name(y),), NONE, stmt.loc))
            state[y] = ZERO
        if before is not None:
            code = self.guarded(y, code, before, state, stmt.loc)
        out += code
        if restore and not reads_y:
            out.append(pop)
        return out + residual_pops

    def adjoint_or_zeros(self, name: str, state, out: list[ir.Stmt], loc) -> Any:
        """The adjoint of ``name`` as a value, zeros (of its shape) when it may be unset."""
        s = state.get(name, ZERO) if self.act.active(name) else ZERO
        if s == SET:
            return self.adjoint_name(name)
        t = self.temp()
        if s == MAYBE:
            self.maybe_unset.add(name)
            out.append(
                ir.Assign(
                    (t,), ir.Call(ZEROS_IF_NONE, (self.adjoint_name(name), ir.Name(name))), loc
                )
            )
        else:  # (derivative code read back: a name that may hold None has None for zeros)
            tree = name in self.containers or name in self.none_assigned
            zeros = ZEROS_LIKE_TREE if tree else ZEROS_LIKE
            out.append(ir.Assign((t,), ir.Call(zeros, (ir.Name(name),)), loc))
        return t

    def backward_unpack(self, stmt: ir.Assign, state: dict[str, str]) -> list[ir.Stmt]:
        """``a, b = p``: the adjoint of ``p`` gains ``(da, db)`` (zeros where none arrived)."""
        out: list[ir.Stmt] = []
        targets = [t.id for t in stmt.targets]
        source = stmt.value
        if any(self.act.active(t) and state.get(t, ZERO) != ZERO for t in targets):
            if not isinstance(source, ir.Name):
                raise NoDerivativeRuleError("unpacking this value is not supported", stmt.loc)
            parts = [self.adjoint_or_zeros(t, state, out, stmt.loc) for t in targets]
            seq = self.temp()
            out.append(ir.Assign((seq,), ir.Seq("tuple", tuple(parts)), stmt.loc))
            self.accumulate_atom(source, seq, state, out, stmt.loc)
            for t in targets:
                if self.has_prior(stmt, t) and state.get(t, ZERO) != ZERO:
                    out.append(ir.Assign((self.adjoint_name(t),), NONE, stmt.loc))
                    state[t] = ZERO
        for t in reversed(stmt.targets):
            if self.restores(stmt, t.id):
                out.append(self.restoring(t, stmt))
        return out

    def backward_setitem(self, stmt: ir.SetItem, state: dict[str, str]) -> list[ir.Stmt]:
        x = stmt.target.id
        out: list[ir.Stmt] = []
        if self.act.active(x) and state.get(x, ZERO) != ZERO:
            before = dict(state) if state.get(x) == MAYBE else None
            dx = self.adjoint_name(x)
            code: list[ir.Stmt] = []
            if self.act.atom_active(stmt.value):
                c = self.temp()
                code += self.setitem_value_adjoint(stmt, dx, c)
                self.accumulate_atom(stmt.value, c, state, code, stmt.loc)
            code.append(ir.Assign((dx,), ir.Call(ZERO_AT, (dx, stmt.index)), stmt.loc))
            if before is not None:
                code = self.guarded(x, code, before, state, stmt.loc)
            out += code
        if x in self.saved and self._replay_prior is not None:  # (kept by rerun_keeping)
            old = ir.Name(self.stack(x, REPLAY, stmt, part=True))
            out.append(ir.SetItem(stmt.target, stmt.index, old, stmt.loc))
        elif x in self.saved:
            old = self.temp()
            out.append(
                ir.Pop(old, self.stack(x, self._loop, stmt, part=True), self._loop, stmt.loc)
            )
            out.append(ir.SetItem(stmt.target, stmt.index, old, stmt.loc))
        return out

    def setitem_value_adjoint(self, stmt: ir.SetItem, dx: ir.Name, c: ir.Name) -> list[ir.Stmt]:
        """``c = unbroadcast(dx[idx], value)``: the cotangent of the value ``x[idx] = value`` wrote."""
        part = self.temp()
        code = [
            ir.Assign((part,), ir.Call(GETITEM, (dx, stmt.index)), stmt.loc),
            ir.Assign((c,), ir.Call(UNBROADCAST, (part, stmt.value)), stmt.loc),
        ]
        env = self.shape_env(stmt, {dx: stmt.target})
        return self.tighten_shapes(code, env) if env is not None else code

    def backward(self, body: tuple[ir.Stmt, ...], state: dict[str, str]) -> list[ir.Stmt]:
        out: list[ir.Stmt] = []
        for stmt in reversed(body):
            if isinstance(stmt, ir.Assign):
                out += self.backward_assign(stmt, state)
            elif isinstance(stmt, ir.SetItem):
                out += self.backward_setitem(stmt, state)
            elif isinstance(stmt, ir.Pop):
                out += self.backward_pop(stmt, state)
            elif isinstance(stmt, ir.Push):
                out += self.backward_push(stmt, state)
            elif isinstance(stmt, ir.If):
                s_body, s_else = dict(state), dict(state)
                b = self.backward(stmt.body, s_body)
                o = self.backward(stmt.orelse, s_else)
                state.clear()
                state.update(_join(s_body, s_else))
                if b or o:
                    out.append(ir.If(stmt.test, tuple(b), tuple(o), stmt.loc))
            elif ir.is_loop(stmt):
                out += self.backward_loop(stmt, state)
        return out

    # Derivative code's own saves (higher order). A stack of differentiated values has an
    # adjoint stack: undoing ``t = s.pop()`` pushes t's adjoint on it, undoing
    # ``s.append(v)`` pops that adjoint into v's. The pops come back in the order of the
    # pushes, as the saves did, so the backends keep the stacks they have.

    def adjoint_stack(self, stack: str) -> str:
        if stack not in self.adjoint_stacks:
            self.adjoint_stacks[stack] = self.real_names.fresh("d" + stack)
        return self.adjoint_stacks[stack]

    def backward_pop(self, stmt: ir.Pop, state: dict[str, str]) -> list[ir.Stmt]:
        """``t = s.pop()``: push t's adjoint (zeros when none arrived: every pop of the
        adjoint stack gets an array), then restore the t of before."""
        out: list[ir.Stmt] = []
        t = stmt.target.id
        if self.act.active(stmt.stack):
            s = state.get(t, ZERO)
            if s == SET:
                value: Any = self.adjoint_name(t)
            else:
                value = self.temp()
                if s == MAYBE:
                    self.maybe_unset.add(t)
                    call = ir.Call(ZEROS_IF_NONE, (self.adjoint_name(t), stmt.target))
                else:  # (a popped value may be None: an adjoint saved before it was set)
                    call = ir.Call(ZEROS_LIKE_TREE, (stmt.target,))
                out.append(ir.Assign((value,), call, stmt.loc))
            out.append(ir.Push(self.adjoint_stack(stmt.stack), value, ADJOINT_STACKS, stmt.loc))
            if s != ZERO and self.has_prior(stmt, t):
                out.append(ir.Assign((self.adjoint_name(t),), NONE, stmt.loc))
                state[t] = ZERO
        if t in self.saved and self.has_prior(stmt, t):
            out.append(ir.Pop(stmt.target, self.stack(t, self._loop, stmt), self._loop, stmt.loc))
        return out

    def backward_push(self, stmt: ir.Push, state: dict[str, str]) -> list[ir.Stmt]:
        """``s.append(v)``: v's adjoint gains the adjoint popped for it."""
        if not self.act.active(stmt.stack):
            return []
        c = self.temp()
        out: list[ir.Stmt] = [ir.Pop(c, self.adjoint_stack(stmt.stack), ADJOINT_STACKS, stmt.loc)]
        v = stmt.value
        if not isinstance(v, ir.Name) or v.id not in self.none_assigned:
            self.accumulate_atom(v, c, state, out, stmt.loc)
        elif self.act.active(v.id):
            # A None was pushed where derivative code saved an adjoint not yet set: its
            # adjoint is None too, so this one may be unset ("maybe") from here on.
            self.accumulate(v.id, c, state, out, stmt.loc, maybe=True)
        return out

    def backward_loop(self, loop: ir.For | ir.While, state: dict[str, str]) -> list[ir.Stmt]:
        outer, outer_prior = self._loop, self._replay_prior
        self._loop = self.loop_label(loop)
        body = ir.iteration(loop)
        if id(loop) in self.rerun:
            # Within one rerun iteration a name holds a value before an assignment if it
            # is carried in or was assigned earlier in the iteration.
            self._replay_prior = set()
            _prior_values(self.rerun_body(loop), set(self.rerun[id(loop)]), self._replay_prior)
        entry = self.loop_entry_state(body, state)
        # An array only read in the loop (`x[i]`) gets its adjoint as zeros before it rather
        # than None-or-array inside: one buffer the index reads add into, in place.
        written = dataflow.deep_writes(body)
        first_in_loop = sorted(
            n
            for n, s in entry.items()
            if s == MAYBE
            and state.get(n, ZERO) == ZERO
            and n not in written
            and n not in self.containers
            and n in self.primal
            and not self.may_hold_value(n)
        )
        zero_init: list[ir.Stmt] = []
        for n in first_in_loop:
            zero_init.append(
                ir.Assign((self.adjoint_name(n),), ir.Call(ZEROS_LIKE, (ir.Name(n),)), loop.loc)
            )
            state[n] = SET
        if first_in_loop:
            entry = self.loop_entry_state(body, state)
        inner_state = dict(entry)
        if id(loop) in self.rerun:
            inner = self.replay(loop, inner_state)
        else:
            inner = self.backward(body, inner_state)
        if id(loop) in self.taped:
            restores: list[ir.Stmt] = [
                ir.Pop(t, self.stack(t.id, self._loop, None), self._loop, a.loc)
                for t, a in reversed(self.taped[id(loop)])
                if t.id not in self.recomputed_names
            ]
            restores += self.recomputed.get(id(loop), [])
            inner = restores + inner
        self._loop, self._replay_prior = outer, outer_prior
        state.clear()
        state.update(entry)
        out: list[ir.Stmt] = list(zero_init)
        targets = dataflow.pattern_names(loop.target) if isinstance(loop, ir.For) else []
        if id(loop) in self.checkpointed and outer is not None:  # (rerun_forward)
            name = self.checkpointed[id(loop)][1]
            out.append(ir.Pop(ir.Name(name), self.stack(name, outer, loop), outer, loop.loc))
        if inner:
            out += self.backward_loop_header(loop, tuple(inner))
        for n in reversed(targets):
            if n in self.saved and self.has_prior(loop, n):
                out.append(ir.Pop(ir.Name(n), self.stack(n, outer, loop), outer, loop.loc))
        for n in reversed(self.rerun_entry.get(id(loop), ())):
            out.append(ir.Pop(ir.Name(n), self.stack(n, outer, loop), outer, loop.loc))
        return out

    def loop_entry_state(self, body: tuple[ir.Stmt, ...], state: dict[str, str]) -> dict[str, str]:
        """The adjoint states at the top of a backward loop body: they must hold for every
        iteration, so iterate the body (on scratch names) until they settle."""
        entry = dict(state)
        while True:
            kept = (self.names, self.temps, set(self.maybe_unset))
            self.names, self.temps = copy.deepcopy(self.names), set()
            trial = dict(entry)
            self.backward(body, trial)
            self.names, self.temps, self.maybe_unset = kept
            joined = _join(entry, trial)
            if joined == entry:
                return entry
            entry = joined

    def backward_loop_header(self, loop, inner: tuple[ir.Stmt, ...]) -> list[ir.Stmt]:
        out: list[ir.Stmt] = []
        k = self.counters.get(id(loop))
        if isinstance(loop, ir.While):
            step = ir.Name(self.names.fresh("_"))
            return [ir.For(step, ir.Call(RANGE, (ir.Name(k),)), inner, loop.loc)]
        it = loop.iter
        if k is None and ir.is_call_of(it, builtins.reversed) and len(it.args) == 1:
            # Derivative code's own backward loop (`for i in reversed(r)`, read back for
            # higher order): undone forwards, `for i in r`.
            return [ir.For(loop.target, it.args[0], inner, loop.loc)]
        if k is not None:
            first = self.temp()
            out.append(
                ir.Assign(
                    (first,),
                    ir.Call(GETITEM, (it, ir.Index((ir.Slice(None, ir.Name(k)),)))),
                    loop.loc,
                )
            )
            it = first
        out.append(ir.For(loop.target, ir.Call(REVERSED, (it,)), inner, loop.loc))
        return out

    _loop: str | None = None


#: The loop label of adjoint stacks (``_Reverse.adjoint_stack``): they are lists wherever
#: they are pushed, as the derivative code's stacks they mirror.
ADJOINT_STACKS = "<adjoint stacks>"

#: The "loop" of the values a rerun iteration keeps for its own backward sweep
#: (``_Reverse.replay``): plain names, ``<name>_before``, not stacks.
REPLAY = "<rerun iteration>"


def _prior_values(
    body: tuple[ir.Stmt, ...], defined: set[str], prior: set[tuple[int, str]]
) -> set[str]:
    """Add to ``prior`` (id(stmt), name) for each defining statement whose target may
    already hold a value there.

    ``defined`` holds the names possibly defined on entry; returns those possibly
    defined on exit. In a loop, anything the loop defines may be defined already.
    """
    defined = set(defined)
    for stmt in body:
        if isinstance(stmt, ir.Assign):
            for t in stmt.targets:
                if t.id in defined:
                    prior.add((id(stmt), t.id))
                defined.add(t.id)
        elif isinstance(stmt, ir.Pop):
            if stmt.target.id in defined:
                prior.add((id(stmt), stmt.target.id))
            defined.add(stmt.target.id)
        elif isinstance(stmt, ir.SetItem):
            prior.add((id(stmt), stmt.target.id))
        elif isinstance(stmt, ir.If):
            defined = _prior_values(stmt.body, defined, prior) | _prior_values(
                stmt.orelse, defined, prior
            )
        elif ir.is_loop(stmt):
            inside = dataflow.deep_writes((stmt,))
            for n in dataflow.pattern_names(stmt.target) if isinstance(stmt, ir.For) else ():
                if n in defined:
                    prior.add((id(stmt), n))
            entry = defined | inside
            for child in ir.child_blocks(stmt):
                _prior_values(child, entry, prior)
            defined = entry
    return defined


def reverse(
    fn: ir.FunctionDef,
    wrt: tuple[int, ...],
    names: FreshNames,
    compilation=None,
    containers: tuple[int, ...] = (),
    has_aux: bool = False,
    scalars: tuple[int, ...] = (),
    value_unread: bool = False,
    ranks: tuple = (),
    rerun_loops: bool = False,
    checkpoint: int | None = None,
    checkpointing_loops: bool = True,
) -> ir.FunctionDef:
    """The adjoint (vjp) function of a structured ANF function, w.r.t. the parameters ``wrt``.

    ``containers`` are the positions of parameters that hold tuples/lists/dicts;
    with ``has_aux`` the function returns ``(value, aux)`` and only ``value`` is
    differentiated. ``scalars`` are the positions of parameters passed as
    numbers, and ``ranks`` holds ``(position, ndim, full)`` for those passed as arrays
    (``((position, key), ndim, full)`` for a dict's entries), which sharpens the shape
    analysis (``shapes.ShapeEnv``: ``x[i]`` is a scalar, ``unbroadcast`` calls go).
    ``value_unread``: the caller
    throws the value away (``grad``); where it is provably a real scalar it is
    returned as None and the work only it needed goes (``transforms.unread_value``).
    ``rerun_loops``: loops whose body is cheap and saves much rerun it in their backward
    sweep instead (``transforms.remat``). ``checkpointing_loops``: loops with a checkpoint
    directive, and with ``checkpoint`` (a number of snapshots) every loop that saves
    values, keep only the states a binomial schedule needs (``transforms.checkpointing``).
    """
    require_structured(fn)
    fn = split_aux(fn, names) if has_aux else fn
    unsplit = fn
    wrt_names = tuple(fn.params[i].name for i in wrt)
    activity = analyze(fn, wrt_names)
    container_names = may_be_containers(fn, frozenset(fn.params[i].name for i in containers))
    named_ranks = _named_ranks(fn, ranks)
    fn, split_calls = _with_residual_calls(
        fn,
        activity,
        container_names,
        frozenset(fn.params[i].name for i in scalars),
        named_ranks,
        names,
        compilation,
    )
    if split_calls:
        activity = analyze(fn, wrt_names)
    rev = _Reverse(fn, activity, names, compilation, container_names)
    rev.split_calls = split_calls
    *primal, ret = fn.body
    primal = rev.add_counters(tuple(primal))
    rev.count_definitions(primal, 0)
    _prior_values(primal, set(fn.param_names), rev.prior)
    scalar_names = frozenset(fn.params[i].name for i in scalars)
    rev.setup_shapes(replace(fn, body=(*primal, ret)), scalar_names, named_ranks)
    needed = rev.needed(primal)
    checkpointed = checkpointing_loops and rev.find_checkpointed(primal, needed, checkpoint)
    if (rerun_loops and rev.find_reruns(primal, needed)) or checkpointed:
        needed = rev.needed(primal)
        rev.find_rerun_entries(primal)
    rev.find_iteration_values(primal, needed)
    out_atom = ret.value
    returned = out_atom
    if has_aux:
        # `value = result[0]` was appended by split_aux: seed `value`, return all of `result`.
        returned = primal[-1].value.args[0]
    if (
        value_unread
        and not has_aux
        and isinstance(out_atom, ir.Name)
        and value_is_real_scalar(
            replace(unsplit, body=unsplit.body[:-1]),
            rev.end_shapes.of(out_atom),
            compilation and compilation.callee_ir,
        )
    ):
        returned = ir.Const(None)  # dead code elimination removes what only it read
    seed = rev.adjoint_name(out_atom.id)
    state = {out_atom.id: SET}
    forward = rev.forward_sweep(primal, None)
    backward = rev.backward(primal, state)
    results, finish = _gradients(rev, wrt_names, state, names, ret.loc)
    setup, inits = _initialisations(rev, fn, out_atom.id)
    if isinstance(returned, ir.Name) and returned.id in dataflow.deep_writes(backward):
        # The backward sweep restores the returned name to earlier values (a loop's
        # `y = y_stack.pop()`): keep the output under a name of its own.
        kept = ir.Name(names.fresh("value"))
        forward = forward + [ir.Assign((kept,), returned, ret.loc)]
        returned = kept
    body: list[ir.Stmt] = setup + forward
    if backward or finish:
        body.append(ir.Comment(BACKWARD_SWEEP))
    body += inits + backward + finish
    body.append(ir.Return(ir.Seq("tuple", (returned, ir.Seq("tuple", tuple(results))))))
    return replace(
        fn,
        name=names.fresh(f"{fn.name}_vjp"),
        params=tuple(replace(p, default=None, kind="positional") for p in fn.params)
        + (ir.Param(seed.id),),
        body=tuple(body),
        temps=frozenset(rev.temps),
    )


def _user_call(stmt: ir.Stmt) -> tuple[Any, tuple] | None:
    """``(function, arguments)`` of ``y = G(a, b)``, a call of a user function, else None."""
    value = getattr(stmt, "value", None)
    if (
        isinstance(stmt, ir.Assign)
        and len(stmt.targets) == 1
        and isinstance(value, ir.Call)
        and isinstance(value.fn, ir.Ref)
        and is_user_function(value.fn.value)
    ):
        return value.fn.value, tuple(bind_user_call(value, stmt.loc))
    return None


def _callee_ir(compilation, fn) -> ir.FunctionDef | None:
    """A called function as IR, or None where the compiler cannot read it: a call it does
    not differentiate may use anything, and an analysis looking into it must not fail."""
    try:
        return compilation.callee_ir(fn)
    except S2SGradError:
        return None


def _call_result(compilation, fn, args: tuple, env: ShapeEnv) -> Any:
    """The shape of what the user function ``fn`` returns for ``args``: a fresh symbol of
    the rank its own shape walk gives it (``_result_profile``), a tuple of them for a
    tuple it returns, else None."""
    ranks, scalars = env.argument_ranks(args)
    profile = _result_profile(compilation, fn, ranks, scalars)
    if profile is None:
        return None
    if isinstance(profile, _TupleProfile):
        return tuple(env.fresh_profiled(p) if p is not None else env.fresh() for p in profile.parts)
    return env.fresh_profiled(profile)


def _callee_results(compilation) -> Callable:
    """The ``results`` of a shape walk (``shapes.walk_shapes``): what calls of user
    functions return (``_call_result``)."""

    def result(stmt: ir.Assign, env: ShapeEnv) -> Any:
        call = _user_call(stmt)
        return _call_result(compilation, *call, env) if call is not None else None

    return result


@dataclass(frozen=True)
class _TupleProfile:
    """What a function returning a tuple returns: ``(ndim, full)`` of each item, or None."""

    parts: tuple


def _result_profile(compilation, fn, ranks: tuple, scalars: tuple) -> Any:
    """``(ndim, full)`` of what the user function ``fn`` returns for arguments of these
    ranks and scalars, by its own shape walk, or a ``_TupleProfile`` for a tuple it
    returns; None where unknown (or ``fn`` is being walked already: recursion)."""
    key = (fn, ranks, scalars)
    memo = compilation.result_profiles
    if key not in memo:
        memo[key] = None  # (a recursive call meets this)
        callee = _callee_ir(compilation, fn)
        ret = callee.body[-1] if callee is not None and callee.body else None
        if isinstance(ret, ir.Return) and isinstance(ret.value, ir.Name):
            params = callee.params
            named = _named_ranks(callee, tuple(r for r in ranks if r[0] < len(params)))
            scalar_names = frozenset(params[i].name for i in scalars if i < len(params))
            end = walk_shapes(callee, scalar_names, named, _callee_results(compilation))[1]
            parts = end.parts.get(ret.value.id)
            if parts is not None:
                profiles = tuple(end.profile(p) for p in parts)
                memo[key] = _TupleProfile(profiles) if any(profiles) else None
            else:
                memo[key] = end.profile(end.of(ret.value))
    return memo[key]


def _named_ranks(fn: ir.FunctionDef, ranks: tuple) -> dict:
    """``ranks`` (by position) keyed by parameter name, as ``shapes.ShapeEnv`` reads them."""
    named = {}
    for where, ndim, full in ranks:
        if isinstance(where, tuple):
            named[(fn.params[where[0]].name, where[1])] = (ndim, full)
        else:
            named[fn.params[where].name] = (ndim, full)
    return named


def _total(g: Any, done: list[ir.Stmt], body: list[ir.Stmt], env: ShapeEnv) -> ir.Call:
    """``np.sum(g)``, a scalar's share of the cotangent ``g``; where ``g = a * b`` (just
    made in ``done``, read nowhere else in ``body``) of two operands of one shape,
    ``np.vdot(a, b)``: one pass, no temporary array, and no ``np.sum`` dispatch (a scalar
    parameter scaling an array, per loop iteration: the heat benchmark's ``r``)."""
    made = done[-1] if done else None
    if (
        isinstance(g, ir.Name)
        and isinstance(made, ir.Assign)
        and made.targets == (g,)
        and isinstance(made.value, ir.Call)
        and isinstance(made.value.fn, ir.Ref)
        and made.value.fn.value is operator.mul
        and not made.value.kwargs
        and env.of(made.value.args[0]) == env.of(made.value.args[1])
        and sum(dataflow.reads(s).count(g.id) for s in body) == 1
    ):
        done.pop()
        return ir.Call(VDOT, made.value.args)
    return ir.Call(SUM, (g,))


@dataclass(frozen=True)
class _SplitCall:
    """``y, G_residuals = G_fwd(a, b)``: its backward function, and the active argument
    positions."""

    bwd: str
    active: tuple[int, ...]
    callee: Any = None  # the user function it splits
    original: ir.Assign | None = None  # `y = G(a, b)`: where only the value is wanted


def _with_residual_calls(
    fn: ir.FunctionDef,
    activity,
    containers: frozenset[str],
    scalar_params: frozenset[str],
    ranks: dict,
    names: FreshNames,
    compilation,
) -> tuple[ir.FunctionDef, dict[int, _SplitCall]]:
    """``fn`` with each active call of a user function that ``compilation.split`` splits
    rewritten as ``y, G_residuals = G_fwd(a, b)`` (``transforms.residuals``), and those
    statements' backward functions."""
    if compilation is None:
        return fn, {}
    calls = [
        s
        for s in ir.walk_stmts(fn.body)
        if isinstance(s, ir.Assign)
        and len(s.targets) == 1
        and isinstance(s.value, ir.Call)
        and isinstance(s.value.fn, ir.Ref)
        and is_user_function(s.value.fn.value)
        and activity.atom_active(s.value)
        and activity.active(s.target.id)
    ]
    if not calls:
        return fn, {}
    in_loops = {
        id(s)
        for loop in ir.walk_stmts(fn.body)
        if ir.is_loop(loop)
        for s in ir.walk_stmts(ir.iteration(loop))
    }

    envs = statement_shapes(fn, scalar_params, ranks, _callee_results(compilation))
    rewritten: dict[int, ir.Assign] = {}
    split_calls: dict[int, _SplitCall] = {}
    for stmt in calls:
        args = tuple(bind_user_call(stmt.value, stmt.loc))
        active = tuple(i for i, a in enumerate(args) if activity.atom_active(a))
        env = envs.get(id(stmt))
        arg_ranks, scalars = env.argument_ranks(args) if env is not None else ((), ())
        callee = stmt.value.fn.value
        split = compilation.split(
            callee,
            active,
            container_positions(args, containers),
            scalars,
            arg_ranks,
            in_loop=id(stmt) in in_loops,
        )
        if split is None:
            continue
        residuals = ir.Name(names.fresh(f"{getattr(callee, '__name__', 'call')}_residuals"))
        new = ir.Assign(
            (stmt.target, residuals), ir.Call(ir.generated_ref(split.fwd), args), stmt.loc
        )
        rewritten[id(stmt)] = new
        split_calls[id(new)] = _SplitCall(split.bwd, active, callee, stmt)
    if not rewritten:
        return fn, {}

    def rewrite(body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        return tuple(rewritten.get(id(s)) or ir.map_blocks(s, rewrite) for s in body)

    return replace(fn, body=rewrite(fn.body)), split_calls


def _gradients(
    rev: _Reverse, wrt_names: tuple[str, ...], state: dict[str, str], names: FreshNames, loc
) -> tuple[list[ir.Name], list[ir.Stmt]]:
    """The adjoint of each parameter in ``wrt``, and the statements that give the user
    arrays: zeros for what nothing reached, zeros for the None leaves of containers."""
    results = []
    finish: list[ir.Stmt] = []
    for w in wrt_names:
        s = state.get(w, ZERO)
        if s == SET and w in rev.containers:
            # Leaves nothing reached are None or zero views: give the user arrays.
            d = rev.adjoint_name(w)
            finish.append(ir.Assign((d,), ir.Call(ZEROS_IF_NONE, (d, ir.Name(w))), loc))
            results.append(d)
            continue
        if s == SET:
            results.append(rev.adjoint_name(w))
            continue
        if s == MAYBE:
            rev.maybe_unset.add(w)  # read by zeros_if_none: must exist on every path
        zero = ir.Name(names.fresh("d" + w)) if w not in rev.adjoint else rev.adjoint_name(w)
        call = (
            ir.Call(ZEROS_LIKE, (ir.Name(w),))
            if s == ZERO
            else ir.Call(ZEROS_IF_NONE, (zero, ir.Name(w)))
        )
        finish.append(ir.Assign((zero,), call, loc))
        results.append(zero)
    return results, finish


def _initialisations(
    rev: _Reverse, fn: ir.FunctionDef, seed_of: str
) -> tuple[list[ir.Stmt], list[ir.Stmt]]:
    """What the adjoint function sets up first: the loops' stacks, and None for each
    saved name pushed before its first definition; and, before the backward sweep,
    None for each adjoint that may be unset (not the output's: that is the seed)."""
    setup: list[ir.Stmt] = []
    for (_name, loop, _), stack in rev.stacks.items():
        if loop is not None and loop is not REPLAY:
            setup.append(ir.NewStack(stack, loop))
    pushed = {name for (name, loop, _) in rev.stacks if loop is not REPLAY} - rev.taped_names
    for name in sorted(pushed - set(fn.param_names)):
        # A first push may come before the first definition (first loop iteration).
        setup.append(ir.Assign((ir.Name(name),), NONE))
    inits: list[ir.Stmt] = [
        ir.NewStack(name, ADJOINT_STACKS) for name in rev.adjoint_stacks.values()
    ]
    inits += [
        ir.Assign((rev.adjoint_name(n),), NONE) for n in sorted(rev.maybe_unset) if n != seed_of
    ]
    return setup, inits


_INDEX_ARITHMETIC = frozenset(
    {operator.add, operator.sub, operator.mul, operator.floordiv, operator.mod, operator.neg}
)


def _is_index(atom: Any, indices: set[str]) -> bool:
    """An integer a loop computes its indices from: a counter, index arithmetic, an int."""
    if isinstance(atom, ir.Name):
        return atom.id in indices
    return isinstance(atom, ir.Const) and type(atom.value) is int


def _breaks(body: tuple[ir.Stmt, ...]) -> bool:
    """Whether a loop body can leave its loop early (a break not inside a nested loop)."""
    for stmt in body:
        if isinstance(stmt, ir.Break):
            return True
        if isinstance(stmt, ir.If) and (_breaks(stmt.body) or _breaks(stmt.orelse)):
            return True
    return False
