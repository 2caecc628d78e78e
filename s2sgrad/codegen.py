"""IR -> Python source: the generated module a person reads, steps through and reviews.

The printer works from IR straight to text with Python's operator precedence
(parentheses only where needed), in black's style: what it prints is what
``black`` would print (``x**2``, ``x[i + 1 :]``, double quotes), so output is
deterministic and formatted like the user's own code without running black on
every module. Black runs only where the printer does not lay code out itself: a
statement over 100 characters or with an unusual literal (``fit``), and a module
with nested functions, whose blank lines black places by rules of its own
(``module_source``). The test suite checks every module it generates against
black. Two things make the code read like hand-written code:

* *folding*: a compiler temporary that is defined once and read once is
  printed inside the expression that reads it, so A-normal form
  ``t1 = x @ W; t2 = t1 + b; h = np.tanh(t2)`` comes back as
  ``h = np.tanh(x @ W + b)``. Folding never moves an expression past a
  re-assignment of a name it reads;
* *source comments*: each group of statements derived from one user line is
  preceded by ``# line N: <that line>``.

NumPy objects print canonically (``np.sin`` whatever the import style), runtime
helpers are imported from ``s2sgrad.runtime``, and every other free name keeps
the user's spelling and is bound when the module is loaded (see cache.py); the
module lists those names in ``__s2sgrad_free_names__``.
"""

from __future__ import annotations

import builtins
import math
import operator
import re
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from s2sgrad import backends, ir
from s2sgrad.errors import S2SGradError
from s2sgrad.transforms import dataflow
from s2sgrad.transforms.names import FreshNames

BINARY = {
    operator.add: ("+", 10),
    operator.sub: ("-", 10),
    operator.mul: ("*", 11),
    operator.truediv: ("/", 11),
    operator.floordiv: ("//", 11),
    operator.mod: ("%", 11),
    operator.matmul: ("@", 11),
    operator.pow: ("**", 13),
    operator.and_: ("&", 8),
    operator.or_: ("|", 6),
    operator.xor: ("^", 7),
    operator.lshift: ("<<", 9),
    operator.rshift: (">>", 9),
    operator.lt: ("<", 5),
    operator.le: ("<=", 5),
    operator.gt: (">", 5),
    operator.ge: (">=", 5),
    operator.eq: ("==", 5),
    operator.ne: ("!=", 5),
    operator.is_: ("is", 5),
    operator.is_not: ("is not", 5),
}
UNARY = {operator.neg: ("-", 12), operator.pos: ("+", 12), operator.invert: ("~", 12)}
NOT_PREC = 4
COMPARISON_PREC = 5
UNARY_PREC = 12
POWER_PREC = 13
POSTFIX_PREC = 15
ATOM_PREC = 16

_NUMPY_NAMESPACES = (("np", np), ("np.linalg", np.linalg), ("np.fft", np.fft))
# Where generated code imports its helpers from, per backend: see s2sgrad.backends.
RUNTIME_MODULE = backends.RUNTIME_MODULE


@dataclass(frozen=True)
class Spelling:
    text: str
    runtime_import: str | None = None  # name to import from the runtime module
    module_import: str | None = None  # a module the generated code imports (scipy.special)
    free_root: str | None = None  # a user name to bind at load time (or `alias=module`)
    runtime_module: str = RUNTIME_MODULE  # where runtime_import comes from


class NoJaxEquivalentError(S2SGradError):
    """A NumPy/SciPy function the JAX backend cannot spell with jax.numpy / jax.scipy."""


def spell_ref(ref: ir.Ref, backend: str | backends.Backend = "numpy") -> Spelling:
    """How a resolved object is written in generated code for ``backend``.

    Rules stay backend-neutral: they name NumPy functions and the NumPy runtime's
    helpers. A backend imports its own twins of the helpers (same names, its
    ``runtime_modules``) and respells NumPy's names (JAX: ``np.sin`` -> ``jnp.sin``).
    """
    backend = backends.get(backend)
    sp = _spell_numpy(ref)
    if sp.runtime_import:
        module = backend.runtime_modules.get(sp.runtime_module)
        if module is None:
            raise NoJaxEquivalentError(f"{sp.text} has no {backend.name} version")
        return Spelling(sp.text, runtime_import=sp.text, runtime_module=module)
    return backend.spelling(sp)


