"""When a gradient may leave its function's value uncomputed.

``grad(f)`` throws the value of ``f`` away. The reverse-mode code still computes it
(``out = np.sum(100.0 * t4**2 + t8**2)``), and where the last reduction is fed by
elementwise work that the backward sweep does not read, that is several passes over
the data for nothing: for the vectorized Rosenbrock function at n = 10**6, a third of
the gradient's time. XLA drops such dead work by itself; NumPy runs what it is given.

The value is what ``grad`` checks, though: a scalar (the seed ``1.0`` is only right for
one) and real (``jax.grad`` refuses a complex output, and so does s2sgrad). So the
compiler leaves it out only where it proves both before running anything:

* the shape analysis (``transforms.shapes``, the walk reverse mode makes anyway) gives
  the returned name the shape of a scalar: a full reduction, or arithmetic of scalars;
* nothing in the function can make a complex number out of real arguments: every
  constant and global it reads is real, every function it calls maps real inputs to
  real outputs (operators, real ufuncs, NumPy's reductions and shape functions, a
  few builtins), and no argument names a complex dtype. The arguments themselves are
  checked to be real when ``grad`` is called.

Anything else (a call of the user's own function, an ``np.fft`` transform, a library
outside NumPy) keeps the value computed and checked as before. What the compiler left
out is a value ``grad`` never hands back, so nothing observable changes but the time.
"""

from __future__ import annotations

import builtins
import math
import types
from collections.abc import Callable
from typing import Any

import numpy as np
from s2sgrad.transforms.shapes import SCALAR, Shape

from s2sgrad import ir

# NumPy functions that can return complex numbers for real inputs (the rest of NumPy's
# own namespace maps real to real, given no complex dtype among the arguments).
_COMPLEX_FROM_REAL_MODULES = ("numpy.fft", "numpy.lib.scimath", "numpy.lib._scimath_impl")
_COMPLEX_FROM_REAL_NAMES = frozenset(
    {"eig", "eigvals", "roots", "sort_complex", "vectorize", "frompyfunc", "piecewise"}
)
_REAL_BUILTINS = frozenset(
    {builtins.len, builtins.range, builtins.abs, builtins.min, builtins.max, builtins.sum}
    | {builtins.round, builtins.float, builtins.int, builtins.bool}
)


def value_is_real_scalar(
    fn: ir.FunctionDef,
    value_shape: Shape,
    callee_ir: Callable[[Callable], ir.FunctionDef] | None = None,
) -> bool:
    """Whether the value ``fn`` returns, of shape ``value_shape`` by the shape analysis at
    the end of its body, is provably a real scalar (see module doc). ``callee_ir`` lowers
    a function of the user's that ``fn`` calls, whose body is then held to the same test
    (without it, such a call keeps the value)."""
    return value_shape == SCALAR and _Realness(callee_ir).block(fn.body)


class _Realness:
    """Whether code makes only real numbers out of real ones, callees included."""

    def __init__(self, callee_ir: Callable[[Callable], ir.FunctionDef] | None):
        self.callee_ir = callee_ir
        self.seen: set[int] = set()  # callees being or already checked (recursion)

    def block(self, body: tuple[ir.Stmt, ...]) -> bool:
        return all(self.atom(a) for s in ir.walk_stmts(body) for a in _atoms_of(s))

    def atom(self, atom: ir.Const | ir.Ref) -> bool:
        value = atom.value
        if isinstance(atom, ir.Ref) and callable(value) and not isinstance(value, np.ndarray):
            return _real_function(value) or self.callee(value)
        return _real_data(value)

    def callee(self, f: Any) -> bool:
        """A user function's body, lowered and checked like the caller's."""
        from s2sgrad.cache import _as_user_function  # (imported late, as transforms.analysis)
        from s2sgrad.composition import settings

        if self.callee_ir is None or _as_user_function(f) is None or settings(f) is not None:
            return False  # (a composition, ``grad(g)``, is not looked into)
        if id(f) in self.seen:
            return True  # checked further up, or being checked: its atoms are covered
        self.seen.add(id(f))
        try:
            return self.block(self.callee_ir(f).body)
        except Exception:  # a callee the compiler refuses keeps the value, as anything unknown
            return False


def _atoms_of(stmt: ir.Stmt):
    """Every constant and global reference a statement reads, in any position."""
    stack: list[Any] = [stmt]
    while stack:
        node = stack.pop()
        if isinstance(node, (ir.Const, ir.Ref)):
            yield node
            continue
        if isinstance(node, (tuple, list)):
            stack.extend(node)
        elif hasattr(node, "__dataclass_fields__") and not isinstance(node, ir.Name):
            # A compound statement's blocks are ``ir.walk_stmts``'s: only its header here.
            skip = ("loc", *ir.BLOCK_FIELDS.get(type(node), ()))
            stack.extend(getattr(node, f) for f in node.__dataclass_fields__ if f not in skip)


def _real_data(value: Any) -> bool:
    """Whether ``value`` is data known to be real: numbers, real arrays, strings that name
    no complex dtype, None; a module is read for its attributes. Anything else (a
    function of the module being generated, an object) is not provably real."""
    if isinstance(value, (tuple, list)):
        return all(_real_data(v) for v in value)
    if value is None or value is Ellipsis or isinstance(value, (slice, types.ModuleType)):
        return True
    if isinstance(value, (str, type, np.dtype)):
        return not _complex_dtype(value)
    if isinstance(value, (bool, int, float, np.ndarray, np.generic)):
        return np.asarray(value).dtype.kind in "biuf"
    return False


def _complex_dtype(value: Any) -> bool:
    """Whether ``value`` names a complex dtype (``complex``, ``np.complex64``, ``"c16"``)."""
    if not isinstance(value, (str, type, np.dtype)):
        return False
    try:
        return np.dtype(value).kind == "c"
    except (TypeError, ValueError):
        return False  # a string that is not a dtype (einsum's subscripts)


def _real_function(f: Any) -> bool:
    """Whether calling ``f`` on real values gives real values (conservatively)."""
    if any(f is b for b in _REAL_BUILTINS):
        return True
    if isinstance(f, type):  # a conversion: float(x), np.float32(x)
        try:
            return np.dtype(f).kind in "biuf"
        except TypeError:
            return False
    if isinstance(f, np.ufunc):
        return all(
            not any(c in "FDG" for c in signature.split("->")[1])
            for signature in f.types
            if not any(c in "FDGO" for c in signature.split("->")[0])
        )
    if getattr(f, "__module__", None) in ("operator", "_operator"):
        return True
    if getattr(f, "__self__", None) is math or getattr(f, "__module__", None) == "math":
        return True
    module = getattr(f, "__module__", None) or ""
    if module.partition(".")[0] == np.__name__ and _plain_function(f):  # NumPy's namespace
        return not module.startswith(_COMPLEX_FROM_REAL_MODULES) and (
            getattr(f, "__name__", "") not in _COMPLEX_FROM_REAL_NAMES
        )
    return False


def _plain_function(f: Any) -> bool:
    """A function or method, or NumPy's dispatching wrapper of one (``np.sum``): not an
    instance of a callable class such as ``np.vectorize(g)``, which runs arbitrary code."""
    return (
        isinstance(f, (types.FunctionType, types.BuiltinFunctionType, types.MethodType))
        or type(f).__name__ == "_ArrayFunctionDispatcher"
    )
