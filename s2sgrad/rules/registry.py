"""The registry of derivative rules, keyed by the primitive's identity.

A rule is written as ordinary Python whose body is a *template*: the compiler
parses the template (with the same frontend it uses for user code), renames
its parameters to the actual arguments of the call it differentiates, and
inlines it. So the generated code reads like the rule, and a user registers
rules for their own functions exactly as the built-in ones are written.

Two templates per primitive, both optional but at least one required unless the
primitive is non-differentiable:

Forward (tangent) template::

    @defjvp(np.multiply, operator.mul)
    def multiply_jvp(ans, x, y, *, dx, dy):
        return dx * y, x * dy

Its positional parameters are ``ans`` (the primal output) and then the
primitive's own parameters, in the primitive's order, with defaults for the
optional ones (``axis=None``...). Its keyword-only parameters are the tangents
of the *differentiable* parameters, each named ``d`` + the parameter's name.
With several tangent parameters it returns a tuple literal holding one
*contribution* per tangent parameter, in the keyword-only order: the compiler
emits only the contributions of active arguments and sums them. With a single
tangent parameter it returns one expression. A tangent parameter of a
sequence argument (``np.concatenate(arrays)``) receives the list of the
elements' tangents, with ``np.zeros_like(e)`` for inactive elements.

Reverse (adjoint) template::

    @defvjp(np.multiply, operator.mul)
    def multiply_vjp(g, ans, x, y):
        return unbroadcast(g * y, x), unbroadcast(g * x, y)

Its positional parameters are ``g`` (the cotangent of the output), ``ans``,
then the primitive's parameters as above. It returns the cotangent of each
primitive parameter in order: a tuple literal, with ``None`` for parameters
that are not differentiable, trailing ones omitted; a single expression means
the first parameter's. For a sequence parameter the entry is an expression
evaluating to a sequence of cotangents, one per element.

A primitive linear in its first parameter gets its forward template from
``deflinear(primitive, params="a, axes=None")``: the primitive applied to the tangent.
A parameter of which a primitive reads only the shape (``unbroadcast(g, x)``'s ``x``)
is declared with ``shape_only``: a differentiated value may be passed there.

A parameter whose values a template handles only in part (``compute_uv`` of
``np.linalg.svd``) is declared with ``restrict(primitive, param=(values...),
hint=...)``: a differentiated call passing another value is refused at its
line. ``out=`` (which must be None) and ``dtype=`` (None or a floating type)
are checked for every rule that has them.

Both templates may assign local names before the return; the compiler renames
them hygienically and dead-code elimination drops those an active subset does
not need. Templates are backend-neutral: they call ``np.*`` and the helpers of
``s2sgrad.runtime``, which each backend maps to its own implementation.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import linecache
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_DIFF_PREFIX = "d"


@dataclass
class Rule:
    """Everything the compiler knows about one primitive."""

    primitive: Any
    name: str
    jvp: Callable | None = None
    vjp: Callable | None = None
    nondifferentiable: bool = False
    # Parameter names of the primitive that carry derivatives (taken from the jvp's
    # keyword-only tangent parameters, or from the vjp's non-None return entries).
    diff_params: tuple[str, ...] = field(default_factory=tuple)
    # How many values the primitive returns (a tuple when more than one).
    outputs: int = 1
    # The module that registered the rule: built-in rules come from s2sgrad.rules.*.
    origin: str = ""
    # Parameters whose values the templates handle only partly (see ``restrict``):
    # parameter name -> (the values accepted, a hint for the calls refused).
    restrictions: dict[str, tuple[tuple, str]] = field(default_factory=dict)
    # Parameters of which the primitive reads only the shape and dtype (see ``shape_only``).
    shape_params: tuple[str, ...] = ()

    @property
    def builtin(self) -> bool:
        return self.origin.startswith("s2sgrad.")

    @property
    def modes(self) -> tuple[str, ...]:
        if self.nondifferentiable:
            return ("forward", "reverse")
        return tuple(m for m, t in (("forward", self.jvp), ("reverse", self.vjp)) if t is not None)


_RULES: dict[int, Rule] = {}
# Keep the primitives alive so id() keys stay unique.
_KEEP: list[Any] = []
# Bumped whenever a rule is (re)registered, so caches keyed on the rule set notice.
_GENERATION = [0]


def _name_of(primitive: Any) -> str:
    mod = getattr(primitive, "__module__", None) or type(primitive).__module__
    qual = getattr(primitive, "__qualname__", None) or getattr(
        primitive, "__name__", repr(primitive)
    )
    return f"{mod}.{qual}"


# Built-in rules for optional libraries: library -> the rule module. They are registered
# the first time the compiler meets a primitive after the user's code imported the library
# (``lookup``), before anyone registers a rule of that library's (``_entry``: a user's rule
# still replaces the built-in one), or when every rule is listed: ``import s2sgrad`` never
# imports SciPy itself (a third of a second).
_OPTIONAL_RULES = {"scipy.special": "s2sgrad.rules.special"}
_optional_registered: set[str] = set()


def _register_optional_rules(import_library: bool = False) -> None:
    """Register the rules of each optional library that is imported (or, with
    ``import_library``, importable) and whose rules are not registered yet."""
    for library, module in _OPTIONAL_RULES.items():
        if library in _optional_registered:
            continue
        if library not in sys.modules:
            if not import_library:
                continue
            try:
                importlib.import_module(library)
            except ImportError:
                _optional_registered.add(library)  # absent: nothing to register, ever
                continue
        _optional_registered.add(library)
        generation = _GENERATION[0]
        importlib.import_module(module)
        # Built-in rules are part of the package, not of the rule set users change: code
        # compiled before they were registered could not call the library, so no memo
        # keyed on the generation is stale.
        _GENERATION[0] = generation


def _entry(primitive: Any) -> Rule:
    rule = _RULES.get(id(primitive))
    if rule is None and len(_optional_registered) < len(_OPTIONAL_RULES):
        _register_optional_rules()  # the built-in rules first, whoever registers this one
        rule = _RULES.get(id(primitive))
    if rule is None:
        rule = Rule(primitive=primitive, name=_name_of(primitive))
        _RULES[id(primitive)] = rule
        _KEEP.append(primitive)
    return rule


def _jvp_diff_params(template: Callable) -> tuple[str, ...]:
    sig = inspect.signature(template)
    params = list(sig.parameters.values())
    if not params or params[0].name != "ans":
        raise TypeError(f"jvp template {template.__name__} must take `ans` as its first parameter")
    primal = [p.name for p in params[1:] if p.kind is not p.KEYWORD_ONLY]
    tangents = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    out = []
    for t in tangents:
        if not t.startswith(_DIFF_PREFIX) or t[len(_DIFF_PREFIX) :] not in primal:
            raise TypeError(
                f"jvp template {template.__name__}: keyword-only parameter {t!r} must be "
                f"'{_DIFF_PREFIX}' + one of the primal parameters {primal}"
            )
        out.append(t[len(_DIFF_PREFIX) :])
    return tuple(out)


def _check_vjp_signature(template: Callable) -> None:
    params = list(inspect.signature(template).parameters)
    if params[:2] != ["g", "ans"]:
        raise TypeError(
            f"vjp template {template.__name__} must start with parameters (g, ans, ...)"
        )


def defjvp(
    *primitives: Any, outputs: int = 1, check: Any = False
) -> Callable[[Callable], Callable]:
    """Register a forward-mode template for one or more primitives (see module docstring).

    ``outputs > 1`` declares a primitive returning a tuple (``np.linalg.qr``): its
    template returns the tuple of output tangents, given *every* differentiable
    argument's tangent (zeros for inactive ones) rather than per-argument terms.

    ``check=True`` (random inputs of shape (3,)) or ``check=(example args...)`` runs
    the template against central differences now and raises RuleCheckError if wrong.
    """

    def register(template: Callable) -> Callable:
        template.__s2sgrad_outputs__ = outputs
        template.__s2sgrad_primitive__ = _name_of(primitives[0]) if primitives else ""
        if check is not False:
            from s2sgrad.rules.checking import check_rule

            for prim in primitives:
                check_rule(prim, template, "jvp", check, outputs)
        diff = _jvp_diff_params(template)
        for prim in primitives:
            rule = _entry(prim)
            rule.jvp = template
            rule.nondifferentiable = False
            rule.diff_params = diff
            rule.outputs = outputs
            rule.origin = template.__module__
            _mark_restrictions(rule)
        _GENERATION[0] += 1
        return template

    return register


def defvjp(
    *primitives: Any, outputs: int = 1, check: Any = False
) -> Callable[[Callable], Callable]:
    """Register a reverse-mode template for one or more primitives (see module docstring).

    ``outputs > 1``: the primitive returns a tuple; ``g`` is the tuple of the outputs'
    cotangents (zeros for outputs the program does not use) and ``ans`` the tuple result.
    ``check`` as for defjvp (a dot-product test against central differences).
    """

    def register(template: Callable) -> Callable:
        _check_vjp_signature(template)
        template.__s2sgrad_outputs__ = outputs
        template.__s2sgrad_primitive__ = _name_of(primitives[0]) if primitives else ""
        if check is not False:
            from s2sgrad.rules.checking import check_rule

            for prim in primitives:
                check_rule(prim, template, "vjp", check, outputs)
        for prim in primitives:
            rule = _entry(prim)
            rule.vjp = template
            rule.nondifferentiable = False
            rule.outputs = outputs
            rule.origin = template.__module__
            _mark_restrictions(rule)
        _GENERATION[0] += 1
        return template

    return register


def deflinear(*primitives: Any, params: str, check: Any = False) -> Callable:
    """Register the forward rule of primitives that are linear in their first parameter.

    The tangent of a linear map is the same map applied to the tangent, every other
    argument as the call passed it: ``deflinear(np.transpose, params="a, axes=None")``
    is the rule ``transpose_jvp(ans, a, axes=None, *, da)`` returning
    ``np.transpose(da, axes=axes)``. ``params`` lists the parameters the rule accepts,
    in Python syntax and the primitive's order; a call passing others is refused. A
    required parameter is passed on by position, one with a default by keyword, and
    ``out`` (always None in a differentiated call) not at all. A sequence parameter
    (``np.concatenate(arrays)``) receives the list of the elements' tangents.

    The template reads the registering module's names, as a hand-written one would (so
    it names the primitive as that module does: ``np.<name>``, a module-level name or a
    builtin), and its text is kept for ``inspect``: it is lowered, checked and shown
    like a hand-written one (``written_template``). Returns it.
    """
    namespace = sys._getframe(1).f_globals
    primitive = primitives[0]
    name = getattr(primitive, "__name__", "")
    spelled = _spelling(primitive, namespace)
    parsed = ast.parse(f"def _({params}): pass").body[0].args
    if parsed.posonlyargs or parsed.vararg or parsed.kwonlyargs or parsed.kwarg:
        raise TypeError(f"deflinear({name}): params take plain parameters only, got {params!r}")
    names = [a.arg for a in parsed.args]
    if "ans" in names:
        raise TypeError(
            f"deflinear({name}): `ans` names the result in a forward rule; give that "
            f"parameter another name in params ({params!r})"
        )
    required = names[: len(names) - len(parsed.defaults)]
    linear = names[0]
    passed = [f"d{linear}"] + [
        n if n in required else f"{n}={n}" for n in names[1:] if n != "out" or n in required
    ]
    source = (
        f"def {name}_jvp(ans, {params}, *, d{linear}):\n"
        f"    return {spelled}({', '.join(passed)})\n"
    )
    return defjvp(*primitives, check=check)(written_template(source, namespace))


def written_template(source: str, namespace: dict) -> Callable:
    """The template function whose text is ``source`` (one ``def``), reading the names of
    ``namespace`` (the registering module's globals) as one written there would.

    For rules that follow a pattern (``deflinear``; the adjoints of products): the text
    is kept for ``inspect`` (``restore_source``), so the template is lowered, checked
    and shown like one written out. It is defined in a copy of the namespace: the
    module gains no name (a user's own ``f_jvp`` stays theirs).
    """
    name = source[len("def ") : source.index("(")]
    filename = f"<s2sgrad.rules {namespace.get('__name__', '')}.{name}>"
    scope = dict(namespace)
    exec(compile(source, filename, "exec"), scope)  # noqa: S102  (our own text)
    template = scope[name]
    template.__s2sgrad_source__ = (filename, source)
    restore_source(template)
    return template


def _spelling(primitive: Any, namespace: dict) -> str:
    """How code in ``namespace`` names ``primitive``: ``np.<name>``, its own name, a builtin."""
    name = getattr(primitive, "__name__", "")
    if namespace.get("np") is np and getattr(np, name, None) is primitive:
        return f"np.{name}"
    if namespace.get(name, getattr(builtins, name, None)) is primitive:
        return name
    raise TypeError(
        f"deflinear: {primitive!r} is not reachable as `np.{name}` or `{name}` from the "
        f"module registering its rule ({namespace.get('__name__')}); register it from a module "
        "where that name refers to it, or write the rule with defjvp"
    )


def restore_source(template: Callable) -> None:
    """Put a written template's text (back) where ``inspect`` reads it (``written_template``).

    ``linecache.clearcache()`` (user code, doctest, tests) forgets text that has no
    file; the compiler calls this before it reads a template."""
    filename, source = getattr(template, "__s2sgrad_source__", (None, None))
    if filename is not None and filename not in linecache.cache:
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def nondifferentiable(*primitives: Any) -> None:
    """Declare primitives whose outputs carry no derivative (shape queries, comparisons, argmax...).

    Their results are treated as constants: zero derivative, which is the
    mathematical answer for piecewise-constant and integer-valued functions.
    """
    origin = sys._getframe(1).f_globals.get("__name__", "")
    for prim in primitives:
        rule = _entry(prim)
        rule.origin = origin
        rule.nondifferentiable = True
        rule.jvp = rule.vjp = None
        rule.diff_params = ()
    _GENERATION[0] += 1


def shape_only(primitive: Any, *params: str) -> None:
    """Declare parameters of which ``primitive`` reads only the shape and dtype.

    A differentiated value may be passed there (``unbroadcast(g, x)`` in derivative
    code, with ``x`` a differentiated primal): the result does not depend on its
    values, so it carries no derivative, and the compiler does not refuse it as it
    refuses a differentiated index or axis.
    """
    _entry(primitive).shape_params = tuple(params)
    _GENERATION[0] += 1


def restrict(*primitives: Any, hint: str = "", **allowed: Any) -> None:
    """Declare the only values some parameters of a primitive's rules support.

    ``restrict(np.linalg.svd, compute_uv=(True,), hint=...)``: a differentiated call
    that passes another value (or a value only known at run time) is refused at its
    line with a NoDerivativeRuleError carrying ``hint``, instead of being differentiated
    as if the parameter had a supported value. Register the templates first.
    """
    for prim in primitives:
        rule = _entry(prim)
        for param, values in allowed.items():
            rule.restrictions[param] = (tuple(values), hint)
        _mark_restrictions(rule)
    _GENERATION[0] += 1


def _mark_restrictions(rule: Rule) -> None:
    """Templates carry their rule's restrictions: the compiler checks them when it inlines
    a template (templates are what it has then), whichever was registered first."""
    if not rule.restrictions:
        return
    for template in (rule.jvp, rule.vjp):
        if template is not None:
            template.__s2sgrad_restrictions__ = (rule.name, dict(rule.restrictions))


def lookup(primitive: Any) -> Rule | None:
    """The rule of a primitive, by identity, or None."""
    rule = _RULES.get(id(primitive))
    if rule is None and len(_optional_registered) < len(_OPTIONAL_RULES):
        _register_optional_rules()
        rule = _RULES.get(id(primitive))
    return rule


def all_rules(optional: bool = True) -> list[Rule]:
    """Every registered rule, sorted by name (for docs, the CLI and the systematic test);
    ``optional``: with the rules of every optional library that is installed."""
    if optional:
        _register_optional_rules(import_library=True)
    return sorted(_RULES.values(), key=lambda r: r.name)


def generation() -> int:
    """A counter that changes whenever the rule set changes (part of cache keys)."""
    return _GENERATION[0]