def _spell_numpy(ref: ir.Ref) -> Spelling:
    value = ref.value
    candidates = [ref.source.rsplit(".", 1)[-1], getattr(value, "__name__", None)]
    for prefix, namespace in _NUMPY_NAMESPACES:
        for name in candidates:
            if isinstance(name, str) and getattr(namespace, name, _MISSING) is value:
                return Spelling(f"{prefix}.{name}")
    # scipy.special functions (rule templates call them) print as `scipy.special.<name>`;
    # only look when scipy.special is already imported: a value from it implies it is.
    special = sys.modules.get("scipy.special")
    if special is not None:
        for name in candidates:
            if isinstance(name, str) and getattr(special, name, _MISSING) is value:
                return Spelling(f"scipy.special.{name}", module_import="scipy.special")
    if getattr(value, "__module__", None) == "s2sgrad.generated":
        return Spelling(value.__name__)  # another function of the same generated module
    module = backends.helper_module_of(value)
    if module is not None:
        return Spelling(value.__name__, runtime_import=value.__name__, runtime_module=module)
    if "." not in ref.source and getattr(builtins, ref.source, _MISSING) is value:
        return Spelling(ref.source)
    root = ref.source.split(".")[0]
    # A rule's own module (transforms.templates): bound at load time as `alias=module`.
    return Spelling(ref.source, free_root=root if ref.module is None else f"{root}={ref.module}")


_MISSING = object()


def _const_text(value: Any, np_alias: str = "np") -> tuple[str, bool]:
    """A constant's text as black prints it, and whether black must check it (an
    unusual literal the printer does not normalise itself)."""
    if value is Ellipsis:
        return "...", False
    if isinstance(value, float):
        if math.isnan(value):
            return f"{np_alias}.nan", False
        if math.isinf(value):
            return (f"{np_alias}.inf" if value > 0 else f"-{np_alias}.inf"), False
        return repr(value).replace("e+", "e"), False  # black: 1e20, not 1e+20
    if isinstance(value, tuple):
        parts = [_const_text(v, np_alias) for v in value]
        inner = ", ".join(t for t, _ in parts)
        text = f"({inner},)" if len(value) == 1 else f"({inner})"
        return text, any(unsure for _, unsure in parts)
    if isinstance(value, list):
        parts = [_const_text(v, np_alias) for v in value]
        return "[" + ", ".join(t for t, _ in parts) + "]", any(u for _, u in parts)
    if isinstance(value, str):
        return _string_text(value)
    if isinstance(value, (bool, int)) or value is None:
        return repr(value), False
    return repr(value), True  # complex, bytes, ...: black decides


def _string_text(value: str) -> tuple[str, bool]:
    """Black prefers double quotes unless they would need more escapes."""
    text = repr(value)
    if "\\" in text or ("'" in value and '"' in value):
        return text, True
    if text.startswith("'") and '"' not in value:
        return '"' + text[1:-1] + '"', False
    return text, False


def _const_prec(value: Any) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return UNARY_PREC
    return ATOM_PREC


_NAME = r"[A-Za-z_]\w*"
_NUMBER = r"\d[\w.]*(?:e-\d+)?"
# Black's simple power operands: a name, a number, an attribute chain (np.pi), each
# maybe under unary operators; both operands simple -> ``x**2``, else ``(x + 1) ** 2``.
_SIMPLE_POWER_OPERAND = re.compile(rf"[-+~]*(?:{_NAME}(?:\.{_NAME})*|{_NUMBER})")
# Black's trivial slice bounds: a name or a number, maybe under unary operators.
_TRIVIAL_SLICE_BOUND = re.compile(rf"[-+~]*(?:{_NAME}|{_NUMBER})")


