"""Calling a generated JAX-backend function: jitted, with recorded loops that cannot overflow.

The generated function is pure ``jax.numpy``; this wraps it in ``jax.jit`` with
the arguments that must be static made static: Python ints, bools, strings and
other non-array objects (trip counts, axes, flags), so ``range(n)`` keeps a static
length and lowers to a rolled ``lax.scan``. Floats and arrays are traced.

Recorded loops (a ``while`` loop, or a range of traced length, in the forward
sweep of reverse mode) write their saves into buffers of ``max_steps`` rows.
Each traced loop reports whether it wanted to run past that bound; the jitted
function returns the flag beside its result (None when nothing records, so such
calls never wait on the device). With no ``max_steps`` given, a run that
overflowed is repeated with the bound doubled (one more compilation), starting
from 128 rows or the bound an earlier call needed; with an explicit
``max_steps`` it raises ``LoopBoundExceeded``. Called under a
caller's own ``jax.jit`` the flag is traced, so a ``jax.debug.callback`` raises
at run time instead: never a silently truncated gradient.
"""

from __future__ import annotations

import functools
import linecache
import re
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from s2sgrad import memos
from s2sgrad.backends.jax import control
from s2sgrad.backends.jax.control import raise_if_overflowed
from s2sgrad.errors import (
    NeedsConcreteValueError,
    S2SGradError,
    SourceLocation,
    UnsupportedSyntaxError,
)

LARGEST_AUTOMATIC_BOUND = 1 << 22
# Called directly, a derivative starts with buffers of this many rows (small buffers are
# cheap to fill) and keeps the bound a run needed for its later calls.
FIRST_AUTOMATIC_BOUND = 128
_LEARNED_BOUNDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _is_static(value: Any) -> bool:
    """Arguments JAX must see as Python values: everything that is not array data."""
    if isinstance(value, (bool, int, str, type(None))) and not isinstance(value, np.generic):
        return True
    if isinstance(value, (float, complex, np.ndarray, np.generic, jax.Array)):
        return False
    if isinstance(value, (tuple, list, dict)):
        return False  # containers of arrays are pytrees
    return not hasattr(value, "__jax_array__") and not isinstance(value, jax.core.Tracer)


def _free_values(entry: Callable) -> tuple:
    """Identities of the module globals the generated code reads: traced in as constants,
    so a rebinding (a reassigned user global) must make a new jitted function."""
    module = entry.__globals__
    names = module.get("__s2sgrad_free_names__", ())
    return tuple(id(module.get(n.split("=")[0])) for n in names)


def _seed() -> Any:
    """A gradient's seed, 1.0, traced and weakly typed like a Python float passed to ``jit``.

    Not the constant itself: the lowered control flow binds Python numbers into its
    branches as path constants (``control.if_else``), which is right for values and
    wrong for an adjoint, where an unset (None) one on the other path means zero.
    """
    return lax.full((), 1.0)


def _jitted(
    entry: Callable, static: tuple[int, ...], max_steps: int, finish: Callable | None
) -> Callable:
    """``entry`` jitted; with ``finish``, a gradient: ``finish(args, *entry(*args, 1.0))``
    (see ``Backend.gradient_runner``)."""
    per_entry = memos.table_of(entry, "jitted")  # on the entry: freed with it (s2sgrad.memos)
    key = (static, max_steps, _free_values(entry), finish)
    fn = per_entry.get(key)
    if fn is None:

        def run(*args: Any) -> tuple[Any, Any]:
            with control.recording(max_steps) as overflows:
                out = entry(*args) if finish is None else finish(args, *entry(*args, _seed()))
            # None when nothing records: the caller then needs no device-to-host sync.
            return out, (jnp.any(jnp.stack(overflows)) if overflows else None)

        fn = jax.jit(run, static_argnums=static)
        per_entry[key] = fn
    return fn


