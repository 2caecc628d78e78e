"""The structured intermediate representation every pass reads and writes.

The IR sits between the user's source and the generated source. It is small on
purpose: a function is a tree of statements (assignments, branches, loops,
returns) whose right-hand sides are calls of *primitives*: Python objects such
as ``numpy.sin`` or ``operator.add``, resolved by identity when the frontend
reads the user's code. After ``transforms.normalize`` the IR is in A-normal
form: every call's arguments are atoms (names, constants, references to
globals, literal sequences and index expressions), so each statement is one
primitive, which is exactly the grain at which derivative rules apply.

All nodes are frozen dataclasses and blocks are tuples, so a pass cannot
mutate its input: every pass is a pure function from IR to IR. Every statement
carries the ``SourceLocation`` of the user's line it came from; codegen turns
it into a comment, errors into a caret.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from typing import Any

from s2sgrad.errors import SourceLocation

# --------------------------------------------------------------------------- atoms


@dataclass(frozen=True)
class Name:
    """A local variable."""

    id: str


@dataclass(frozen=True)
class Const:
    """A literal Python constant: number, string, bool, None, Ellipsis, or a tuple of these."""

    value: Any


@dataclass(frozen=True)
class Ref:
    """A free name of the user's function (or of a rule), resolved to the object it denotes.

    ``source`` is the dotted spelling that reached it (``np.sin``, ``SCALE``,
    ``mymod.helper``); codegen prints canonical spellings for NumPy and s2sgrad
    objects and the user's own spelling for everything else.
    """

    source: str
    value: Any = field(compare=False, hash=False)
    #: For a name a rule template reads from its own module (``_mymod.helper``): that
    #: module, which the generated module binds to the name's root when it is loaded.
    module: str | None = field(default=None, compare=False, hash=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and self.source == other.source and self.value is other.value

    def __hash__(self) -> int:
        return hash((self.source, id(self.value)))


@dataclass(frozen=True)
class Seq:
    """A literal tuple, list or dict of atoms, e.g. the argument of ``np.concatenate([a, b])``.

    For a dict, ``keys`` holds one atom per element of ``elts`` (the values).
    """

    kind: str  # "tuple" | "list" | "dict"
    elts: tuple[Atom, ...]
    keys: tuple[Atom, ...] | None = None


@dataclass(frozen=True)
class Slice:
    """``lower:upper:step`` inside an index; missing parts are None."""

    lower: Atom | None = None
    upper: Atom | None = None
    step: Atom | None = None


@dataclass(frozen=True)
class Index:
    """The subscript of ``x[...]``: one item per comma-separated part.

    An item is an atom, a ``Slice``, ``Const(None)`` (newaxis) or ``Const(Ellipsis)``.
    """

    items: tuple[Atom | Slice, ...]


Atom = Name | Const | Ref | Seq | Index

# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Call:
    """A call of a primitive (or, before normalization, of any callable expression)."""

    fn: Any  # Ref after normalization; an Expr before
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Attribute:
    """``value.attr`` on a local value (frontend only; normalize lowers it to a primitive call)."""

    value: Any
    attr: str


@dataclass(frozen=True)
class MethodCall:
    """``obj.method(args)`` on a local value (frontend only; normalize lowers it to a call)."""

    obj: Any
    method: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class IfExp:
    """``body if test else orelse`` (frontend only)."""

    test: Any
    body: Any
    orelse: Any


@dataclass(frozen=True)
class BoolOp:
    """``left and right`` / ``left or right``, short-circuiting (frontend only)."""

    op: str  # "and" | "or"
    left: Any
    right: Any


Expr = Atom | Call | Attribute | MethodCall | IfExp | BoolOp

# --------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Assign:
    """``targets = value``; several targets unpack a tuple-valued primitive (``q, r = qr(a)``)."""

    targets: tuple[Name, ...]
    value: Expr
    loc: SourceLocation | None = None

    @property
    def target(self) -> Name:
        assert len(self.targets) == 1, self
        return self.targets[0]


@dataclass(frozen=True)
class Unpack:
    """``a, b = value`` with a nested target pattern (frontend only; normalize flattens it)."""

    pattern: Any  # Name | tuple of patterns
    value: Expr
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class AugAssign:
    """``target op= value`` (frontend only; normalize turns it into an Assign)."""

    target: Any  # Name or Subscript target
    op: Any  # primitive object, e.g. operator.add
    value: Expr
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class SetItem:
    """``target[index] = value``: an in-place update of a local array."""

    target: Name
    index: Index
    value: Atom
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class If:
    test: Atom
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] = ()
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class For:
    """``for target in iter: body``; the frontend keeps ``range(...)`` calls recognisable for backends.

    ``checkpoint``: the snapshots its reverse sweep may keep (``# s2sgrad:
    checkpoint(snapshots=N)``, or ``grad(..., checkpoint=N)``; ``transforms.checkpointing``),
    None for the usual one save per iteration.
    """

    target: Any
    iter: Expr
    body: tuple[Stmt, ...]
    loc: SourceLocation | None = None
    checkpoint: int | None = None


@dataclass(frozen=True)
class While:
    """``while test: body``; ``test_block`` computes the atom ``test`` before every iteration.
    ``checkpoint``: as ``For``'s."""

    test_block: tuple[Stmt, ...]
    test: Atom
    body: tuple[Stmt, ...]
    loc: SourceLocation | None = None
    checkpoint: int | None = None


