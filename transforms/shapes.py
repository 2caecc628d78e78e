"""Symbolic shapes: which values provably have the same shape.

Rules must be correct for any broadcasting, so their templates wrap adjoints in
``unbroadcast(g, x)`` and tangents in ``broadcast_like(t, ans)``. Most of the
time the shapes already match, and the wrapper is noise in the generated code
(and a call on the hot path). This analysis proves enough equalities to drop
most of them.

A shape is a frozenset of *symbols*, read as "the broadcast of these shapes";
the empty set is a scalar. Broadcasting is associative, commutative and
idempotent, so the shape of ``x * y + x`` is ``{X, Y}``, the same as
``x * y``'s. Symbols are the shapes of inputs and, for shape-only operations
(``x @ W``, ``np.sum(x, axis=0)``, ``x[1:]``), a key built from the operation
and its operands' shapes (hash-consing): ``x @ dW`` and ``x @ W`` get the same
symbol when ``dW`` and ``W`` have the same shape. Anything else gets a fresh
symbol, equal only to itself, so the analysis never claims an equality it has
not proved.
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

import immutables
import numpy as np
from s2sgrad.transforms import dataflow
from s2sgrad.transforms.prims import is_runtime_function

from s2sgrad import ir

Shape = frozenset
SCALAR: Shape = frozenset()

_ELEMENTWISE_OPERATORS = ir.ARITHMETIC_OPERATORS | {
    operator.eq,
    operator.ne,
    operator.lt,
    operator.le,
    operator.gt,
    operator.ge,
}
_ELEMENTWISE_FUNCTIONS = {np.where, np.clip}
_SCALAR_QUERIES = {np.ndim, np.size, len}
# Operators that give an integer for integers (``i + 1``, ``n // 2``).
_INTEGER_ARITHMETIC = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.floordiv,
    operator.mod,
    operator.neg,
}
# Reductions: of a whole array (one argument), a scalar; along axes, one shape for one
# input shape and the same keywords, whichever reduction it is (``np.max(z, axis=1,
# keepdims=True)`` and ``np.sum`` of its like).
_REDUCTIONS = {np.sum, np.mean, np.prod, np.max, np.min, np.amax, np.amin}
_MATRIX_PRODUCTS = {operator.matmul, np.matmul}
# Runtime helpers whose result has the shape of one of their arguments.
_SHAPE_OF_ARGUMENT = {
    "unbroadcast": 1,
    "broadcast_like": 1,
    "unreduce": 1,
    "unindex": 1,
    "matmul_adjoint_lhs": 1,
    "matmul_adjoint_rhs": 2,
    "dot_adjoint_lhs": 1,
    "dot_adjoint_rhs": 2,
    "power_slope_exponent": 0,
}
_SAME_AS_FIRST = {np.zeros_like, np.ones_like, np.copy, np.negative, np.positive}
# Operations whose output shape depends only on the shapes of these positional array
# arguments (and on the other arguments' values, which go into the key as written).
_SHAPE_ONLY: dict[Any, tuple[int, ...]] = {
    operator.matmul: (0, 1),
    np.matmul: (0, 1),
    np.dot: (0, 1),
    np.outer: (0, 1),
    np.transpose: (0,),
    np.reshape: (0,),
    np.expand_dims: (0,),
    np.squeeze: (0,),
    np.ravel: (0,),
    np.sum: (0,),
    np.mean: (0,),
    np.prod: (0,),
    np.max: (0,),
    np.min: (0,),
    np.amax: (0,),
    np.amin: (0,),
}


class ShapeEnv:
    """Walks straight-line IR, tracking each name's symbolic shape.

    ``scalars`` are names known to hold Python or 0-d scalars (parameters the
    caller passed as numbers), whose shape is the empty broadcast. ``ranks`` gives,
    for parameters the caller passed as arrays (a parameter's name) or as a dict of
    arrays (``(name, key)``), ``(ndim, full)``: the number of axes, and whether none
    has length 1. Ranks follow the operations (``profile``): one integer indexes an
    element of a 1-D array, a scalar (``x[i]`` in an element loop), and a broadcast
    that includes a full array of the largest rank has that array's shape, which
    proves ``unbroadcast`` calls to be no-ops or sums over leading axes.
    ``integers`` are the names known to hold integers (a counted loop's target,
    ``i + 1``, ``len(x)``), which is what makes such an index.

    Its maps are persistent (``immutables.Map``): a copy costs nothing whatever
    the number of names, so keeping the environment before every statement of a
    long function stays linear.
    """

    def __init__(self, same_shape: dict[str, str] | None = None, scalars=frozenset(), ranks=None):
        self.same_shape = same_shape or {}
        self.scalars = frozenset(scalars)
        self.ranks: dict = dict(ranks or {})  # parameter (or (parameter, key)) -> (ndim, full)
        self.shapes: immutables.Map = immutables.Map()  # name -> Shape
        self.shape_tuples: frozenset[str] = frozenset()  # names holding np.shape(...) results
        self.ranges: frozenset[str] = frozenset()  # names holding range(...) objects
        self.integers: frozenset[str] = frozenset()  # names holding integers
        # name -> the shapes of the tuple it holds, where known (`out = (a, b)`, a callee's
        # tuple result), so that `a, b = out` keeps them
        self.parts: immutables.Map = immutables.Map()
        self._fresh = itertools.count()
        # symbol -> (ndim, full) or None: facts about a symbol, true wherever it appears
        # (shared by copies, as the symbols are).
        self._profiles: dict = {}

    def fresh(self) -> Shape:
        return frozenset({("fresh", next(self._fresh))})

    def set(self, name: str, shape: Shape) -> None:
        """``name`` now has ``shape`` and holds no shape tuple, range or integer (until
        ``assign`` says)."""
        self.shapes = self.shapes.set(name, shape)
        if name in self.parts:
            self.parts = self.parts.delete(name)
        if name in self.shape_tuples:
            self.shape_tuples -= {name}
        if name in self.ranges:
            self.ranges -= {name}
        if name in self.integers:
            self.integers -= {name}

    def fresh_profiled(self, profile: tuple[int, bool]) -> Shape:
        """A fresh shape whose rank (and fullness) is known: a callee's result."""
        shape = self.fresh()
        self._profiles[next(iter(shape))] = profile
        return shape

    def argument_ranks(self, args) -> tuple:
        """``(position, ndim, full)`` of the arguments of a call whose ranks are known, and
        the positions of those known to be scalars: what a callee's compilation reads."""
        ranks, scalars = [], []
        for i, a in enumerate(args):
            shape = self.of(a)
            p = self.profile(shape)
            if shape == SCALAR:
                scalars.append(i)
            elif p is not None and p[0] >= 1:
                ranks.append((i, *p))
        return tuple(ranks), tuple(scalars)

    def forget(self, name: str) -> None:
        """``name`` now has a shape known to nothing else."""
        self.set(name, self.fresh())

    def copy(self) -> ShapeEnv:
        """An environment that starts where this one is; fresh symbols stay globally unique."""
        other = ShapeEnv(self.same_shape, self.scalars)
        other.ranks = self.ranks
        other.shapes = self.shapes
        other.shape_tuples = self.shape_tuples
        other.ranges = self.ranges
        other.integers = self.integers
        other.parts = self.parts
        other._fresh = self._fresh
        other._profiles = self._profiles
        return other

    def witness(self, shape: Shape, candidates) -> str | None:
        """A name among ``candidates`` (in order) known to have ``shape``."""
        for name in candidates:
            if self.shapes.get(name) == shape and name not in self.shape_tuples:
                return name
        return None

    def of(self, atom: Any) -> Shape:
        if isinstance(atom, ir.Name):
            if atom.id in self.shapes:
                return self.shapes[atom.id]
            return self._default(atom.id)
        if isinstance(atom, ir.Const):
            if isinstance(atom.value, (int, float, bool, complex)):
                return SCALAR
            return self.fresh()
        if isinstance(atom, ir.Ref) and isinstance(atom.value, (int, float, bool, complex)):
            return SCALAR
        return self.fresh()

    def _default(self, name: str) -> Shape:
        shape = SCALAR if name in self.scalars else frozenset({("input", name)})
        self.shapes = self.shapes.set(name, shape)
        return shape

    def value_shape(self, value: Any) -> Shape:
        if not isinstance(value, ir.Call):
            return self.of(value)
        fn = value.fn.value if isinstance(value.fn, ir.Ref) else None
        args = value.args
        if fn in _ELEMENTWISE_OPERATORS or fn in _ELEMENTWISE_FUNCTIONS or _elementwise_ufunc(fn):
            if value.kwargs:
                return self.fresh()
            if not args:
                return self.fresh()
            return self.canonical(frozenset().union(*(self.of(a) for a in args)))
        if fn in _SCALAR_QUERIES:
            return SCALAR
        if fn is np.stack and _stacked(value):
            parts = {self.of(a) for a in args[0].elts}
            if len(parts) == 1:
                # np.stack([a, b]) of one shape: that shape with a leading axis of len(...)
                return frozenset({("stack", len(args[0].elts), parts.pop())})
        if fn is np.concatenate and _stacked(value):
            joined = self._joined_profile(args[0].elts)
            if joined is not None:
                return self.fresh_profiled(joined)
        if fn is operator.getitem and isinstance(args[0], ir.Name):
            if args[0].id in self.shape_tuples:
                return SCALAR
            if self.is_integer_index(args[1]):
                base = self.of(args[0])
                profile = self.profile(base)  # (known for arrays only: not a ragged list's)
                if profile is not None and profile[0] == 1:
                    return SCALAR  # an element of a 1-D array
                if profile is not None and profile[0] > 1:
                    return frozenset({("row", base)})  # x[i], x[j]: x's shape less one axis
            trim = _leading_trim(args[1])
            if trim is not None:
                return frozenset({("trim", self.of(args[0]), trim)})
            return frozenset({("getitem", self.of(args[0]), args[1])})
        if fn in _REDUCTIONS and len(args) == 1 and not value.kwargs:
            return SCALAR
        if fn in _SAME_AS_FIRST and len(args) == 1 and not value.kwargs:
            return self.of(args[0])
        name = getattr(fn, "__name__", None)
        if is_runtime_function(fn) and name in _SHAPE_OF_ARGUMENT:
            k = _SHAPE_OF_ARGUMENT[name]
            if k < len(args):
                return self.of(args[k])
        try:
            arrays = _SHAPE_ONLY.get(fn)
        except TypeError:
            arrays = None
        if arrays is not None:
            key = tuple(self.of(a) if i in arrays else a for i, a in enumerate(args))
            if fn in _MATRIX_PRODUCTS and not value.kwargs:
                ranks = [self.profile(k) for k in key]
                if all(r is not None and r[0] == 1 for r in ranks):
                    return SCALAR  # the inner product of two vectors
            tag = "reduce" if fn in _REDUCTIONS else "matmul" if fn in _MATRIX_PRODUCTS else id(fn)
            return frozenset({(tag, key, value.kwargs)})
        return self.fresh()

    # ------------------------------------------------------------------ ranks

    def profile(self, shape: Shape) -> tuple[int, bool] | None:
        """``(ndim, full)`` of a value of ``shape`` where the ranks of all its symbols are
        known: the largest, and whether a symbol of that rank has no length-1 axis (then
        the broadcast has that symbol's shape exactly). None where one is unknown."""
        ndim, full = 0, True
        for symbol in shape:
            if symbol in self._profiles:
                p = self._profiles[symbol]
            else:
                p = self._profiles[symbol] = self._symbol_profile(symbol)
            if p is None:
                return None
            if p[0] > ndim:
                ndim, full = p
            elif p[0] == ndim:
                full = full or p[1]
        return ndim, full

    def _symbol_profile(self, symbol: Any) -> tuple[int, bool] | None:
        kind = symbol[0]
        if kind == "input":
            return self.ranks.get(symbol[1])
        if kind == "row":
            p = self.profile(symbol[1])
            return (p[0] - 1, p[1]) if p is not None and p[0] >= 1 else None
        if kind == "stack":  # (a leading axis of two or more)
            p = self.profile(symbol[2])
            return (p[0] + 1, p[1]) if p is not None else None
        if kind == "trim":  # x[1:-1]: an axis of any length, 1 included
            p = self.profile(symbol[1])
            return (p[0], False) if p is not None else None
        if kind == "getitem":  # params["W"]: an entry of a dict argument
            base, index = symbol[1], symbol[2]
            if isinstance(index, ir.Index) and all(isinstance(i, ir.Slice) for i in index.items):
                p = self.profile(base)  # x[a:b]: as many axes, of any length (1 included)
                return (p[0], False) if p is not None and len(index.items) <= p[0] else None
            if isinstance(index, ir.Index) and len(index.items) == 1:
                index = index.items[0]
            if len(base) == 1 and isinstance(index, ir.Const) and isinstance(index.value, str):
                (inner,) = base
                if inner[0] == "input":
                    return self.ranks.get((inner[1], index.value))
            return None
        if kind == "matmul" and not symbol[2]:
            ranks = [self.profile(k) for k in symbol[1]]
            if any(r is None or r[0] not in (1, 2) for r in ranks):
                return None
            (a, fa), (b, fb) = ranks
            return a + b - 2, fa and fb
        if kind == "reduce":
            return _reduced_profile(self.profile(symbol[1][0]), symbol[1][1:], symbol[2])
        return None

    def _joined_profile(self, parts: tuple) -> tuple[int, bool] | None:
        """``(ndim, full)`` of ``np.concatenate([a, b, ...])`` along the first axis of two or
        more arrays of one known rank: that rank; full where one part is (its other axes
        are the result's) or the arrays are vectors (their lengths add up to two or more)."""
        profiles = [self.profile(self.of(a)) for a in parts]
        if any(p is None for p in profiles) or len({p[0] for p in profiles}) != 1:
            return None
        ndim = profiles[0][0]
        if ndim < 1:
            return None
        return ndim, ndim == 1 or any(full for _, full in profiles)

    def canonical(self, shape: Shape) -> Shape:
        """A broadcast that includes full symbols of the largest rank (and only symbols of
        known rank) is the shape of each of those: ``{X, b}`` for ``X + b`` with an (n, m)
        ``X`` and an (m,) ``b`` is ``{X}``, so that what is computed from it compares
        equal with what is computed from ``X``."""
        if len(shape) < 2 or self.profile(shape) is None:
            return shape
        ndim = self.profile(shape)[0]
        fulls = frozenset(s for s in shape if self._profiles[s] == (ndim, True))
        return fulls or shape

    def summed_axes(self, g: Any, x: Any) -> int | None:
        """What ``unbroadcast(g, x)`` provably does: sum the ``k`` leading axes (``k = 0``:
        nothing), where both have no length-1 axis and ``g`` at least ``x``'s rank; else
        None. (Both full: ``unbroadcast`` also spreads a smaller ``g`` over ``x``, a (1, n)
        cotangent over an (m, n) array.)"""
        px, pg = self.profile(self.of(x)), self.profile(self.of(g))
        if px is None or pg is None or not (px[1] and pg[1]) or pg[0] < px[0]:
            return None
        return pg[0] - px[0]

    def _tuple_item(self, value: Any) -> Shape | None:
        """The shape of ``t[k]``, a literal item of a tuple whose parts are known."""
        if not (
            isinstance(value, ir.Call)
            and isinstance(value.fn, ir.Ref)
            and value.fn.value is operator.getitem
            and isinstance(value.args[0], ir.Name)
            and value.args[0].id in self.parts
        ):
            return None
        parts = self.parts[value.args[0].id]
        k = _literal_index(value.args[1])
        return parts[k] if k is not None and -len(parts) <= k < len(parts) else None

    def is_integer(self, atom: Any) -> bool:
        return (isinstance(atom, ir.Const) and type(atom.value) is int) or (
            isinstance(atom, ir.Name) and atom.id in self.integers
        )

    def is_integer_index(self, index: Any) -> bool:
        """``x[i]`` with one integer ``i``: one element along the first axis."""
        if isinstance(index, ir.Index):
            return len(index.items) == 1 and self.is_integer(index.items[0])
        return self.is_integer(index)

    def _integer_valued(self, value: Any) -> bool:
        if not isinstance(value, ir.Call):
            return self.is_integer(value)
        fn = value.fn.value if isinstance(value.fn, ir.Ref) else None
        if value.kwargs:
            return False
        if fn is len:
            return True
        if fn is operator.getitem:  # an entry of a shape
            return (
                isinstance(value.args[0], ir.Name)
                and value.args[0].id in self.shape_tuples
                and self.is_integer_index(value.args[1])
            )
        return _is_integer_arithmetic(fn) and all(self.is_integer(a) for a in value.args)

    def set_parts(self, name: str, parts: tuple[Shape, ...]) -> None:
        """``name`` now holds a tuple whose items have these shapes."""
        self.forget(name)
        self.parts = self.parts.set(name, tuple(parts))

    def assign(self, stmt: ir.Assign) -> None:
        value = stmt.value
        if len(stmt.targets) != 1:
            parts = self.parts.get(value.id) if isinstance(value, ir.Name) else None
            if parts is None or len(parts) != len(stmt.targets):
                parts = [None] * len(stmt.targets)
            for t, part in zip(stmt.targets, parts):
                if part is None:
                    self.forget(t.id)
                else:
                    self.set(t.id, part)
            return
        target = stmt.target.id
        if isinstance(value, ir.Seq) and value.kind == "tuple" and value.keys is None:
            self.set_parts(target, tuple(self.of(e) for e in value.elts))
            return
        item = self._tuple_item(value)
        if item is not None:
            self.set(target, item)
            return
        integer = self._integer_valued(value)
        self.set(target, self.value_shape(value))  # the old value's shape is read first
        if integer:
            self.integers |= {target}
        if _is_range(value):
            self.ranges |= {target}
        if (
            isinstance(value, ir.Call)
            and isinstance(value.fn, ir.Ref)
            and value.fn.value is np.shape
        ):
            self.shape_tuples |= {target}


def _literal_index(index: Any) -> int | None:
    if isinstance(index, ir.Index) and len(index.items) == 1:
        index = index.items[0]
    if isinstance(index, ir.Const) and type(index.value) is int:
        return index.value
    return None


def _stacked(value: ir.Call) -> bool:
    """``np.stack([a, b, ...])`` (or ``np.concatenate``) of two or more atoms along the
    first axis."""
    return (
        len(value.args) == 1
        and isinstance(value.args[0], ir.Seq)
        and value.args[0].kind in ("list", "tuple")
        and len(value.args[0].elts) >= 2
        and all(k == "axis" and v == ir.Const(0) for k, v in value.kwargs)
    )


def _reduced_profile(
    profile: tuple[int, bool] | None, args: tuple, kwargs: tuple
) -> tuple[int, bool] | None:
    """``(ndim, full)`` of a reduction along one literal axis of a value of ``profile``
    (``np.sum(x, axis=0)``, ``np.max(z, axis=1, keepdims=True)``: then a length-1 axis)."""
    settings = dict(kwargs)
    if profile is None or args or set(settings) - {"axis", "keepdims"}:
        return None
    axis, keepdims = settings.get("axis"), settings.get("keepdims", ir.Const(False))
    if not (
        isinstance(axis, ir.Const)
        and type(axis.value) is int
        and isinstance(keepdims, ir.Const)
        and type(keepdims.value) is bool
        and -profile[0] <= axis.value < profile[0]
    ):
        return None
    if keepdims.value:
        return profile[0], False
    return profile[0] - 1, profile[1]


def _is_integer_arithmetic(fn: Any) -> bool:
    try:
        return fn in _INTEGER_ARITHMETIC
    except TypeError:  # an unhashable callable
        return False


def _elementwise_ufunc(fn: Any) -> bool:
    """A ufunc that works element by element: not a generalized one such as ``np.matmul``
    (signature ``(n?,k),(k,m?)->(n?,m?)``), whose result is not the broadcast of its inputs."""
    return isinstance(fn, np.ufunc) and fn.signature is None


def _leading_trim(index: Any) -> int | None:
    """For ``x[a:-b]`` with literal ``a >= 0`` and ``b >= 0`` (either may be missing), ``a + b``.

    Python gives such a slice ``max(0, n - a - b)`` elements of an axis of length
    ``n``, so ``x[1:-1]``, ``x[2:]`` and ``x[:-2]`` all have the same shape:
    the stencil reads of finite-difference code.
    """
    if not isinstance(index, ir.Index) or len(index.items) != 1:
        return None
    item = index.items[0]
    if not isinstance(item, ir.Slice) or item.step is not None:
        return None
    start, stop = 0, 0
    if item.lower is not None:
        if not (isinstance(item.lower, ir.Const) and type(item.lower.value) is int):
            return None
        start = item.lower.value
    if item.upper is not None:
        if not (isinstance(item.upper, ir.Const) and type(item.upper.value) is int):
            return None
        stop = item.upper.value
    if start < 0 or stop > 0 or (item.upper is not None and stop == 0):
        return None
    return start - stop


def statement_shapes(
    fn: ir.FunctionDef, scalars=frozenset(), ranks=None, results=None
) -> dict[int, ShapeEnv]:
    """The shape environment just before each assignment and in-place update, at any depth.

    Unlike ``infer`` this enters branches and loops. A branch joins its arms
    (a name keeps a shape both arms agree on). A loop is walked until its
    loop-carried names settle: a name whose shape the body may change gets a
    symbol of its own at the top of the body ("its shape in this iteration"),
    so equalities proven inside one iteration still hold, and the others keep
    the shape they had before the loop. ``scalars`` are parameters the caller
    passed as numbers, ``ranks`` the ranks of those passed as arrays (``ShapeEnv``);
    ``results`` as ``walk_shapes``'.
    """
    return walk_shapes(fn, scalars, ranks, results)[0]


def walk_shapes(
    fn: ir.FunctionDef, scalars=frozenset(), ranks=None, results=None
) -> tuple[dict[int, ShapeEnv], ShapeEnv]:
    """``statement_shapes``, and the environment at the end of ``fn``'s body.

    ``results(stmt, env)``: the shape of what an assignment's call gives its first target
    where the caller knows more than the walk (a call of a user function), a tuple of
    shapes where that is a tuple of values of those shapes, else None.
    """
    walker = _LoopAwareWalker(results)
    env = ShapeEnv(scalars=scalars, ranks=ranks)
    for p in fn.param_names:
        env.of(ir.Name(p))
    walker.block(fn.body, env)
    return walker.before, env


class _LoopAwareWalker:
    def __init__(self, results=None):
        self.before: dict[int, ShapeEnv] = {}
        self.results = results

    def block(self, body: tuple[ir.Stmt, ...], env: ShapeEnv) -> None:
        for stmt in body:
            self.stmt(stmt, env)

    def stmt(self, stmt: ir.Stmt, env: ShapeEnv) -> None:
        if isinstance(stmt, ir.Assign):
            before = self.before[id(stmt)] = env.copy()
            env.assign(stmt)
            result = self.results(stmt, before) if self.results is not None else None
            if isinstance(result, tuple):  # a tuple of known parts
                env.set_parts(stmt.targets[0].id, result)
            elif result is not None:
                env.set(stmt.targets[0].id, result)
        elif isinstance(stmt, ir.SetItem):
            self.before[id(stmt)] = env.copy()
        elif isinstance(stmt, ir.If):
            body_env, else_env = env.copy(), env.copy()
            self.block(stmt.body, body_env)
            self.block(stmt.orelse, else_env)
            _join_into(env, body_env, else_env)
        elif ir.is_loop(stmt):
            self.loop(stmt, env)
        else:
            for name in dataflow.writes(stmt):
                env.forget(name)

    def loop(self, loop: ir.For | ir.While, env: ShapeEnv) -> None:
        inner_stmts = ir.iteration(loop)
        written = dataflow.deep_writes(inner_stmts)  # nested loops' targets included
        targets = dataflow.pattern_names(loop.target) if isinstance(loop, ir.For) else []
        written.update(targets)
        # Names first defined in the loop, and every name of a loop that can skip the end
        # of its body, may have any shape at the top of an iteration.
        varying = {n for n in written if n not in env.shapes}
        exits = any(isinstance(s, (ir.Break, ir.Continue)) for s in ir.walk_stmts(inner_stmts))
        if exits:
            varying = set(written)
        counted = isinstance(loop, ir.For) and (
            _is_range(loop.iter) or isinstance(loop.iter, ir.Name) and loop.iter.id in env.ranges
        )
        # A carried name whose rank the body keeps (`state = state + dt * k` of a vector)
        # has that rank in every iteration and after the loop, though its symbol changes.
        kept: dict[str, tuple[int, bool]] = {}
        while True:
            inner = env.copy()
            for n in varying:
                if n in kept:
                    inner.set(n, inner.fresh_profiled(kept[n]))
                else:
                    inner.forget(n)
            for n in targets:
                inner.set(n, SCALAR if counted else inner.fresh())
                if counted:
                    inner.integers |= {n}
            self.block(inner_stmts, inner)
            changed = {
                n
                for n in written - varying - set(targets)
                if inner.shapes.get(n) != env.shapes.get(n)
                or (n in inner.shape_tuples) != (n in env.shape_tuples)
                or (n in inner.integers) != (n in env.integers)
            }
            lost = {n for n, p in kept.items() if inner.profile(inner.shapes[n]) != p}
            for n in lost:
                del kept[n]
            for n in changed if not exits else ():
                p = env.profile(env.shapes[n])
                if p is not None and p == inner.profile(inner.shapes[n]):
                    kept[n] = p
            if not changed and not lost:
                break
            varying |= changed
        after = varying | set(targets)
        if isinstance(loop, ir.While):
            after |= dataflow.deep_writes(loop.test_block)
        for n in after:
            if n in kept:
                env.set(n, env.fresh_profiled(kept[n]))
            else:
                env.forget(n)


def _is_range(it: Any) -> bool:
    return isinstance(it, ir.Call) and isinstance(it.fn, ir.Ref) and it.fn.value is range


def _join_into(env: ShapeEnv, a: ShapeEnv, b: ShapeEnv) -> None:
    with env.shapes.mutate() as shapes:
        for n in set(a.shapes) | set(b.shapes):
            sa, sb = a.shapes.get(n), b.shapes.get(n)
            if sa is not None and sa == sb:
                shapes[n] = sa
            else:  # (two ranks that agree are kept: both arms keep a vector a vector)
                p = a.profile(sa) if sa is not None and sb is not None else None
                same = p is not None and p == b.profile(sb)
                shapes[n] = env.fresh_profiled(p) if same else env.fresh()
        env.shapes = shapes.finish()
    env.parts = immutables.Map({n: p for n, p in a.parts.items() if b.parts.get(n) == p})
    env.shape_tuples = a.shape_tuples & b.shape_tuples
    env.ranges = a.ranges & b.ranges
    env.integers = a.integers & b.integers


def infer(fn: ir.FunctionDef, same_shape: dict[str, str | Shape]):
    """Each top-level statement of a function, with the shape environment just before it.

    Inside branches and loops names get fresh shapes (see ``statement_shapes``
    for the walk that enters them). ``same_shape`` maps a parameter to a name it
    has the shape of (a tangent to its primal, the output cotangent to the
    output), or to a shape itself (``SCALAR`` for the seed of a value the code does
    not compute); those names are resolved after a first pass, since the output is
    defined after the parameters. The environment is live: read it before
    taking the next pair.
    """
    env = ShapeEnv()
    if same_shape:
        for _stmt in _walk(fn, env):
            pass
    aliases = {
        param: (
            other
            if isinstance(other, Shape)
            else env.shapes[other] if other in env.shapes else frozenset({("input", other)})
        )
        for param, other in same_shape.items()
    }
    env = ShapeEnv()
    env.shapes = immutables.Map(aliases)
    for stmt in _walk(fn, env):
        yield stmt, env


def _walk(fn: ir.FunctionDef, env: ShapeEnv):
    """Yield each top-level statement of ``fn`` and then apply it to ``env``."""
    for stmt in fn.body:
        yield stmt
        if isinstance(stmt, ir.Assign):
            env.assign(stmt)
        else:
            # Names written inside a branch or loop have whatever shape they end up with.
            for inner in ir.walk_stmts((stmt,)):
                for name in dataflow.writes(inner):
                    env.forget(name)
