"""Forward mode: after each active statement, its tangent statement.

For ``y = f(x1, x2)`` with active ``x1``, the jvp template of ``f`` is
inlined with ``ans = y`` and ``dx1 = <tangent of x1>``; the contributions of
active arguments are summed into ``dy``. Control flow is kept as it is:
tangents live in the same branches and loops as their primals, so nothing is
recorded. When a statement overwrites one of its own operands (``s = s + h``),
the primal result goes to a temporary first, so the tangent still sees the old
operand. The generated function takes the primals and the tangents of the
``wrt`` parameters, and returns ``(out, dout)``.
"""

from __future__ import annotations

from dataclasses import replace

from s2sgrad.transforms.analysis import (
    analyze,
    bind_user_call,
    container_positions,
    is_user_function,
    may_be_containers,
    require_structured,
)
from s2sgrad.transforms.builder import DerivativeBuilder, split_aux
from s2sgrad.transforms.names import FreshNames
from s2sgrad.transforms.prims import ADD, OWNED_COPY, ZEROS_LIKE, ZEROS_LIKE_TREE
from s2sgrad.transforms.templates import bind_call, instantiate, lower_template, substitute

from s2sgrad import ir
from s2sgrad.errors import NoDerivativeRuleError
from s2sgrad.rules import lookup
from s2sgrad.runtime import add_into, zero_into