@dataclass(frozen=True)
class Break:
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class Continue:
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class Return:
    value: Expr
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class LocalDef:
    """A ``def`` nested in the function (frontend only; normalize inlines its calls)."""

    function: Any  # FunctionDef
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class Push:
    """Save ``value`` on the stack ``stack`` (forward sweep of reverse mode).

    ``loop`` names the loop whose iterations the stack records (None at the top
    level of a function): saves are structured per loop, so the NumPy backend
    can use a list and the JAX backend a scan output or a preallocated buffer.
    """

    stack: str
    value: Atom
    loop: str | None = None
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class Pop:
    """``target = <last value pushed on stack>`` (backward sweep of reverse mode)."""

    target: Name
    stack: str
    loop: str | None = None
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class NewStack:
    """Create the empty stack ``stack`` (before the loop it serves)."""

    stack: str
    loop: str | None = None
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class Release:
    """``del a, b``: values nothing later reads, dropped so that their memory goes back
    at once rather than when the function returns (NumPy code; ``transforms.lifetimes``).
    No other meaning: passes read nothing from it, and reading generated code back
    (higher order) drops it."""

    names: tuple[str, ...]
    loc: SourceLocation | None = None


@dataclass(frozen=True)
class Comment:
    """A comment line in generated code (e.g. the start of the backward sweep); no semantics.

    A section (the default) starts after a blank line, and the next statement repeats its
    source line; a ``note`` explains the statements after it in place.
    """

    text: str
    loc: SourceLocation | None = None
    note: bool = False


Stmt = (
    Assign
    | Unpack
    | AugAssign
    | SetItem
    | If
    | For
    | While
    | Break
    | Continue
    | Return
    | LocalDef
    | Push
    | Pop
    | NewStack
    | Release
    | Comment
)


@dataclass(frozen=True)
class Param:
    name: str
    default: Const | None = None
    kind: str = "positional"  # "positional" | "keyword_only"


@dataclass(frozen=True)
class FunctionDef:
    """A function: the user's, a derivative rule template, or a generated derivative."""

    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    loc: SourceLocation | None = None
    qualname: str = ""
    filename: str = ""
    docstring: str | None = None
    # Compiler-made names (ANF temporaries, template locals) that codegen may fold back
    # into the single expression that reads them, so generated code reads like the source.
    temps: frozenset[str] = frozenset()
    # Derivative code s2sgrad generated, read back to differentiate it again (higher order):
    # the rules on updates in place were checked on the user code it came from.
    derivative_code: bool = False

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


class GeneratedFunction:
    """The value of a Ref to another function of the same generated module (a callee's
    derivative, or a JAX copy of a user function): codegen prints its bare name."""

    __module__ = "s2sgrad.generated"

    def __init__(self, name: str):
        self.__name__ = name


def generated_ref(name: str) -> Ref:
    return Ref(name, GeneratedFunction(name))


# --------------------------------------------------------------------------- helpers
# (What statements read, write and keep live is transforms/dataflow.py's business.)

# The operator primitives of Python arithmetic: elementwise and broadcasting on arrays,
# foldable on literals.
ARITHMETIC_OPERATORS = frozenset(
    {
        operator.add,
        operator.sub,
        operator.mul,
        operator.truediv,
        operator.floordiv,
        operator.mod,
        operator.pow,
        operator.neg,
        operator.pos,
    }
)


# ----------------------------------------------------------------- nested blocks
# One table says which fields of a compound statement hold nested blocks, in the
# order they run. Passes that only care about a few statement kinds descend
# through ``child_blocks``/``map_blocks`` (or subclass ``Transformer``) instead of
# listing If, For and While: a new compound statement is one row here.
BLOCK_FIELDS: dict[type, tuple[str, ...]] = {
    If: ("body", "orelse"),
    For: ("body",),
    While: ("test_block", "body"),
}


def is_compound(stmt: Stmt) -> bool:
    """Whether a statement holds nested blocks (a branch or a loop)."""
    return type(stmt) in BLOCK_FIELDS


def is_loop(stmt: Stmt) -> bool:
    return isinstance(stmt, (For, While))


def iteration(loop: For | While) -> tuple[Stmt, ...]:
    """The statements one iteration of a loop runs: a while's test block, then the body."""
    return sum(child_blocks(loop), ())


def child_blocks(stmt: Stmt) -> tuple[tuple[Stmt, ...], ...]:
    """The nested blocks of a statement, in the order they run (none for a simple one)."""
    return tuple(getattr(stmt, f) for f in BLOCK_FIELDS.get(type(stmt), ()))


