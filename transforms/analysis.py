"""Activity analysis: which values carry derivatives.

A value is *varied* when it depends differentiably on an input we
differentiate with respect to, and *useful* when the output depends
differentiably on it. Only values that are both (*active*) get tangents or
adjoints: everything else is plain primal code. This is what keeps
``h.shape[0]``, loop counters and index computations out of the derivative
code, and it is where a missing derivative rule is reported, only when it
matters (a call with no rule on a constant is fine).

The analysis is flow-insensitive per name (a name is active if any of its
definitions is), and iterates to a fixpoint so values carried around loops
are handled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from s2sgrad.transforms import dataflow
from s2sgrad.transforms.templates import any_template, bind_call, differentiable_params

from s2sgrad import ir, running
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


def require_structured(fn: ir.FunctionDef) -> None:
    """The transforms expect the output of ``transforms.structure``: one final return."""
    for stmt in ir.walk_stmts(fn.body):
        if isinstance(stmt, ir.Return) and stmt is not fn.body[-1]:
            raise UnsupportedSyntaxError(
                "a return before the end of the function was not structured away",
                stmt.loc,
                "return once, at the end of the function",
            )
        if isinstance(stmt, ir.Continue):
            raise UnsupportedSyntaxError(
                "`continue` was not structured away", stmt.loc, "use an if around the rest"
            )
    if not fn.body or not isinstance(fn.body[-1], ir.Return):
        raise UnsupportedSyntaxError(
            "the function must end with a return statement",
            fn.loc,
            "return the value to differentiate",
        )


def is_user_function(value) -> bool:
    """A Python function of the user's (not a library's) with no registered rule: we
    differentiate its source, like the function that calls it. ``grad(f)`` is one too:
    its code is its composition function (``s2sgrad.composition``)."""
    from s2sgrad import composition
    from s2sgrad.cache import _as_user_function

    try:
        if lookup(value) is not None:
            return False
    except TypeError:
        return False
    return _as_user_function(value) is not None or composition.settings(value) is not None


def bind_user_call(call: ir.Call, loc) -> list:
    """The arguments of a call of a user function, in its parameters' order."""
    sig = running.signature(call.fn.value)
    try:
        bound = sig.bind(*call.args, **dict(call.kwargs))
    except TypeError as exc:
        raise UnsupportedSyntaxError(
            f"this call of `{call.fn.source}` does not match its parameters ({exc})", loc
        ) from None
    args = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise UnsupportedSyntaxError(
                f"`{call.fn.source}` takes *args/**kwargs, which s2sgrad cannot differentiate through",
                loc,
                "give it explicit parameters",
            )
        if p.name in bound.arguments:
            args.append(bound.arguments[p.name])
        elif isinstance(p.default, (int, float, complex, str, bool, type(None))):
            args.append(ir.Const(p.default))
        else:
            raise UnsupportedSyntaxError(
                f"`{call.fn.source}` would use the default of `{p.name}`, which is not a literal",
                loc,
                f"pass `{p.name}` explicitly",
            )
    return args


def diff_arg_names(call: ir.Call, loc) -> tuple[list[str], bool]:
    """(names flowing into differentiable parameters, whether a rule exists) for a call."""
    rule = lookup(call.fn.value) if isinstance(call.fn, ir.Ref) else None
    if rule is None and isinstance(call.fn, ir.Ref) and is_user_function(call.fn.value):
        return ir.atom_names(call), True
    if isinstance(call.fn, ir.Ref) and isinstance(call.fn.value, ir.GeneratedFunction):
        return ir.atom_names(call), True  # a callee's forward pass (transforms.residuals)
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


