"""Differentiating a derivative: what runs when ``grad(f)`` is called, as code s2sgrad reads.

``grad(f)(x)`` calls the first-order module s2sgrad generated for ``f`` (its vjp,
``f_vjp(x, seed) -> (value, grads)``) and picks the gradient out of the result. So
differentiating ``grad(f)`` is differentiating that module: the compiler compiles
its own output, through the same frontend, rules and cache as user code. This
module makes the one missing piece, a *composition function* in the subset that
says what the produced callable does:

    def grad_of_f(x):
        out, grads = f_vjp(x, np.ones(()))
        return cast_like(grads[0], x)

The seed is ``np.ones(())``, not ``1.0``: under ``jax.jit`` a Python number is a
constant at trace time, and the JAX backend's control flow keeps a constant that one
path of an ``if`` sets where the other sets None ("no adjoint yet"), which would add the
seed again on every iteration of the backward sweep. ``cast_like`` returns the
gradient in its argument's dtype, as ``grad`` does (the float64 seed would promote a
float32 gradient).

It is defined in the namespace of ``f``'s loaded derivative module, so the function
it calls, and everything that reads, share its globals: the second-order module
binds its free names from there as for any root function. Called inside another
function being differentiated, that module is read through an alias bound from the
name under which the function reads ``grad(f)`` (``binding_of``). Its text lives in
``linecache`` under a deterministic name (the cache key counts it like a source
file). One is made per produced callable and argument structure (tuple/dict
arguments, Python-number arguments), and remade when ``f``'s derivative module is.

``grad(f, mode="forward")`` of one array argument composes the way it computes: one
tangent pass of ``f``'s forward-mode (jvp) code per element, in a loop. Forward-mode
code saves nothing, so forward derivatives of any order go through loops. Every
other produced callable composes through ``f``'s reverse-mode (vjp) code: the
gradient is the same function.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from s2sgrad import memos, running, runtime
from s2sgrad.rules.registry import restore_source

#: Kinds of produced callables that compose (``running.mark_produced``).
COMPOSABLE = ("grad", "value_and_grad")


def settings(obj: Any) -> Any:
    """The ``_Derivative`` of a composable produced callable, or None."""
    mark = running.produced(obj)
    if mark is None or mark[0] not in COMPOSABLE:
        return None
    return obj.__dict__.get("__s2sgrad__")


def require_composable(obj: Any, loc: Any = None, name: str | None = None) -> Any:
    """The ``_Derivative`` behind ``obj``, or ``HigherOrderError`` saying why it does not compose."""
    d = settings(obj)
    if d is None:
        raise running.higher_order_error(obj, loc, name)
    for p in running.parameters(d.fun):
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) or p.default is not p.empty:
            raise running.higher_order_error(
                obj,
                loc,
                name,
                detail=f"differentiating it needs `{d.fun.__name__}` to take positional "
                f"parameters without defaults, and parameter `{p.name}` is {_kind_of(p)}",
            )
    return d


def _kind_of(p: inspect.Parameter) -> str:
    if p.kind == p.KEYWORD_ONLY:
        return "keyword-only"
    if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
        return "variadic"
    return "given a default"


def signature(obj: Any) -> inspect.Signature:
    """The signature of a produced callable: its primal's (cheap: nothing is compiled)."""
    return running.signature(require_composable(obj).fun)


def composed(obj: Any, options: Any = ()) -> types.FunctionType:
    """The composition function of produced ``obj`` for arguments of structure ``options``
    (as ``api._options`` gives them: ``containers``, ``scalars``), made on first use."""
    d = require_composable(obj)
    given = dict(options)
    mode = "forward" if _tangent_passes(d, given) else "reverse"
    first_options = _first_order_options(given, d.has_aux, mode)
    from s2sgrad import cache

    module = cache.derivative_module(d.fun, mode, d.wrt, "numpy", first_options)
    entry = getattr(module, module.__s2sgrad_entry__)
    table = memos.table_of(obj, "compositions")
    made = table.get((mode, first_options))
    if made is not None and made[0] is entry:
        restore_source(made[1])
        return made[1]
    shim = _define(d, obj, entry, mode)
    shim.__s2sgrad_composes__ = (obj, tuple(given.get("containers", ())))
    table[(mode, first_options)] = (entry, shim)
    return shim


