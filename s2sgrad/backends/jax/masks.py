"""Boolean-mask reads that end in reductions, lowered as masked computations.

Under ``jax.jit`` the read ``x[m]`` of a traced boolean mask ``m`` cannot be traced:
its shape depends on the data (``jax.jit(jax.grad(f))`` refuses it too). Very often
its values only flow into elementwise work that ends in a full reduction
(``np.mean(np.exp(y[y < 0]))``); then the selection need not be materialised. This
pass rewrites such a function so that ``t = x[m]`` becomes ``masked_read(x, m)``, an
array of ``x``'s shape whose unselected positions hold harmless filler, and each place
the values leave the masked world names the mask: ``np.sum(t)`` ->
``masked_sum(t, m)``, ``len(t)`` -> ``masked_len(t, m)``, the adjoint
``unindex(g, x, m)`` -> ``masked_unindex(g, x, m)`` (the helpers, and why they are
exact, are in ``s2sgrad.backends.jax.masked``).

It runs on the final code of every function the JAX backend prints (``lowering``):
forward and reverse derivatives, derivatives of derivatives, and the JAX copies of
user functions called as primals, so it needs no knowledge of differentiation; it
only knows the forms derivative rules write (``unreduce``, ``tie_shares``, ...).

A value is *masked by* ``m`` when it is such a read, or an elementwise operation of
values masked by the same ``m`` with numbers or arrays that broadcast along the
trailing axes only. Values masked by ``m`` may flow only into:

* elementwise operations as above (arithmetic, comparisons, ufuncs, ``np.where``, ...);
* full reductions ``np.sum / mean / max / min / prod`` (no ``axis``);
* counts ``np.size``, ``len``, ``np.shape`` (``t.size``, ``t.shape[0]``);
* the helpers of derivative rules for those: ``unreduce``, ``broadcast_like``,
  ``unbroadcast``, ``unindex`` / ``add_at`` / ``add_into`` with the same mask,
  ``tie_shares`` and ``prod_of_others(_tangent)`` of a full reduction, and the
  ``stand_in`` of NumPy derivative code read back (higher order).

Any other use (returned, indexed, concatenated, multiplied as matrices, passed to a
function, carried out of a loop body or a branch) leaves the whole function as it was,
so the read raises the error it raises today. Each local function (a lowered loop body
or branch) is a scope of its own that a masked value neither enters nor leaves.

A mask must be known to be boolean: the result of a comparison, ``np.isfinite``-like
tests, or ``~ & | ^`` and ``np.logical_*`` of masks, assigned once in its scope (an
index array of unknown dtype is not a mask). The same expression of the same values is
the same mask: ``y[y < 0] * w[y < 0]`` reads under one mask. What only trace time knows
(ranks, whether an operand lines up with the selected axis) the helpers check, raising
the original error where the rewrite would not be exact.
"""

from __future__ import annotations

import builtins
import numbers
import operator
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from s2sgrad import backends, ir
from s2sgrad.backends.jax import masked
from s2sgrad.transforms import dataflow
from s2sgrad.transforms.names import FreshNames

# --------------------------------------------------------------------------- what is what

_COMPARISONS = frozenset(
    {operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne}
)
# Always boolean, whatever their arguments.
_BOOLEAN_FUNCTIONS = frozenset(
    {
        np.less,
        np.less_equal,
        np.greater,
        np.greater_equal,
        np.equal,
        np.not_equal,
        np.isfinite,
        np.isnan,
        np.isinf,
        np.isneginf,
        np.isposinf,
        np.signbit,
        np.isclose,
        np.logical_and,
        np.logical_or,
        np.logical_xor,
        np.logical_not,
    }
)
# Boolean when every argument is a mask (on integers they are bitwise).
_LOGIC_OPERATORS = frozenset({operator.and_, operator.or_, operator.xor, operator.invert})
_BOOLEAN = _COMPARISONS | _BOOLEAN_FUNCTIONS
_ELEMENTWISE_OPERATORS = ir.ARITHMETIC_OPERATORS | _COMPARISONS | _LOGIC_OPERATORS

# Elementwise and broadcasting, beyond the operators and the single-output ufuncs: their
# number of arguments (np.where of one argument is np.nonzero), 0 for any.
_ELEMENTWISE_FUNCTIONS = {
    np.where: 3,
    np.clip: 3,
    np.round: 0,
    np.around: 0,
    np.sinc: 1,
    np.zeros_like: 1,  # a zero tangent of a masked value: masked too (zeros)
    np.ones_like: 1,
}

