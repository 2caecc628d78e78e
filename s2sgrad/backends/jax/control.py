"""Control flow for generated JAX code: ``if`` -> ``lax.cond``, ``for`` -> ``lax.scan``,
``while`` -> ``lax.while_loop``, with reverse mode through all three.

The JAX lowering (``s2sgrad/backends/jax/lowering.py``) turns each compound statement of
a generated function into small local functions over an explicit state and one
call of a combinator defined here. The combinators decide what only trace time
knows:

* whether an ``if`` test is concrete (then it stays a Python ``if``: static
  shapes, ``is None`` tests on adjoints) or traced (``lax.cond``);
* whether a ``range`` has a static length (``lax.scan``: rolled, and the
  per-iteration saves of the reverse sweep are its stacked outputs) or a
  traced one (``lax.while_loop`` writing saves into a preallocated buffer);
* the types of carried values. Generated code uses ``None`` for "not set yet"
  (an adjoint nobody has accumulated into, a value defined only inside the
  loop); JAX loops need one type per carried value, so the combinators
  trace the body (``jax.make_jaxpr``) and start such values as zeros of the
  type the body gives them, broadcasting and promoting until the types are a
  fixed point. The last trace is what ``lax`` runs (``_trace``): a body is
  traced once per fixed-point step, never again for the loop itself.

Saves of a loop come back as a ``Tape``: one stacked array per saved leaf
(leading axis = iteration), the Python objects among them (ranges, ``None``,
numbers) kept aside, so nested loops simply stack tapes of tapes. A leaf that
depends on nothing the loop changes (a parameter among a callee's residuals) is
computed once before the loop and held once, not stacked (``_hoisted``). Backward loops
(``replay``) read a tape last-in first-out, which is what the NumPy backend's
``list.pop()`` does.

A ``while`` loop that records saves needs a bound on its trip count, because
XLA buffers have static sizes: ``max_steps`` (see ``recording``). Exceeding it
is reported, never silently truncated: the API retries with a doubled bound, or
raises where it cannot (under a caller's ``jax.jit``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
from jax import lax

from s2sgrad.backends import JAX_CONTROL_NAMES
from s2sgrad.errors import LoopBoundExceeded

__all__ = list(JAX_CONTROL_NAMES)

DEFAULT_MAX_STEPS = 1024


class NoneLoopState(TypeError):
    """A loop starts with a variable that is None and its body tells None from a value
    (``if prev is None:``). A JAX loop carries one type per variable, so the first
    iteration cannot see None and the others a value; ``s2sgrad.backends.jax.api`` re-tells this
    at the user's line. ``names`` are the variables, ``what`` the kind of loop."""

    def __init__(self, what: str, names: tuple[str, ...]):
        self.what, self.names = what, names
        super().__init__(f"{what}: {', '.join(names)} is None when the loop starts")


# --------------------------------------------------------------------------- settings


@dataclass
class _Recording:
    max_steps: int
    overflows: list = field(default_factory=list)


_RECORDING: contextvars.ContextVar[_Recording | None] = contextvars.ContextVar(
    "s2sgrad_jax_recording", default=None
)


@contextlib.contextmanager
def recording(max_steps: int = DEFAULT_MAX_STEPS):
    """Trace generated code with buffers of ``max_steps`` iterations for recorded loops.

    Yields the list of (traced) overflow flags the loops traced inside report; the
    caller returns ``any`` of them from its jitted function and checks it.
    """
    state = _Recording(int(max_steps))
    token = _RECORDING.set(state)
    try:
        yield state.overflows
    finally:
        _RECORDING.reset(token)


def _with_overflow(fn: Callable, seen: list) -> Callable:
    """``fn`` returning also whether a recorded loop traced inside it overflowed.

    A flag traced inside a loop body or branch must leave it as an output, not escape
    as a side effect; ``seen`` learns (at trace time) whether there are any such loops.
    """

    def wrapped(*args: Any) -> tuple[Any, Any]:
        inner = _Recording(_max_steps())
        token = _RECORDING.set(inner)
        try:
            out = fn(*args)
        finally:
            _RECORDING.reset(token)
        if inner.overflows:
            seen.append(True)
            return out, jnp.any(jnp.stack([jnp.asarray(f) for f in inner.overflows]))
        return out, jnp.asarray(False)

    return wrapped


def _max_steps() -> int:
    state = _RECORDING.get()
    return DEFAULT_MAX_STEPS if state is None else state.max_steps


def _report_overflow(flag: Any, what: str) -> None:
    state = _RECORDING.get()
    if state is not None:
        state.overflows.append(flag)
        return
    jax.debug.callback(functools.partial(raise_if_overflowed, bound=_max_steps(), what=what), flag)


def raise_if_overflowed(overflowed: Any, bound: int, what: str = "a recorded loop") -> None:
    """Raise ``LoopBoundExceeded`` for a (concrete) overflow flag."""
    if overflowed:
        raise LoopBoundExceeded(
            f"{what} ran more than max_steps={bound} iterations, the size of the buffer that "
            "keeps its values for the backward sweep; pass a larger max_steps= to "
            "s2sgrad.grad / value_and_grad / vjp"
        )


# --------------------------------------------------------------------------- ranges


