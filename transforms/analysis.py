"""Activity analysis: which values carry derivatives.

A value is *varied* when it depends differentiably on an input we
differentiate with respect to, and *useful* when the output depends
differentiably on it. Only values that are both (*active*) get tangents or
adjoints: everything else is plain primal code. This is what keeps
``h.shape[0]`` or an index computation out of the derivative code, and it is
also where a missing derivative rule is reported, only when it matters (a call
with no rule on a constant is fine).
"""

from __future__ import annotations

from dataclasses import dataclass

from s2sgrad.transforms.templates import any_template, bind_call, differentiable_params

from s2sgrad import ir
from s2sgrad.errors import NoDerivativeRuleError, NonDifferentiableError, UnsupportedSyntaxError
from s2sgrad.rules import lookup


@dataclass(frozen=True)
class Activity:
    varied: frozenset[str]
    useful: frozenset[str]

    def active(self, name: str) -> bool:
        return name in self.varied and name in self.useful

    def atom_active(self, atom) -> bool:
        return any(self.active(n) for n in ir.atom_names(atom))


def require_straight_line(fn: ir.FunctionDef) -> None:
    """Refuse control flow and in-place updates (not supported by the transforms yet)."""
    kinds = {
        ir.If: ("`if` statements", "use np.where(cond, a, b) for an elementwise choice"),
        ir.For: ("`for` loops", "write the computation vectorized"),
        ir.While: ("`while` loops", "write the computation vectorized"),
        ir.SetItem: (
            "in-place assignment `x[...] = v`",
            "build the array functionally (np.concatenate, np.where, np.stack)",
        ),
    }
    for stmt in ir.walk_stmts(fn.body):
        for kind, (what, hint) in kinds.items():
            if isinstance(stmt, kind):
                raise UnsupportedSyntaxError(
                    f"{what} are not supported by the derivative transforms yet", stmt.loc, hint
                )
    returns = [s for s in fn.body if isinstance(s, ir.Return)]
    if not returns or not isinstance(fn.body[-1], ir.Return):
        raise UnsupportedSyntaxError(
            "the function must end with a return statement",
            fn.loc,
            "return the value to differentiate",
        )
    if len(returns) > 1:
        raise UnsupportedSyntaxError(
            "multiple return statements are not supported yet",
            returns[1].loc,
            "return once, at the end",
        )


def diff_arg_names(call: ir.Call, loc) -> tuple[list[str], bool]:
    """(names flowing into differentiable parameters, whether a rule exists) for a call."""
    rule = lookup(call.fn.value) if isinstance(call.fn, ir.Ref) else None
    if rule is None:
        return ir.atom_names(call), False
    if rule.nondifferentiable:
        return [], True
    template = any_template(rule)
    bound = bind_call(template, call, loc, rule)
    names: list[str] = []
    for param in differentiable_params(rule):
        names += ir.atom_names(bound.get(param))
    return names, True


def _value_sources(value, loc) -> tuple[list[str], bool]:
    if isinstance(value, ir.Call):
        return diff_arg_names(value, loc)
    return ir.atom_names(value), True


def analyze(fn: ir.FunctionDef, wrt: tuple[str, ...]) -> Activity:
    """Varied and useful names of a straight-line ANF function, checking rules on active calls."""
    varied = set(wrt)
    sources: dict[int, tuple[list[str], bool]] = {}
    for i, stmt in enumerate(fn.body):
        if isinstance(stmt, ir.Assign):
            srcs, _ = sources[i] = _value_sources(stmt.value, stmt.loc)
            if any(s in varied for s in srcs):
                varied.update(t.id for t in stmt.targets)
    useful: set[str] = set()
    for i in range(len(fn.body) - 1, -1, -1):
        stmt = fn.body[i]
        if isinstance(stmt, ir.Return):
            useful.update(ir.atom_names(stmt.value))
        elif isinstance(stmt, ir.Assign) and any(t.id in useful for t in stmt.targets):
            srcs, has_rule = sources[i]
            useful.update(srcs)
            _check_discrete_arguments(stmt, varied)
            active_in = [s for s in srcs if s in varied]
            if active_in and not has_rule:
                call = stmt.value
                raise NoDerivativeRuleError(
                    f"no derivative rule for `{call.fn.source}`, which receives the "
                    f"differentiated value `{active_in[0]}`",
                    stmt.loc,
                    f"register one with @s2sgrad.defvjp({call.fn.source}) / @s2sgrad.defjvp(...), "
                    f"or mark it with s2sgrad.nondifferentiable({call.fn.source}) if its "
                    "derivative is zero",
                )
    return Activity(frozenset(varied), frozenset(useful))


def _check_discrete_arguments(stmt: ir.Assign, varied: set[str]) -> None:
    """A differentiated value used as an index, axis or shape has no derivative: say so."""
    call = stmt.value
    if not isinstance(call, ir.Call) or not isinstance(call.fn, ir.Ref):
        return
    rule = lookup(call.fn.value)
    if rule is None or rule.nondifferentiable:
        return
    bound = bind_call(any_template(rule), call, stmt.loc, rule)
    diff = set(differentiable_params(rule))
    for param, atom in bound.items():
        if param in diff:
            continue
        for name in ir.atom_names(atom):
            if name in varied:
                raise NonDifferentiableError(
                    f"`{name}` depends on the inputs being differentiated, but it is used as the "
                    f"`{param}` argument of `{call.fn.source}`, which has no derivative",
                    stmt.loc,
                    "compute it from values you do not differentiate, or leave the input it "
                    "comes from out of wrt",
                )