def _plan(entry: Callable, args: tuple, max_steps: int | None) -> tuple[tuple, bool, int]:
    """What a call decides from its arguments: the positions of static ones, whether any
    is traced (a caller's own jit), and the loop bound to start from."""
    static = tuple(i for i, a in enumerate(args) if _is_static(a))
    leaves = jax.tree_util.tree_leaves(args)
    traced = any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)
    if not traced:  # (so that a repeated call tells jax arrays apart: s2sgrad.api._Repeat)
        from s2sgrad import api

        api.ARRAY_TYPES.update(type(leaf) for leaf in leaves if isinstance(leaf, jax.Array))
    if max_steps is not None:
        bound = int(max_steps)
    elif traced:
        # Under the caller's own jit an overflow can only raise, not re-run: be generous.
        bound = max(_LEARNED_BOUNDS.get(entry, 0), control.DEFAULT_MAX_STEPS)
    else:
        bound = _LEARNED_BOUNDS.get(entry, FIRST_AUTOMATIC_BOUND)
    return static, traced, bound


def call(
    entry: Callable, args: tuple, max_steps: int | None = None, finish: Callable | None = None
) -> Any:
    """``entry(*args)`` jitted, re-run with a larger loop bound if a recorded loop overflowed
    (with ``finish``, the gradient ``_jitted`` describes)."""
    static, traced, bound = _plan(entry, args, max_steps)
    while True:
        try:
            out, overflow = _jitted(entry, static, bound, finish)(*args)
        except (jax.errors.ConcretizationTypeError, jax.errors.NonConcreteBooleanIndexError) as exc:
            raise _needs_concrete_value(exc, entry) from exc
        except control.NoneLoopState as exc:
            raise _none_loop_state(exc, entry) from exc
        if overflow is None:
            return out
        if isinstance(overflow, jax.core.Tracer):
            jax.debug.callback(functools.partial(raise_if_overflowed, bound=bound), overflow)
            return out
        if not bool(overflow):
            if max_steps is None and not traced:
                _LEARNED_BOUNDS[entry] = bound
            return out
        if max_steps is not None or bound >= LARGEST_AUTOMATIC_BOUND:
            raise_if_overflowed(True, bound)
        bound *= 2


def repeat(
    entry: Callable, args: tuple, max_steps: int | None, finish: Callable
) -> Callable | None:
    """What ``call(entry, args, max_steps, finish)`` runs, for calls with arguments like
    ``args`` (``api._Repeat``): the jitted function ``call`` chose (``_plan``), whose result
    it returns unless a recorded loop overflowed (``RepeatOutgrown``: the caller's full path
    then runs ``call``, which learns the larger bound). None under a caller's own jit (where
    ``call`` decides by the tracers)."""
    static, traced, bound = _plan(entry, args, max_steps)
    if traced:
        return None
    jitted = _jitted(entry, static, bound, finish)

    def run(*args: Any) -> Any:
        out, overflow = jitted(*args)
        if overflow is None or not bool(overflow):
            return out
        raise RepeatOutgrown(bound)

    return run


class RepeatOutgrown(Exception):
    """A repeated call (``repeat``) whose recorded loop ran past the bound it was made for."""


_LINE_COMMENT = re.compile(r"^\s*# line (\d+): (.*)$")
_SOURCE = re.compile(r"^Source: (.*), line \d+\.$", re.MULTILINE)


def as_arrays(value: Any) -> Any:
    """``value`` (a gradient) with every leaf a JAX array, as ``jax.grad`` returns it."""
    from s2sgrad import trees

    return trees.unflatten(value, [jnp.asarray(v) for v in trees.leaves(value)])


def _needs_concrete_value(exc: Exception, entry: Callable) -> NeedsConcreteValueError:
    """JAX's complaint about a traced value, re-told at the user's line."""
    what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = (
        "the JAX backend always runs the derivative under jax.jit, where values computed "
        "from the arguments are traced. Pass such numbers as Python ints (static arguments), "
        "compute them without int()/float()/bool(), use np.where(mask, x, 0) instead of "
        "boolean-mask indexing (x[mask] runs under jit only where its values go elementwise "
        "into np.sum/mean/max/min/prod or a count), or use backend='numpy'"
    )
    message = f"this line needs a concrete value, which JAX cannot give under jit ({what})"
    return _at_user_line(NeedsConcreteValueError, message, hint, exc, entry)