def origin(fn: Any) -> tuple[Any, tuple[int, ...]] | None:
    """``(produced callable, container positions)`` when ``fn`` is a composition function."""
    return getattr(fn, "__dict__", {}).get("__s2sgrad_composes__")


def primal_chain(obj: Any) -> list[Any]:
    """``[grad(grad(f)), grad(f), f]`` for ``grad(grad(f))``: the composable derivatives
    down to the function they differentiate (the cache key reads each)."""
    chain = [obj]
    while settings(chain[-1]) is not None and len(chain) < 100:
        chain.append(settings(chain[-1]).fun)
    return chain


def describe(obj: Any) -> str:
    """Text for the cache key: what the derivative computes, stable across processes."""
    d = settings(obj)
    kind = running.produced(obj)[0]
    inner = d.fun
    what = (
        describe(inner)
        if settings(inner) is not None
        else f"{getattr(inner, '__module__', '')}.{getattr(inner, '__qualname__', '')}"
    )
    return f"s2sgrad.{kind}({what}, wrt={d.wrt}, single={d.single}, mode={d.mode}, has_aux={d.has_aux})"


# ----------------------------------------------------------------------------- called inside
# A derivative called inside a differentiated function (`def h(x): return np.sum(g(x))`):
# the second-order module reads the first-order module's names through an alias, bound
# when it loads from the name under which the function reads `g`, as `alias=@g:0,2`
# (the container positions of the call). A fresh process makes the composition again.

BINDING = "@"


def binding_of(root: Any, fn: Any) -> str | None:
    """The free-name binding (``@name`` or ``@name:positions``) by which ``root``'s module
    reaches the composition function ``fn``, or None when ``fn`` is not one."""
    made = origin(fn)
    if made is None:
        return None
    obj, containers = made
    name = _name_in(root, obj)
    if name is None:
        raise running.higher_order_error(
            obj,
            detail="it is called inside the differentiated function, but not through a global "
            "name or a variable the function closes over, which is how s2sgrad finds it again",
        )
    return BINDING + name + (":" + ",".join(map(str, containers)) if containers else "")


def _name_in(root: Any, obj: Any) -> str | None:
    code = root.__code__
    candidates = list(code.co_freevars) + sorted(k for k, v in root.__globals__.items() if v is obj)
    for name in candidates:
        if running.free_name_binding(root, name)[0] is obj:
            return name
    return None


def alias_for(binding: str) -> str:
    """The alias generated code reads the first-order module's names through: ``_g_code``."""
    return "_" + binding[len(BINDING) :].partition(":")[0] + "_code"


def module_for_binding(root: Any, binding: str) -> types.ModuleType:
    """The first-order module behind ``binding`` (``binding_of``), composed now from what
    ``root`` reads under that name."""
    name, _, positions = binding[len(BINDING) :].partition(":")
    obj = running.free_name_binding(root, name)[0]
    containers = tuple(int(p) for p in positions.split(",")) if positions else ()
    options = (("containers", containers),) if containers else ()
    shim = composed(obj, options)
    return sys.modules[shim.__globals__["__name__"]]


def _tangent_passes(d: Any, options: dict) -> bool:
    """Whether the composition follows ``grad(mode="forward")``: one tangent pass per
    element (forward-mode code saves nothing, so any order of forward derivatives goes
    through loops). Done for one array or number argument; otherwise the gradient is
    the same function, taken from the reverse-mode code."""
    return d.mode == "forward" and d.single and d.wrt[0] not in options.get("containers", ())