def map_blocks(stmt: Stmt, change) -> Stmt:
    """``stmt`` with each nested block replaced by ``change(block)`` (a simple one as is)."""
    fields = BLOCK_FIELDS.get(type(stmt))
    if not fields:
        return stmt
    return replace(stmt, **{f: tuple(change(getattr(stmt, f))) for f in fields})


class Transformer:
    """A rewrite of a body, statement by statement, that descends into nested blocks.

    Override ``statement`` for the kinds a pass cares about and return
    ``self.descend(stmt)`` (or ``super().statement(stmt)``) for the rest. A statement
    may be replaced by several: return a tuple or list and it is spliced in place.
    """

    def block(self, body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
        out: list[Stmt] = []
        for stmt in body:
            new = self.statement(stmt)
            if isinstance(new, (tuple, list)):
                out.extend(new)
            else:
                out.append(new)
        return tuple(out)

    def statement(self, stmt: Stmt) -> Stmt | tuple[Stmt, ...] | list[Stmt]:
        return self.descend(stmt)

    def descend(self, stmt: Stmt) -> Stmt:
        return map_blocks(stmt, self.block)


def blocks(body: tuple[Stmt, ...]):
    """Every block of a body (the body itself, branches, loop bodies, while tests), outside-in."""
    yield body
    for stmt in body:
        for child in child_blocks(stmt):
            yield from blocks(child)


def is_call_of(expr: Any, fn: Any) -> bool:
    """Whether ``expr`` is a call of the Python object ``fn`` (``range``, ``reversed``, ...)."""
    return isinstance(expr, Call) and isinstance(expr.fn, Ref) and expr.fn.value is fn


def atom_names(atom: Any) -> list[str]:
    """Local names read by an atom (or a nested expression before normalization)."""
    if atom is None:
        return []
    if isinstance(atom, Name):
        return [atom.id]
    if isinstance(atom, (Const, Ref)):
        return []
    if isinstance(atom, Seq):
        return [n for e in (*(atom.keys or ()), *atom.elts) for n in atom_names(e)]
    if isinstance(atom, Index):
        return [n for it in atom.items for n in atom_names(it)]
    if isinstance(atom, Slice):
        return atom_names(atom.lower) + atom_names(atom.upper) + atom_names(atom.step)
    if isinstance(atom, Call):
        return (
            atom_names(atom.fn)
            + [n for a in atom.args for n in atom_names(a)]
            + [n for _, v in atom.kwargs for n in atom_names(v)]
        )
    if isinstance(atom, Attribute):
        return atom_names(atom.value)
    if isinstance(atom, MethodCall):
        return (
            atom_names(atom.obj)
            + [n for a in atom.args for n in atom_names(a)]
            + [n for _, v in atom.kwargs for n in atom_names(v)]
        )
    if isinstance(atom, IfExp):
        return atom_names(atom.test) + atom_names(atom.body) + atom_names(atom.orelse)
    if isinstance(atom, BoolOp):
        return atom_names(atom.left) + atom_names(atom.right)
    raise TypeError(f"not an IR expression: {atom!r}")


def walk_stmts(body: tuple[Stmt, ...]):
    """Every statement of a block, depth first, compound statements before their children."""
    for stmt in body:
        yield stmt
        for child in child_blocks(stmt):
            yield from walk_stmts(child)


class _CallFnMapper(Transformer):
    """Replaces the function Ref of every call (see ``map_call_fns``)."""

    def __init__(self, change):
        self.change = change

    def expr(self, e: Any) -> Any:
        if isinstance(e, Call):
            fn = self.change(e.fn) if isinstance(e.fn, Ref) else e.fn
            args = tuple(self.expr(a) for a in e.args)
            return Call(fn, args, tuple((k, self.expr(v)) for k, v in e.kwargs))
        if isinstance(e, Seq):
            keys = None if e.keys is None else tuple(self.expr(k) for k in e.keys)
            return Seq(e.kind, tuple(self.expr(x) for x in e.elts), keys)
        if isinstance(e, Index):
            return Index(tuple(self.expr(x) for x in e.items))
        if isinstance(e, Slice):
            return Slice(self.expr(e.lower), self.expr(e.upper), self.expr(e.step))
        return e

    def statement(self, s: Stmt) -> Stmt:
        if isinstance(s, (Assign, Unpack, Return)):
            return replace(s, value=self.expr(s.value))
        if isinstance(s, SetItem):
            return replace(s, index=self.expr(s.index), value=self.expr(s.value))
        if isinstance(s, If):
            s = replace(s, test=self.expr(s.test))
        elif isinstance(s, For):
            s = replace(s, iter=self.expr(s.iter))
        elif isinstance(s, LocalDef):
            return replace(s, function=replace(s.function, body=self.block(s.function.body)))
        return self.descend(s)


def map_call_fns(body: tuple[Stmt, ...], change) -> tuple[Stmt, ...]:
    """``body`` with the function Ref of every call replaced by ``change(ref)`` (which
    returns the Ref unchanged to keep it), in every statement and nested function."""
    return _CallFnMapper(change).block(body)