def _none_loop_state(exc: control.NoneLoopState, entry: Callable) -> UnsupportedSyntaxError:
    """A loop whose body tells a None in its state from a value, re-told at the loop's line."""
    names = ", ".join(f"`{n}`" for n in exc.names)
    message = (
        f"{names} {'is' if len(exc.names) == 1 else 'are'} None when this {exc.what} starts "
        "and the loop body tells None from a value (an `is None` test); the JAX backend "
        "runs the loop as one lax loop, whose every iteration sees the same type"
    )
    hint = (
        "start the variable as a value of the type the loop gives it and keep a separate "
        "flag (`have_prev = False`), run the first iteration before the loop, or use "
        "backend='numpy'"
    )
    return _at_user_line(UnsupportedSyntaxError, message, hint, exc, entry)


def _at_user_line(
    error: type[S2SGradError], message: str, hint: str, exc: Exception, entry: Callable
) -> S2SGradError:
    """``error`` with ``message``, placed where tracing the generated code raised ``exc``.

    The deepest frame in the generated module says where tracing stopped; the nearest
    ``# line N: <source>`` comment above it says which line of the user's code that is.
    The user's file is the module header's ``Source:`` when that code is the entry
    function's; for a function it calls, the generated file and line are given instead.
    """
    generated = entry.__code__.co_filename
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == generated]
    if not frames:
        return error(message, hint=hint)
    frame = frames[-1]
    lines = linecache.getlines(generated)
    user_line, text, top = None, "", None
    for number in range(frame.lineno - 1, -1, -1):
        line = lines[number] if number < len(lines) else ""
        match = _LINE_COMMENT.match(line)
        if match and user_line is None:
            user_line, text = int(match.group(1)), match.group(2)
        if line.startswith("def "):
            top = line[4:].split("(")[0]
            break
    source = _SOURCE.search(entry.__globals__.get("__doc__") or "")
    if user_line is not None and source and top == entry.__name__:
        file = source.group(1)
        original = linecache.getline(file, user_line)
        if original.strip() == text.strip():
            text = original.rstrip("\n")
        loc = SourceLocation(file, user_line, len(text) - len(text.lstrip()), text)
        return error(message, loc, hint)
    loc = SourceLocation(generated, frame.lineno, 0, frame.line or "")
    if user_line is not None:
        message += f"; generated from line {user_line} of the source of {top}: {text.strip()}"
    return error(message, loc, hint)
    loc = SourceLocation(generated, frame.lineno, 0, frame.line or "")
    if user_line is not None:
        message += f"; generated from line {user_line} of the source of {top}: {text.strip()}"
    return NeedsConcreteValueError(message, loc, hint)


def over_seeds(entry: Callable, primals: tuple, seeds: Any) -> tuple:
    """``Backend.over_seeds`` for JAX: the entry vmapped over the stacked seeds and jitted,
    once per entry and static arguments (Python ints), kept on the entry."""
    from s2sgrad import memos

    static = tuple(i for i, p in enumerate(primals) if _is_static(p))
    key = tuple((i, primals[i]) for i in static)
    table = memos.table_of(entry, "vmapped")
    batched = table.get(key)
    if batched is None:

        def over(stacked: Any, *traced: Any) -> Any:
            args = list(traced)
            for i in static:
                args.insert(i, primals[i])
            return jax.vmap(lambda seed: call(entry, (*args, seed)))(stacked)

        batched = table[key] = jax.jit(over)
    first, second = batched(seeds, *(p for i, p in enumerate(primals) if i not in static))
    return jax.tree_util.tree_map(lambda a: a[0], first), second