def _simple_power_operand(text: str) -> bool:
    return _SIMPLE_POWER_OPERAND.fullmatch(text) is not None


def _slice_text(lower: str, upper: str, step: str) -> str:
    """A slice as black prints it: ``a:b`` between trivial bounds, and spaced like a
    binary operator when any bound is an expression (``x[i + 1 :]``, ``x[: n - 1]``)."""
    bounds = [b for b in (lower, upper, step) if b]
    if all(_TRIVIAL_SLICE_BOUND.fullmatch(b) for b in bounds):
        return f"{lower}:{upper}" + (f":{step}" if step else "")
    text = f"{lower} :" if lower else ":"
    if upper:
        text += f" {upper}"
    if step:
        text += f" : {step}" if upper else f": {step}"
    return text


class Printer:
    """Prints one function; collects imports and free names as it goes."""

    def __init__(
        self,
        fn: ir.FunctionDef,
        module_alias: str | None = None,
        backend: str | backends.Backend = "numpy",
        renamed: Mapping[str, str] | None = None,
    ):
        self.fn = fn
        self.module_alias = module_alias
        self.backend = backends.get(backend)
        # Runtime helpers imported under another name: the module's code uses theirs.
        self.renamed = renamed or {}
        self.np = self.backend.array_alias
        self.runtime_imports: set[tuple[str, str]] = set()  # (module, name)
        self.module_imports: set[str] = set()
        self.free_roots: set[str] = set()
        self.folded: dict[str, tuple[str, int]] = {}
        self.fold = fold_candidates(fn.body, fn.temps)
        self.origin_line: int | None = (
            None  # the user's line last named (derivative code read back)
        )
        self.unsure = False  # printed something only black can lay out for sure (see fit)
        self.nested_defs = False  # printed a local function (see module_source)

    # ------------------------------------------------------------------ expressions

    def atom(self, a: Any) -> tuple[str, int]:
        if isinstance(a, ir.Name):
            return self.folded.pop(a.id, (a.id, ATOM_PREC))
        if isinstance(a, ir.Const):
            text, unsure = _const_text(a.value, self.np)
            self.unsure |= unsure
            return text, _const_prec(a.value)
        if isinstance(a, ir.Ref):
            sp = spell_ref(a, self.backend)
            if sp.runtime_import:
                self.runtime_imports.add((sp.runtime_module, sp.runtime_import))
                if sp.runtime_import in self.renamed:
                    return self.renamed[sp.runtime_import], ATOM_PREC
            if sp.module_import:
                self.module_imports.add(sp.module_import)
            if sp.free_root:
                if self.module_alias is not None:
                    return f"{self.module_alias}.{sp.text}", POSTFIX_PREC
                self.free_roots.add(sp.free_root)
            return sp.text, POSTFIX_PREC if "." in sp.text else ATOM_PREC
        if isinstance(a, ir.Seq) and a.kind == "dict":
            items = [f"{self.text(k)}: {self.text(v)}" for k, v in zip(a.keys, a.elts)]
            return "{" + ", ".join(items) + "}", ATOM_PREC
        if isinstance(a, ir.Seq):
            parts = [self.text(e) for e in a.elts]
            if a.kind == "list":
                return "[" + ", ".join(parts) + "]", ATOM_PREC
            if len(parts) == 1:
                return f"({parts[0]},)", ATOM_PREC
            return "(" + ", ".join(parts) + ")", ATOM_PREC
        if isinstance(a, ir.Index):
            # An index used as a value (e.g. handed to a rule's helper).
            if len(a.items) == 1 and not isinstance(a.items[0], ir.Slice):
                item = a.items[0]
                if not (isinstance(item, ir.Const) and item.value in (None, Ellipsis)):
                    return self.atom(item)
            return f"{self.np}.s_[{self.index(a)}]", POSTFIX_PREC
        if isinstance(a, ir.Call):
            return self.call(a)
        raise TypeError(f"cannot print {a!r}")

    def text(self, a: Any) -> str:
        return self.atom(a)[0]

    def wrap(self, a: Any, needs_parens) -> str:
        text, prec = self.atom(a)
        return f"({text})" if needs_parens(prec) else text

    def index(self, idx: ir.Index) -> str:
        if not idx.items:
            return "()"
        parts = []
        for item in idx.items:
            if isinstance(item, ir.Slice):
                bounds = [
                    "" if bound is None else self.text(bound)
                    for bound in (item.lower, item.upper, item.step)
                ]
                parts.append(_slice_text(*bounds))
            else:
                parts.append(self.text(item))
        return ", ".join(parts)

    def call(self, c: ir.Call) -> tuple[str, int]:
        fn = c.fn.value if isinstance(c.fn, ir.Ref) else None
        if not c.kwargs:
            if fn in BINARY and len(c.args) == 2:
                symbol, prec = BINARY[fn]
                a, b = c.args
                if prec == POWER_PREC:
                    left = self.wrap(a, lambda p: p <= prec)
                    right = self.wrap(b, lambda p: p < UNARY_PREC)
                    if _simple_power_operand(left) and _simple_power_operand(right):
                        return f"{left}**{right}", prec  # black hugs simple operands
                elif prec == COMPARISON_PREC:
                    left = self.wrap(a, lambda p: p <= prec)
                    right = self.wrap(b, lambda p: p <= prec)
                else:
                    left = self.wrap(a, lambda p: p < prec)
                    right = self.wrap(b, lambda p: p <= prec)
                return f"{left} {symbol} {right}", prec
            if fn in UNARY and len(c.args) == 1:
                symbol, prec = UNARY[fn]
                # -(x**2), as black writes it: the power binds first either way.
                return symbol + self.wrap(c.args[0], lambda p: p < prec or p == POWER_PREC), prec
            if fn is operator.not_ and len(c.args) == 1:
                return "not " + self.wrap(c.args[0], lambda p: p < NOT_PREC), NOT_PREC
            if fn is operator.getitem and len(c.args) == 2:
                base = self.wrap(c.args[0], lambda p: p < POSTFIX_PREC)
                idx = c.args[1]
                inner = self.index(idx) if isinstance(idx, ir.Index) else self.text(idx)
                return f"{base}[{inner}]", POSTFIX_PREC
        head = self.wrap(c.fn, lambda p: p < POSTFIX_PREC)
        args = [self.text(a) for a in c.args] + [f"{k}={self.text(v)}" for k, v in c.kwargs]
        return f"{head}({', '.join(args)})", POSTFIX_PREC

    # ------------------------------------------------------------------ statements

    def body(
        self, stmts: tuple[ir.Stmt, ...], indent: str, last_line: int | None = None
    ) -> list[str]:
        """Lines of a block; ``last_line`` is the source line already named by a comment above."""
        lines: list[str] = []
        for stmt in stmts:
            try:
                last_line = self._statement_lines(stmt, indent, last_line, lines)
            except NoJaxEquivalentError as exc:
                loc = getattr(stmt, "loc", None)
                if exc.loc is not None or loc is None:
                    raise
                raise NoJaxEquivalentError(exc.message, loc, exc.hint) from None
        if not lines or all(not ln.strip() or ln.strip().startswith("#") for ln in lines):
            lines.append(f"{indent}pass")
        return lines

    def _statement_lines(
        self, stmt: ir.Stmt, indent: str, last_line: int | None, lines: list[str]
    ) -> int | None:
        """Append ``stmt``'s lines (after its source comment) to ``lines``; the new last line."""
        if isinstance(stmt, ir.Comment) and stmt.note:
            lines.append(f"{indent}# {stmt.text}")
            return last_line
        if isinstance(stmt, ir.Comment):
            lines += ["", f"{indent}# {stmt.text}"]
            return None
        if isinstance(stmt, ir.Assign) and len(stmt.targets) == 1 and stmt.target.id in self.fold:
            self.folded[stmt.target.id] = self.atom(stmt.value)
            return last_line
        if isinstance(stmt, ir.Release):  # a folded temporary is no variable to delete
            names = tuple(n for n in stmt.names if n not in self.fold)
            if names:
                lines += self.fit(indent + self.simple_statement(ir.Release(names)))
            return last_line
        loc = getattr(stmt, "loc", None)
        if loc is not None and loc.line != last_line:
            if loc.origin is None:
                lines.append(f"{indent}# {_source_comment(loc)}")
            else:  # derivative code read back: the user's line, then the statement there
                if loc.origin.line not in (0, self.origin_line):  # (0: its own set-up)
                    lines.append(f"{indent}# {_source_comment(loc.origin)}")
                    self.origin_line = loc.origin.line
                lines.append(f"{indent}#   {_source_comment(loc, numbered=False)}")
            last_line = loc.line
        lines += self.statement(stmt, indent, last_line)
        return last_line

    def _folds_away(self, stmts: tuple[ir.Stmt, ...]) -> bool:
        """Whether every statement is a temporary printed inside a later expression."""
        return all(
            isinstance(s, ir.Assign) and len(s.targets) == 1 and s.target.id in self.fold
            for s in stmts
        )

    def statement(self, stmt: ir.Stmt, indent: str, line: int | None = None) -> list[str]:
        inner = indent + "    "
        if isinstance(stmt, ir.LocalDef):
            return self.local_def(stmt, indent)
        if isinstance(stmt, ir.If):
            return self.if_statement(stmt, indent, line)
        if isinstance(stmt, ir.For):
            target = _pattern_text(stmt.target, top=True)
            if not isinstance(stmt.target, ir.Name) and len(stmt.target) == 1:
                self.unsure = True  # `for (a,) in ...`: black's call
            header = self.fit(f"{indent}for {target} in {self.text(stmt.iter)}:")
            return header + self.body(stmt.body, inner, line)
        if isinstance(stmt, ir.While):
            return self.while_statement(stmt, indent, line)
        return self.fit(indent + self.simple_statement(stmt))

    def simple_statement(self, stmt: ir.Stmt) -> str:
        """A statement that is one line (before black wraps a long one)."""
        if isinstance(stmt, ir.Assign):
            targets = ", ".join(t.id for t in stmt.targets)
            return f"{targets} = {self.text(stmt.value)}"
        if isinstance(stmt, ir.Return):
            v = stmt.value
            if isinstance(v, ir.Seq) and v.kind == "tuple" and len(v.elts) > 1:
                return "return " + ", ".join(self.text(e) for e in v.elts)
            return f"return {self.text(v)}"
        if isinstance(stmt, ir.SetItem):
            base = self.text(stmt.target)
            if self.backend.functional_updates:  # immutable arrays (JAX): `.at[i].set(v)`
                return f"{base} = {base}.at[{self.index(stmt.index)}].set({self.text(stmt.value)})"
            return f"{base}[{self.index(stmt.index)}] = {self.text(stmt.value)}"
        if isinstance(stmt, ir.Unpack):
            return f"{_pattern_text(stmt.pattern, top=True)} = {self.text(stmt.value)}"
        if isinstance(stmt, ir.Break):
            return "break"
        if isinstance(stmt, ir.Continue):
            return "continue"
        if isinstance(stmt, ir.NewStack):
            return f"{stmt.stack} = []"
        if isinstance(stmt, ir.Release):
            return "del " + ", ".join(stmt.names)
        if isinstance(stmt, ir.Push):
            if stmt.loop is None:  # outside loops a save is a single slot
                return f"{stmt.stack} = {self.text(stmt.value)}"
            return f"{stmt.stack}.append({self.text(stmt.value)})"
        if isinstance(stmt, ir.Pop):
            if stmt.loop is None:
                return f"{stmt.target.id} = {stmt.stack}"
            return f"{stmt.target.id} = {stmt.stack}.pop()"
        raise TypeError(f"cannot print statement {stmt!r}")

    def fit(self, line: str) -> list[str]:
        """``line`` as black lays it out: itself when it fits in 100 columns and holds
        nothing unusual, else black's own layout of that one statement."""
        unsure, self.unsure = self.unsure, False
        if _fits(line) and not unsure:
            return [line]
        return black_lines(line)

    def local_def(self, stmt: ir.LocalDef, indent: str) -> list[str]:
        """A nested function (the JAX lowering's branches and loop bodies)."""
        nested = Printer(stmt.function, self.module_alias, self.backend, self.renamed)
        text = nested.function(indent=indent)
        self.nested_defs = True
        self.runtime_imports |= nested.runtime_imports
        self.module_imports |= nested.module_imports
        self.free_roots |= nested.free_roots
        return text.rstrip("\n").split("\n")

    def if_statement(self, stmt: ir.If, indent: str, line: int | None) -> list[str]:
        """``if``/``elif``/``else``: an else block that is one ``if`` (after the temporaries
        its test folds into) prints as ``elif``; an empty ``if`` block, as ``if not``."""
        inner = indent + "    "
        if not stmt.body and stmt.orelse:  # `if t: pass else: B` reads as `if not t: B`
            test = self.wrap(stmt.test, lambda p: p < NOT_PREC + 1)
            return self.fit(f"{indent}if not {test}:") + self.body(stmt.orelse, inner, line)
        lines = self.fit(f"{indent}if {self.text(stmt.test)}:") + self.body(stmt.body, inner, line)
        orelse = stmt.orelse
        while orelse and isinstance(orelse[-1], ir.If) and self._folds_away(orelse[:-1]):
            for pending in orelse[:-1]:  # the test's own temporaries, printed inside it
                self.folded[pending.target.id] = self.atom(pending.value)
            nested = orelse[-1]
            lines += self.fit(f"{indent}elif {self.text(nested.test)}:") + self.body(
                nested.body, inner, line
            )
            orelse = nested.orelse
        if orelse:
            lines += [f"{indent}else:"] + self.body(orelse, inner, line)
        return lines

    def while_statement(self, stmt: ir.While, indent: str, line: int | None) -> list[str]:
        inner = indent + "    "
        if not stmt.test_block:
            header = self.fit(f"{indent}while {self.text(stmt.test)}:")
            return header + self.body(stmt.body, inner, line)
        # The test needs statements of its own: evaluate them at the top of every pass.
        test = self.body(stmt.test_block, inner, line)
        check = self.fit(f"{inner}if not {self.wrap(stmt.test, lambda p: p < NOT_PREC + 1)}:")
        check.append(f"{inner}    break")
        return [f"{indent}while True:"] + test + check + self.body(stmt.body, inner, line)

    def function(self, docstring: str | None = None, indent: str = "") -> str:
        params = ", ".join(p.name for p in self.fn.params)
        lines = self.fit(f"{indent}def {self.fn.name}({params}):")
        if docstring:
            lines.append(f'{indent}    """{docstring}"""')
        lines += self.body(self.fn.body, indent + "    ")
        return "\n".join(lines) + "\n"


