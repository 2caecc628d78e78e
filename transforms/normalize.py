"""A-normal form: one primitive call per statement, every argument an atom.

Derivative rules apply per primitive, so the transforms want exactly one
primitive per statement. This pass flattens nested expressions into
temporaries, and desugars what the frontend kept close to the source:

* methods and attributes of arrays become NumPy calls (``x.sum(axis=0)`` ->
  ``np.sum(x, axis=0)``, ``x.T`` -> ``np.transpose(x)``, ``x.shape`` -> ``np.shape(x)``);
* ``x += v`` becomes ``x = x + v``; tuple unpacking becomes one assignment per
  name (evaluating the whole right side first, as Python does);
* in straight-line code every re-assignment gets a new name (``h``, ``h_1``...):
  static single assignment, so the reverse sweep can read any intermediate
  value without saving it.

Codegen later folds single-use temporaries back into their use, so the
generated code reads like the user's expressions again.
"""

from __future__ import annotations

import operator
from dataclasses import replace
from typing import Any

import numpy as np
from s2sgrad.transforms import dataflow
from s2sgrad.transforms.names import FreshNames

from s2sgrad import ir
from s2sgrad.errors import SourceLocation, UnsupportedSyntaxError


def _np_ref(fn: Any, name: str) -> ir.Ref:
    return ir.Ref(f"np.{name}", fn)


# Attributes of array values and the primitive each one reads through.
ATTRIBUTES: dict[str, ir.Ref] = {
    "T": _np_ref(np.transpose, "transpose"),
    "mT": (
        _np_ref(np.matrix_transpose, "matrix_transpose")
        if hasattr(np, "matrix_transpose")
        else _np_ref(np.transpose, "transpose")
    ),
    "shape": _np_ref(np.shape, "shape"),
    "ndim": _np_ref(np.ndim, "ndim"),
    "size": _np_ref(np.size, "size"),
    "dtype": _np_ref(np.result_type, "result_type"),
    "real": _np_ref(np.real, "real"),
    "imag": _np_ref(np.imag, "imag"),
}

# Methods of array values -> (NumPy function, whether extra positional args pack into one tuple).
METHODS: dict[str, tuple[ir.Ref, bool]] = {
    name: (_np_ref(getattr(np, target), target), packs)
    for name, target, packs in [
        ("sum", "sum", False),
        ("mean", "mean", False),
        ("prod", "prod", False),
        ("max", "max", False),
        ("min", "min", False),
        ("var", "var", False),
        ("std", "std", False),
        ("cumsum", "cumsum", False),
        ("cumprod", "cumprod", False),
        ("reshape", "reshape", True),
        ("transpose", "transpose", True),
        ("dot", "dot", False),
        ("squeeze", "squeeze", False),
        ("ravel", "ravel", False),
        ("flatten", "ravel", False),
        ("copy", "copy", False),
        ("clip", "clip", False),
        ("swapaxes", "swapaxes", False),
        ("trace", "trace", False),
        ("diagonal", "diagonal", False),
        ("repeat", "repeat", False),
        ("round", "round", False),
        ("conj", "conj", False),
        ("argmax", "argmax", False),
        ("argmin", "argmin", False),
        ("argsort", "argsort", False),
        ("astype", "asarray", False),
        ("all", "all", False),
        ("any", "any", False),
    ]
}


