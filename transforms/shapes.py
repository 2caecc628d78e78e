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
_FULL_REDUCTIONS = {np.sum, np.mean, np.prod, np.max, np.min, np.amax, np.amin}
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
    caller passed as numbers), whose shape is the empty broadcast. ``vectors`` are
    parameters the caller passed as 1-D arrays: one integer indexes an element of
    one, a scalar (``x[i]`` in an element loop). ``integers`` are the names known to
    hold integers (a counted loop's target, ``i + 1``, ``len(x)``), which is what
    makes such an index.

    Its maps are persistent (``immutables.Map``): a copy costs nothing whatever
    the number of names, so keeping the environment before every statement of a
    long function stays linear.
    """

    def __init__(
        self, same_shape: dict[str, str] | None = None, scalars=frozenset(), vectors=frozenset()
    ):
        self.same_shape = same_shape or {}
        self.scalars = frozenset(scalars)
        self.shapes: immutables.Map = immutables.Map()  # name -> Shape
        self.shape_tuples: frozenset[str] = frozenset()  # names holding np.shape(...) results
        self.ranges: frozenset[str] = frozenset()  # names holding range(...) objects
        self.vectors: frozenset[str] = frozenset(vectors)  # names holding 1-D arrays
        self.integers: frozenset[str] = frozenset()  # names holding integers
        self._fresh = itertools.count()

    def fresh(self) -> Shape:
        return frozenset({("fresh", next(self._fresh))})

    def set(self, name: str, shape: Shape) -> None:
        """``name`` now has ``shape`` and holds no shape tuple, range, 1-D array or integer
        (until ``assign`` says)."""
        self.shapes = self.shapes.set(name, shape)
        if name in self.shape_tuples:
            self.shape_tuples -= {name}
        if name in self.ranges:
            self.ranges -= {name}
        if name in self.vectors:
            self.vectors -= {name}
        if name in self.integers:
            self.integers -= {name}

    def forget(self, name: str) -> None:
        """``name`` now has a shape known to nothing else."""
        self.set(name, self.fresh())

    def copy(self) -> ShapeEnv:
        """An environment that starts where this one is; fresh symbols stay globally unique."""
        other = ShapeEnv(self.same_shape, self.scalars)
        other.shapes = self.shapes
        other.shape_tuples = self.shape_tuples
        other.ranges = self.ranges
        other.vectors = self.vectors
        other.integers = self.integers
        other._fresh = self._fresh
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
            return frozenset().union(*(self.of(a) for a in args)) if args else self.fresh()
        if fn in _SCALAR_QUERIES:
            return SCALAR
        if fn is operator.getitem and isinstance(args[0], ir.Name):
            if args[0].id in self.shape_tuples:
                return SCALAR
            if args[0].id in self.vectors and self.is_integer_index(args[1]):
                return SCALAR  # an element of a 1-D array
            trim = _leading_trim(args[1])
            if trim is not None:
                return frozenset({("trim", self.of(args[0]), trim)})
            return frozenset({("getitem", self.of(args[0]), args[1])})
        if fn in _FULL_REDUCTIONS and len(args) == 1 and not value.kwargs:
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
            return frozenset({(id(fn), key, value.kwargs)})
        return self.fresh()

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

    def assign(self, stmt: ir.Assign) -> None:
        value = stmt.value
        if len(stmt.targets) != 1:
            for t in stmt.targets:
                self.forget(t.id)
            return
        target = stmt.target.id
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
    fn: ir.FunctionDef, scalars=frozenset(), vectors=frozenset()
) -> dict[int, ShapeEnv]:
    """The shape environment just before each assignment and in-place update, at any depth.

    Unlike ``infer`` this enters branches and loops. A branch joins its arms
    (a name keeps a shape both arms agree on). A loop is walked until its
    loop-carried names settle: a name whose shape the body may change gets a
    symbol of its own at the top of the body ("its shape in this iteration"),
    so equalities proven inside one iteration still hold, and the others keep
    the shape they had before the loop. ``scalars`` are parameters the caller
    passed as numbers, ``vectors`` those passed as 1-D arrays.
    """
    return walk_shapes(fn, scalars, vectors)[0]


def walk_shapes(
    fn: ir.FunctionDef, scalars=frozenset(), vectors=frozenset()
) -> tuple[dict[int, ShapeEnv], ShapeEnv]:
    """``statement_shapes``, and the environment at the end of ``fn``'s body."""
    walker = _LoopAwareWalker()
    env = ShapeEnv(scalars=scalars, vectors=vectors)
    for p in fn.param_names:
        env.of(ir.Name(p))
    walker.block(fn.body, env)
    return walker.before, env


class _LoopAwareWalker:
    def __init__(self):
        self.before: dict[int, ShapeEnv] = {}

    def block(self, body: tuple[ir.Stmt, ...], env: ShapeEnv) -> None:
        for stmt in body:
            self.stmt(stmt, env)

    def stmt(self, stmt: ir.Stmt, env: ShapeEnv) -> None:
        if isinstance(stmt, ir.Assign):
            self.before[id(stmt)] = env.copy()
            env.assign(stmt)
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
        if any(isinstance(s, (ir.Break, ir.Continue)) for s in ir.walk_stmts(inner_stmts)):
            varying = set(written)
        counted = isinstance(loop, ir.For) and (
            _is_range(loop.iter) or isinstance(loop.iter, ir.Name) and loop.iter.id in env.ranges
        )
        while True:
            inner = env.copy()
            for n in varying:
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
                or (n in inner.vectors) != (n in env.vectors)
            }
            if not changed:
                break
            varying |= changed
        after = varying | set(targets)
        if isinstance(loop, ir.While):
            after |= dataflow.deep_writes(loop.test_block)
        for n in after:
            env.forget(n)


def _is_range(it: Any) -> bool:
    return isinstance(it, ir.Call) and isinstance(it.fn, ir.Ref) and it.fn.value is range


def _join_into(env: ShapeEnv, a: ShapeEnv, b: ShapeEnv) -> None:
    with env.shapes.mutate() as shapes:
        for n in set(a.shapes) | set(b.shapes):
            sa, sb = a.shapes.get(n), b.shapes.get(n)
            shapes[n] = sa if sa is not None and sa == sb else env.fresh()
        env.shapes = shapes.finish()
    env.shape_tuples = a.shape_tuples & b.shape_tuples
    env.ranges = a.ranges & b.ranges
    env.vectors = a.vectors & b.vectors
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