_REDUCTIONS = {
    np.sum: masked.masked_sum,
    np.mean: masked.masked_mean,
    np.max: masked.masked_max,
    np.amax: masked.masked_max,
    np.min: masked.masked_min,
    np.amin: masked.masked_min,
    np.prod: masked.masked_prod,
}
_COUNTS = {np.size: masked.masked_size, builtins.len: masked.masked_len}
_RUNTIME_MODULES = frozenset({"s2sgrad.runtime", "s2sgrad.backends.jax.runtime"})


def _ref(helper: Any) -> ir.Ref:
    return ir.Ref(helper.__name__, helper)


def _is_elementwise(fn: Any, nargs: int) -> bool:
    """Whether ``fn`` with ``nargs`` arguments acts element by element, broadcasting."""
    if _lookup(_ELEMENTWISE_OPERATORS, fn):
        return True
    if isinstance(fn, np.ufunc):
        return fn.nout == 1 and nargs == fn.nin
    arity = _lookup(_ELEMENTWISE_FUNCTIONS, fn)
    return arity is not None and arity in (0, nargs)


def _runtime_helper(fn: Any) -> str | None:
    """The name of a helper of the NumPy or JAX runtime (the rules' ``unreduce`` ...)."""
    if backends.helper_module_of(fn) in _RUNTIME_MODULES:
        return getattr(fn, "__name__", None)
    return None


def _lookup(table: dict | frozenset, fn: Any) -> Any:
    """``table.get(fn)`` (``fn in table`` for a set); None for an unhashable callable."""
    try:
        return fn in table if isinstance(table, frozenset) else table.get(fn)
    except TypeError:
        return None


def _index_name(value: Any) -> ir.Name | None:
    """``m`` when ``value`` is the read ``x[m]`` of a name ``m``."""
    if not (ir.is_call_of(value, operator.getitem) and len(value.args) == 2):
        return None
    index = value.args[1]
    if isinstance(index, ir.Index) and len(index.items) == 1:
        item = index.items[0]
        return item if isinstance(item, ir.Name) else None
    return None


# --------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class _Mask:
    """A boolean array; ``name`` is the name assigned once that holds it."""

    name: str


@dataclass(frozen=True)
class _Masked:
    """A value standing for an array read under the mask ``mask`` (shape ``x``'s)."""

    mask: str


_SCALAR = "scalar"  # a single number: it broadcasts against anything


class _Refused(Exception):
    """A use of a masked value the rewrite cannot express: the function stays as it was."""


# --------------------------------------------------------------------------- the pass


def lower_masked_reads(fn: ir.FunctionDef, names: FreshNames) -> ir.FunctionDef:
    """``fn`` with its boolean-mask reads lowered as masked computations where every use of
    every masked value allows it (see the module docstring), else ``fn`` unchanged."""
    if not _reads_with_a_name(fn):
        return fn  # no read that could be a mask's: most functions
    try:
        return _rewrite_function(fn, names)
    except _Refused:
        return fn


def lowers_masked_reads(fn: ir.FunctionDef) -> bool:
    """Whether ``lower_masked_reads`` rewrites some boolean-mask read of ``fn``."""
    return (
        _reads_with_a_name(fn)
        and lower_masked_reads(fn, FreshNames(dataflow.all_local_names(fn))) is not fn
    )


def _reads_with_a_name(fn: ir.FunctionDef) -> bool:
    """Whether ``fn`` or a local function of it reads ``x[m]`` for a name ``m``."""
    for stmt in ir.walk_stmts(fn.body):
        if isinstance(stmt, ir.LocalDef) and _reads_with_a_name(stmt.function):
            return True
        if _index_name(getattr(stmt, "value", None)) is not None:
            return True
    return False


def _rewrite_function(fn: ir.FunctionDef, names: FreshNames) -> ir.FunctionDef:
    """One function's body rewritten, each local function (a lowered loop or branch) on
    its own: a masked value never crosses into or out of one."""
    scope = _Scope(fn, names)
    body = scope.rewrite()
    if not scope.changed:
        return fn
    return replace(fn, body=body, temps=fn.temps | frozenset(scope.new_temps))