LINE_LENGTH = 100


def _fits(line: str) -> bool:
    """Whether ``line`` surely fits in 100 columns as black measures them: it counts an
    East Asian wide character as two columns (a CJK string constant), so a non-ASCII
    character counts two here; a line that only might not fit goes to black, which
    leaves it as it is if it does."""
    if len(line) > LINE_LENGTH:
        return False
    return line.isascii() or len(line) + sum(not c.isascii() for c in line) <= LINE_LENGTH


def black_lines(line: str) -> list[str]:
    """Black's layout of one statement or block header printed as ``line`` (with its
    indentation): black runs on that statement alone, dedented, with the columns its
    indentation takes off the line length, which is how black measures a nested line."""
    import black

    code = line.lstrip(" ")
    indent = line[: len(line) - len(code)]
    mode = black.Mode(line_length=LINE_LENGTH - len(indent))
    # (Lines split at "\n" only: str.splitlines would also split inside a string constant.)
    if not code.endswith(":"):
        lines = black.format_str(code + "\n", mode=mode).rstrip("\n").split("\n")
    else:  # a block's header: black needs the block around it
        before = ["if _:", "    pass"] if code.startswith(("elif ", "else")) else []
        text = "\n".join([*before, code, "    pass", ""])
        lines = black.format_str(text, mode=mode).rstrip("\n").split("\n")[len(before) : -1]
    return [indent + ln if ln else ln for ln in lines]


