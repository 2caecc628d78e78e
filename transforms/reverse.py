"""Reverse mode: the primal statements (forward sweep), then their adjoints in reverse order.

For ``y = f(x1, x2)`` with active ``x1``, the vjp template of ``f`` is inlined
with ``g = dy`` and ``ans = y``; its entry for ``x1`` is accumulated into
``dx1``. The first contribution to an adjoint is written directly (no zeros
plus accumulate); later ones are added. Straight-line code is in SSA form
after normalization, so every primal value the backward sweep reads is still
there: nothing is saved.

The generated function takes the primals and the cotangent of the output and
returns ``(out, (d_wrt1, d_wrt2, ...))``.
"""

from __future__ import annotations

import operator
from dataclasses import replace

import numpy as np
from s2sgrad.transforms.analysis import Activity, analyze, require_straight_line
from s2sgrad.transforms.names import FreshNames
from s2sgrad.transforms.templates import bind_call, instantiate, lower_template, substitute

from s2sgrad import ir
from s2sgrad.errors import NoDerivativeRuleError
from s2sgrad.rules import lookup

ADD = ir.Ref("operator.add", operator.add)
ZEROS_LIKE = ir.Ref("np.zeros_like", np.zeros_like)


class _Reverse:
    def __init__(self, fn: ir.FunctionDef, activity: Activity, names: FreshNames):
        self.fn = fn
        self.act = activity
        self.names = names
        self.temps: set[str] = set(fn.temps)
        self.adjoint: dict[str, str] = {}

    def adjoint_name(self, name: str) -> ir.Name:
        if name not in self.adjoint:
            self.adjoint[name] = self.names.fresh("d" + name)
        return ir.Name(self.adjoint[name])

    def accumulate(self, name: str, contribution, out: list[ir.Stmt], loc) -> None:
        """``dname = contribution`` on the first write, ``dname = dname + contribution`` after."""
        first = name not in self.adjoint
        target = self.adjoint_name(name)
        value = contribution if first else ir.Call(ADD, (target, contribution))
        out.append(ir.Assign((target,), value, loc))

    def accumulate_atom(self, atom, contribution, out: list[ir.Stmt], loc) -> None:
        """Send a cotangent to the active names of an atom (a name, or a sequence of atoms)."""
        if isinstance(atom, ir.Name):
            if self.act.active(atom.id):
                self.accumulate(atom.id, contribution, out, loc)
            return
        if isinstance(atom, ir.Seq) and self.act.atom_active(atom):
            parts = []
            for _ in atom.elts:
                part = ir.Name(self.names.temp())
                self.temps.add(part.id)
                parts.append(part)
            out.append(ir.Assign(tuple(parts), contribution, loc))
            for elt, part in zip(atom.elts, parts):
                self.accumulate_atom(elt, part, out, loc)

    def adjoint_statement(self, stmt: ir.Stmt) -> list[ir.Stmt]:
        """The backward-sweep statements of one forward statement."""
        if not isinstance(stmt, ir.Assign) or not any(self.act.active(t.id) for t in stmt.targets):
            return []
        if len(stmt.targets) > 1:
            raise NoDerivativeRuleError(
                "tuple-valued primitives are not supported in reverse mode yet", stmt.loc
            )
        target = stmt.target
        if target.id not in self.adjoint:
            return []
        g = ir.Name(self.adjoint[target.id])
        out: list[ir.Stmt] = []
        value = stmt.value
        if not isinstance(value, ir.Call):
            self.accumulate_atom(value, g, out, stmt.loc)
            return out
        rule = lookup(value.fn.value)
        if rule is None or rule.vjp is None:
            raise NoDerivativeRuleError(
                f"no reverse-mode (vjp) rule for `{value.fn.source}`",
                stmt.loc,
                f"register one with @s2sgrad.defvjp({value.fn.source}), or use mode='forward'",
            )
        template = lower_template(rule.vjp, "vjp")
        bindings = bind_call(template, value, stmt.loc, rule)
        bindings["g"] = g
        bindings["ans"] = target
        body, mapping = instantiate(template, bindings, self.names, self.temps, stmt.loc)
        out += body
        entries = template.entries if template.entries is not None else (template.result,)
        for param, entry in zip(template.primal_params, entries):
            if isinstance(entry, ir.Const) and entry.value is None:
                continue
            self.accumulate_atom(bindings[param], substitute(entry, mapping), out, stmt.loc)
        return out


def reverse(fn: ir.FunctionDef, wrt: tuple[int, ...], names: FreshNames) -> ir.FunctionDef:
    """The adjoint (vjp) function of a normalized function, w.r.t. the parameters ``wrt``."""
    require_straight_line(fn)
    wrt_names = tuple(fn.params[i].name for i in wrt)
    activity = analyze(fn, wrt_names)
    rev = _Reverse(fn, activity, names)
    *primal, ret = fn.body
    out_atom = ret.value
    seed_base = out_atom.id if isinstance(out_atom, ir.Name) else "out"
    seed = (
        rev.adjoint_name(seed_base)
        if isinstance(out_atom, ir.Name)
        else ir.Name(names.fresh("dout"))
    )
    body: list[ir.Stmt] = list(primal)
    backward: list[ir.Stmt] = []
    for stmt in reversed(primal):
        backward += rev.adjoint_statement(stmt)
    results = []
    for w in wrt_names:
        if w in rev.adjoint:
            results.append(ir.Name(rev.adjoint[w]))
        else:
            zero = ir.Name(names.fresh("d" + w))
            backward.append(ir.Assign((zero,), ir.Call(ZEROS_LIKE, (ir.Name(w),)), ret.loc))
            results.append(zero)
    if backward:
        body.append(ir.Comment("backward sweep"))
    body += backward
    body.append(ir.Return(ir.Seq("tuple", (out_atom, ir.Seq("tuple", tuple(results))))))
    return replace(
        fn,
        name=names.fresh(f"{fn.name}_vjp"),
        params=tuple(replace(p, default=None, kind="positional") for p in fn.params)
        + (ir.Param(seed.id),),
        body=tuple(body),
        temps=frozenset(rev.temps),
    )