@jax.tree_util.register_pytree_node_class
class Range:
    """``range`` whose start and length may be traced: ``start + step * k`` for k < length."""

    def __init__(self, start: Any, step: Any, length: Any):
        if _is_traced(step):
            raise TypeError("s2sgrad's JAX backend needs a range step known at trace time")
        self.start, self.step, self.length = start, step, length

    @classmethod
    def of(cls, *args: Any) -> Range:
        """Like ``range(stop)`` / ``range(start, stop[, step])``."""
        start, stop, step = (0, args[0], 1) if len(args) == 1 else (*args, 1)[:3]
        if not any(_is_traced(a) for a in (start, stop, step)):
            return cls(int(start), int(step), len(range(int(start), int(stop), int(step))))
        step = int(step)
        span = stop - start
        length = (span + step - 1) // step if step > 0 else (span + step + 1) // step
        return cls(start, step, jnp.maximum(length, 0))

    def __len__(self) -> int:
        if _is_traced(self.length):
            raise TypeError("the length of this range is traced")
        return int(self.length)

    @property
    def static(self) -> bool:
        """Bounds known at trace time (Python integers), so the length is static."""
        return all(isinstance(v, (int, np.integer)) for v in (self.start, self.length))

    def __getitem__(self, item: Any) -> Any:
        """``r[k]`` (``0 <= k < len(r)``), or ``r[a:b]`` with ``a`` and ``b`` None or in
        ``0 .. len(r)`` (traced or not): what derivative code indexes ranges with."""
        if not isinstance(item, slice):
            return self.value(item)
        if item.step is not None:
            raise TypeError("a slice of a range with a step is not supported")
        a = 0 if item.start is None else item.start
        b = self.length if item.stop is None else item.stop
        if not any(_is_traced(v) for v in (a, b, self.length)):
            a, b = (max(0, min(int(v), int(self.length))) for v in (a, b))
            return Range(self.start + self.step * a, self.step, max(0, b - a))
        a, b = (jnp.clip(v, 0, self.length) for v in (a, b))
        return Range(self.start + self.step * a, self.step, jnp.maximum(b - a, 0))

    def traced(self) -> Range:
        """The same range with array bounds (its type then joins with traced ranges); a
        bound that is already a type (``jax.ShapeDtypeStruct``: a joined type) stays one."""
        start, length = (v if _is_sds(v) else jnp.asarray(v) for v in (self.start, self.length))
        return Range(start, self.step, length)

    def value(self, k: Any) -> Any:
        return self.start + self.step * k

    def tree_flatten(self):
        flags = tuple(not isinstance(v, (int, np.integer)) for v in (self.start, self.length))
        fields = (self.start, self.length)
        children = [v for v, f in zip(fields, flags) if f]
        static = [v for v, f in zip(fields, flags) if not f]
        return tuple(children), (self.step, flags, tuple(static))

    @classmethod
    def tree_unflatten(cls, aux, children):
        step, flags, static = aux
        children, static = list(children), list(static)
        start, length = (children.pop(0) if f else static.pop(0) for f in flags)
        return cls(start, step, length)

    def __eq__(self, other: object) -> bool:
        """Equal bounds known at trace time, or equal types (bounds that are Python ints or
        ``jax.ShapeDtypeStruct``s: the carry types of loops); traced bounds never compare."""
        if not isinstance(other, Range):
            return False
        fields = (self.start, self.step, self.length, other.start, other.length)
        if not all(isinstance(v, (int, np.integer)) or _is_sds(v) for v in fields):
            return False
        return (self.start, self.step, self.length) == (other.start, other.step, other.length)

    def __hash__(self) -> int:
        return hash((Range, self.step))

    def __repr__(self) -> str:
        return f"Range(start={self.start}, step={self.step}, length={self.length})"


def traced_range(*args: Any) -> Range:
    """``range(...)`` in generated JAX code: its bounds may be traced."""
    return Range.of(*args)


def reversed_range(r: Any) -> Range:
    """``reversed(r)`` for a range: the same values, last first."""
    r = _as_range(r)
    return Range(r.start + r.step * (r.length - 1), -r.step, r.length)


def _as_range(r: Any) -> Range:
    if isinstance(r, Range):
        return r
    if isinstance(r, range):
        return Range(r.start, r.step, len(r))
    raise TypeError(
        f"s2sgrad's JAX backend loops over ranges; got {type(r).__name__}. Iterate over "
        "range(len(...)) and index instead"
    )


# --------------------------------------------------------------------------- types
#
# The type of a value is the value with every array leaf replaced by its
# ShapeDtypeStruct (what ``jax.eval_shape`` returns); None stays None, meaning
# "not set yet": it joins with any type and becomes zeros of it. ``_UNSET`` is
# None's stand-in in the second trace that checks a loop body never tells None
# from a value (``_none_is_unread``); everything here treats the two alike.