class _Analyzer:
    def __init__(self, fn: ir.FunctionDef):
        self.fn = fn
        self.sources: dict[int, tuple[list[str], bool]] = {}

    def sources_of(self, stmt: ir.Assign) -> tuple[list[str], bool]:
        key = id(stmt)
        if key not in self.sources:
            self.sources[key] = _value_sources(stmt.value, stmt.loc)
        return self.sources[key]

    def vary(self, body: tuple[ir.Stmt, ...], varied: set[str]) -> None:
        for stmt in body:
            if isinstance(stmt, ir.Assign):
                srcs, _ = self.sources_of(stmt)
                if any(s in varied for s in srcs):
                    varied.update(t.id for t in stmt.targets)
            elif isinstance(stmt, ir.SetItem):
                if any(n in varied for n in ir.atom_names(stmt.value)):
                    varied.add(stmt.target.id)
            elif isinstance(stmt, ir.Push):  # a stack is a name for what it holds
                if any(n in varied for n in ir.atom_names(stmt.value)):
                    varied.add(stmt.stack)
            elif isinstance(stmt, ir.Pop):
                if stmt.stack in varied:
                    varied.add(stmt.target.id)
            for child in ir.child_blocks(stmt):
                self.vary(child, varied)

    def use(self, body: tuple[ir.Stmt, ...], varied: set[str], useful: set[str]) -> None:
        for stmt in reversed(body):
            if isinstance(stmt, ir.Return):
                useful.update(ir.atom_names(stmt.value))
            elif isinstance(stmt, ir.Assign):
                if any(t.id in useful for t in stmt.targets):
                    srcs, _ = self.sources_of(stmt)
                    useful.update(srcs)
            elif isinstance(stmt, ir.SetItem):
                if stmt.target.id in useful:
                    useful.update(ir.atom_names(stmt.value))
            elif isinstance(stmt, ir.Push):
                if stmt.stack in useful:
                    useful.update(ir.atom_names(stmt.value))
            elif isinstance(stmt, ir.Pop):
                if stmt.target.id in useful:
                    useful.add(stmt.stack)
            for child in reversed(ir.child_blocks(stmt)):  # both passes run to a fixpoint
                self.use(child, varied, useful)

    def check(self, activity: Activity) -> None:
        """Refuse active calls without rules, and differentiated values in discrete arguments."""
        varied = set(activity.varied)
        for stmt in ir.walk_stmts(self.fn.body):
            if not isinstance(stmt, ir.Assign):
                continue
            if not any(activity.active(t.id) for t in stmt.targets):
                # Not varied, yet feeding the result: a differentiated value may have gone
                # into an argument the rule does not differentiate (np.einsum(a, [0, 1])
                # binds `a` to the subscripts). Refuse that: it would be a silent zero.
                if any(t.id in activity.useful for t in stmt.targets):
                    _check_discrete_arguments(stmt, varied, self.fn.temps)
                continue
            srcs, has_rule = self.sources_of(stmt)
            active_in = [s for s in srcs if s in activity.varied]
            if active_in and not has_rule:
                call = stmt.value
                # A compiler temporary (`t1`) means nothing to the user: name only theirs.
                what = (
                    "a value computed from the inputs being differentiated"
                    if active_in[0] in self.fn.temps
                    else f"the differentiated value `{active_in[0]}`"
                )
                raise NoDerivativeRuleError(
                    f"no derivative rule for `{call.fn.source}`, which receives {what}",
                    stmt.loc,
                    f"register one with @s2sgrad.defvjp({call.fn.source}) / "
                    f"@s2sgrad.defjvp(...), or mark it with "
                    f"s2sgrad.nondifferentiable({call.fn.source}) if its derivative is zero",
                )
            _check_discrete_arguments(stmt, varied, self.fn.temps)


def analyze(fn: ir.FunctionDef, wrt: tuple[str, ...]) -> Activity:
    """Varied and useful names of a structured ANF function, checking rules on active calls."""
    a = _Analyzer(fn)
    varied = set(wrt)
    while True:
        before = len(varied)
        a.vary(fn.body, varied)
        if len(varied) == before:
            break
    useful: set[str] = set()
    while True:
        before = len(useful)
        a.use(fn.body, varied, useful)
        if len(useful) == before:
            break
    activity = Activity(frozenset(varied), frozenset(useful))
    a.check(activity)
    check_inplace_updates(fn, activity)
    check_sequence_arithmetic(fn, activity)
    return activity


def _check_discrete_arguments(stmt: ir.Assign, varied: set[str], temps: frozenset[str]) -> None:
    """A differentiated value used as an index, axis or shape has no derivative: say so."""
    call = stmt.value
    if not isinstance(call, ir.Call) or not isinstance(call.fn, ir.Ref):
        return
    rule = lookup(call.fn.value)
    if rule is None or rule.nondifferentiable:
        return
    bound = bind_call(any_template(rule), call, stmt.loc, rule)
    free = set(differentiable_params(rule)) | set(rule.shape_params)
    for param, atom in bound.items():
        if param in free:
            continue
        for name in ir.atom_names(atom):
            if name in varied:
                what = (
                    "a value computed from the inputs being differentiated is"
                    if name in temps
                    else f"`{name}` depends on the inputs being differentiated, but it is"
                )
                raise NonDifferentiableError(
                    f"{what} used as the `{param}` argument of `{call.fn.source}`, which has no "
                    "derivative",
                    stmt.loc,
                    "compute it from values you do not differentiate, or leave the input it "
                    "comes from out of wrt",
                )


