"""Read a Python function's source and lower it to (surface) IR.

The frontend does three things, in one walk over the libcst tree:

* keeps the position of every statement and expression, mapped back to the
  user's file (``inspect.getsource`` gives a dedented snippet; we shift lines
  and columns back), so every later error and every generated comment can
  point at the user's line;
* resolves every free name to the object it denotes *now*, through the
  function's closure cells, then its globals, then builtins. ``np.sin``,
  ``numpy.sin`` and ``from numpy import sin`` all become ``Ref(..., numpy.sin)``:
  rules are looked up by identity, whatever the import style;
* turns operators into calls of the ``operator`` module's functions
  (``a + b`` -> ``operator.add(a, b)``, ``x[i]`` -> ``operator.getitem(x, i)``),
  so the rest of the compiler sees only calls of primitives.

Expressions stay nested here; ``transforms.normalize`` flattens them.
Anything outside the supported subset raises ``UnsupportedSyntaxError`` with
the file, line, column and a hint.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import operator
import re
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libcst as cst
import numpy as np
from libcst.metadata import MetadataWrapper, PositionProvider

from s2sgrad import directives, ir, randomness, running, sources
from s2sgrad.errors import (
    RandomDrawError,
    SourceLocation,
    SourceUnavailableError,
    UnsupportedSyntaxError,
)

BINARY_OPERATORS: dict[type, Callable] = {
    cst.Add: operator.add,
    cst.Subtract: operator.sub,
    cst.Multiply: operator.mul,
    cst.Divide: operator.truediv,
    cst.FloorDivide: operator.floordiv,
    cst.Modulo: operator.mod,
    cst.Power: operator.pow,
    cst.MatrixMultiply: operator.matmul,
    cst.BitAnd: operator.and_,
    cst.BitOr: operator.or_,
    cst.BitXor: operator.xor,
    cst.LeftShift: operator.lshift,
    cst.RightShift: operator.rshift,
}

AUGMENTED_OPERATORS: dict[type, Callable] = {
    cst.AddAssign: operator.add,
    cst.SubtractAssign: operator.sub,
    cst.MultiplyAssign: operator.mul,
    cst.DivideAssign: operator.truediv,
    cst.FloorDivideAssign: operator.floordiv,
    cst.ModuloAssign: operator.mod,
    cst.PowerAssign: operator.pow,
    cst.MatrixMultiplyAssign: operator.matmul,
}

UNARY_OPERATORS: dict[type, Callable] = {
    cst.Minus: operator.neg,
    cst.Plus: operator.pos,
    cst.Not: operator.not_,
    cst.BitInvert: operator.invert,
}

COMPARISON_OPERATORS: dict[type, Callable] = {
    cst.LessThan: operator.lt,
    cst.LessThanEqual: operator.le,
    cst.GreaterThan: operator.gt,
    cst.GreaterThanEqual: operator.ge,
    cst.Equal: operator.eq,
    cst.NotEqual: operator.ne,
    cst.Is: operator.is_,
    cst.IsNot: operator.is_not,
}

# Statement kinds we refuse, with the advice we give.
_UNSUPPORTED_STATEMENTS: dict[type, tuple[str, str]] = {
    cst.Try: ("try/except", "move error handling outside the differentiated function"),
    cst.With: ("with statements", "move the context manager outside the differentiated function"),
    cst.ClassDef: ("class definitions", "define the class at module level"),
    cst.Global: ("global statements", "return the value instead of writing a global"),
    cst.Nonlocal: ("nonlocal statements", "return the value instead of writing an outer variable"),
    cst.Raise: ("raise", "validate inputs before calling the differentiated function"),
    cst.Del: ("del", "remove the del statement; s2sgrad manages lifetimes"),
    cst.Import: ("imports inside the function", "import at module level"),
    cst.ImportFrom: ("imports inside the function", "import at module level"),
    cst.Match: ("match statements", "use if/elif/else"),
}


@dataclass(frozen=True)
class SourceInfo:
    """Where a function's source lives, to map snippet positions back to the file."""

    filename: str
    first_line: int  # 1-based line of the snippet's first line in the file
    indent: int  # columns removed by dedent
    file_lines: tuple[str, ...]  # the snippet's lines, before dedent


def get_source(fn: Callable) -> tuple[str, SourceInfo]:
    """The dedented source of ``fn`` and where it came from, or SourceUnavailableError.

    The source of what runs: read through the code object, so a decorator's wrapper
    gives its own source (``inspect`` would follow ``__wrapped__``), and checked
    against that code object, so an edit to the file after import is refused
    (``sources.check_source_current``).
    """
    target = running.function_that_runs(fn)
    try:
        if isinstance(target, types.FunctionType):
            lines, first_line = sources.source_lines(target)
        else:
            lines, first_line = inspect.getsourcelines(target)
        filename = inspect.getsourcefile(target) or inspect.getfile(target)
    except (OSError, TypeError) as exc:
        name = getattr(target, "__qualname__", repr(target))
        raise SourceUnavailableError(
            f"cannot read the source of {name}: {exc}",
            hint="define the function with `def` in a .py file (or a notebook cell); "
            "builtins and C extensions cannot be transformed, register a rule for them instead",
        ) from None
    if isinstance(target, types.FunctionType):
        sources.check_source_current(target, lines)
    raw = "".join(lines)
    dedented = textwrap.dedent(raw)
    first = next((ln for ln in lines if ln.strip()), "")
    first_dedented = next((ln for ln in dedented.splitlines(True) if ln.strip()), "")
    indent = len(first) - len(first_dedented)
    return dedented, SourceInfo(filename, first_line, indent, tuple(lines))