class _Unset:
    """None, for a trace that must notice a body testing ``is None`` (a pytree without leaves)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()
jax.tree_util.register_pytree_node(_Unset, lambda u: ((), None), lambda aux, children: _UNSET)


def is_unset(x: Any) -> bool:
    """Whether ``x`` is "not set yet": None, or its stand-in ``_UNSET``."""
    return x is None or x is _UNSET


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _is_sds(x: Any) -> bool:
    return isinstance(x, jax.ShapeDtypeStruct)


def _type_of(value: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x: x if _is_sds(x) else jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)),
        value,
    )


def _children(x: Any):
    """One level of a pytree node: its children (None kept) and its node structure."""
    return jax.tree_util.tree_flatten(x, is_leaf=lambda y: y is not x)


def _join(a: Any, b: Any, what: str) -> Any:
    if is_unset(a):
        return b
    if is_unset(b):
        return a
    if _is_sds(a) and _is_sds(b):
        # A number may start what becomes an array (`s = 0.0`, then `s = s + x` in a loop),
        # and an array may gain axes of length 1 ((3,) and (1, 3)): broadcast. An array
        # broadcasting would copy may not: that would change what the code computes from it
        # on its path (a sum over it counting the copies; its cotangent).
        if a.shape and b.shape and math.prod(a.shape) != math.prod(b.shape):
            raise TypeError(
                f"{what}: a value of shape {a.shape} on one path has shape {b.shape} on "
                "another; the JAX backend needs one shape per variable (hint: give it its "
                "final shape before the loop or branch, e.g. np.broadcast_to(c, shape) * 1.0, "
                "or use backend='numpy')"
            )
        try:
            shape = jnp.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise TypeError(
                f"{what}: a value of shape {a.shape} on one path has shape {b.shape} on "
                "another; the JAX backend needs one shape per variable"
            ) from None
        return jax.ShapeDtypeStruct(shape, jnp.promote_types(a.dtype, b.dtype))
    if isinstance(a, Range) and isinstance(b, Range) and a.step == b.step:
        if a == b:
            return a
        return _type_of(a.traced())  # static on one path, other bounds on another
    ca, ta = _children(a)
    cb, tb = _children(b)
    if _is_sds(a) or _is_sds(b) or ta != tb:
        raise TypeError(
            f"{what}: a value is {_describe(a)} on one path and {_describe(b)} on another; "
            "the JAX backend needs one type per variable"
        )
    return ta.unflatten([_join(x, y, what) for x, y in zip(ca, cb)])


def _describe(t: Any) -> str:
    if _is_sds(t):
        return f"an array {t.dtype}{list(t.shape)}"
    return f"a {type(t).__name__}"


def _zeros(t: Any) -> Any:
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), t)


def _coerce(x: Any, t: Any) -> Any:
    """``x`` as a value of type ``t``: None becomes zeros, arrays are promoted and broadcast."""
    if is_unset(t):
        return t if is_unset(x) else x  # one "not set" for both paths of a lax.cond
    if is_unset(x):
        return _zeros(t)
    if _is_sds(t):
        x = jnp.asarray(x, dtype=t.dtype)
        return x if x.shape == t.shape else jnp.broadcast_to(x, t.shape)
    if isinstance(x, Range) and isinstance(t, Range) and x.static and not t.static:
        x = x.traced()
    cx, tx = _children(x)
    ct, tt = _children(t)
    if tx != tt:
        raise TypeError(f"a value is {_describe(x)} where {_describe(t)} was expected")
    return tx.unflatten([_coerce(a, b) for a, b in zip(cx, ct)])


@dataclass
class _Traced:
    """One trace of a branch or loop body (see ``_trace``)."""

    type: Any  # the type of its result
    raw: Any  # its result as the trace saw it: Python constants stay constants
    loops: bool  # a recorded loop inside it reports an overflow flag
    replay: Callable  # (*args) -> (result, overflow flag), without running its Python again
    jaxpr: Any  # the computation traced: two traces that took the same path print alike
    consts: Any  # the values of its constants (what the body reads from outside)


def _trace(fn: Callable, *arg_types: Any) -> _Traced:
    """Trace ``fn`` once at ``arg_types`` (types, or values standing for theirs).

    Combinators learn a body's types from the trace and hand its ``replay`` to
    ``lax``: traced twice instead, a body nested d deep would be traced 2**d times.
    """
    seen: list = []
    raw: list = []
    closed, shape = jax.make_jaxpr(
        _with_overflow(lambda *a: _noted(raw, fn(*a)), seen), return_shape=True
    )(*arg_types)
    tree = jax.tree_util.tree_structure(shape)
    avals = closed.in_avals

    def replay(*args: Any) -> tuple[Any, Any]:
        leaves = jax.tree_util.tree_leaves(args)
        leaves = [jnp.asarray(x, dtype=a.dtype) for x, a in zip(leaves, avals, strict=True)]
        out = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *leaves)
        return jax.tree_util.tree_unflatten(tree, out)

    return _Traced(shape[0], raw[0], bool(seen), replay, closed.jaxpr, closed.consts)


# --------------------------------------------------------------------------- if


def if_else(test: Any, then_branch: Callable, else_branch: Callable | None, *state: Any) -> tuple:
    """``if test: then_branch(*state) else: else_branch(*state)``, each returning the new state.

    A concrete test runs one branch in Python; a traced one lowers to ``lax.cond``.
    A missing ``else_branch`` keeps the state.
    """
    if else_branch is None:
        else_branch = _keep
    if not _is_traced(test):
        return tuple(then_branch(*state) if bool(test) else else_branch(*state))
    # Constants of the state (Python numbers, bools, None) are bound into the traces, not
    # passed through lax.cond: a branch that leaves one unchanged gives it back concrete.
    state = tuple(state)
    fixed = {i: v for i, v in enumerate(state) if is_unset(v) or _is_constant(v)}
    varying = tuple(v for i, v in enumerate(state) if i not in fixed)
    varying_type = _type_of(varying)

    def traced(branch: Callable) -> _Traced:
        return _trace(
            lambda s: tuple(_with_constants(branch, fixed, len(state), (), s)), varying_type
        )

    then_ = traced(then_branch)
    else_ = traced(else_branch)
    out = _join(then_.type, else_.type, "if")
    static = _path_constants(then_.raw, else_.raw)
    out = tuple(None if i in static else t for i, t in enumerate(out))

    def branch(replay):
        def run(s):
            values, overflow = replay(s)
            values = tuple(None if i in static else v for i, v in enumerate(values))
            return _coerce(values, out), overflow

        return run

    test = jnp.asarray(test)
    if test.shape != ():
        raise TypeError(f"an if test must be a scalar, got an array of shape {test.shape}")
    result, overflow = lax.cond(test, branch(then_.replay), branch(else_.replay), varying)
    if then_.loops or else_.loops:
        _report_overflow(overflow, "a loop inside an if")
    return tuple(static.get(i, v) for i, v in enumerate(result))


def _noted(into: list, values: Any) -> Any:
    into.append(values)
    return values


def _path_constants(then_values: tuple, else_values: tuple) -> dict[int, Any]:
    """State entries that stay concrete through a traced ``if``: a Python number or bool
    that one path sets while the other sets the same or leaves it unset (None).

    Passing them through ``lax.cond`` would make them traced, and a later ``if`` on
    such a value (``cond_1 = -0.1 > 0.05`` on one path) would be lowered to a traced
    ``lax.cond`` in the backward sweep, tracing a branch whose saves the forward sweep
    never made (None). Kept concrete, that ``if`` runs in Python on both sweeps.
    """

    static = {}
    for i, (a, b) in enumerate(zip(then_values, else_values)):
        values = [v for v in (a, b) if not is_unset(v)]
        if values and all(_same_constant(v, values[0]) for v in values):
            static[i] = values[0]
    return static


def _is_constant(v: Any) -> bool:
    """A Python number or bool (not traced): known at trace time."""
    return isinstance(v, (bool, int, float)) and not isinstance(v, jax.core.Tracer)


def _keep(*state: Any) -> tuple:
    return state


# --------------------------------------------------------------------------- tapes


@jax.tree_util.register_pytree_node_class
class Tape:
    """A loop's per-iteration saves: ``stacked`` has the structure of one iteration's
    saves, each array with a leading iteration axis, except the leaves ``invariant``
    flags (in the order of ``stacked``'s leaves): values that depend on nothing the loop
    changes, held once (``_hoisted``). Tapes of inner loops nest."""

    def __init__(self, stacked: Any, invariant: tuple[bool, ...] | None = None):
        self.stacked = stacked
        self.invariant = invariant

    def _leaves(self) -> tuple[list, Any, tuple[bool, ...]]:
        leaves, tree = jax.tree_util.tree_flatten(self.stacked)
        return leaves, tree, self.invariant or (False,) * len(leaves)

    def at(self, k: Any) -> Any:
        """The saves of iteration ``k`` (a traced or static index), constants still held
        as ``_Static`` (what a backward step is traced with: ``_replay`` reveals them)."""
        leaves, tree, invariant = self._leaves()
        return tree.unflatten(
            [
                a if held else lax.dynamic_index_in_dim(a, k, axis=0, keepdims=False)
                for a, held in zip(leaves, invariant)
            ]
        )

    def row_type(self) -> Any:
        """The type of ``at(k)``."""
        leaves, tree, invariant = self._leaves()
        return tree.unflatten(
            [
                jax.ShapeDtypeStruct(a.shape if held else a.shape[1:], a.dtype)
                for a, held in zip(leaves, invariant)
            ]
        )

    def length(self) -> int | None:
        leaves, _, invariant = self._leaves()
        rows = [a.shape[0] for a, held in zip(leaves, invariant) if not held]
        return rows[0] if rows else None

    def tree_flatten(self):
        return (self.stacked,), self.invariant

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(children[0], aux)


@jax.tree_util.register_pytree_node_class
class _Static:
    """A save that is a Python number, bool or slice of such bounds, or one inside a saved
    structure (a callee's residuals: its ``b = x.shape[0]``, second-order code's
    ``np.s_[b:t5]``): the same on every iteration (the body is traced once), so it is
    kept in the tape's structure rather than stacked, and the backward sweep sees it
    concrete: a test on it stays a Python ``if``, and ``gates[:b]`` slices by a Python
    integer."""

    def __init__(self, value: Any):
        self.value = value

    def tree_flatten(self):
        v = self.value  # (a slice as its bounds: slices are not hashable before 3.12)
        return (), (type(v), (v.start, v.stop, v.step) if isinstance(v, slice) else v)

    @classmethod
    def tree_unflatten(cls, aux, children):
        kind, value = aux
        return cls(slice(*value) if kind is slice else value)


def _is_static(v: Any) -> bool:
    """A number, bool, or slice whose bounds are numbers or None: known at trace time."""
    if isinstance(v, slice):
        return all(b is None or _is_constant(b) for b in (v.start, v.stop, v.step))
    return _is_constant(v)


def _hide_constants(save: Any) -> Any:
    """``save`` with each static leaf (``_is_static``) held as a ``_Static``."""
    return jax.tree_util.tree_map(lambda v: _Static(v) if _is_static(v) else v, save)


def _reveal(save: Any) -> Any:
    """``save`` with its ``_Static`` constants back (those of tapes inside it stay
    hidden: the loops that replay those tapes reveal them)."""
    return jax.tree_util.tree_map(
        lambda v: v.value if isinstance(v, _Static) else v,
        save,
        is_leaf=lambda v: isinstance(v, (_Static, Tape)),
    )


def _stacked_type(t: Any, n: int) -> Any:
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct((n, *s.shape), s.dtype), t)


@dataclass
class _Step:
    """A loop body at the fixed point of its carry type (see ``_infer_carry``)."""

    carry_type: tuple  # of the carried values that are not constants
    constant_carry: dict  # position -> the Python number, bool or None carried unchanged
    saves_type: tuple  # of what is stacked: Python numbers and bools held as ``_Static``,
    # None for the hoisted leaves
    loops: bool  # a recorded loop inside the body reports an overflow flag
    run: Callable  # (extra, carry) -> ((carry, saves), overflow flag), coerced to the types
    saves_tree: tuple  # per save, its structure with every leaf (hoisted ones too)
    hoisted: tuple  # per save, {leaf position: its value, computed before the loop}

    def varying(self, carry: tuple) -> tuple:
        """The carried values that are not constants (what ``lax`` carries)."""
        return tuple(v for i, v in enumerate(carry) if i not in self.constant_carry)

    def whole(self, varying: tuple) -> tuple:
        """The whole carry: ``varying`` with the constants put back."""
        return _merged(varying, self.constant_carry, len(varying) + len(self.constant_carry))

    def tapes(self, stacked: tuple) -> tuple:
        """One tape per save: its stacked rows, and its hoisted leaves as they are."""
        tapes = []
        for rows, tree, hoisted in zip(stacked, self.saves_tree, self.hoisted):
            if not hoisted:
                tapes.append(Tape(rows))
                continue
            rest = iter(jax.tree_util.tree_leaves(rows))
            leaves = [hoisted[j] if j in hoisted else next(rest) for j in range(tree.num_leaves)]
            flags = tuple(j in hoisted for j in range(tree.num_leaves))
            tapes.append(Tape(tree.unflatten(leaves), flags))
        return tuple(tapes)


def _merged(varying: tuple, constants: dict, n: int) -> tuple:
    rest = iter(varying)
    return tuple(constants[i] if i in constants else next(rest) for i in range(n))


def _with_constants(step: Callable, constants: dict, n: int, extra: tuple, varying: tuple):
    """``step`` on the whole carry: ``varying`` with ``constants`` put back."""
    return step(*extra, *_merged(varying, constants, n))


def _same_constant(a: Any, b: Any) -> bool:
    return (is_unset(a) and is_unset(b)) or (
        _is_constant(a) and _is_constant(b) and type(a) is type(b) and a == b
    )


_CHECKING_NONE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "s2sgrad_jax_checking_none", default=False
)


def _same_path(a: _Traced, b: _Traced) -> bool:
    """Whether two traces of one body computed the same thing: the same jaxpr, and the
    same Python results, "not set" (None or ``_UNSET``) in the same places."""
    leaves_a, tree_a = jax.tree_util.tree_flatten(a.raw, is_leaf=is_unset)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b.raw, is_leaf=is_unset)
    if str(tree_a).replace("<unset>", "None") != str(tree_b).replace("<unset>", "None"):
        return False
    for x, y in zip(leaves_a, leaves_b, strict=True):
        if is_unset(x) != is_unset(y):
            return False
        if (_is_constant(x) or _is_constant(y)) and not _same_constant(x, y):
            return False
    return str(a.jaxpr) == str(b.jaxpr)


def _none_is_unread(traced: _Traced, retrace: Callable, fixed: dict, positions: list) -> bool:
    """Whether the body, traced as ``traced`` with None bound at ``positions``, computes the
    same with ``_UNSET`` there instead: whether it only passes those Nones along (saves,
    adjoints not yet accumulated into) and never tells None from a value."""
    token = _CHECKING_NONE.set(True)  # loops inside are checked by this trace as a whole
    try:
        again = retrace({**fixed, **dict.fromkeys(positions, _UNSET)})
    except Exception:  # the body acts on None only because it is None
        return False
    finally:
        _CHECKING_NONE.reset(token)
    return _same_path(traced, again)


def _check_none_unread(
    traced: _Traced, retrace: Callable, fixed: dict, what: str, names: tuple | None
) -> None:
    """Raise ``NoneLoopState`` if the loop's body tells a None in its state from a value.

    The body is traced once with None for "not set" and the carry then becomes zeros of
    its type (or a constant): right only if no iteration can tell. A user's ``prev =
    None`` before ``for ...: if prev is None: ...`` can; generated saves and adjoints
    cannot. ``retrace(fixed)`` traces the body with ``fixed`` bound.
    """
    nones = [i for i, v in fixed.items() if v is None]
    if not nones or _CHECKING_NONE.get() or _none_is_unread(traced, retrace, fixed, nones):
        return
    told = [i for i in nones if not _none_is_unread(traced, retrace, fixed, [i])]
    raise NoneLoopState(what, tuple(names[i] for i in told or nones))


def _carried_names(fn: Callable, skip: int, n: int) -> tuple[str, ...]:
    """The names of a generated body's carried variables: its parameters after ``skip``."""
    try:
        names = tuple(inspect.signature(fn).parameters)[skip:]
    except (TypeError, ValueError):
        names = ()
    return names if len(names) == n else tuple(f"loop variable {i + 1}" for i in range(n))


def _next_round(
    traced: _Traced,
    fixed: dict,
    constant: dict,
    carry_type: list,
    names: tuple | None,
    what: str,
) -> bool:
    """Update ``constant`` and ``carry_type`` (in place) from one trace of a loop body
    run with ``fixed`` bound; whether they have settled. See ``_infer_carry``."""
    checked = names is not None

    def of(i: int) -> str:  # (what a type error names)
        return f"{what}, variable {names[i]!r}" if checked and i < len(names) else what

    new_raw = tuple(traced.raw[0])
    new_type = tuple(traced.type[0])
    settled = True
    for i, value in fixed.items():
        out = new_raw[i]
        if _same_constant(out, value):
            continue
        settled = False
        if is_unset(value) and _is_constant(out) and (checked or not out):
            constant[i] = out  # "not set", never read as such: that constant
            carry_type[i] = _type_of(out)
            continue
        del constant[i]  # varies: carried, typed by what it is before and after
        carry_type[i] = _join(_type_of(value), new_type[i], of(i))
    for i in range(len(carry_type)):
        if i not in fixed and i not in constant:
            joined = _join(carry_type[i], new_type[i], of(i))
            if joined != carry_type[i]:
                carry_type[i] = joined
                settled = False
    return settled


def _infer_carry(
    step: Callable, carry: tuple, extra: tuple, what: str, names: tuple | None = None
) -> _Step:
    """The carry type at a fixed point of ``step`` (None -> zeros, broadcast, promote),
    with the step's trace at that type.

    Path constants stay concrete, as in ``if_else``: a carried Python number or bool
    (or None, "not set") that the body gives back unchanged is bound into the trace
    instead of carried, and a save that is a Python number or bool in the trace, the
    same on every iteration, stays out of the tape. A test on such a value is then a
    Python ``if`` in both sweeps, never a ``lax.cond`` tracing a branch whose saves the
    forward sweep never made.

    A None ("not set") the body turns into an array is zeros of its type, and one it
    turns into a Python constant (``cond_1 = 0.83 > 0.3``) is that constant from the
    start. Both are right only if no iteration tells None from a value, which the
    first trace checks when ``names`` (the carried variables, for the error) are given:
    where it does, ``NoneLoopState``. Backward loops are not checked: their Nones are
    adjoints, which generated code tests (``drow is not None``) only to skip adding
    zeros, and saves; there only a falsy constant (False, 0, 0.0) is taken from the
    start, as None would become zeros of its type.
    """
    carry = tuple(carry)
    n = len(carry)
    constant = {i: v for i, v in enumerate(carry) if is_unset(v) or _is_constant(v)}

    def _saving_constants(*args: Any) -> tuple:
        new, saved = step(*args)
        return new, _hide_constants(tuple(saved))

    carry_type = list(_type_of(carry))
    for round_ in range(16):
        fixed = dict(constant)
        varying_type = tuple(t for i, t in enumerate(carry_type) if i not in fixed)

        def retrace(fixed: dict, varying_type: tuple = varying_type) -> _Traced:
            return _trace(
                functools.partial(_with_constants, _saving_constants, fixed, n),
                extra,
                varying_type,
            )

        traced = retrace(fixed)
        if round_ == 0 and names is not None:
            _check_none_unread(traced, retrace, fixed, what, names)
        if _next_round(traced, fixed, constant, carry_type, names, what):
            break
    else:
        raise TypeError(f"{what}: the types of the loop state do not settle")
    varying_type = tuple(t for i, t in enumerate(carry_type) if i not in constant)
    saves_tree = tuple(jax.tree_util.tree_structure(t) for t in traced.type[1])
    hoisted = _hoisted(traced, saves_tree)
    saves_type = _without_hoisted(traced.type[1], saves_tree, hoisted)

    def run(e: tuple, c: tuple) -> tuple:
        (new, saved), overflow = traced.replay(e, c)
        new = tuple(v for i, v in enumerate(new) if i not in constant)
        saved = _without_hoisted(saved, saves_tree, hoisted)
        return (_coerce(new, varying_type), _coerce(saved, saves_type)), overflow

    return _Step(varying_type, dict(constant), saves_type, traced.loops, run, saves_tree, hoisted)


def _without_hoisted(saves: tuple, trees: tuple, hoisted: tuple) -> tuple:
    """``saves`` with None for their hoisted leaves (what the loop stacks)."""
    return tuple(
        (
            tree.unflatten(
                [None if j in held else v for j, v in enumerate(jax.tree_util.tree_leaves(save))]
            )
            if held
            else save
        )
        for save, tree, held in zip(saves, trees, hoisted)
    )


def _hoisted(traced: _Traced, saves_tree: tuple) -> tuple:
    """Per save, the leaves that depend on nothing the loop changes (neither the
    iteration's index nor the carry: a parameter the callee's residuals hand back, an
    item of one, the rows of one an inner loop saved), computed once before the loop:
    ``{leaf position: value}``. Stacked, each would be copied into every iteration's
    row, as ``jax.grad`` of a scan does not (its partial evaluation keeps loop-invariant
    residuals out of the scan too).

    From the body's jaxpr (``_varying``). The invariant leaves are evaluated before the
    loop by the equations they need, on the body's constants; an inner ``scan`` among
    them gets zeros for its varying operands, which its invariant results do not read
    (a loop that they do not need is not run)."""
    jaxpr = traced.jaxpr
    none: tuple = tuple({} for _ in saves_tree)
    if jaxpr.effects:
        return none
    varying = _varying(jaxpr, set(jaxpr.invars))
    n_carried = len(jax.tree_util.tree_leaves(traced.type[0]))
    outs = jaxpr.outvars[n_carried : n_carried + sum(t.num_leaves for t in saves_tree)]
    held = {k: v for k, v in enumerate(outs) if not (_is_var(v) and v in varying)}
    if not held:
        return none
    needed = {v for v in held.values() if _is_var(v)}
    zeroed: dict = {}  # varying operands of the scans needed: zeros stand for them
    eqns = []
    for eqn in reversed(jaxpr.eqns):
        if any(v in needed for v in eqn.outvars):
            eqns.append(eqn)
            for v in eqn.invars:
                if _is_var(v) and v in varying:
                    zeroed[v] = None
                elif _is_var(v):
                    needed.add(v)
    zeroed_vars = [v for v in zeroed if v not in needed]
    info = jaxpr.debug_info  # (the pruned jaxpr's names: blank, it has other arguments)
    if info is not None:
        info = info._replace(arg_names=("",) * len(zeroed_vars), result_paths=("",) * len(held))
    pruned = jax.extend.core.Jaxpr(
        jaxpr.constvars, zeroed_vars, list(held.values()), eqns[::-1], debug_info=info
    )
    zeros = [jnp.zeros(v.aval.shape, v.aval.dtype) for v in zeroed_vars]
    values = dict(zip(held, jax.core.eval_jaxpr(pruned, traced.consts, *zeros)))
    out, first = [], 0
    for tree in saves_tree:
        out.append(
            {k - first: values[k] for k in range(first, first + tree.num_leaves) if k in values}
        )
        first += tree.num_leaves
    return tuple(out)


def _varying(jaxpr: Any, varying_in: set) -> set:
    """The variables of ``jaxpr`` that depend on ``varying_in``: an equation's results
    vary if one of its operands does (or it has effects), except a ``scan``'s, whose
    body says which of its results read its varying operands (the rows an inner loop
    saves of a parameter vary with the inner index only)."""
    varying = set(varying_in)
    for eqn in jaxpr.eqns:
        operands = [_is_var(v) and v in varying for v in eqn.invars]
        if not eqn.effects and not any(operands):
            continue
        if eqn.primitive.name == "scan" and not eqn.effects and not _runs_a_while(eqn):
            results = _scan_varying(eqn, operands)
        else:
            results = [True] * len(eqn.outvars)
        varying.update(v for v, flag in zip(eqn.outvars, results) if flag)
    return varying


def _runs_a_while(eqn: Any) -> bool:
    """Whether ``eqn`` runs a ``while`` loop, at any depth. ``_hoisted`` runs a scan whose
    invariant results it needs on zeros for its varying operands: a while loop inside
    could then run forever (``while s < 5: s = s * 2`` from 0), so such a scan's results
    all count as varying."""
    if eqn.primitive.name == "while":
        return True
    for param in eqn.params.values():
        inner = getattr(param, "jaxpr", param)  # a ClosedJaxpr's, or a Jaxpr
        if isinstance(inner, jax.extend.core.Jaxpr) and any(map(_runs_a_while, inner.eqns)):
            return True
    return False


def _scan_varying(eqn: Any, operands: list[bool]) -> list[bool]:
    """Which results of a ``scan`` equation vary, given which operands do (constants,
    initial carry, sliced inputs): a carry that varies on entry or becomes so varies,
    to a fixed point; a stacked output varies if the body's does."""
    body = eqn.params["jaxpr"].jaxpr
    n_consts, n_carry = eqn.params["num_consts"], eqn.params["num_carry"]
    carry = operands[n_consts : n_consts + n_carry]
    while True:
        flags = operands[:n_consts] + carry + operands[n_consts + n_carry :]
        inside = _varying(body, {v for v, flag in zip(body.invars, flags) if flag})
        results = [_is_var(v) and v in inside for v in body.outvars]
        settled = [a or b for a, b in zip(carry, results[:n_carry])]
        if settled == carry:
            return carry + results[n_carry:]
        carry = settled


def _is_var(v: Any) -> bool:
    return not isinstance(v, jax.extend.core.Literal)


# --------------------------------------------------------------------------- for


def for_loop(iterable: Any, body: Callable, *carry: Any) -> tuple:
    """``for i in iterable: carry = body(i, *carry)``, rolled (``lax.scan`` / ``while_loop``)."""
    names = _carried_names(body, 1, len(carry))
    carry_out, _ = _for(iterable, lambda i, *c: (tuple(body(i, *c)), ()), carry, names)
    return carry_out


def for_loop_recording(iterable: Any, body: Callable, *carry: Any) -> tuple[tuple, tuple]:
    """Like ``for_loop``, for a body that returns ``(carry, saves)``: also returns the saves,
    one ``Tape`` per saved value, for the backward sweep (``replay``)."""
    return _for(iterable, body, carry, _carried_names(body, 1, len(carry)))


_INDEX = jax.ShapeDtypeStruct((), jnp.result_type(int))

#: Static loops of at most this many iterations are unrolled within their ``lax.scan``:
#: an XLA loop costs some microseconds per iteration on a CPU, more than a short body
#: (the LSTM's loop over its two layers, run once per time step), and so few copies of
#: the body add little to the compile time.
SHORT_LOOP = 8


def _unroll(length: Any) -> bool | int:
    return True if int(length) <= SHORT_LOOP else 1


def _for(iterable: Any, step: Callable, carry: tuple, names: tuple, what: str = "for loop"):
    r = _as_range(iterable)
    body = _infer_carry(step, carry, (_INDEX,), what, names)

    def scan_step(state, i):
        c, overflowed = state
        (c, saved), overflow = body.run((i,), c)
        return (c, overflowed | overflow), saved

    carry = _coerce(body.varying(tuple(carry)), body.carry_type)
    if r.static:
        values = r.start + r.step * jnp.arange(int(r.length), dtype=_INDEX.dtype)
        (carry, inner), stacked = lax.scan(
            scan_step, (carry, jnp.asarray(False)), values, unroll=_unroll(r.length)
        )
    else:
        (carry, inner), stacked, overflow = _bounded_loop(
            lambda k, c: jnp.asarray(True),
            lambda k, state: scan_step(state, r.value(k)),
            (carry, jnp.asarray(False)),
            body.saves_type,
            r.length,
        )
        if jax.tree_util.tree_leaves(body.saves_type):
            _report_overflow(overflow, f"a {what} over a range of traced length")
    if body.loops:
        _report_overflow(inner, f"a loop inside a {what}")
    return body.whole(tuple(carry)), body.tapes(stacked)


def _bounded_loop(keep_going, run, carry, saves_type, limit: Any):
    """``while k < limit and keep_going(k, carry)``, saves written to buffers of ``max_steps``
    rows. Returns the final carry, the buffers and whether the loop wanted to go on past
    the bound. Without saves there is no buffer and no bound."""
    recorded = bool(jax.tree_util.tree_leaves(saves_type))
    bound = _max_steps()
    buffers = _zeros(_stacked_type(saves_type, bound if recorded else 0))

    def go_on(k, c):
        go = jnp.asarray(keep_going(k, c), dtype=bool)
        return go & (k < limit) if limit is not None else go

    def test(state):
        k, c, _ = state
        return go_on(k, c) & (k < bound) if recorded else go_on(k, c)

    def body(state):
        k, c, bufs = state
        c, saved = run(k, c)
        if recorded:
            bufs = jax.tree_util.tree_map(
                lambda b, s: lax.dynamic_update_index_in_dim(b, s, k, axis=0), bufs, saved
            )
        return k + 1, c, bufs

    k0 = jnp.asarray(0, dtype=_INDEX.dtype)
    k, carry, buffers = lax.while_loop(test, body, (k0, carry, buffers))
    overflow = (k >= bound) & go_on(k, carry) if recorded else jnp.asarray(False)
    return carry, buffers, overflow


# --------------------------------------------------------------------------- while


def while_loop(test: Callable, body: Callable, *state: Any, stop: int | None = None) -> tuple:
    """``while test(*state) [and not state[stop]]: state = body(*state)`` as ``lax.while_loop``."""
    names = _carried_names(body, 0, len(state))
    state_out, _ = _while(test, lambda *s: (tuple(body(*s)), ()), state, stop, names)
    return state_out


def while_recording(
    test: Callable, body: Callable, *state: Any, stop: int | None = None
) -> tuple[tuple, tuple]:
    """Like ``while_loop`` for a body returning ``(state, saves)``: also returns the saves
    (one ``Tape`` each), recorded into buffers of ``max_steps`` rows."""
    return _while(test, body, state, stop, _carried_names(body, 0, len(state)))


def _while(test: Callable, step: Callable, state: tuple, stop: int | None, names: tuple):
    body = _infer_carry(step, state, (), "while loop", names)

    def keep_going(k, both):
        s = body.whole(tuple(both[0]))
        go = jnp.asarray(test(*s), dtype=bool)
        if stop is not None:
            go = go & ~jnp.asarray(s[stop], dtype=bool)
        return go

    def loop_step(k, both):
        s, overflowed = both
        (s, saved), overflow = body.run((), s)
        return (s, overflowed | overflow), saved

    start = (_coerce(body.varying(tuple(state)), body.carry_type), jnp.asarray(False))
    (state, inner), buffers, overflow = _bounded_loop(
        keep_going, loop_step, start, body.saves_type, None
    )
    if jax.tree_util.tree_leaves(body.saves_type):
        _report_overflow(overflow, "a while loop")
    if body.loops:
        _report_overflow(inner, "a loop inside a while loop")
    return body.whole(tuple(state)), body.tapes(buffers)


# --------------------------------------------------------------------------- backward loops


def replay(iterable: Any, body: Callable, tapes: tuple, *carry: Any) -> tuple:
    """The backward sweep of a recorded loop: ``len(iterable)`` iterations, the k-th
    running ``body(iterable[k], *saves, *carry)`` on the saves recorded last-in first-out."""
    carry, _ = _replay(iterable, lambda i, *a: (tuple(body(i, *a)), ()), tapes, carry)
    return carry


def replay_recording(iterable: Any, body: Callable, tapes: tuple, *carry: Any) -> tuple:
    """Like ``replay``, for a body that returns ``(carry, saves)``: a backward loop of
    derivative code that reverse mode differentiates again (higher order) replays the
    first-order saves and records its own. Returns the carry and one tape per save, in
    the order the iterations ran (as ``for_loop_recording``'s)."""
    return _replay(iterable, body, tapes, carry)


def _replay(iterable: Any, body: Callable, tapes: tuple, carry: tuple) -> tuple[tuple, tuple]:
    r = _as_range(iterable)
    for t in tapes:
        if not isinstance(t, Tape):
            raise TypeError(f"replay expects the tapes of a recorded loop, got {type(t).__name__}")
    slices = tuple(t.row_type() for t in tapes)

    step = _infer_carry(
        lambda i, saved, *c: body(i, *_reveal(saved), *c),
        carry,
        (_INDEX, slices),
        "loop",
    )

    def run(i, saved, state):
        c, overflowed = state
        (c, recorded), overflow = step.run((i, saved), c)
        return (c, overflowed | overflow), recorded

    m = r.length
    state = (_coerce(step.varying(tuple(carry)), step.carry_type), jnp.asarray(False))
    lengths = {t.length() for t in tapes} - {None}
    if lengths == {0}:
        # The forward loop recorded no iteration (`range(1, len(y))` of a 1-row y), so
        # none runs back, whatever `m` is; indexing the empty tapes would not even trace.
        return step.whole(tuple(state[0])), step.tapes(_zeros(_stacked_type(step.saves_type, 0)))
    if not _is_traced(m) and lengths <= {int(m)}:
        rows = jnp.arange(int(m), dtype=_INDEX.dtype)
        values = r.start + r.step * rows[::-1]
        state, recorded = lax.scan(
            lambda s, xs: run(xs[0], tuple(t.at(xs[1]) for t in tapes), s),
            state,
            (values, rows),
            reverse=True,
            unroll=_unroll(m),
        )
        # A reverse scan stacks its outputs by input position: the last iteration first.
        recorded = jax.tree_util.tree_map(lambda a: a[::-1], recorded)
    else:
        state, recorded, overflow = _bounded_loop(
            lambda k, s: jnp.asarray(True),
            lambda k, s: run(r.value(k), tuple(t.at(m - 1 - k) for t in tapes), s),
            state,
            step.saves_type,
            m,
        )
        if jax.tree_util.tree_leaves(step.saves_type):
            _report_overflow(overflow, "a backward loop that records")
    carry, inner = state
    if step.loops:
        _report_overflow(inner, "a loop inside a backward loop")
    return step.whole(tuple(carry)), step.tapes(recorded)
