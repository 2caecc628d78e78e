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

import numpy as np

from s2sgrad import ir

Shape = frozenset
SCALAR: Shape = frozenset()

_ELEMENTWISE_OPERATORS = ir.ARITHMETIC_OPERATORS
_ELEMENTWISE_FUNCTIONS = {np.where, np.clip}
_SCALAR_QUERIES = {np.ndim, np.size, len}
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
    """Walks straight-line IR, tracking each name's symbolic shape."""

    def __init__(self, same_shape: dict[str, str] | None = None):
        self.same_shape = same_shape or {}
        self.shapes: dict[str, Shape] = {}
        self.shape_tuples: set[str] = set()  # names holding np.shape(...) results
        self._fresh = itertools.count()

    def fresh(self) -> Shape:
        return frozenset({("fresh", next(self._fresh))})

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
        shape = frozenset({("input", name)})
        self.shapes[name] = shape
        return shape

    def value_shape(self, value: Any) -> Shape:
        if not isinstance(value, ir.Call):
            return self.of(value)
        fn = value.fn.value if isinstance(value.fn, ir.Ref) else None
        args = value.args
        if fn in _ELEMENTWISE_OPERATORS or fn in _ELEMENTWISE_FUNCTIONS or isinstance(fn, np.ufunc):
            if value.kwargs:
                return self.fresh()
            return frozenset().union(*(self.of(a) for a in args)) if args else self.fresh()
        if fn in _SCALAR_QUERIES:
            return SCALAR
        if fn is operator.getitem and isinstance(args[0], ir.Name):
            if args[0].id in self.shape_tuples:
                return SCALAR
            return frozenset({("getitem", self.of(args[0]), args[1])})
        if fn in _FULL_REDUCTIONS and len(args) == 1 and not value.kwargs:
            return SCALAR
        if fn in _SAME_AS_FIRST and len(args) == 1 and not value.kwargs:
            return self.of(args[0])
        name = getattr(fn, "__name__", None)
        if getattr(fn, "__module__", None) == "s2sgrad.runtime" and name in _SHAPE_OF_ARGUMENT:
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

    def assign(self, stmt: ir.Assign) -> None:
        value = stmt.value
        if len(stmt.targets) != 1:
            for t in stmt.targets:
                self.shapes[t.id] = self.fresh()
            return
        target = stmt.target.id
        self.shape_tuples.discard(target)
        if (
            isinstance(value, ir.Call)
            and isinstance(value.fn, ir.Ref)
            and value.fn.value is np.shape
        ):
            self.shape_tuples.add(target)
        self.shapes[target] = self.value_shape(value)


def infer(fn: ir.FunctionDef, same_shape: dict[str, str]) -> list[ShapeEnv]:
    """Shape environments before each statement of a straight-line function.

    ``same_shape`` maps a parameter to a name it has the shape of (a tangent to
    its primal, the output cotangent to the output); those names are resolved
    after a first pass, since the output is defined after the parameters.
    """
    first = _walk(fn, {})
    aliases = {}
    for param, other in same_shape.items():
        shapes = first[-1].shapes
        aliases[param] = shapes[other] if other in shapes else frozenset({("input", other)})
    return _walk(fn, aliases)


def _walk(fn: ir.FunctionDef, aliases: dict[str, Shape]) -> list[ShapeEnv]:
    env = ShapeEnv()
    env.shapes.update(aliases)
    snapshots = []
    for stmt in fn.body:
        snapshot = ShapeEnv()
        snapshot.shapes = dict(env.shapes)
        snapshot.shape_tuples = set(env.shape_tuples)
        snapshot._fresh = env._fresh
        snapshots.append(snapshot)
        if isinstance(stmt, ir.Assign):
            env.assign(stmt)
        else:
            # Names written inside a branch or loop have whatever shape they end up with.
            for inner in ir.walk_stmts((stmt,)):
                for name in ir.stmt_writes(inner):
                    env.shapes[name] = env.fresh()
                    env.shape_tuples.discard(name)
    snapshots.append(env)
    return snapshots