# Primitives whose result is a new array that no other name refers to, so updating it in
# place cannot change anything else. Views (slices, reshape, transpose, asarray) are not.
FRESH_ARRAY_MAKERS = {
    np.zeros,
    np.ones,
    np.empty,
    np.full,
    np.zeros_like,
    np.ones_like,
    np.empty_like,
    np.full_like,
    np.eye,
    np.identity,
    np.arange,
    np.linspace,
    np.copy,
    np.array,
    np.concatenate,
    np.stack,
    np.outer,
}


def _definitions(fn: ir.FunctionDef) -> dict[str, list]:
    """Every value each name is bound to: ``"parameter"``, the right-hand side of a single
    assignment, or None (a tuple unpacking, a loop target)."""
    defs: dict[str, list] = {p: ["parameter"] for p in fn.param_names}
    for stmt in ir.walk_stmts(fn.body):
        if isinstance(stmt, ir.Assign):
            for t in stmt.targets:
                defs.setdefault(t.id, []).append(stmt.value if len(stmt.targets) == 1 else None)
        elif isinstance(stmt, ir.For):
            for n in dataflow.pattern_names(stmt.target):
                defs.setdefault(n, []).append(None)
    return defs


def check_inplace_updates(fn: ir.FunctionDef, activity: Activity) -> None:
    """The aliasing rule: ``x[i] = v`` only on arrays the function made itself.

    s2sgrad assumes the arrays passed in are not modified, and that an array
    updated in place is not shared with another name (a slice, a reshape, the
    caller's argument): the derivative of an update must see every name that
    refers to the memory it changes, and static analysis only sees one.
    Creating the array with ``np.zeros``/``np.empty``/``x.copy()`` (or any
    arithmetic, which makes a new array) satisfies the rule. Derivative code read back
    (higher order) is not checked: its user code was, and its own saves and restores
    rebind the names it updates.
    """
    if fn.derivative_code:
        return
    defs = _definitions(fn)
    for stmt in ir.walk_stmts(fn.body):
        if not isinstance(stmt, ir.SetItem):
            continue
        name = stmt.target.id
        for value in defs.get(name, ["parameter"]):
            if value == "parameter":
                why = f"`{name}` is an argument: the update would change the caller's array"
            elif makes_fresh_array(value):
                continue
            else:
                why = f"`{name}` may share memory with another array (a view or an alias)"
            raise UnsupportedSyntaxError(
                f"in-place update of `{name}`: {why}",
                stmt.loc,
                f"work on a copy made in the function, e.g. `{name} = {name}.copy()` "
                "or `np.zeros(...)`, then update that",
            )


_SEQUENCE_OPERATORS = {"add", "iadd", "mul", "imul", "rmul"}


def _sequence_names(fn: ir.FunctionDef) -> set[str]:
    """Names that surely hold a Python list or tuple: every assignment to them is a
    list/tuple literal or ``+``/``*`` with such a name or literal.

    The greatest such set: start from every name and drop, one worklist pass, each name
    with a value that is not (yet) a sequence, re-checking only the names that read a
    dropped one (a chain of N assignments costs N checks, not N rounds over all names).
    """
    defs = _definitions(fn)
    names = set(defs)
    readers: dict[str, set[str]] = {}
    for n, values in defs.items():
        for v in values:
            if isinstance(v, ir.Call):
                for a in v.args:
                    if isinstance(a, ir.Name):
                        readers.setdefault(a.id, set()).add(n)
    pending = list(names)
    while pending:
        n = pending.pop()
        if n in names and not all(_is_sequence_value(v, names) for v in defs[n]):
            names.discard(n)
            pending.extend(readers.get(n, ()))
    return names


def _is_sequence_value(value, names: set[str]) -> bool:
    if isinstance(value, ir.Seq):
        return value.kind in ("list", "tuple")
    if isinstance(value, ir.Call) and _is_sequence_operator(value):
        return any(_is_sequence_operand(a, names) for a in value.args)
    return False