class _Forward(DerivativeBuilder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tangent: dict[str, str] = {}
        # Arrays updated in place (`u[i] = v`): their tangents are updated the same way,
        # so each must own its array, not alias the tangent it came from (`u = x + 1.0`
        # has the tangent `dx`, the caller's array).
        # Derivative code's `dx = add_into(dx, g, i)` (or `zero_into`) updates dx in place
        # too (higher order).
        self.updated = frozenset(
            s.target.id for s in ir.walk_stmts(self.fn.body) if isinstance(s, ir.SetItem)
        ) | frozenset(
            s.value.args[0].id
            for s in ir.walk_stmts(self.fn.body)
            if _updates_in_place(s) and isinstance(s.value.args[0], ir.Name)
        )

    def tangent_of(self, name: str) -> ir.Name:
        if name not in self.tangent:
            self.tangent[name] = self.names.fresh("d" + name)
        return ir.Name(self.tangent[name])

    def zeros(self, atom, out: list[ir.Stmt], loc) -> ir.Name | ir.Const:
        """``zeros_like(atom)``, bound to a temporary: the tangent of an inactive atom.
        None has no zeros (JAX's ``zeros_like(None)`` raises): its tangent is None."""
        if isinstance(atom, ir.Const) and atom.value is None:
            return atom
        zero = self.temp()
        container = isinstance(atom, ir.Name) and atom.id in self.containers
        out.append(
            ir.Assign((zero,), ir.Call(ZEROS_LIKE_TREE if container else ZEROS_LIKE, (atom,)), loc)
        )
        return zero

    def tangent_atom(self, atom, out: list[ir.Stmt], loc):
        """The tangent of an atom: its tangent name, or zeros for inactive parts of a sequence."""
        if isinstance(atom, ir.Name) and self.act.active(atom.id):
            return self.tangent_of(atom.id)
        if isinstance(atom, ir.Seq):
            return replace(atom, elts=tuple(self.tangent_atom(e, out, loc) for e in atom.elts))
        return self.zeros(atom, out, loc)

    def block(self, body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out: list[ir.Stmt] = []
        for stmt in body:
            out += self.statement(stmt)
        return tuple(out)

    def statement(self, stmt: ir.Stmt) -> list[ir.Stmt]:
        if isinstance(stmt, ir.Return):
            out: list[ir.Stmt] = []
            tangent = self.tangent_atom(stmt.value, out, stmt.loc)
            return out + [replace(stmt, value=ir.Seq("tuple", (stmt.value, tangent)))]
        if ir.is_compound(stmt):
            return [ir.map_blocks(stmt, self.block)]
        if isinstance(stmt, ir.SetItem):
            return self.setitem(stmt)
        if isinstance(stmt, (ir.NewStack, ir.Push, ir.Pop)):
            return self.save(stmt)
        if not isinstance(stmt, ir.Assign) or not any(self.act.active(t.id) for t in stmt.targets):
            return [stmt]
        if len(stmt.targets) > 1:
            return self.unpack(stmt)
        target = stmt.target
        value = stmt.value
        if isinstance(value, ir.Call) and is_user_function(value.fn.value):
            return self.user_call(stmt)
        overwrites_operand = target.id in ir.atom_names(stmt.value)
        result = self.temp() if overwrites_operand else target
        out = [replace(stmt, targets=(result,))]
        tangent = self.tangent_of(target.id)
        # Derivative code reads values through views of arrays it updates and restores
        # (`t = w[1:]` ... `w = w_saved; w[1:] = old` ... `t * g`): where it rebinds a name
        # to another's array, the tangent is that array's tangent too, so that the
        # tangent views see the same updates (a copy there left them stale: seed 62-250).
        aliases = self.fn.derivative_code and isinstance(stmt.value, ir.Name)
        if target.id in self.updated and not _updates_in_place(stmt) and not aliases:
            # (add_into's tangent is the same update of the owned tangent, in place)
            shared = self.temp()
            out += self.tangent_statements(stmt.value, result, shared, stmt.loc)
            # A tangent of its own for the updates (derivative code's adjoints may be None:
            # owned_copy keeps that; a batch of tangents gets one per member).
            out.append(ir.Assign((tangent,), ir.Call(OWNED_COPY, (shared,)), stmt.loc))
        else:
            out += self.tangent_statements(stmt.value, result, tangent, stmt.loc)
        if overwrites_operand:
            out.append(ir.Assign((target,), result, stmt.loc))
        return out

    def tangent_statements(
        self, value, result: ir.Name, target_tangent: ir.Name, loc
    ) -> list[ir.Stmt]:
        """``target_tangent = <tangent of value>``, the primal result being in ``result``."""
        out: list[ir.Stmt] = []
        if not isinstance(value, ir.Call):
            out.append(ir.Assign((target_tangent,), self.tangent_atom(value, out, loc), loc))
            return out
        rule = lookup(value.fn.value)
        if rule is not None and rule.nondifferentiable:
            out.append(ir.Assign((target_tangent,), ir.Call(ZEROS_LIKE, (result,)), loc))
            return out
        if rule is None or rule.jvp is None:
            if not self.act.atom_active(value):
                out.append(ir.Assign((target_tangent,), ir.Call(ZEROS_LIKE, (result,)), loc))
                return out
            raise NoDerivativeRuleError(
                f"no forward-mode (jvp) rule for `{value.fn.source}`",
                loc,
                f"register one with @s2sgrad.defjvp({value.fn.source}), or use mode='reverse'",
            )
        template = lower_template(rule.jvp, "jvp")
        bindings = bind_call(template, value, loc, rule)
        bindings["ans"] = result
        active_params = [p for p in rule.diff_params if self.act.atom_active(bindings.get(p))]
        if not active_params:
            out.append(ir.Assign((target_tangent,), ir.Call(ZEROS_LIKE, (result,)), loc))
            return out
        for p in rule.diff_params:
            if p in active_params or template.entries is None:
                bindings["d" + p] = self.tangent_atom(bindings[p], out, loc)
        body, mapping = instantiate(template, bindings, self.names, self.temps, loc)
        out += body
        if template.entries is None:
            tangent = substitute(template.result, mapping)
        else:
            terms = [
                substitute(entry, mapping)
                for p, entry in zip(rule.diff_params, template.entries)
                if p in active_params
            ]
            tangent = terms[0]
            for term in terms[1:]:
                acc = self.temp()
                out.append(ir.Assign((acc,), ir.Call(ADD, (tangent, term)), loc))
                tangent = acc
        out.append(ir.Assign((target_tangent,), tangent, loc))
        return out

    def unpack(self, stmt: ir.Assign) -> list[ir.Stmt]:
        """``a, b = p`` -> ``da, db = dp`` (zeros for targets when ``p`` carries no tangent)."""
        out: list[ir.Stmt] = [stmt]
        source = stmt.value
        if not isinstance(source, ir.Name):
            raise NoDerivativeRuleError("unpacking this value is not supported", stmt.loc)
        if self.act.active(source.id):
            parts = [
                self.tangent_of(t.id) if self.act.active(t.id) else self.temp()
                for t in stmt.targets
            ]
            out.append(ir.Assign(tuple(parts), self.tangent_of(source.id), stmt.loc))
            return out
        for t in stmt.targets:
            if self.act.active(t.id):
                out.append(
                    ir.Assign((self.tangent_of(t.id),), self.zeros(t, out, stmt.loc), stmt.loc)
                )
        return out

    def user_call(self, stmt: ir.Assign) -> list[ir.Stmt]:
        """``y = G(a, b)`` -> ``y, dy = G_jvp(a, b, da)``: the callee's own generated jvp."""
        args = bind_user_call(stmt.value, stmt.loc)
        active = tuple(i for i, a in enumerate(args) if self.act.atom_active(a))
        if not active:
            out: list[ir.Stmt] = [stmt]
            out.append(
                ir.Assign(
                    (self.tangent_of(stmt.target.id),),
                    ir.Call(ZEROS_LIKE, (stmt.target,)),
                    stmt.loc,
                )
            )
            return out
        name = self.compilation.request(
            stmt.value.fn.value, "forward", active, container_positions(args, self.containers)
        )
        out = []
        tangents = [self.tangent_atom(args[i], out, stmt.loc) for i in active]
        call = ir.Call(ir.generated_ref(name), (*args, *tangents))
        out.append(ir.Assign((stmt.target, self.tangent_of(stmt.target.id)), call, stmt.loc))
        return out

    def save(self, stmt: ir.NewStack | ir.Push | ir.Pop) -> list[ir.Stmt]:
        """The saves of derivative code (higher order): a stack of active values gets a
        stack of their tangents beside it, pushed and popped in step."""
        if not self.act.active(stmt.stack):
            return [stmt]
        tangents = self.tangent_of(stmt.stack).id
        if isinstance(stmt, ir.NewStack):
            return [stmt, replace(stmt, stack=tangents)]
        if isinstance(stmt, ir.Push):
            out: list[ir.Stmt] = [stmt]
            value = self.tangent_atom(stmt.value, out, stmt.loc)
            return [*out, replace(stmt, stack=tangents, value=value)]
        return [stmt, replace(stmt, target=self.tangent_of(stmt.target.id), stack=tangents)]

    def setitem(self, stmt: ir.SetItem) -> list[ir.Stmt]:
        """``x[i] = v`` -> the same update of ``dx`` with ``v``'s tangent (or zeros)."""
        out: list[ir.Stmt] = [stmt]
        if not self.act.active(stmt.target.id):
            return out
        value = (
            self.tangent_of(stmt.value.id) if self.act.atom_active(stmt.value) else ir.Const(0.0)
        )
        out.append(ir.SetItem(self.tangent_of(stmt.target.id), stmt.index, value, stmt.loc))
        return out


def _updates_in_place(stmt: ir.Stmt) -> bool:
    """Derivative code's in-place updates of an adjoint it owns (``add_into``, ``zero_into``)."""
    return (
        isinstance(stmt, ir.Assign)
        and isinstance(stmt.value, ir.Call)
        and isinstance(stmt.value.fn, ir.Ref)
        and stmt.value.fn.value in (add_into, zero_into)
    )


def forward(
    fn: ir.FunctionDef,
    wrt: tuple[int, ...],
    names: FreshNames,
    compilation=None,
    containers: tuple[int, ...] = (),
    has_aux: bool = False,
) -> ir.FunctionDef:
    """The tangent (jvp) function of a structured ANF function, w.r.t. the parameters ``wrt``.

    With ``has_aux`` the function returns ``(value, aux)``: the jvp returns
    ``((value, aux), dvalue)``.
    """
    require_structured(fn)
    wrt_names = tuple(fn.params[i].name for i in wrt)
    result = fn.body[-1].value
    if has_aux:
        fn = split_aux(fn, names)
    activity = analyze(fn, wrt_names)
    container_names = may_be_containers(fn, frozenset(fn.params[i].name for i in containers))
    fwd = _Forward(fn, activity, names, compilation, container_names)
    tangent_params = tuple(ir.Param(fwd.tangent_of(p).id) for p in wrt_names)
    # A parameter outside `wrt` that a later statement makes varied (`x = 0.5 * x + y`
    # where SSA renaming is off, in functions with control flow) has a tangent name
    # that statements read before any statement writes it: it starts as zeros (None
    # for a None: `zeros_like_tree` where the default is None, `prev=None`).
    prologue = tuple(
        ir.Assign(
            (fwd.tangent_of(p.name),),
            ir.Call(
                (
                    ZEROS_LIKE_TREE
                    if p.name in container_names or p.default == ir.Const(None)
                    else ZEROS_LIKE
                ),
                (ir.Name(p.name),),
            ),
            fn.loc,
        )
        for p in fn.params
        if p.name not in wrt_names and activity.active(p.name)
    )
    body = prologue + fwd.block(fn.body)
    if has_aux:  # return the whole (value, aux) result, with value's tangent
        ret = body[-1]
        body = (*body[:-1], replace(ret, value=ir.Seq("tuple", (result, ret.value.elts[1]))))
    return replace(
        fn,
        name=names.fresh(f"{fn.name}_jvp"),
        params=tuple(replace(p, default=None, kind="positional") for p in fn.params)
        + tangent_params,
        body=body,
        temps=frozenset(fwd.temps),
    )
