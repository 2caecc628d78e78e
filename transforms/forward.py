"""Forward mode: after each active statement, its tangent statement.

For ``y = f(x1, x2)`` with active ``x1``, the jvp template of ``f`` is
inlined with ``ans = y`` and ``dx1 = <tangent of x1>``; the contributions of
active arguments are summed into ``dy``. The generated function takes the
primals and the tangents of the ``wrt`` parameters, and returns
``(out, dout)``.
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


class _Forward:
    def __init__(self, fn: ir.FunctionDef, activity: Activity, names: FreshNames):
        self.fn = fn
        self.act = activity
        self.names = names
        self.temps: set[str] = set(fn.temps)
        self.tangent: dict[str, str] = {}

    def tangent_of(self, name: str) -> ir.Name:
        if name not in self.tangent:
            self.tangent[name] = self.names.fresh("d" + name)
        return ir.Name(self.tangent[name])

    def tangent_atom(self, atom, out: list[ir.Stmt], loc):
        """The tangent of an atom: its tangent name, or zeros for inactive parts of a sequence."""
        if isinstance(atom, ir.Name) and self.act.active(atom.id):
            return self.tangent_of(atom.id)
        if isinstance(atom, ir.Seq):
            return ir.Seq(atom.kind, tuple(self.tangent_atom(e, out, loc) for e in atom.elts))
        zero = ir.Name(self.names.temp())
        self.temps.add(zero.id)
        out.append(ir.Assign((zero,), ir.Call(ZEROS_LIKE, (atom,)), loc))
        return zero

    def statement(self, stmt: ir.Stmt) -> list[ir.Stmt]:
        if isinstance(stmt, ir.Return):
            out: list[ir.Stmt] = []
            value = stmt.value
            tangent = self.tangent_atom(value, out, stmt.loc)
            return out + [replace(stmt, value=ir.Seq("tuple", (value, tangent)))]
        out = [stmt]
        if not isinstance(stmt, ir.Assign) or not any(self.act.active(t.id) for t in stmt.targets):
            return out
        if len(stmt.targets) > 1:
            raise NoDerivativeRuleError(
                "tuple-valued primitives are not supported in forward mode yet", stmt.loc
            )
        target = stmt.target
        value = stmt.value
        if not isinstance(value, ir.Call):
            out.append(
                ir.Assign(
                    (self.tangent_of(target.id),), self.tangent_atom(value, out, stmt.loc), stmt.loc
                )
            )
            return out
        rule = lookup(value.fn.value)
        if rule is None or rule.jvp is None:
            raise NoDerivativeRuleError(
                f"no forward-mode (jvp) rule for `{value.fn.source}`",
                stmt.loc,
                f"register one with @s2sgrad.defjvp({value.fn.source}), or use mode='reverse'",
            )
        template = lower_template(rule.jvp, "jvp")
        bindings = bind_call(template, value, stmt.loc, rule)
        bindings["ans"] = target
        active_params = [p for p in rule.diff_params if self.act.atom_active(bindings.get(p))]
        for p in rule.diff_params:
            dp = "d" + p
            if p in active_params:
                bindings[dp] = self.tangent_atom(bindings[p], out, stmt.loc)
            elif template.entries is None:
                bindings[dp] = self.tangent_atom(bindings[p], out, stmt.loc)
        body, mapping = instantiate(template, bindings, self.names, self.temps, stmt.loc)
        out += body
        if template.entries is None:
            result = substitute(template.result, mapping)
        else:
            terms = [
                substitute(entry, mapping)
                for p, entry in zip(rule.diff_params, template.entries)
                if p in active_params
            ]
            result = terms[0]
            for term in terms[1:]:
                acc = ir.Name(self.names.temp())
                self.temps.add(acc.id)
                out.append(ir.Assign((acc,), ir.Call(ADD, (result, term)), stmt.loc))
                result = acc
        out.append(ir.Assign((self.tangent_of(target.id),), result, stmt.loc))
        return out


def forward(fn: ir.FunctionDef, wrt: tuple[int, ...], names: FreshNames) -> ir.FunctionDef:
    """The tangent (jvp) function of a normalized function, w.r.t. the parameters ``wrt``."""
    require_straight_line(fn)
    wrt_names = tuple(fn.params[i].name for i in wrt)
    activity = analyze(fn, wrt_names)
    fwd = _Forward(fn, activity, names)
    tangent_params = tuple(ir.Param(fwd.tangent_of(p).id) for p in wrt_names)
    body: list[ir.Stmt] = []
    for stmt in fn.body:
        body += fwd.statement(stmt)
    return replace(
        fn,
        name=names.fresh(f"{fn.name}_jvp"),
        params=tuple(replace(p, default=None, kind="positional") for p in fn.params)
        + tangent_params,
        body=tuple(body),
        temps=frozenset(fwd.temps),
    )