def _is_sequence_operator(value: ir.Call) -> bool:
    fn = value.fn.value if isinstance(value.fn, ir.Ref) else None
    return getattr(fn, "__module__", None) in ("operator", "_operator") and (
        getattr(fn, "__name__", None) in _SEQUENCE_OPERATORS
    )


def _is_sequence_operand(atom, names: set[str]) -> bool:
    if isinstance(atom, ir.Seq):
        return atom.kind in ("list", "tuple")
    return isinstance(atom, ir.Name) and atom.id in names


def check_sequence_arithmetic(fn: ir.FunctionDef, activity: Activity) -> None:
    """``rows + [h]`` joins lists; the array rules of ``+`` and ``*`` would differentiate it
    as elementwise arithmetic and give a wrong gradient, so it is refused while it carries
    differentiated values."""
    names = _sequence_names(fn)
    for stmt in ir.walk_stmts(fn.body):
        if not (isinstance(stmt, ir.Assign) and isinstance(stmt.value, ir.Call)):
            continue
        value = stmt.value
        if not _is_sequence_operator(value):
            continue
        operands = [a for a in value.args if _is_sequence_operand(a, names)]
        if not operands:
            continue
        if not any(set(ir.atom_names(a)) & activity.varied for a in value.args) and not (
            {t.id for t in stmt.targets} & activity.varied
        ):
            continue
        raise UnsupportedSyntaxError(
            "joining or repeating Python lists or tuples with `+` or `*` is not differentiated",
            stmt.loc,
            "collect the arrays some other way: write each row into an array made in the "
            "function (`out = np.zeros((n, m))`, then `out[i] = row`), or use "
            "np.concatenate / np.stack on arrays",
        )


def makes_fresh_array(value) -> bool:
    if not isinstance(value, ir.Call) or not isinstance(value.fn, ir.Ref):
        return False
    fn = value.fn.value
    try:
        if fn in FRESH_ARRAY_MAKERS:
            return True
    except TypeError:
        return False
    # Arithmetic and ufuncs return new arrays (never views of their inputs).
    return (
        isinstance(fn, np.ufunc)
        or getattr(fn, "__module__", None) == "_operator"
        and (
            fn.__name__
            in {"add", "sub", "mul", "truediv", "pow", "neg", "matmul", "floordiv", "mod"}
        )
    )


def may_be_containers(fn: ir.FunctionDef, container_params: frozenset[str]) -> frozenset[str]:
    """Names that may hold a tuple, list or dict (of arrays) rather than an array.

    Their adjoints and tangents are containers too, which ``+`` would concatenate:
    the transforms use the leafwise ``accumulate``/``zeros_like_tree`` for them.
    Parameters are containers when the caller passed one (the API tells);
    inside, containers come from literals, indexing or unpacking a container,
    copies, and calls of user functions (which may return tuples).
    """
    names = set(container_params)
    while True:
        before = len(names)
        for stmt in ir.walk_stmts(fn.body):
            if not isinstance(stmt, ir.Assign):
                continue
            value = stmt.value
            targets = [t.id for t in stmt.targets]
            if len(targets) > 1:
                if isinstance(value, ir.Name) and value.id in names:
                    names.update(targets)
                continue
            if isinstance(value, ir.Seq) or (isinstance(value, ir.Name) and value.id in names):
                names.update(targets)
            elif isinstance(value, ir.Call) and isinstance(value.fn, ir.Ref):
                f = value.fn.value
                if (
                    f is __import__("operator").getitem
                    and ir.atom_names(value.args[0])[:1]
                    and (ir.atom_names(value.args[0])[0] in names)
                ):
                    names.update(targets)
                elif is_user_function(f):
                    names.update(targets)
                else:
                    rule = lookup(f) if not isinstance(f, (list, dict)) else None
                    if rule is not None and rule.outputs > 1:
                        names.update(targets)  # e.g. `t = np.linalg.qr(a)`, unpacked later
        if len(names) == before:
            return frozenset(names)


def container_positions(args: list, containers: frozenset[str]) -> tuple[int, ...]:
    """Which arguments of a call may be tuples/lists/dicts (so the callee treats them so)."""
    return tuple(
        i
        for i, a in enumerate(args)
        if isinstance(a, ir.Seq) or (isinstance(a, ir.Name) and a.id in containers)
    )