# Expressions s2sgrad refuses: node types, what the message calls them, what to do instead.
_REFUSED_EXPRESSIONS = (
    (
        cst.Imaginary,
        "a complex number literal",
        "s2sgrad differentiates real-valued code only; complex support is not there yet",
    ),
    (cst.Lambda, "lambda", "define a named function at module level"),
    (
        (cst.ListComp, cst.GeneratorExp, cst.SetComp, cst.DictComp),
        "comprehensions",
        "use a vectorized NumPy expression or np.stack of a list",
    ),
    (cst.FormattedString, "f-strings", "format strings outside the function"),
    (cst.NamedExpr, "the walrus operator", "use a separate assignment"),
    (
        (cst.Yield, cst.Await),
        "generators and coroutines",
        "return an array instead of yielding values",
    ),
    (cst.Set, "set literals", "use a list or an array"),
)


class _Lowering:
    """One libcst FunctionDef -> ir.FunctionDef, with names resolved against ``fn``."""

    def __init__(self, fn: Callable, positions: _Positions, info: SourceInfo):
        self.fn = fn
        self.positions = positions
        self.info = info
        self.walrus = any(":=" in line for line in info.file_lines)
        self.locals: set[str] = set()
        # A decorator's forwarding wrapper, ``def wrapper(*args, **kwargs)``: its star
        # parameters' names, and the parameters of the function it wraps, which stand in
        # for them (name in the IR, name in the wrapped signature, keyword-only?).
        self.star_names: dict[str, str] = {}
        self.forwarded: list[tuple[str, str, bool]] = []
        # In derivative code s2sgrad generated: the lists its forward sweep saves values on,
        # and per line of the snippet, the user's line its `# line N: ...` comment names.
        self.stacks: frozenset[str] = frozenset()
        self.origins: dict[int, SourceLocation] = (
            _comment_origins(info.file_lines) if is_derivative_code(fn) else {}
        )

    # ---------------------------------------------------------------- positions

    def loc(self, node: cst.CSTNode) -> SourceLocation:
        pos = self.positions.start(node)
        if pos is None:
            return SourceLocation(self.info.filename, self.info.first_line, 0, "")
        line_in_snippet, column = pos
        line = self.info.first_line + line_in_snippet - 1
        col = column + (self.info.indent if line_in_snippet else 0)
        text = ""
        if 0 < line_in_snippet <= len(self.info.file_lines):
            text = self.info.file_lines[line_in_snippet - 1]
        origin = self.origins.get(line_in_snippet) if self.origins else None
        return SourceLocation(self.info.filename, line, col, text, origin)

    def unsupported(self, node: cst.CSTNode, what: str, hint: str) -> UnsupportedSyntaxError:
        return UnsupportedSyntaxError(f"{what} is not supported", self.loc(node), hint)

    def checkpoint_directive(self, node: cst.For | cst.While) -> int | None:
        """The snapshots a ``# s2sgrad: checkpoint(snapshots=N)`` comment asks of a loop, on
        its header line or a line right above it (``s2sgrad.directives``)."""
        comments = [line.comment for line in node.leading_lines[-1:]]
        if isinstance(node.body, cst.IndentedBlock):
            comments.append(node.body.header.comment)
        found = None
        for comment in comments:
            if comment is None:
                continue
            try:
                n = directives.checkpoint_snapshots(comment.value)
            except directives.DirectiveError as exc:
                raise UnsupportedSyntaxError(str(exc), self.loc(node), directives.HINT) from None
            if n is not None:
                found = n
                self.directives_taken.add(id(comment))
        return found

    def require_directives_taken(self, node: cst.FunctionDef) -> None:
        """A ``# s2sgrad:`` comment that no loop took (on another statement, or below
        one) is an error: it would otherwise change nothing, without a word."""
        if not any("s2sgrad" in line for line in self.info.file_lines):
            return  # (the common case, without walking the tree)
        for comment in _comments(node):
            if directives.directive_text(comment.value) is not None:
                if id(comment) not in self.directives_taken:
                    raise UnsupportedSyntaxError(
                        "this s2sgrad directive is not on a loop",
                        self.loc(comment),
                        directives.HINT,
                    )

    # ---------------------------------------------------------------- function

    def function(self, node: cst.FunctionDef) -> ir.FunctionDef:
        forwarding = running.forwarding_parameters(self.fn)
        if forwarding is not None:
            params = self.forwarding_parameters(node, forwarding)
        else:
            params = self.parameters(node.params)
        self.locals = {p.name for p in params} | _assigned_names(node.body, self.walrus)
        self.stacks = _stack_names(node.body) if is_derivative_code(self.fn) else frozenset()
        self.directives_taken: set[int] = set()  # ids of the comments loops took
        body = self.block(node.body)
        self.require_directives_taken(node)
        docstring = node.get_docstring()
        return ir.FunctionDef(
            name=node.name.value,
            params=params,
            body=body,
            loc=self.loc(node),
            qualname=getattr(self.fn, "__qualname__", node.name.value),
            filename=self.info.filename,
            docstring=docstring,
            derivative_code=is_derivative_code(self.fn),
        )

    def local_def(self, node: cst.FunctionDef) -> ir.LocalDef:
        """A nested ``def``: its own scope, reading the enclosing function's variables."""
        if node.decorators:
            raise self.unsupported(
                node, "decorated nested functions", "define it without decorators"
            )
        outer = self.locals
        params = self.parameters(node.params)
        self.locals = outer | {p.name for p in params} | _assigned_names(node.body, self.walrus)
        try:
            body = self.block(node.body)
        finally:
            self.locals = outer
        inner = ir.FunctionDef(
            name=node.name.value,
            params=params,
            body=body,
            loc=self.loc(node),
            qualname=node.name.value,
            filename=self.info.filename,
        )
        return ir.LocalDef(inner, self.loc(node))

    def forwarding_parameters(
        self, node: cst.FunctionDef, names: tuple[str | None, str | None]
    ) -> tuple[ir.Param, ...]:
        """A decorator's ``wrapper(*args, **kwargs)`` takes the wrapped function's parameters
        (what ``inspect.signature`` reports for it); ``fn(*args, **kwargs)`` in its body
        passes them on (see ``call``). Any other use of ``args``/``kwargs`` is refused."""
        star, starstar = names
        self.star_names = {star: "*"}
        if starstar is not None:
            self.star_names[starstar] = "**"
        taken = _all_names(node) | set(self.star_names)
        params = []
        for p in running.signature(self.fn).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise self.unsupported(
                    node,
                    f"the decorator wrapper {running.describe_wrapper(self.fn)} forwarding to a "
                    f"function that itself takes *{p.name}",
                    "give the decorated function explicit parameters",
                )
            name = p.name
            while name in taken:
                name += "_"
            taken.add(name)
            keyword_only = p.kind is p.KEYWORD_ONLY
            default = None if p.default is p.empty else ir.Const(p.default)
            params.append(
                ir.Param(name, default, kind="keyword_only" if keyword_only else "positional")
            )
            self.forwarded.append((name, p.name, keyword_only))
        return tuple(params)

    def parameters(self, params: cst.Parameters) -> tuple[ir.Param, ...]:
        wrapper = running.decorator_wrapper(self.fn)
        where = (
            f" in the wrapper of a decorator, {running.describe_wrapper(wrapper)}, other than "
            "exactly (*args, **kwargs) forwarded to the decorated function"
            if wrapper is not None
            else ""
        )
        if isinstance(params.star_arg, cst.Param):
            raise self.unsupported(
                params.star_arg, "*args" + where, "list the parameters explicitly or pass a tuple"
            )
        if params.star_kwarg is not None:
            raise self.unsupported(
                params.star_kwarg,
                "**kwargs" + where,
                "list the parameters explicitly or pass a dict",
            )
        out = []
        for p in (*params.posonly_params, *params.params):
            out.append(ir.Param(p.name.value, self.default(p)))
        for p in params.kwonly_params:
            out.append(ir.Param(p.name.value, self.default(p), kind="keyword_only"))
        return tuple(out)

    def default(self, p: cst.Param) -> ir.Const | None:
        if p.default is None:
            return None
        value = self.expr(p.default)
        if isinstance(value, ir.Const):
            return value
        if isinstance(value, ir.Ref):
            return ir.Const(value.value)
        # Simple constant expressions such as -1 or (0, 1).
        try:
            return ir.Const(_const_value(value))
        except ValueError:
            raise self.unsupported(
                p.default, "a non-constant default value", "use a constant default"
            ) from None

    # ---------------------------------------------------------------- statements

    def block(self, body: cst.BaseSuite) -> tuple[ir.Stmt, ...]:
        if isinstance(body, cst.SimpleStatementSuite):
            stmts: list[ir.Stmt] = []
            for small in body.body:
                stmts.extend(self.small_statement(small, body))
            return tuple(stmts)
        out: list[ir.Stmt] = []
        for i, stmt in enumerate(body.body):
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if i == 0 and _is_docstring(small):
                        continue
                    out.extend(self.small_statement(small, stmt))
            else:
                out.append(self.compound_statement(stmt))
        return tuple(out)

    def small_statement(self, node: cst.BaseSmallStatement, line: cst.CSTNode) -> list[ir.Stmt]:
        loc = self.loc(line) if isinstance(line, cst.SimpleStatementLine) else self.loc(node)
        loc = dataclasses.replace(loc, col=self.loc(node).col)
        saved = self.stack_statement(node, loc)
        if saved is not None:
            return [saved]
        if isinstance(node, cst.Assign):
            value = self.expr(node.value)
            return [self.assignment(t.target, value, loc) for t in node.targets]
        if isinstance(node, cst.AnnAssign):
            if node.value is None:
                return []
            return [self.assignment(node.target, self.expr(node.value), loc)]
        if isinstance(node, cst.AugAssign):
            op = AUGMENTED_OPERATORS.get(type(node.operator))
            if op is None:
                raise self.unsupported(node, "this augmented assignment", "write it out in full")
            target = node.target
            if isinstance(target, cst.Name):
                return [ir.AugAssign(ir.Name(target.value), op, self.expr(node.value), loc)]
            if isinstance(target, cst.Subscript):
                base, index = self.subscript_parts(target)
                return [ir.AugAssign((base, index), op, self.expr(node.value), loc)]
            raise self.unsupported(target, "augmented assignment to this target", "use a name")
        if isinstance(node, cst.Return):
            if node.value is None:
                raise self.unsupported(
                    node, "return without a value", "return the value to differentiate"
                )
            return [ir.Return(self.expr(node.value), loc)]
        if isinstance(node, cst.Pass):
            return []
        if isinstance(node, cst.Del) and is_derivative_code(self.fn):
            return []  # generated code's own releases of dead values (ir.Release)
        if isinstance(node, cst.Break):
            return [ir.Break(loc)]
        if isinstance(node, cst.Continue):
            return [ir.Continue(loc)]
        if isinstance(node, cst.Expr) and isinstance(node.value, (cst.Yield, cst.Await)):
            return [self.expr(node.value)]  # raises the generator/coroutine error
        if isinstance(node, cst.Expr):
            raise self.unsupported(
                node,
                "an expression statement (a call whose result is discarded)",
                "s2sgrad differentiates pure functions: remove side effects such as print() "
                "from the differentiated function, or assign the result",
            )
        for kind, (what, hint) in _UNSUPPORTED_STATEMENTS.items():
            if isinstance(node, kind):
                raise self.unsupported(node, what, hint)
        raise self.unsupported(node, f"the statement `{type(node).__name__}`", "rewrite it")

    def stack_statement(self, node: cst.BaseSmallStatement, loc) -> ir.Stmt | None:
        """The save idiom of generated derivative code, read back as the IR it was printed
        from: ``s = []`` (NewStack), ``s.append(v)`` (Push), ``t = s.pop()`` (Pop). Only in
        s2sgrad's own modules, on the names ``_stack_names`` found (higher order)."""
        if not self.stacks:
            return None
        if isinstance(node, cst.Expr):
            stack, method, args = _stack_method(node.value)
            if stack in self.stacks and method == "append" and len(args) == 1:
                return ir.Push(stack, self.expr(args[0].value), DERIVATIVE_CODE_LOOP, loc)
            return None
        if not isinstance(node, cst.Assign) or len(node.targets) != 1:
            return None
        target = node.targets[0].target
        if not isinstance(target, cst.Name):
            return None
        if target.value in self.stacks and isinstance(node.value, cst.List):
            if not node.value.elements:
                return ir.NewStack(target.value, DERIVATIVE_CODE_LOOP, loc)
            return None
        stack, method, args = _stack_method(node.value)
        if stack in self.stacks and method == "pop" and not args:
            return ir.Pop(ir.Name(target.value), stack, DERIVATIVE_CODE_LOOP, loc)
        return None

    def assignment(self, target: cst.BaseAssignTargetExpression, value, loc) -> ir.Stmt:
        if isinstance(target, cst.Name):
            return ir.Assign((ir.Name(target.value),), value, loc)
        if isinstance(target, (cst.Tuple, cst.List)):
            return ir.Unpack(self.pattern(target), value, loc)
        if isinstance(target, cst.Subscript):
            base, index = self.subscript_parts(target)
            return ir.SetItem(base, index, value, loc)
        raise self.unsupported(
            target,
            "assignment to an attribute" if isinstance(target, cst.Attribute) else "this target",
            "assign to a local variable",
        )

    def subscript_parts(self, target: cst.Subscript) -> tuple[ir.Name, ir.Index]:
        if not isinstance(target.value, cst.Name) or target.value.value not in self.locals:
            raise self.unsupported(
                target,
                "assignment into a subscript of a non-local value",
                "copy the array into a local variable first (y = x.copy(); y[i] = v)",
            )
        return ir.Name(target.value.value), self.index(target)

    def pattern(self, target: cst.CSTNode):
        if isinstance(target, cst.Name):
            return ir.Name(target.value)
        if isinstance(target, (cst.Tuple, cst.List)):
            parts = []
            for el in target.elements:
                if isinstance(el, cst.StarredElement):
                    raise self.unsupported(el, "starred unpacking", "unpack each element by name")
                parts.append(self.pattern(el.value))
            return tuple(parts)
        raise self.unsupported(target, "this unpacking target", "unpack into plain names")

    def compound_statement(self, node: cst.BaseCompoundStatement) -> ir.Stmt:
        loc = self.loc(node)
        if isinstance(node, cst.If):
            orelse: tuple[ir.Stmt, ...] = ()
            if isinstance(node.orelse, cst.If):
                orelse = (self.compound_statement(node.orelse),)
            elif isinstance(node.orelse, cst.Else):
                orelse = self.block(node.orelse.body)
            return ir.If(self.expr(node.test), self.block(node.body), orelse, loc)
        if isinstance(node, cst.For):
            if node.orelse is not None:
                raise self.unsupported(node.orelse, "for/else", "use a flag variable instead")
            if node.asynchronous is not None:
                raise self.unsupported(node, "async for", "use a plain for loop")
            return ir.For(
                self.pattern(node.target),
                self.expr(node.iter),
                self.block(node.body),
                loc,
                checkpoint=self.checkpoint_directive(node),
            )
        if isinstance(node, cst.While):
            if node.orelse is not None:
                raise self.unsupported(node.orelse, "while/else", "use a flag variable instead")
            return ir.While(
                (),
                self.expr(node.test),
                self.block(node.body),
                loc,
                checkpoint=self.checkpoint_directive(node),
            )
        if isinstance(node, cst.FunctionDef):
            return self.local_def(node)
        for kind, (what, hint) in _UNSUPPORTED_STATEMENTS.items():
            if isinstance(node, kind):
                raise self.unsupported(node, what, hint)
        raise self.unsupported(node, f"the statement `{type(node).__name__}`", "rewrite it")

    # ---------------------------------------------------------------- expressions

    def expr(self, node: cst.BaseExpression):
        if isinstance(node, cst.Name):
            return self.name(node)
        if isinstance(node, (cst.Integer, cst.Float, cst.SimpleString, cst.ConcatenatedString)):
            return ir.Const(node.evaluated_value)
        if isinstance(node, cst.Ellipsis):
            return ir.Const(Ellipsis)
        if isinstance(node, (cst.BinaryOperation, cst.UnaryOperation)):
            return self.operation(node)
        if isinstance(node, cst.Comparison):
            return self.comparison(node)
        if isinstance(node, cst.Call):
            return self.call(node)
        if isinstance(node, cst.Attribute):
            return self.attribute(node)
        if isinstance(node, cst.Subscript):
            return self.subscript(node)
        if isinstance(node, (cst.Tuple, cst.List, cst.Dict)):
            return self.display(node)
        if isinstance(node, cst.IfExp):
            return ir.IfExp(self.expr(node.test), self.expr(node.body), self.expr(node.orelse))
        if isinstance(node, cst.BooleanOperation):
            op = "and" if isinstance(node.operator, cst.And) else "or"
            return ir.BoolOp(op, self.expr(node.left), self.expr(node.right))
        for kinds, what, hint in _REFUSED_EXPRESSIONS:
            if isinstance(node, kinds):
                raise self.unsupported(node, what, hint)
        raise self.unsupported(node, f"the expression `{type(node).__name__}`", "rewrite it")

    def operation(self, node: cst.BinaryOperation | cst.UnaryOperation) -> ir.Call | ir.Const:
        """``a + b``, ``-a``: calls of the ``operator`` functions (``-2.0`` is a constant)."""
        if isinstance(node, cst.BinaryOperation):
            op = BINARY_OPERATORS.get(type(node.operator))
            return ir.Call(_op_ref(op), (self.expr(node.left), self.expr(node.right)))
        op = UNARY_OPERATORS[type(node.operator)]
        operand = self.expr(node.expression)
        if op is operator.neg and isinstance(operand, ir.Const):
            return ir.Const(-operand.value)
        return ir.Call(_op_ref(op), (operand,))

    def subscript(self, node: cst.Subscript):
        """``x[i]`` (a call of ``operator.getitem``), or ``np.r_[...]``/``np.c_[...]``."""
        base = self.expr(node.value)
        if isinstance(base, ir.Ref) and (base.value is np.r_ or base.value is np.c_):
            return self.index_concatenation(node, base)
        return ir.Call(_op_ref(operator.getitem), (base, self.index(node)))

    def display(self, node: cst.Tuple | cst.List | cst.Dict) -> ir.Seq:
        """A tuple, list or dict literal, without ``*`` or ``**`` unpacking."""
        if isinstance(node, cst.Dict):
            keys, values = [], []
            for el in node.elements:
                if not isinstance(el, cst.DictElement):
                    raise self.unsupported(el, "`**` in dict literals", "list the entries")
                keys.append(self.expr(el.key))
                values.append(self.expr(el.value))
            return ir.Seq("dict", tuple(values), tuple(keys))
        elts = []
        for el in node.elements:
            if isinstance(el, cst.StarredElement):
                raise self.unsupported(el, "starred elements", "list the elements explicitly")
            elts.append(self.expr(el.value))
        return ir.Seq("tuple" if isinstance(node, cst.Tuple) else "list", tuple(elts))

    def name(self, node: cst.Name):
        n = node.value
        if n in ("True", "False", "None"):
            return ir.Const({"True": True, "False": False, "None": None}[n])
        if n in self.locals:
            return ir.Name(n)
        if n in self.star_names:
            raise self.unsupported(
                node,
                f"using `{n}` other than to forward it whole, as in fn(*args, **kwargs), in the "
                f"wrapper of a decorator, {running.describe_wrapper(self.fn)},",
                "forward the arguments unchanged, or give the wrapper explicit parameters",
            )
        value = running.free_name_binding(self.fn, n)[0]
        if value is running.UNBOUND:
            raise UnsupportedSyntaxError(
                f"name `{n}` is not defined", self.loc(node), "define it before differentiating"
            )
        return self.ref(node, n, value)

    def ref(self, node: cst.CSTNode, source: str, value: Any) -> ir.Ref:
        """A resolved name; a complex type (``dtype=complex``) is refused where it is named."""
        if isinstance(value, type) and issubclass(value, (complex, np.complexfloating)):
            raise self.unsupported(
                node,
                f"the complex type `{source}`",
                "s2sgrad differentiates real-valued code only; complex support is not there yet",
            )
        return ir.Ref(source, value)

    def attribute(self, node: cst.Attribute):
        base = self.expr(node.value)
        attr = node.attr.value
        if isinstance(base, ir.Ref) and isinstance(base.value, types.ModuleType):
            if not hasattr(base.value, attr):
                raise UnsupportedSyntaxError(
                    f"module `{base.source}` has no attribute `{attr}`", self.loc(node)
                )
            return self.ref(node, f"{base.source}.{attr}", getattr(base.value, attr))
        return ir.Attribute(base, attr)

    def call(self, node: cst.Call):
        func = self.expr(node.func)
        self.check_callee(node, func)
        args, kwargs = [], []
        for arg in node.args:
            if arg.star and self.forwards(arg):
                if arg.star == "*":
                    if kwargs:
                        raise self.unsupported(arg, "*args after keywords", "reorder")
                    args += [ir.Name(n) for n, _, kw_only in self.forwarded if not kw_only]
                else:
                    kwargs += [(orig, ir.Name(n)) for n, orig, kw_only in self.forwarded if kw_only]
                continue
            if arg.star:
                raise self.unsupported(arg, "*args/**kwargs in calls", "pass arguments explicitly")
            value = self.expr(arg.value)
            if isinstance(value, ir.Ref) and randomness.is_generator(value.value):
                raise self.random_draw(
                    arg, f"passing the random number generator `{value.source}` to a call"
                )
            if arg.keyword is not None:
                kwargs.append((arg.keyword.value, value))
            elif kwargs:
                raise self.unsupported(arg, "a positional argument after keywords", "reorder")
            else:
                args.append(value)
        if isinstance(func, ir.Attribute):
            return ir.MethodCall(func.value, func.attr, tuple(args), tuple(kwargs))
        from s2sgrad.transforms.templates import with_array_arguments

        return with_array_arguments(ir.Call(func, tuple(args), tuple(kwargs)))

    def forwards(self, arg: cst.Arg) -> bool:
        """``*args`` / ``**kwargs`` passed on whole by a decorator's forwarding wrapper."""
        return isinstance(arg.value, cst.Name) and self.star_names.get(arg.value.value) == arg.star

    def check_callee(self, node: cst.Call, func) -> None:
        """Refuse calls whose derivative would be wrong: of a derivative s2sgrad produced
        (higher order), and of anything that draws random numbers."""
        if isinstance(func, ir.Ref):
            if running.produced(func.value) is not None:
                from s2sgrad import composition

                if composition.settings(func.value) is None:
                    raise running.higher_order_error(
                        func.value, self.loc(node), func.source, called=True
                    )
                composition.require_composable(func.value, self.loc(node), func.source)
                return
            where = randomness.random_draw(func.value)
            if where is not None:
                raise self.random_draw(node, f"`{func.source}` ({where})")
            if isinstance(func.value, types.FunctionType):
                from s2sgrad.cache import _as_user_function

                if _as_user_function(func.value) is not None:
                    where = randomness.draws_in(
                        func.value, lambda f: _as_user_function(f) is not None
                    )
                    if where is not None:
                        _raise_draw_in(func.value)  # at the draw itself, where it can
                        raise self.random_draw(node, f"`{func.source}` ({where})")
        elif isinstance(func, ir.Attribute):
            base = func.value
            if isinstance(base, ir.Ref) and randomness.is_generator(base.value):
                raise self.random_draw(
                    node, f"`{base.source}.{func.attr}` (a method of {type(base.value).__name__})"
                )
            if func.attr in _DRAWING_METHODS and not isinstance(base, ir.Ref):
                raise self.random_draw(
                    node, f"`.{func.attr}()` (a method of random number generators)"
                )

    def random_draw(self, node: cst.CSTNode, what: str) -> RandomDrawError:
        return RandomDrawError(
            f"{what} may draw random numbers in a differentiated function: its derivative code "
            "runs parts of the function again (forward mode once per input element, reverse "
            "mode in the backward sweep of called functions and when vjp_fn is called), and "
            "each run would draw different numbers, so value and derivative would not match",
            self.loc(node),
            randomness.RANDOM_HINT,
        )

    def comparison(self, node: cst.Comparison):
        left = self.expr(node.left)
        parts = []
        for target in node.comparisons:
            op = COMPARISON_OPERATORS.get(type(target.operator))
            if op is None:
                raise self.unsupported(target, "`in`/`not in` comparisons", "compare explicitly")
            right = self.expr(target.comparator)
            parts.append(ir.Call(_op_ref(op), (left, right)))
            left = right
        if len(parts) > 1:
            raise self.unsupported(
                node, "chained comparisons", "split them: (a < b) & (b < c) or nested ifs"
            )
        return parts[0]

    def index_concatenation(self, node: cst.Subscript, base: ir.Ref) -> ir.Call:
        """``np.r_[a, 0:3, b]`` / ``np.c_[...]``: ``concatenate_items([a, np.arange(0, 3, 1), b],
        "r_", directive)``, a call with a derivative rule (see ``runtime.concatenate_items``).
        A slice item is the constant ``np.arange`` it stands for; a leading string is the
        directive (``"0,2"``); the matrix directives ``"r"``/``"c"`` are refused."""
        from s2sgrad import runtime

        how = "r_" if base.value is np.r_ else "c_"
        items, directive = [], None
        for k, element in enumerate(node.slice):
            s = element.slice
            if isinstance(s, cst.Slice):
                bounds = ((s.lower, 0), (s.upper, None), (s.step, 1))
                parts = tuple(ir.Const(d) if p is None else self.expr(p) for p, d in bounds)
                items.append(ir.Call(ir.Ref("np.arange", np.arange), parts))
                continue
            if s.star is not None:
                raise self.unsupported(s, "starred index", "list the items explicitly")
            value = self.expr(s.value)
            if k == 0 and isinstance(value, ir.Const) and isinstance(value.value, str):
                if value.value in ("r", "c"):
                    raise self.unsupported(
                        element,
                        f"the matrix directive {value.value!r} of `{base.source}[...]`",
                        "np.matrix results are not differentiated: use the directive "
                        "'0,2' (rows) or '1,2,0' (columns), or np.stack",
                    )
                directive = value.value
                continue
            items.append(value)
        if not items:
            raise self.unsupported(node, f"`{base.source}[...]` without items", "list the items")
        helper = ir.Ref("concatenate_items", runtime.concatenate_items)
        options = (("how", ir.Const(how)), ("directive", ir.Const(directive)))
        return ir.Call(helper, (ir.Seq("list", tuple(items)),), options)

    def index(self, node: cst.Subscript) -> ir.Index:
        items = []
        for el in node.slice:
            s = el.slice
            if isinstance(s, cst.Index):
                if s.star is not None:
                    raise self.unsupported(s, "starred index", "build the index tuple explicitly")
                items.append(self.expr(s.value))
            else:
                items.append(
                    ir.Slice(
                        self.expr(s.lower) if s.lower is not None else None,
                        self.expr(s.upper) if s.upper is not None else None,
                        self.expr(s.step) if s.step is not None else None,
                    )
                )
        return ir.Index(tuple(items))