def _pattern_text(pattern: Any, top: bool = False) -> str:
    """A target pattern: a name or nested tuples (``(a, b), (c,)``); no parentheses at the top."""
    if isinstance(pattern, ir.Name):
        return pattern.id
    inner = ", ".join(_pattern_text(p) for p in pattern) + ("," if len(pattern) == 1 else "")
    return inner if top and pattern else f"({inner})"


def _source_comment(loc, numbered: bool = True) -> str:
    text = " ".join(loc.text.strip().split())
    if len(text) > 80:
        text = text[:77] + "..."
    if not numbered:
        return f"first order: {text}"
    return f"line {loc.line}: {text}" if text else f"line {loc.line}"


def fold_candidates(body: tuple[ir.Stmt, ...], temps: frozenset[str]) -> set[str]:
    """Temporaries defined once and read once, later in the same block, with no
    re-assignment of anything they read in between."""
    defs: Counter[str] = Counter()
    uses: Counter[str] = Counter()
    captured: set[str] = set()  # read by a local function: must stay a variable
    for stmt in ir.walk_stmts(body):
        if isinstance(stmt, ir.Assign):
            defs.update(t.id for t in stmt.targets)
        uses.update(dataflow.reads(stmt))
        if isinstance(stmt, ir.LocalDef):
            captured.update(_closure_reads(stmt.function.body))
    folded: set[str] = set()
    for block in ir.blocks(body):
        _fold_block(block, temps - captured, defs, uses, folded)
    return folded