@dataclass
class _Scope:
    """The straight-line body of one function, walked in order with what each name holds."""

    fn: ir.FunctionDef
    names: FreshNames
    kinds: dict[str, Any] = field(default_factory=dict)
    # Per mask: the names of the arrays read under it since they were last assigned (their
    # reads have one rank already), and the masked values in order of assignment.
    read_sources: dict[str, set[str]] = field(default_factory=dict)
    masked_names: dict[str, list[str]] = field(default_factory=dict)
    ever_masked: set[str] = field(default_factory=set)
    once: set[str] = field(default_factory=set)  # assigned once: a mask keeps its value
    # Masks by the expression that computes them: `y[y < 0] * w[y < 0]` has one mask
    # (computed twice); the names of the second and later copies, dropped where unread.
    mask_exprs: dict[Any, str] = field(default_factory=dict)
    copies: set[str] = field(default_factory=set)
    new_temps: list[str] = field(default_factory=list)
    changed: bool = False

    def rewrite(self) -> tuple[ir.Stmt, ...]:
        counts = Counter(self.fn.param_names)
        for stmt in self.fn.body:
            counts.update(dataflow.writes(stmt))
        self.once = {n for n, k in counts.items() if k == 1}
        out: list[ir.Stmt] = []
        nested_reads: set[str] = set()
        for stmt in self.fn.body:
            if isinstance(stmt, ir.LocalDef):
                nested_reads |= _free_names(stmt.function)
                inner = _rewrite_function(stmt.function, self.names)
                self.changed |= inner is not stmt.function
                out.append(replace(stmt, function=inner))
                continue
            new, kind = self.statement(stmt)
            out.extend(new)
            self.assigned(stmt, kind)
        if self.ever_masked & nested_reads:
            raise _Refused  # a loop or branch body reads a masked value
        return self.without_unread_copies(out, nested_reads)

    def without_unread_copies(self, body: list[ir.Stmt], nested_reads: set[str]) -> tuple:
        """``body`` without the assignments of mask copies nothing reads any more (the
        rewrite names each mask by its first computation)."""
        read = set(nested_reads)
        for stmt in body:
            read.update(dataflow.reads(stmt))
        unread = self.copies - read
        return tuple(
            stmt
            for stmt in body
            if not (isinstance(stmt, ir.Assign) and stmt.targets[0].id in unread)
        )

    # ------------------------------------------------------------------ bookkeeping

    def kind(self, atom: Any) -> Any:
        if isinstance(atom, ir.Name):
            return self.kinds.get(atom.id)
        if isinstance(atom, ir.Const):
            value = atom.value
            return _SCALAR if value is None or isinstance(value, numbers.Number) else None
        if isinstance(atom, ir.Ref) and isinstance(atom.value, numbers.Number):
            return _SCALAR
        return None

    def mask_of(self, atom: Any) -> str | None:
        kind = self.kind(atom)
        return kind.mask if isinstance(kind, _Masked) else None

    def assigned(self, stmt: ir.Stmt, kind: Any) -> None:
        """Record what the names ``stmt`` writes now hold."""
        for name in dataflow.writes(stmt):
            self.kinds.pop(name, None)
            for sources in self.read_sources.values():
                sources.discard(name)
        if kind is not None:
            target = stmt.target.id
            self.kinds[target] = kind
            if isinstance(kind, _Masked):
                self.ever_masked.add(target)
                self.masked_names.setdefault(kind.mask, []).append(target)

    def temp(self, value: ir.Call, loc: Any) -> tuple[ir.Stmt, ir.Name]:
        name = self.names.temp()
        self.new_temps.append(name)
        return ir.Assign((ir.Name(name),), value, loc), ir.Name(name)

    # ------------------------------------------------------------------ statements

    def statement(self, stmt: ir.Stmt) -> tuple[list[ir.Stmt], Any]:
        """The statements standing for ``stmt``, and what its single target holds."""
        reads_masked = any(self.mask_of(ir.Name(n)) for n in dataflow.reads(stmt))
        if not (isinstance(stmt, ir.Assign) and len(stmt.targets) == 1):
            if reads_masked:
                raise _Refused
            return [stmt], None
        value = stmt.value
        if isinstance(value, ir.Name):  # a copy
            return [stmt], self.copied(stmt.target.id, value)
        if not (isinstance(value, ir.Call) and isinstance(value.fn, ir.Ref)):
            if reads_masked:
                raise _Refused
            return [stmt], self.kind(value)
        read = self.mask_read(value)
        if read is not None:
            return self.read(stmt, *read)
        if not reads_masked:
            return [stmt], self.unmasked_kind(stmt.target.id, value)
        return self.masked_call(stmt)

    def copied(self, target: str, source: ir.Name) -> Any:
        kind = self.kind(source)
        if isinstance(kind, _Mask) or kind == _SCALAR or isinstance(kind, _Masked):
            return kind
        return None

    def unmasked_kind(self, target: str, call: ir.Call) -> Any:
        """What a call of no masked value gives: a mask, a number, or something else."""
        fn, args = call.fn.value, call.args
        if call.kwargs:
            return None
        kinds = [self.kind(a) for a in args]
        if _lookup(_BOOLEAN, fn) or (
            _lookup(_LOGIC_OPERATORS, fn) and all(isinstance(k, _Mask) for k in kinds)
        ):
            return self.mask(target, call) if target in self.once else None
        if len(args) == 1 and (_lookup(_REDUCTIONS, fn) or _lookup(_COUNTS, fn)):
            return _SCALAR  # a full reduction or a count
        if args and _is_elementwise(fn, len(args)) and all(k == _SCALAR for k in kinds):
            return _SCALAR
        return None

    def mask(self, target: str, call: ir.Call) -> _Mask:
        """The mask ``target = call`` computes, named by the first name that holds it: the
        same call of the same values (names assigned once) computes the same mask."""
        if not all(n in self.once for n in ir.atom_names(call)):
            return _Mask(target)
        try:
            first = self.mask_exprs.setdefault((call.fn, call.args), target)
        except TypeError:  # an unhashable constant
            return _Mask(target)
        if first != target:
            self.copies.add(target)
        return _Mask(first)

    def mask_read(self, call: ir.Call) -> tuple[ir.Atom, str] | None:
        """``(x, mask)`` when ``call`` is ``x[m]`` for a mask ``m`` and an ``x`` not masked."""
        index = _index_name(call)
        mask = self.kind(index) if index is not None else None
        if not isinstance(mask, _Mask) or self.mask_of(call.args[0]):
            return None
        return call.args[0], mask.name

    def read(self, stmt: ir.Assign, x: ir.Atom, mask: str) -> tuple[list[ir.Stmt], Any]:
        """``t = x[m]`` -> ``t = masked_read(x, m)``; a read of another array under a mask
        already read with names an earlier masked value, whose rank it must have."""
        sources = self.read_sources.setdefault(mask, set())
        kwargs: tuple = ()
        if not (isinstance(x, ir.Name) and x.id in sources):
            earlier = [
                n for n in self.masked_names.get(mask, ()) if self.mask_of(ir.Name(n)) == mask
            ]
            if earlier:
                kwargs = (("like", ir.Name(earlier[0])),)
        if isinstance(x, ir.Name):
            sources.add(x.id)
        call = ir.Call(_ref(masked.masked_read), (x, ir.Name(mask)), kwargs)
        self.changed = True
        return [replace(stmt, value=call)], _Masked(mask)

    def masked_call(self, stmt: ir.Assign) -> tuple[list[ir.Stmt], Any]:
        """A call that reads masked values: one of the forms the module docstring lists."""
        call = stmt.value
        fn, args = call.fn.value, call.args
        masks = {self.mask_of(a) for a in args} - {None}
        hidden = [a for a in (*args, *(v for _, v in call.kwargs)) if not isinstance(a, ir.Name)]
        if len(masks) != 1 or any(self.mask_of_inside(a) for a in hidden):
            raise _Refused  # two masks, or a masked value inside a tuple, index, keyword
        mask = masks.pop()
        if call.kwargs and not _only_default_axis(call):
            raise _Refused
        masked_args = [self.mask_of(a) is not None for a in args]
        if _is_elementwise(fn, len(args)) and not call.kwargs:
            return self.elementwise(stmt, mask), _Masked(mask)
        reduction = _lookup(_REDUCTIONS, fn) or _lookup(_COUNTS, fn)
        if reduction is not None and masked_args == [True]:
            return self.sink(stmt, reduction, mask), _SCALAR
        if fn is np.shape and masked_args == [True] and not call.kwargs:
            return self.sink(stmt, masked.masked_shape, mask), None
        return self.helper_call(stmt, _runtime_helper(fn), masked_args, mask)

    def mask_of_inside(self, atom: Any) -> bool:
        return any(self.mask_of(ir.Name(n)) for n in ir.atom_names(atom))

    def elementwise(self, stmt: ir.Assign, mask: str) -> list[ir.Stmt]:
        """The operation as it is, each operand that is neither masked nor a number checked
        by ``trailing_operand`` (a temporary codegen folds back into the call)."""
        call = stmt.value
        masked_arg = next(a for a in call.args if self.mask_of(a) == mask)
        out: list[ir.Stmt] = []
        args = []
        for arg in call.args:
            if self.mask_of(arg) is None and self.kind(arg) != _SCALAR:
                check = ir.Call(_ref(masked.trailing_operand), (arg, masked_arg, ir.Name(mask)))
                assign, arg = self.temp(check, stmt.loc)
                out.append(assign)
            args.append(arg)
        out.append(replace(stmt, value=replace(call, args=tuple(args))))
        self.changed |= len(out) > 1
        return out

    def sink(self, stmt: ir.Assign, helper: Any, mask: str) -> list[ir.Stmt]:
        """``f(t)`` -> ``masked_f(t, m)``: where a masked value leaves the masked world."""
        call = ir.Call(_ref(helper), (stmt.value.args[0], ir.Name(mask)))
        self.changed = True
        return [replace(stmt, value=call)]

    def helper_call(
        self, stmt: ir.Assign, helper: str | None, masked_args: list[bool], mask: str
    ) -> tuple[list[ir.Stmt], Any]:
        """The derivative rules' helpers: as they are where shapes carry over, or their masked
        twins where they reduce over the selection."""
        call = stmt.value
        args = call.args
        if helper == "unreduce" and masked_args == [False, True] and len(args) == 2:
            return [stmt], _Masked(mask)  # g is the cotangent of a full reduction: one number
        if helper == "broadcast_like" and masked_args[1:] == [True]:
            return self.elementwise(stmt, mask), _Masked(mask)
        if helper == "unbroadcast" and masked_args == [True, True]:
            return [stmt], _Masked(mask)
        if helper == "stand_in" and masked_args == [True]:
            return [stmt], _Masked(mask)  # (NumPy code read back: a masked value's shape)
        if helper == "unbroadcast" and masked_args == [True, False]:
            new = ir.Call(_ref(masked.masked_unbroadcast), (*args, ir.Name(mask)))
            self.changed = True
            return [replace(stmt, value=new)], _SCALAR if self.kind(args[1]) == _SCALAR else None
        if helper == "unindex" and masked_args == [True, False, False]:
            if self.selects(args[2], mask):
                new = ir.Call(_ref(masked.masked_unindex), (args[0], args[1], ir.Name(mask)))
                self.changed = True
                return [replace(stmt, value=new)], None
        # The adjoint of a read added into an accumulated one: add_at(acc, m, g) and
        # add_into(acc, g, m).
        accumulated = {"add_at": (0, 2, 1), "add_into": (0, 1, 2)}.get(helper)
        if accumulated is not None and len(args) == 3:
            acc, g, index = (args[i] for i in accumulated)
            if self.mask_of(g) == mask and self.mask_of(acc) is None and self.selects(index, mask):
                new = ir.Call(_ref(masked.masked_add_at), (acc, ir.Name(mask), g))
                self.changed = True
                return [replace(stmt, value=new)], None
        if helper == "tie_shares" and masked_args == [True, False]:
            return self.helper_twin(stmt, masked.masked_tie_shares, mask), _Masked(mask)
        if helper == "prod_of_others" and masked_args == [True]:
            return self.helper_twin(stmt, masked.masked_prod_of_others, mask), _Masked(mask)
        if helper == "prod_of_others_tangent" and masked_args[0] and len(args) == 2:
            twin = masked.masked_prod_of_others_tangent
            return self.helper_twin(stmt, twin, mask), _Masked(mask)
        raise _Refused

    def selects(self, index: Any, mask: str) -> bool:
        """Whether ``index`` is the mask ``mask``: ``[m]`` as written (an Index), or ``m``
        (derivative code read back, for higher order)."""
        if isinstance(index, ir.Index) and len(index.items) == 1:
            index = index.items[0]
        return self.kind(index) == _Mask(mask)

    def helper_twin(self, stmt: ir.Assign, twin: Any, mask: str) -> list[ir.Stmt]:
        """``helper(a, b)`` -> ``twin(a, b, m)``, an unmasked operand checked as elementwise."""
        *checks, plain = self.elementwise(stmt, mask)
        call = plain.value
        self.changed = True
        return [*checks, replace(plain, value=ir.Call(_ref(twin), (*call.args, ir.Name(mask))))]


def _only_default_axis(call: ir.Call) -> bool:
    """Whether the keywords only restate a full reduction's defaults (``axis=None``)."""
    defaults = {"axis": None, "keepdims": False}
    return all(
        k in defaults and isinstance(v, ir.Const) and v.value is defaults[k] for k, v in call.kwargs
    )


def _free_names(fn: ir.FunctionDef) -> set[str]:
    """The names of the enclosing function a local function (or one inside it) reads: those
    it reads that are neither its parameters nor assigned in it (Python's scoping)."""
    reads: set[str] = set()
    local = set(fn.param_names)
    for stmt in fn.body:
        if isinstance(stmt, ir.LocalDef):
            reads |= _free_names(stmt.function)
        else:
            reads.update(dataflow.reads(stmt))
        local.update(dataflow.writes(stmt))
    return reads - local