def _raise_draw_in(fn: types.FunctionType) -> None:
    """Lower ``fn`` to raise its own RandomDrawError, at the line that draws; nothing if
    lowering stops elsewhere first."""
    try:
        parse_function(fn)
    except RandomDrawError:
        raise
    except Exception:  # noqa: BLE001 - any other refusal: report the draw at the call
        pass


# Generator methods that draw (a local variable's method of these names is refused as a draw).
_DRAWING_METHODS = randomness.RNG_METHODS - {"VERSION", "bit_generator", "f", "power"}


def _all_names(node: cst.CSTNode) -> set[str]:
    """Every identifier in ``node``."""
    names: set[str] = set()

    class Collect(cst.CSTVisitor):
        def visit_Name(self, name: cst.Name) -> None:
            names.add(name.value)

    node.visit(Collect())
    return names


#: The ``loop`` of saves read back from generated code: they are in some loop (a save
#: outside loops is printed as a plain assignment), which one the backends work out.
DERIVATIVE_CODE_LOOP = "<derivative code>"


_LINE_COMMENT = re.compile(r"\s*# line (\d+)(?:: (.*))?$")


def _comments(node: cst.CSTNode) -> list[cst.Comment]:
    """Every comment inside ``node``, in source order."""
    found: list[cst.Comment] = []

    class _Collector(cst.CSTVisitor):
        def visit_Comment(self, comment: cst.Comment) -> None:
            found.append(comment)

    node.visit(_Collector())
    return found