def _closure_reads(body: tuple[ir.Stmt, ...]) -> set[str]:
    """Names a local function's body reads, its own local functions' included: the
    enclosing names it captures (dataflow stops at a ``def``; a closure is codegen's case)."""
    out = dataflow.deep_reads(body)
    for stmt in ir.walk_stmts(body):
        if isinstance(stmt, ir.LocalDef):
            out |= _closure_reads(stmt.function.body)
    return out


def _fold_block(block, temps, defs, uses, folded) -> None:
    """One pass over ``block``: each candidate waits, with the names its expression reads,
    for the statement that reads it (folded there, unless that is a ``while``, whose test
    is re-evaluated) or for one that breaks it off first: a compound statement, a stack
    operation, an update in place, or a write of a name it reads. (A scan from each
    definition to its use was quadratic where the use lies far away: a forward value the
    backward sweep alone reads.)"""
    closure: dict[str, set[str]] = {}
    pending: dict[str, set[str]] = {}  # candidate -> the names its folded expression reads
    readers: dict[str, set[str]] = {}  # name -> the pending candidates that read it

    def drop(t: str) -> set[str]:
        reads = pending.pop(t)
        for r in reads:
            readers[r].discard(t)
        return reads

    for stmt in block:
        if pending:
            for t in set(dataflow.reads(stmt)) & pending.keys():
                reads = drop(t)
                if not isinstance(stmt, ir.While):  # a while test is re-evaluated
                    folded.add(t)
                    closure[t] = reads
            if isinstance(
                stmt, (ir.If, ir.For, ir.While, ir.Push, ir.Pop, ir.SetItem, ir.LocalDef)
            ):
                pending.clear()
                readers.clear()
            else:
                for w in dataflow.writes(stmt):
                    for t in list(readers.get(w, ())):
                        drop(t)
        if not (isinstance(stmt, ir.Assign) and len(stmt.targets) == 1):
            continue
        t = stmt.target.id
        if t not in temps or defs[t] != 1 or uses[t] != 1:
            continue
        reads: set[str] = set()
        for r in ir.atom_names(stmt.value):
            reads |= closure.get(r, {r}) if r in folded else {r}
        pending[t] = reads
        for r in reads:
            readers.setdefault(r, set()).add(t)


