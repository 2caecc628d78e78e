"""Rule templates as IR: lowered once, instantiated per call site.

A derivative rule is an ordinary Python function (see ``s2sgrad.rules.registry``).
We lower it with the same frontend and normalizer as user code, so a rule is
just more IR. Instantiating it renames its locals hygienically and substitutes
its parameters with the atoms of the call being differentiated; that is why the
generated code reads like the rule.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from s2sgrad.transforms.names import FreshNames

from s2sgrad import ir
from s2sgrad.errors import NoDerivativeRuleError, SourceLocation
from s2sgrad.rules.registry import Rule, restore_source


@dataclass(frozen=True)
class Template:
    """A lowered rule template.

    ``primal_params`` are the primitive's parameters (after ``ans`` / ``g, ans``);
    ``body`` is in A-normal form without the final return; ``result`` is the
    returned atom, and ``entries`` the per-parameter atoms when the template
    returns a tuple literal (one contribution or cotangent per parameter).
    """

    fn: Callable
    lead: tuple[str, ...]  # ("ans",) for jvp, ("g", "ans") for vjp
    primal_params: tuple[str, ...]
    tangent_params: tuple[str, ...]
    signature: inspect.Signature
    body: tuple[ir.Stmt, ...]
    result: Any
    entries: tuple[Any, ...] | None
    locals: frozenset[str]


@functools.cache
def lower_template(fn: Callable, kind: str) -> Template:
    """Parse and normalize a jvp ("jvp") or vjp ("vjp") template once per process, and
    once per source text across processes (``cache.stored``: a process that compiles
    reads the templates it needs lowered, rather than parsing each again)."""
    from s2sgrad import cache

    restore_source(fn)
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return _lower_template(fn, kind)
    # Where it is, too: its IR carries file and line (the comments of generated code), and
    # a user's rule moved down its file has the same text.
    code = fn.__code__
    key = f"{fn.__module__}.{fn.__qualname__} {kind} {code.co_filename}:{code.co_firstlineno}\n{source}"
    # Kept without the function (a template ``deflinear`` writes is no module attribute, so
    # it would not pickle), which this process has.
    kept = cache.stored("template", key, lambda: replace(_lower_template(fn, kind), fn=None))
    return replace(kept, fn=fn)


def _lower_template(fn: Callable, kind: str) -> Template:
    from s2sgrad.transforms.normalize import normalize

    from s2sgrad.frontend import parse_function

    restore_source(fn)  # (a deflinear template's text has no file)
    lead = ("ans",) if kind == "jvp" else ("g", "ans")
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    primal = [p for p in params[len(lead) :] if p.kind is not p.KEYWORD_ONLY]
    tangents = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)
    primal_sig = inspect.Signature([p.replace(kind=p.POSITIONAL_OR_KEYWORD) for p in primal])
    lowered = _qualify_free_names(normalize(parse_function(fn)), fn)
    body = lowered.body
    if not body or not isinstance(body[-1], ir.Return):
        raise TypeError(f"rule template {fn.__qualname__} must end with a return statement")
    for stmt in body[:-1]:
        if not isinstance(stmt, ir.Assign):
            raise TypeError(
                f"rule template {fn.__qualname__} may only contain assignments and one return"
            )
    ret = body[-1].value
    result = ret
    entries = None
    # A returned tuple literal holds one entry per parameter. The normalizer names every
    # returned value, so look through that one assignment.
    defs = {s.target.id: s.value for s in body[:-1] if len(s.targets) == 1}
    joint = kind == "jvp" and getattr(fn, "__s2sgrad_outputs__", 1) > 1
    if not joint and isinstance(ret, ir.Name) and isinstance(defs.get(ret.id), ir.Seq):
        seq = defs[ret.id]
        if seq.kind == "tuple":
            entries = seq.elts
            body = tuple(s for s in body if not (isinstance(s, ir.Assign) and s.targets == (ret,)))
    stmts = tuple(s for s in body if not isinstance(s, ir.Return))
    local_names = {t.id for s in stmts for t in s.targets}
    return Template(
        fn=fn,
        lead=lead,
        primal_params=tuple(p.name for p in primal),
        tangent_params=tangents,
        signature=primal_sig,
        body=stmts,
        result=result,
        entries=entries,
        locals=frozenset(local_names),
    )


def _qualify_free_names(lowered: ir.FunctionDef, fn: Callable) -> ir.FunctionDef:
    """A user's rule may call helpers of its own module: spell them through that module.

    Generated code binds plain free names from the *differentiated* function's
    globals; names a template reads from elsewhere are written ``_<module>.name``
    instead, and the module alias is bound when the generated module is loaded.
    """
    from dataclasses import replace

    from s2sgrad import codegen

    alias = "_" + fn.__module__.replace(".", "_")

    def qualify(atom):
        if isinstance(atom, ir.Ref) and codegen.spell_ref(atom).free_root is not None:
            return ir.Ref(f"{alias}.{atom.source}", atom.value, module=fn.__module__)
        if isinstance(atom, ir.Call):
            return ir.Call(
                qualify(atom.fn),
                tuple(qualify(a) for a in atom.args),
                tuple((k, qualify(v)) for k, v in atom.kwargs),
            )
        if isinstance(atom, ir.Seq):
            return replace(atom, elts=tuple(qualify(e) for e in atom.elts))
        return atom

    body = tuple(
        (
            replace(stmt, value=qualify(stmt.value))
            if isinstance(stmt, (ir.Assign, ir.Return))
            else stmt
        )
        for stmt in lowered.body
    )
    return replace(lowered, body=body)


def bind_call(
    template: Template, call: ir.Call, loc: SourceLocation | None, rule: Rule
) -> dict[str, Any]:
    """Map the template's primal parameters to the call's atoms (defaults as constants)."""
    try:
        bound = template.signature.bind(*call.args, **dict(call.kwargs))
    except TypeError as exc:
        raise NoDerivativeRuleError(
            f"the derivative rule of `{rule.name}` does not accept this call ({exc})",
            loc,
            "call it with the positional/keyword arguments the rule supports, "
            "or register a rule that handles them with s2sgrad.defvjp/defjvp",
        ) from None
    bound.apply_defaults()
    return {
        name: value if _is_atom(value) else ir.Const(value)
        for name, value in bound.arguments.items()
    }


def check_argument_forms(template: Template, bindings: dict[str, Any], loc) -> None:
    """Refuse argument values a rule accepts in its signature but does not differentiate.

    Every rule: ``out=`` must be None (a write into another array), ``dtype=`` None or a
    floating type (an integer dtype truncates the result: its derivative is not the
    rule's). Per rule, ``registry.restrict`` lists the values a parameter may take.
    Called for differentiated calls only: a constant call may use any form.
    """
    name, restrictions = getattr(template.fn, "__s2sgrad_restrictions__", (None, {}))
    name = name or _primitive_name(template)
    for param in template.primal_params:
        atom = bindings.get(param)
        if param == "out" and not _is_const(atom, None):
            raise NoDerivativeRuleError(
                f"`{name}(..., out=...)` writes its result into another array, which s2sgrad "
                "does not differentiate",
                loc,
                "assign the result instead: y = f(...) rather than f(..., out=y)",
            )
        if param == "dtype" and not (_is_const(atom, None) or _is_float_dtype(atom)):
            raise NoDerivativeRuleError(
                f"`{name}(..., dtype=...)` with a dtype that is not a floating type (or not a "
                "constant) is not differentiated: the result would be cast, and its derivative "
                "is not the rule's",
                loc,
                "leave dtype out (or pass a float dtype such as np.float64), and convert the "
                "result afterwards outside the differentiated code",
            )
        if param in restrictions:
            allowed, hint = restrictions[param]
            value = _constant_value(atom)
            if value is _NOT_CONSTANT and Ellipsis in allowed:
                continue  # a value known at run time, which the runtime helper checks
            if value is _NOT_CONSTANT or not any(_same(value, a) for a in allowed):
                shown = " or ".join(f"{param}={a!r}" for a in allowed if a is not Ellipsis)
                given = "a value known only at run time" if value is _NOT_CONSTANT else repr(value)
                raise NoDerivativeRuleError(
                    f"`{name}` is differentiated only with {shown}; this call passes "
                    f"{param}={given}",
                    loc,
                    hint or f"call it with {shown}, or register a rule of your own for it",
                )


_NOT_CONSTANT = object()


def _constant_value(atom: Any) -> Any:
    if isinstance(atom, ir.Const):
        return atom.value
    if isinstance(atom, ir.Ref):
        return atom.value
    return _NOT_CONSTANT


def _same(value: Any, allowed: Any) -> bool:
    try:
        return type(value) is type(allowed) and bool(value == allowed)
    except (TypeError, ValueError):
        return False


def _is_const(atom: Any, value: Any) -> bool:
    return isinstance(atom, ir.Const) and atom.value is value


def _is_float_dtype(atom: Any) -> bool:
    import numpy as np

    value = _constant_value(atom)
    if value is _NOT_CONSTANT:
        return False
    try:
        return np.dtype(value).kind == "f"
    except TypeError:
        return False


def _primitive_name(template: Template) -> str:
    name = getattr(template.fn, "__s2sgrad_primitive__", "")
    return name or template.fn.__qualname__.rsplit("_", 1)[0]


def _sequence_primitives() -> set[int]:
    """Primitives whose rules take a list or tuple of arrays as such (not as one array)."""
    import numpy as np

    from s2sgrad import runtime

    prims = (
        np.concatenate,
        np.stack,
        np.hstack,
        np.vstack,
        np.dstack,
        np.column_stack,
        np.append,
        np.array,
        np.asarray,
        np.einsum,
        np.linalg.multi_dot,
        runtime.concatenate_items,
    )
    return {id(p) for p in prims}


# Parameters that carry no derivative but still take an array, which jax.numpy wants as
# an array: ``np.take(x, [0, 2])``, ``np.where([True, False], a, b)``.
_ARRAY_PARAMETERS = ("indices", "condition")


def with_array_arguments(call: ir.Call) -> ir.Call:
    """A list or tuple literal passed where a NumPy function expects *one* array,
    ``np.sum([1.0, a * a, 2.0])``, becomes ``np.asarray([...])``.

    NumPy converts it anyway; jax.numpy refuses lists, and the derivative rules see the
    array they are written for (``np.asarray``'s rule hands each element its share).
    Only arguments bound to differentiable parameters (and to the index and condition
    arrays of ``take``/``where``-like functions) of NumPy/SciPy functions with rules
    change; joining functions and other rules taking sequences keep theirs.
    """
    import numpy as np

    from s2sgrad.rules import lookup

    fn = call.fn.value if isinstance(call.fn, ir.Ref) else None
    rule = lookup(fn) if fn is not None else None
    module = getattr(fn, "__module__", None) or ""
    if (
        rule is None
        or rule.nondifferentiable
        or not (module.startswith("numpy") or module.startswith("scipy"))
        or id(fn) in _sequence_primitives()
        or not any(_is_sequence(a) for a in (*call.args, *(v for _, v in call.kwargs)))
    ):
        return call
    try:
        bound = any_template(rule).signature.bind(*call.args, **dict(call.kwargs))
    except TypeError:
        return call  # the compiler reports the mismatch where it matters
    arrays = (*differentiable_params(rule), *_ARRAY_PARAMETERS)
    wrap = {p for p in arrays if _is_sequence(bound.arguments.get(p))}
    if not wrap:
        return call
    asarray = ir.Ref("np.asarray", np.asarray)
    for p in wrap:
        bound.arguments[p] = ir.Call(asarray, (bound.arguments[p],))
    positional = any_template(rule).primal_params[: len(call.args)]
    args = tuple(bound.arguments[n] for n in positional)
    kwargs = tuple((k, bound.arguments[k]) for k, _ in call.kwargs)
    return ir.Call(call.fn, args, kwargs)


def _is_sequence(atom: Any) -> bool:
    return isinstance(atom, ir.Seq) and atom.kind in ("list", "tuple")


def _is_atom(value: Any) -> bool:
    return isinstance(value, (ir.Name, ir.Const, ir.Ref, ir.Seq, ir.Index))


def differentiable_params(rule: Rule) -> tuple[str, ...]:
    """Names of the primitive's parameters that carry derivatives."""
    if rule.diff_params:
        return rule.diff_params
    if rule.vjp is not None:
        t = lower_template(rule.vjp, "vjp")
        if t.entries is None:
            return t.primal_params[:1]
        return tuple(
            p
            for p, e in zip(t.primal_params, t.entries)
            if not (isinstance(e, ir.Const) and e.value is None)
        )
    return ()


def any_template(rule: Rule) -> Template:
    return (
        lower_template(rule.jvp, "jvp") if rule.jvp is not None else lower_template(rule.vjp, "vjp")
    )


def substitute(atom: Any, mapping: dict[str, Any]) -> Any:
    """Replace names in an atom according to ``mapping`` (name -> atom)."""
    if atom is None:
        return None
    if isinstance(atom, ir.Name):
        return mapping.get(atom.id, atom)
    if isinstance(atom, (ir.Const, ir.Ref)):
        return atom
    if isinstance(atom, ir.Seq):
        keys = None if atom.keys is None else tuple(substitute(k, mapping) for k in atom.keys)
        return ir.Seq(atom.kind, tuple(substitute(e, mapping) for e in atom.elts), keys)
    if isinstance(atom, ir.Index):
        items = tuple(substitute(e, mapping) for e in atom.items)
        if len(items) == 1 and isinstance(items[0], ir.Index):
            return items[0]  # a template's `g[idx]` with idx bound to the call's own index
        return ir.Index(items)
    if isinstance(atom, ir.Slice):
        return ir.Slice(*(substitute(p, mapping) for p in (atom.lower, atom.upper, atom.step)))
    if isinstance(atom, ir.Call):
        return ir.Call(
            atom.fn,
            tuple(substitute(a, mapping) for a in atom.args),
            tuple((k, substitute(v, mapping)) for k, v in atom.kwargs),
        )
    raise TypeError(f"cannot substitute into {atom!r}")


def instantiate(
    template: Template,
    bindings: dict[str, Any],
    names: FreshNames,
    temps: set[str],
    loc: SourceLocation | None,
) -> tuple[list[ir.Stmt], dict[str, Any]]:
    """Inline a template: fresh names for its locals, atoms for its parameters.

    Returns the statements and the renaming used, so the caller can map the
    template's ``result`` / ``entries`` through ``substitute``.
    """
    check_argument_forms(template, bindings, loc)
    mapping = dict(bindings)
    stmts: list[ir.Stmt] = []
    for stmt in template.body:
        value = substitute(stmt.value, mapping)
        targets = []
        for t in stmt.targets:
            new = names.temp()
            temps.add(new)
            mapping[t.id] = ir.Name(new)
            targets.append(ir.Name(new))
        stmts.append(ir.Assign(tuple(targets), value, loc))
    return stmts, mapping