def _first_order_options(given: dict, has_aux: bool, mode: str) -> tuple:
    """Options of the first-order module: the argument structure the composition was
    called with, the produced callable's own ``has_aux``, and that the module is read
    back to be differentiated (``pipeline.Compilation.read_back``)."""
    out = [("read_back", True)]
    if given.get("containers"):
        out.append(("containers", tuple(given["containers"])))
    if given.get("scalars") and mode == "reverse":
        out.append(("scalars", tuple(given["scalars"])))
    if has_aux:
        out.append(("has_aux", True))
    return tuple(out)


def _define(d: Any, obj: Any, entry: Callable, mode: str) -> types.FunctionType:
    """Write and define the composition function in ``entry``'s module namespace."""
    namespace = entry.__globals__
    namespace.setdefault("np", np)  # the forward shim's basis; derivative modules import it
    namespace.setdefault("cast_like", runtime.cast_like)
    kind = running.produced(obj)[0]
    params = [p.name for p in running.parameters(d.fun)]
    base = f"{kind}_of_{d.fun.__name__}"
    text = shim_source(
        "{name}", mode, kind, params, entry.__name__, d.wrt, d.single, d.has_aux, d.fun
    )
    name = _name_for(base, text, namespace)
    source = text.replace("{name}", name, 1)
    filename = f"<s2sgrad composition {namespace.get('__name__', '')}.{name}>"
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102  (our own text)
    shim = namespace[name]
    shim.__s2sgrad_source__ = (filename, source)
    restore_source(shim)
    return shim


def shim_source(
    name: str,
    mode: str,
    kind: str,
    params: list[str],
    entry: str,
    wrt: tuple[int, ...],
    single: bool,
    has_aux: bool,
    fun: Callable,
) -> str:
    """The text of a composition function (see the module docstring): one call of the
    reverse-mode ``entry`` with the seed ``np.ones(())``, or (``mode="forward"``) one
    tangent pass of the forward-mode ``entry`` per element of the one ``wrt`` argument,
    along the rows of an identity matrix."""
    wrt_text = params[wrt[0]] if single else "(" + ", ".join(params[i] for i in wrt) + ")"
    wrt_args = params[wrt[0]] if single else "(" + ", ".join(params[i] for i in wrt) + ",)"
    what = "gradient" if kind == "grad" else "value and gradient"
    if mode == "forward":
        x = params[wrt[0]]
        gradient = f"cast_like(np.reshape(columns, np.shape({x})), {x})"
        how = "one tangent pass per element, by its derivative module"
        call = ", ".join([*params, f"np.reshape(basis[i], np.shape({x}))"])
        body = (
            f"    basis = np.eye(np.size({x}))\n"
            f"    columns = np.zeros(np.size({x}))\n"
            f"    for i in range(np.size({x})):\n"
            f"        out, tangent = {entry}({call})\n"
            f"        columns[i] = tangent\n"
        )
    else:
        gradient = f"cast_like({'grads[0]' if single else 'grads'}, {wrt_args})"
        how = "from its derivative module"
        body = f"    out, grads = {entry}({', '.join([*params, 'np.ones(())'])})\n"
    if kind == "grad":
        result = f"{gradient}, out[1]" if has_aux else gradient
    else:
        result = f"out, {gradient}"
    return (
        f"def {name}({', '.join(params)}):\n"
        f'    """s2sgrad.{kind}({fun.__name__}, wrt={wrt_text}): the {what} of '
        f'`{fun.__name__}`, {how}."""\n' + body + f"    return {result}\n"
    )


def _name_for(base: str, text: str, namespace: dict) -> str:
    """``base``, unless the namespace holds another function by that name: then ``base``
    and a digest of the text, so that the name (and the cache key that counts it) does
    not depend on the order in which compositions were made."""
    taken = namespace.get(base)
    if taken is None or _text_of(taken) == text.replace("{name}", base, 1):
        return base
    return f"{base}_{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _text_of(fn: Any) -> str | None:
    mark = getattr(fn, "__dict__", {}).get("__s2sgrad_source__")
    return mark[1] if mark else None