def _comment_origins(lines: list[str]) -> dict[int, SourceLocation]:
    """Snippet line -> the user's line that derivative code's last ``# line N: text``
    comment above it names (the second-order module's comments quote it)."""
    origins: dict[int, SourceLocation] = {}
    current = _SETUP  # the stacks made before the first statement
    for number, line in enumerate(lines, start=1):
        match = _LINE_COMMENT.match(line)
        if match:
            current = SourceLocation("", int(match.group(1)), 0, match.group(2) or "")
        else:
            origins[number] = current
    return origins


#: The origin of derivative code's own set-up, which no line of the user's made.
_SETUP = SourceLocation("", 0, 0, "")


def is_derivative_code(fn: Any) -> bool:
    """Whether ``fn`` is a function of a derivative module s2sgrad generated."""
    namespace = getattr(fn, "__globals__", None)
    return isinstance(namespace, dict) and isinstance(namespace.get("__s2sgrad_entry__"), str)


def _stack_method(node: cst.BaseExpression) -> tuple[str | None, str | None, tuple]:
    """``(s, m, args)`` for a call ``s.m(args)`` of a method of a name, else Nones."""
    if (
        isinstance(node, cst.Call)
        and isinstance(node.func, cst.Attribute)
        and isinstance(node.func.value, cst.Name)
    ):
        return node.func.value.value, node.func.attr.value, tuple(node.args)
    return None, None, ()