def _alias(foreign: str) -> str:
    """The name generated code reads another module's names through: ``_physics`` for a
    module, ``_g_code`` for the derivative module of ``grad(f)`` called as ``g``."""
    from s2sgrad import composition

    if foreign.startswith(composition.BINDING):
        return composition.alias_for(foreign)
    return "_" + foreign.replace(".", "_")


class _Printed:
    """Every function of a module printed, with what the module must import and bind."""

    def __init__(self, functions: list, backend: Any, renamed: Mapping[str, str]):
        self.renamed = renamed
        self.runtime_imports: set[tuple[str, str]] = set()
        self.module_imports: set[str] = set()
        self.free: set[str] = set()
        self.texts: list[str] = []
        self.aliases: dict[str, str] = {}
        self.nested_defs = False
        for fn, foreign in functions:
            alias = None
            if foreign is not None:
                alias = self.aliases.setdefault(foreign, _alias(foreign))
            printer = Printer(fn, module_alias=alias, backend=backend, renamed=renamed)
            self.texts.append(printer.function())
            self.runtime_imports |= printer.runtime_imports
            self.module_imports |= printer.module_imports
            self.free |= printer.free_roots
            self.nested_defs |= printer.nested_defs


def module_source(
    functions: list[tuple[ir.FunctionDef, str | None]],
    *,
    entry: str,
    header: str,
    backend: str | backends.Backend = "numpy",
) -> tuple[str, tuple[str, ...]]:
    """The module text defining ``functions``, formatted as black formats it, and the free
    names it reads.

    Each function comes with the module its user code lives in when that is not
    the entry's module: its free names are then read through an alias of that
    module (``_physics.G``), bound at load time as ``alias=module``.
    """
    printed = _Printed(functions, backend, {})
    # A runtime helper named like a user's global that the module binds at load time is
    # imported under another name. (Locals and parameters named like a helper were renamed
    # by the compiler already; a global keeps its name, which loading binds it by.)
    helpers = {name for _, name in printed.runtime_imports}
    clashes = sorted(helpers & printed.free)
    if clashes:
        fresh = FreshNames(helpers | printed.free | {fn.name for fn, _ in functions})
        printed = _Printed(functions, backend, {n: fresh.fresh(f"{n}_") for n in clashes})
    runtime_imports = printed.runtime_imports
    free = printed.free | {f"{alias}={module}" for module, alias in printed.aliases.items()}
    free_names = tuple(sorted(free))
    body_text = "\n".join(
        line
        for text in printed.texts
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
    )
    parts = [f'"""{header}"""', ""]
    backend = backends.get(backend)
    if backend.array_alias != "np" and re.search(r"(?<![\w.])np\.", body_text):
        parts.append("import numpy as np")  # NumPy next to the backend's arrays
    parts.append(backend.array_import)
    parts += [f"import {module}" for module in sorted(printed.module_imports)]
    for module in sorted({m for m, _ in runtime_imports}):
        names = sorted(n for m, n in runtime_imports if m == module)
        names = [f"{n} as {printed.renamed[n]}" if n in printed.renamed else n for n in names]
        parts += _fit_module_line(f"from {module} import {', '.join(names)}")
    for text in printed.texts:
        parts += ["", "", text.rstrip("\n")]
    parts += ["", ""]
    parts += _fit_module_line(f"__s2sgrad_entry__ = {_string_text(entry)[0]}")
    parts += _fit_module_line(f"__s2sgrad_free_names__ = {_const_text(free_names)[0]}")
    text = "\n".join(parts) + "\n"
    if printed.nested_defs:
        # Black puts blank lines around a nested def by rules of its own (the JAX
        # lowering's branch and loop bodies): it lays out such a module itself.
        import black

        text = black.format_str(text, mode=black.Mode(line_length=LINE_LENGTH))
    return text, free_names


def _fit_module_line(line: str) -> list[str]:
    return [line] if _fits(line) else black_lines(line)