class _Normalizer:
    def __init__(self, fn: ir.FunctionDef, ssa: bool):
        self.fn = fn
        self.ssa = ssa
        self.names = FreshNames(dataflow.all_local_names(fn))
        self.temps: set[str] = set()
        self.version: dict[str, str] = {p: p for p in fn.param_names}
        self.loc: SourceLocation | None = fn.loc
        self.local_defs: dict[str, ir.FunctionDef] = {}  # nested defs, normalized and structured
        self.inlining: list[str] = []

    # -------------------------------------------------------------- names

    def read(self, name: str) -> ir.Name:
        return ir.Name(self.version.get(name, name))

    def bind(self, name: str) -> ir.Name:
        """The name a (re)assignment of user variable ``name`` writes to."""
        if not self.ssa:
            return ir.Name(name)
        if name in self.version:
            new = self.names.fresh(name)
        else:
            new = name
            self.names.reserve(name)
        self.version[name] = new
        return ir.Name(new)

    def temp(self) -> ir.Name:
        name = self.names.temp()
        self.temps.add(name)
        return ir.Name(name)

    # -------------------------------------------------------------- statements

    def block(self, body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out: list[ir.Stmt] = []
        for stmt in body:
            self.loc = getattr(stmt, "loc", None) or self.loc
            out.extend(self.statement(stmt))
        return tuple(out)

    def statement(self, stmt: ir.Stmt) -> list[ir.Stmt]:
        pre: list[ir.Stmt] = []
        loc = stmt.loc
        if isinstance(stmt, ir.Assign):
            value = self.expression(stmt.value, pre)
            (target,) = stmt.targets
            return pre + [ir.Assign((self.bind(target.id),), value, loc)]
        if isinstance(stmt, ir.AugAssign):
            return self.augmented(stmt)
        if isinstance(stmt, ir.SetItem):
            idx = self.index(stmt.index, pre)
            value = self.atom(stmt.value, pre)
            return pre + [ir.SetItem(self.read(stmt.target.id), idx, value, loc)]
        if isinstance(stmt, ir.Unpack):
            return self.unpack(stmt.pattern, stmt.value, loc)
        if isinstance(stmt, ir.Return):
            value = self.expression(stmt.value, pre)
            if not isinstance(value, ir.Name) or value.id in self.temps:
                out = ir.Name(self.names.fresh("out"))
                pre.append(ir.Assign((out,), value, loc))
                value = out
            return pre + [ir.Return(value, loc)]
        if isinstance(stmt, ir.If):
            test = self.atom(stmt.test, pre)
            return pre + [
                replace(stmt, test=test, body=self.block(stmt.body), orelse=self.block(stmt.orelse))
            ]
        if isinstance(stmt, ir.For):
            it = self.expression(stmt.iter, pre)
            return pre + [replace(stmt, iter=it, body=self.block(stmt.body))]
        if isinstance(stmt, ir.While):
            test_block: list[ir.Stmt] = []
            test = self.atom(stmt.test, test_block)
            return [
                replace(stmt, test_block=tuple(test_block), test=test, body=self.block(stmt.body))
            ]
        if isinstance(stmt, (ir.Break, ir.Continue, ir.NewStack)):
            return [stmt]
        if isinstance(stmt, ir.Push):  # saves of derivative code read back (higher order)
            return pre + [replace(stmt, value=self.atom(stmt.value, pre))]
        if isinstance(stmt, ir.Pop):
            return [replace(stmt, target=self.bind(stmt.target.id))]
        if isinstance(stmt, ir.LocalDef):
            self.local_def(stmt.function)
            return []
        raise TypeError(f"unexpected statement {stmt!r}")

    def augmented(self, stmt: ir.AugAssign) -> list[ir.Stmt]:
        """``x += v`` is ``x = x + v``; ``x[i] += v`` reads ``x[i]``, adds, and writes back."""
        pre: list[ir.Stmt] = []
        loc = stmt.loc
        if isinstance(stmt.target, ir.Name):
            current = self.read(stmt.target.id)
            rhs = self.atom(stmt.value, pre)
            value = ir.Call(_op(stmt.op), (current, rhs))
            return pre + [ir.Assign((self.bind(stmt.target.id),), value, loc)]
        base, index = stmt.target
        idx = self.index(index, pre)
        old = self.temp()
        pre.append(
            ir.Assign((old,), ir.Call(_op(operator.getitem), (self.read(base.id), idx)), loc)
        )
        rhs = self.atom(stmt.value, pre)
        new = self.temp()
        pre.append(ir.Assign((new,), ir.Call(_op(stmt.op), (old, rhs)), loc))
        return pre + [ir.SetItem(self.read(base.id), idx, new, loc)]

    def local_def(self, inner: ir.FunctionDef) -> None:
        """Normalize a nested ``def`` on its own; calls of it are inlined later. Earlier
        nested defs are visible inside this one (and inlined there too)."""
        from s2sgrad.transforms.structure import structure

        self.local_defs[inner.name] = structure(
            normalize(inner, dict(self.local_defs), defining=inner.name)
        )

    def unpack(self, pattern: Any, value: Any, loc) -> list[ir.Stmt]:
        pre: list[ir.Stmt] = []
        if isinstance(value, ir.Seq) and isinstance(pattern, tuple):
            if len(value.elts) != len(pattern):
                raise UnsupportedSyntaxError(
                    f"cannot unpack {len(value.elts)} values into {len(pattern)} names",
                    loc,
                )
            # Evaluate every right-hand element before binding any name (a, b = b, a).
            atoms = [self.atom(e, pre) for e in value.elts]
            if not self.ssa:
                atoms = [self.copy_to_temp(a, pre) for a in atoms]
            out = pre
            for sub, atom in zip(pattern, atoms):
                out += self.unpack(sub, atom, loc)
            return out
        if isinstance(pattern, ir.Name):
            val = self.expression(value, pre)
            return pre + [ir.Assign((self.bind(pattern.id),), val, loc)]
        # Unpacking reads a tuple-valued *name*: a call's result gets one first, so the
        # transforms see `t = f(x)` (a primitive with one, tuple, output) and `a, b = t`.
        val = self.atom(value, pre)
        flat: list[ir.Name] = []
        nested: list[tuple[Any, ir.Name]] = []
        for sub in pattern:
            if isinstance(sub, ir.Name):
                flat.append(self.bind(sub.id))
            else:
                t = self.temp()
                flat.append(t)
                nested.append((sub, t))
        out = pre + [ir.Assign(tuple(flat), val, loc)]
        for sub, t in nested:
            out += self.unpack(sub, t, loc)
        return out

    def copy_to_temp(self, atom: Any, pre: list[ir.Stmt]) -> Any:
        if not isinstance(atom, ir.Name):
            return atom
        t = self.temp()
        pre.append(ir.Assign((t,), atom, self.loc))
        return t

    # -------------------------------------------------------------- expressions

    def expression(self, e: Any, pre: list[ir.Stmt]) -> Any:
        """Lower ``e`` to a single primitive call or an atom, hoisting its operands."""
        if isinstance(e, ir.Name):
            if e.id in self.local_defs:
                raise UnsupportedSyntaxError(
                    f"the nested function `{e.id}` is used as a value",
                    self.loc,
                    "call it directly, or define it at module level",
                )
            return self.read(e.id)
        if isinstance(e, (ir.Const, ir.Ref)):
            return e
        if isinstance(e, ir.Seq):
            keys = None if e.keys is None else tuple(self.atom(k, pre) for k in e.keys)
            return ir.Seq(e.kind, tuple(self.atom(x, pre) for x in e.elts), keys)
        if isinstance(e, ir.Index):
            return self.index(e, pre)
        if isinstance(e, ir.Call) and isinstance(e.fn, ir.Name) and e.fn.id in self.inlining:
            raise UnsupportedSyntaxError(
                f"the nested function `{e.fn.id}` calls itself",
                self.loc,
                "define recursive functions at module level",
            )
        if isinstance(e, ir.Call) and isinstance(e.fn, ir.Name) and e.fn.id in self.local_defs:
            return self.inline(e, pre)
        if isinstance(e, ir.Call):
            fn = e.fn
            if not isinstance(fn, ir.Ref):
                raise UnsupportedSyntaxError(
                    "calling a computed value is not supported",
                    self.loc,
                    "call a function by its name",
                )
            args = tuple(self.atom(a, pre) for a in e.args)
            kwargs = tuple((k, self.atom(v, pre)) for k, v in e.kwargs)
            return ir.Call(fn, args, kwargs)
        if isinstance(e, ir.Attribute):
            ref = ATTRIBUTES.get(e.attr)
            if ref is None:
                raise UnsupportedSyntaxError(
                    f"attribute `.{e.attr}` of an array is not supported",
                    self.loc,
                    "use the equivalent NumPy function, e.g. np.shape(x) for x.shape",
                )
            return ir.Call(ref, (self.atom(e.value, pre),))
        if isinstance(e, ir.MethodCall):
            return self.method(e, pre)
        if isinstance(e, ir.IfExp):
            return self.conditional(e.test, e.body, e.orelse, pre)
        if isinstance(e, ir.BoolOp):
            return self.boolean(e, pre)
        raise TypeError(f"unexpected expression {e!r}")

    def conditional(self, test: Any, body: Any, orelse: Any, pre: list[ir.Stmt]) -> ir.Name:
        """``body if test else orelse`` -> an ``if`` assigning one result in each branch.

        Only the branch taken is evaluated, as in Python.
        """
        result = ir.Name(self.names.fresh("choice"))
        test_atom = self.atom(test, pre)
        branches = []
        for e in (body, orelse):
            stmts: list[ir.Stmt] = []
            value = self.expression(e, stmts)
            stmts.append(ir.Assign((result,), value, self.loc))
            branches.append(tuple(stmts))
        pre.append(ir.If(test_atom, branches[0], branches[1], self.loc))
        return result

    def boolean(self, e: ir.BoolOp, pre: list[ir.Stmt]) -> ir.Name:
        """``a and b`` is ``b if a else a``; ``a or b`` is ``a if a else b`` (``a`` evaluated once)."""
        left = (
            self.copy_to_temp(self.atom(e.left, pre), pre)
            if not self.ssa
            else self.atom(e.left, pre)
        )
        if e.op == "and":
            return self.conditional(left, e.right, left, pre)
        return self.conditional(left, left, e.right, pre)

    def inline(self, call: ir.Call, pre: list[ir.Stmt]) -> ir.Name:
        """A call of a nested ``def``: its body, inlined with fresh names (see transforms.inline)."""
        from s2sgrad.transforms.inline import inline_call

        name = call.fn.id
        if name in self.inlining:
            raise UnsupportedSyntaxError(
                f"the nested function `{name}` calls itself",
                self.loc,
                "define recursive functions at module level",
            )
        args = tuple(self.atom(a, pre) for a in call.args)
        kwargs = tuple((k, self.atom(v, pre)) for k, v in call.kwargs)
        self.inlining.append(name)
        try:
            stmts, result, temps = inline_call(
                self.local_defs[name], args, kwargs, self.names, self.read, self.loc
            )
        finally:
            self.inlining.pop()
        self.temps |= temps
        pre.extend(stmts)
        return result

    def atom(self, e: Any, pre: list[ir.Stmt]) -> Any:
        value = self.expression(e, pre)
        if isinstance(value, ir.Call):
            t = self.temp()
            pre.append(ir.Assign((t,), value, self.loc))
            return t
        return value

    def index(self, index: ir.Index, pre: list[ir.Stmt]) -> ir.Index:
        items = []
        for it in index.items:
            if isinstance(it, ir.Slice):
                items.append(
                    ir.Slice(
                        *(
                            None if p is None else self.atom(p, pre)
                            for p in (it.lower, it.upper, it.step)
                        )
                    )
                )
            else:
                items.append(self.atom(it, pre))
        return ir.Index(tuple(items))

    def method(self, e: ir.MethodCall, pre: list[ir.Stmt]) -> ir.Call:
        entry = METHODS.get(e.method)
        if entry is None:
            raise UnsupportedSyntaxError(
                f"method `.{e.method}()` is not supported",
                self.loc,
                f"call the NumPy function instead, e.g. np.{e.method}(x, ...)",
            )
        ref, packs = entry
        obj = self.atom(e.obj, pre)
        args = [self.atom(a, pre) for a in e.args]
        if packs and len(args) > 1:
            args = [ir.Seq("tuple", tuple(args))]
        kwargs = tuple((k, self.atom(v, pre)) for k, v in e.kwargs)
        return ir.Call(ref, (obj, *args), kwargs)


def _op(fn: Any) -> ir.Ref:
    return ir.Ref(f"operator.{fn.__name__}", fn)


def is_straight_line(body: tuple[ir.Stmt, ...]) -> bool:
    """True when a body has no branches, loops or in-place updates."""
    return not any(
        ir.is_compound(s)
        or isinstance(s, (ir.Break, ir.Continue, ir.SetItem))
        or (isinstance(s, ir.AugAssign) and not isinstance(s.target, ir.Name))
        for s in ir.walk_stmts(body)
    )


def normalize(
    fn: ir.FunctionDef,
    local_defs: dict[str, ir.FunctionDef] | None = None,
    defining: str | None = None,
) -> ir.FunctionDef:
    """Surface IR -> A-normal form (and SSA names, for straight-line code).

    ``local_defs`` are nested functions of an enclosing function visible here.
    """
    n = _Normalizer(fn, ssa=is_straight_line(fn.body))
    n.local_defs.update(local_defs or {})
    if defining is not None:
        n.inlining.append(defining)  # a nested function calling itself is refused
    body = n.block(fn.body)
    return replace(fn, body=body, temps=frozenset(n.temps) | fn.temps)