def _stack_names(body: cst.BaseSuite) -> frozenset[str]:
    """Names bound only to ``[]`` and used with ``.append``/``.pop``: the stacks of
    generated derivative code."""
    empty: set[str] = set()
    other: set[str] = set()
    used: set[str] = set()

    class Visitor(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            for t in node.targets:
                if isinstance(t.target, cst.Name):
                    made = isinstance(node.value, cst.List) and not node.value.elements
                    (empty if made else other).add(t.target.value)

        def visit_Call(self, node: cst.Call) -> None:
            stack, method, _ = _stack_method(node)
            if stack is not None and method in ("append", "pop"):
                used.add(stack)

    body.visit(Visitor())
    return frozenset((empty - other) & used)


def _op_ref(op: Callable) -> ir.Ref:
    return ir.Ref(f"operator.{op.__name__}", op)


def _const_value(value) -> Any:
    if isinstance(value, ir.Const):
        return value.value
    if isinstance(value, ir.Seq):
        vals = [_const_value(e) for e in value.elts]
        return tuple(vals) if value.kind == "tuple" else vals
    raise ValueError("not constant")


def _is_docstring(small: cst.BaseSmallStatement) -> bool:
    return isinstance(small, cst.Expr) and isinstance(
        small.value, (cst.SimpleString, cst.ConcatenatedString)
    )


class _AssignedNames(cst.CSTVisitor):
    """Names bound anywhere in a function body: Python makes them local to the whole body."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def _bind(self, target: cst.CSTNode) -> None:
        if isinstance(target, cst.Name):
            self.names.add(target.value)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for el in target.elements:
                self._bind(el.value)
        elif isinstance(target, cst.StarredElement):
            self._bind(target.value)

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self._bind(node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._bind(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._bind(node.target)

    def visit_For(self, node: cst.For) -> None:
        self._bind(node.target)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._bind(node.target)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self.names.add(node.name.value)
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False


def _assigned_names(body: cst.BaseSuite, walrus: bool) -> set[str]:
    """Names bound anywhere in a function body. Bindings are statements, except the
    walrus (``walrus``: the source holds one), which may sit in any expression: walking
    the statements alone is what keeps a long function's parse linear and cheap."""
    visitor = _AssignedNames()
    if walrus:
        body.visit(visitor)
    else:
        _bind_statements(body.body, visitor)
    return visitor.names


def _bind_statements(statements, visitor: _AssignedNames) -> None:
    """Bind the names a sequence of statements (or a line's small statements) assigns."""
    for stmt in statements:
        if isinstance(stmt, cst.SimpleStatementLine):
            _bind_statements(stmt.body, visitor)
        elif isinstance(stmt, cst.Assign):
            for target in stmt.targets:
                visitor._bind(target.target)
        elif isinstance(stmt, (cst.AnnAssign, cst.AugAssign)):
            visitor._bind(stmt.target)
        elif isinstance(stmt, cst.BaseSmallStatement):
            continue
        elif isinstance(stmt, cst.FunctionDef):
            visitor.names.add(stmt.name.value)
        elif isinstance(stmt, (cst.If, cst.For, cst.While, cst.With)):
            if isinstance(stmt, cst.For):
                visitor._bind(stmt.target)
            _bind_statements(stmt.body.body, visitor)  # (a one-line suite's: small statements)
            orelse = getattr(stmt, "orelse", None)
            if isinstance(orelse, cst.If):  # elif
                _bind_statements([orelse], visitor)
            elif orelse is not None:
                _bind_statements(orelse.body.body, visitor)
        else:  # anything else (try, match, class...): the visitor's walk, unsupported anyway
            stmt.visit(visitor)


class _Positions:
    """Where each node of a parsed snippet starts: (line, column), 1-based and 0-based.

    libcst's PositionProvider finds every node's position by printing the whole tree
    again, a third of the parse of a long function; the compiler needs the positions
    of statements, and of other nodes only for error messages. So statements take
    theirs from Python's own parser (``ast``, in C), matched to libcst's statements
    one for one, and anything else (or a snippet whose statements do not match)
    falls back to the PositionProvider, run on first need.
    """

    def __init__(self, wrapper: MetadataWrapper, source: str):
        self.wrapper = wrapper
        # Lines as Python counts them (str.splitlines also splits at \f, \x1c, \u2028...).
        self.source_lines = re.split(r"\r\n|\r|\n", source)
        self.statements: dict[int, tuple[int, int]] = {}  # id(node) -> position
        self._provided = None
        try:
            self._match(wrapper.module.body, ast.parse(source).body)
        except (_Mismatch, SyntaxError, ValueError):
            self.statements.clear()

    def start(self, node: cst.CSTNode) -> tuple[int, int] | None:
        pos = self.statements.get(id(node))
        if pos is not None:
            return pos
        if self._provided is None:
            self._provided = self.wrapper.resolve(PositionProvider)
        provided = self._provided.get(node)
        return None if provided is None else (provided.start.line, provided.start.column)

    def _at(self, stmt: ast.stmt) -> tuple[int, int]:
        line = self.source_lines[stmt.lineno - 1]
        column = len(line.encode()[: stmt.col_offset].decode())  # ast counts UTF-8 bytes
        return stmt.lineno, column

    def _match(self, body, stmts: list[ast.stmt]) -> None:
        """Record the positions of libcst statements ``body`` from ast's ``stmts``."""
        rest = iter(stmts)
        for node in body:
            if isinstance(node, cst.SimpleStatementLine):
                for i, small in enumerate(node.body):
                    pos = self._at(next(rest, None) or _mismatch())
                    self.statements[id(small)] = pos
                    if i == 0:
                        self.statements[id(node)] = pos
                continue
            stmt = next(rest, None)
            kind = _AST_KIND.get(type(node))
            if kind is None or not isinstance(stmt, kind):
                raise _Mismatch
            if isinstance(node, cst.FunctionDef) and node.decorators:
                continue  # libcst starts it at the decorators; the fallback knows where
            self.statements[id(node)] = self._at(stmt)
            if isinstance(node, (cst.If, cst.For, cst.While, cst.With, cst.FunctionDef)):
                self._match_suite(node.body, stmt.body)
            orelse = getattr(node, "orelse", None)
            if isinstance(orelse, cst.If):
                self._match([orelse], stmt.orelse)
            elif orelse is not None and isinstance(node, (cst.If, cst.For, cst.While)):
                self._match_suite(orelse.body, stmt.orelse)
        if next(rest, None) is not None:
            raise _Mismatch

    def _match_suite(self, suite, stmts: list[ast.stmt]) -> None:
        if isinstance(suite, cst.SimpleStatementSuite):  # `if c: y = 1`: one line
            return  # (the fallback places its small statements)
        self._match(suite.body, stmts)


class _Mismatch(Exception):
    """libcst's and ast's statements do not pair up: use the PositionProvider."""


def _mismatch():
    raise _Mismatch


_AST_KIND = {
    cst.If: ast.If,
    cst.For: ast.For,
    cst.While: ast.While,
    cst.With: ast.With,
    cst.FunctionDef: (ast.FunctionDef, ast.AsyncFunctionDef),
    cst.ClassDef: ast.ClassDef,
    cst.Try: ast.Try,
}


def _parse(source: str, info: SourceInfo, fn: Callable) -> tuple[_Positions, cst.FunctionDef]:
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise SourceUnavailableError(
            f"cannot parse the source of {getattr(fn, '__qualname__', fn)}: {exc.message}",
            SourceLocation(info.filename, info.first_line + exc.raw_line - 1, exc.raw_column),
            "lambdas and functions defined inside expressions cannot be transformed; use def",
        ) from None
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)  # the tree is ours alone
    for stmt in wrapper.module.body:
        if isinstance(stmt, cst.FunctionDef):
            return _Positions(wrapper, source), stmt
    raise SourceUnavailableError(
        f"{getattr(fn, '__qualname__', fn)} is not defined with `def`",
        SourceLocation(info.filename, info.first_line, 0),
        "define the function with def (lambdas are not supported)",
    )


def parse_function(fn: Callable) -> ir.FunctionDef:
    """Lower a Python function to surface IR (nested expressions; see transforms.normalize)."""
    target = running.function_that_runs(fn)
    if not isinstance(target, types.FunctionType):
        raise SourceUnavailableError(
            f"{target!r} is not a Python function",
            hint="s2sgrad transforms functions defined with def; register a rule for others",
        )
    source, info = get_source(target)
    positions, node = _parse(source, info, target)
    if node.asynchronous is not None:
        raise UnsupportedSyntaxError(
            "async functions are not supported",
            _Lowering(target, positions, info).loc(node),
            "use a plain def",
        )
    return _Lowering(target, positions, info).function(node)
