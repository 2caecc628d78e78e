"""Differentiating a derivative: what runs when ``grad(f)`` is called, as code s2sgrad reads.

``grad(f)(x)`` calls the first-order module s2sgrad generated for ``f`` (its vjp,
``f_vjp(x, 1.0) -> (value, grads)``) and picks the gradient out of the result. So
differentiating ``grad(f)`` is differentiating that module: the compiler compiles
its own output, through the same frontend, rules and cache as user code. This
module makes the one missing piece, a *composition function* in the subset that
says what the produced callable does:

    def grad_of_f(x):
        out, grads = f_vjp(x, 1.0)
        return grads[0]

It is defined in the namespace of ``f``'s loaded derivative module, so the function
it calls, and everything that reads, share its globals: the second-order module
binds its free names from there as for any root function. Its text lives in
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
import linecache
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from s2sgrad import memos, running

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
    table[(mode, first_options)] = (entry, shim)
    return shim


def _tangent_passes(d: Any, options: dict) -> bool:
    """Whether the composition follows ``grad(mode="forward")``: one tangent pass per
    element (forward-mode code saves nothing, so any order of forward derivatives goes
    through loops). Done for one array or number argument; otherwise the gradient is
    the same function, taken from the reverse-mode code."""
    return d.mode == "forward" and d.single and d.wrt[0] not in options.get("containers", ())


def _first_order_options(given: dict, has_aux: bool, mode: str) -> tuple:
    """Options of the first-order module: the argument structure the composition was
    called with, and the produced callable's own ``has_aux``."""
    out = []
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
    reverse-mode ``entry`` with the seed 1.0, or (``mode="forward"``) one tangent pass of
    the forward-mode ``entry`` per element of the one ``wrt`` argument, along the rows of
    an identity matrix."""
    wrt_text = params[wrt[0]] if single else "(" + ", ".join(params[i] for i in wrt) + ")"
    what = "gradient" if kind == "grad" else "value and gradient"
    if mode == "forward":
        x = params[wrt[0]]
        gradient = f"np.reshape(columns, np.shape({x}))"
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
        gradient = "grads[0]" if single else "grads"
        how = "from its derivative module"
        body = f"    out, grads = {entry}({', '.join([*params, '1.0'])})\n"
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


def restore_source(fn: Callable) -> None:
    """Put the composition function's text (back) where ``inspect`` reads it
    (``linecache.clearcache()`` forgets text that has no file)."""
    filename, source = fn.__dict__.get("__s2sgrad_source__", (None, None))
    if filename is not None and filename not in linecache.cache:
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
