"""The compiler, end to end: user function -> generated derivative module text.

    parse (frontend) -> normalize -> forward | reverse -> optimize -> codegen

Importing this module imports libcst (black only where a long line needs it); the
cache imports it only on a miss, so loading a cached derivative never pays for the
compiler.
"""

from __future__ import annotations

import gc
import inspect
import linecache
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

from s2sgrad import backends, cache, codegen, composition, ir, memos, running, runtime, sources
from s2sgrad._version import __version__
from s2sgrad.backends import JAX_CONTROL_NAMES, JAX_MASKED_NAMES
from s2sgrad.errors import SourceLocation, UsageError
from s2sgrad.frontend import get_source, is_derivative_code, parse_function
from s2sgrad.rules.registry import generation as rules_generation
from s2sgrad.transforms import dataflow
from s2sgrad.transforms.aliasing import check_updates_seen_through_aliases
from s2sgrad.transforms.forward import forward
from s2sgrad.transforms.hoist import hoist_invariants
from s2sgrad.transforms.inline import rename
from s2sgrad.transforms.key_cotangents import split_key_cotangents
from s2sgrad.transforms.names import FreshNames
from s2sgrad.transforms.normalize import normalize
from s2sgrad.transforms.optimize import optimize
from s2sgrad.transforms.residuals import has_loops, split_vjp
from s2sgrad.transforms.reverse import reverse
from s2sgrad.transforms.shapes import SCALAR, Shape
from s2sgrad.transforms.structure import structure

MODES = ("reverse", "forward")


@dataclass(frozen=True)
class GeneratedModule:
    source: str  # complete module text, formatted as black formats it, deterministic
    entry: str  # name of the derivative function defined in it
    free_names: tuple[str, ...]  # names read from the user's function's globals/closure


# Names generated modules bind at module level, in either backend: locals must not shadow them.
_MODULE_LEVEL_NAMES = frozenset(
    {"np", "jnp", "jax"}
    | {n for n in dir(runtime) if not n.startswith("_")}
    | set(JAX_CONTROL_NAMES)
    | set(JAX_MASKED_NAMES)
)


def _reserved_names(fn: ir.FunctionDef) -> set[str]:
    """Names generated locals must not shadow: the user's, module globals, helpers."""
    taken = dataflow.all_local_names(fn) | _MODULE_LEVEL_NAMES
    for stmt in ir.walk_stmts(fn.body):
        for atom in _stmt_atoms(stmt):
            taken |= _ref_roots(atom)
    return taken


def _stmt_atoms(stmt: ir.Stmt):
    if isinstance(stmt, (ir.Assign, ir.Return)):
        yield stmt.value


def _ref_roots(atom) -> set[str]:
    if isinstance(atom, ir.Ref):
        return {atom.source.split(".")[0]}
    if isinstance(atom, ir.Call):
        out = _ref_roots(atom.fn)
        for a in atom.args:
            out |= _ref_roots(a)
        for _, v in atom.kwargs:
            out |= _ref_roots(v)
        return out
    if isinstance(atom, ir.Seq):
        return set().union(*(_ref_roots(e) for e in atom.elts)) if atom.elts else set()
    if isinstance(atom, ir.Index):
        return set().union(*(_ref_roots(e) for e in atom.items)) if atom.items else set()
    if isinstance(atom, ir.Slice):
        return _ref_roots(atom.lower) | _ref_roots(atom.upper) | _ref_roots(atom.step)
    return set()


@dataclass(frozen=True)
class _Lowered:
    source: str
    bindings: tuple  # cache.bindings_of: what the function's names denoted
    rules: int  # the rule registry's generation
    ir: ir.FunctionDef


# Each function's IR is lowered once per process while its source, the bindings of the
# names it reads and the rules stay as they were (the cache key counts the same
# things): one gradient in forward mode compiles a module per argument, and each
# would otherwise parse the function and its callees again. Kept on the function
# (s2sgrad.memos), so the IR goes with it. IR is immutable: sharing it is safe.


def lower(fn: Callable) -> ir.FunctionDef:
    """The user's function as IR: A-normal form, structured (counted loops, one return)."""
    target = running.function_that_runs(fn)
    if not isinstance(target, types.FunctionType):
        return _lower(target)  # refused by the frontend, with its own message
    source, _ = get_source(target)  # a stale source is refused here, memo or not
    rules = rules_generation()
    table = memos.table_of(target, "lowered")
    memo = table.get("ir")
    if (
        memo is not None
        and memo.source == source
        and memo.rules == rules
        and cache.bindings_hold(memo.bindings)
    ):
        return memo.ir
    bindings = cache.bindings_of(target)
    lowered = _lower(target)
    table["ir"] = _Lowered(source, bindings, rules, lowered)
    return lowered


def _lower(fn: Callable) -> ir.FunctionDef:
    surface = parse_function(fn)
    if not is_derivative_code(fn):
        # Derivative code keeps views its own way (saves that NumPy may update in place
        # are copied where it matters); the user code it came from passed this check.
        check_updates_seen_through_aliases(surface)
    return _clear_of_module_names(hoist_invariants(structure(normalize(surface))))


def _clear_of_module_names(
    fn: ir.FunctionDef, module_names: frozenset[str] = frozenset()
) -> ir.FunctionDef:
    """``fn`` with each variable it binds that is named like something generated modules
    bind at module level (``np``, a runtime helper: ``unindex = y[1:]``; ``module_names``,
    the module's own functions) renamed (``unindex_1``), so the derivative's own
    ``unindex(...)`` reaches the helper."""
    taken = _MODULE_LEVEL_NAMES | module_names
    bound = set(fn.param_names) | dataflow.deep_writes(fn.body)
    clash = sorted(bound & taken)
    if not clash:
        return fn
    fresh = FreshNames(dataflow.all_local_names(fn) | taken)
    mapping = {n: ir.Name(fresh.fresh(n)) for n in clash}
    return replace(
        fn,
        params=tuple(
            replace(p, name=mapping[p.name].id) if p.name in mapping else p for p in fn.params
        ),
        body=tuple(rename(s, mapping) for s in fn.body),
        temps=frozenset(mapping[t].id if t in mapping else t for t in fn.temps),
    )


class Split(NamedTuple):
    """A callee's forward-with-residuals and backward functions (``Compilation.split``)."""

    fwd: str
    bwd: str


class Request(NamedTuple):
    """One derivative function of a module, as ``Compilation.request`` and ``split`` key it:
    of ``fn`` in ``mode`` ("reverse", "forward", or "split" for a callee's forward and
    backward pair) with respect to the parameters ``wrt``. ``containers``: positions of
    tuple/list/dict arguments; ``has_aux``: differentiate only ``result[0]``;
    ``scalars``: positions of arguments known to be numbers; ``value_unread``: the caller
    drops the value; ``ranks``: ``(position, ndim, full)`` of array arguments (and
    ``((position, key), ndim, full)`` of a dict argument's arrays; ``full``: no axis of
    length 1). The last three in reverse mode only."""

    fn: Callable
    mode: str
    wrt: tuple[int, ...]
    containers: tuple[int, ...] = ()
    has_aux: bool = False
    scalars: tuple[int, ...] = ()
    value_unread: bool = False
    ranks: tuple = ()


class Compilation:
    """One generated module: the requested derivative and those of the user functions it calls.

    Transforms meet calls of the user's own functions; they ask ``request`` for
    the derivative of the callee (mode, and which arguments are active) and get
    back the name it will have in this module. Naming happens before
    generating, so recursion needs nothing special.
    """

    def __init__(
        self,
        root: Callable,
        target: backends.Backend = backends.NUMPY,
        read_back: bool = False,
        rerun_loops: bool = False,
        checkpoint: int | None = None,
    ):
        self.root = running.function_that_runs(root)
        self.target = target  # the backend: which callees it splits (``split``)
        # Loops may rerun their body in the backward sweep (Backend.rematerializes_loops);
        # not in a module read back for higher order, whose frontend reads stacks only as
        # first-order code makes them.
        self.rerun_loops = rerun_loops and not read_back
        # The snapshots of a checkpointed loop that has no directive (``grad(...,
        # checkpoint=N)``): every loop that saves values is checkpointed. Neither it nor
        # directives apply to a module read back (``transforms.checkpointing``).
        self.checkpoint = checkpoint
        # The module will be read back and differentiated again (a composition's first
        # order): a callee whose loops record stacks keeps recomputation, since the
        # frontend reads a stack only where it is made (``s = []`` in the same function).
        self.read_back = read_back
        self.module_names = FreshNames(set(_MODULE_LEVEL_NAMES))
        self.requests: dict[Request | tuple, str] = {}
        self.pending: list[tuple[Request, str | Split]] = []
        self.functions: list[tuple[ir.FunctionDef, str | None]] = []
        self.bindings: dict[int, str] = {}  # id(namespace) -> `@g`: see foreign
        self.splits: dict[Request, Split] = {}
        self.generating: Request | None = None  # the request ``run`` is generating
        # (callee, ranks, scalars) -> the rank of what it returns (reverse._result_profile)
        self.result_profiles: dict = {}

    def request(
        self,
        fn: Callable,
        mode: str,
        wrt: tuple[int, ...],
        containers: tuple[int, ...] = (),
        has_aux: bool = False,
        scalars: tuple[int, ...] = (),
        value_unread: bool = False,
        ranks: tuple = (),
    ) -> str:
        """The name the derivative of ``fn`` will have (the arguments as ``Request``'s)."""
        fn = running.function_that_runs(fn, (("containers", tuple(containers)),))
        key = Request(fn, mode, tuple(wrt), tuple(containers), has_aux)
        if mode == "reverse":
            key = key._replace(
                scalars=tuple(scalars), value_unread=value_unread, ranks=tuple(ranks)
            )
        if key not in self.requests:
            suffix = "vjp" if mode == "reverse" else "jvp"
            name = self.module_names.fresh(f"{fn.__name__}_{suffix}")
            self.requests[key] = name
            self.pending.append((key, name))
        return self.requests[key]

    def run(self) -> None:
        while self.pending:
            request, name = self.pending.pop(0)
            split = request.mode == "split"
            foreign = self.foreign(request.fn)
            self.check_closure(request.fn, foreign)
            self.generating = request
            deriv = derivative_ir(
                request.fn,
                mode="reverse" if split else request.mode,
                wrt=request.wrt,
                name=None if split else name,
                compilation=self,
                containers=request.containers,
                has_aux=request.has_aux,
                scalars=request.scalars,
                value_unread=request.value_unread,
                ranks=request.ranks,
            )
            if split:
                self.functions += [(f, foreign) for f in split_vjp(deriv, *name)]
            else:
                self.functions.append((deriv, foreign))

    def split(
        self,
        fn: Callable,
        wrt: tuple[int, ...],
        containers: tuple[int, ...],
        scalars: tuple[int, ...],
        ranks: tuple = (),
        in_loop: bool = False,
    ) -> Split | None:
        """The names ``fn``'s vjp will have as a forward pass returning its residuals and a
        backward pass taking them (``transforms.residuals``); None where ``fn``'s forward
        work is recomputed instead: the backend prefers recomputing there
        (``Backend.splits_callee``; ``in_loop``: the call is in a loop of its caller), or
        ``fn`` has loops and the module is read back. Named before they are generated, as
        ``request``'s derivatives, so recursion works."""
        fn = running.function_that_runs(fn, (("containers", tuple(containers)),))
        callee = lower(fn)
        per_iteration = in_loop or (self.generating is not None and self.generating.mode == "split")
        if not self.target.splits_callee(callee, per_iteration) or (
            self.read_back and has_loops(callee)
        ):
            return None
        key = Request(
            fn, "split", tuple(wrt), tuple(containers), scalars=tuple(scalars), ranks=tuple(ranks)
        )
        if key not in self.splits:
            split = Split(
                self.module_names.fresh(f"{fn.__name__}_fwd"),
                self.module_names.fresh(f"{fn.__name__}_bwd"),
            )
            self.requests[(key, "fwd")] = split.fwd  # (reserved in every function's names)
            self.requests[(key, "bwd")] = split.bwd
            self.pending.append((key, split))
            self.splits[key] = split
        return self.splits[key]

    def differentiated_functions(self) -> list[Callable]:
        """The user functions this module has derivatives of, in the order requested."""
        keys = (key[0] if isinstance(key[0], Request) else key for key in self.requests)
        return list(dict.fromkeys(key.fn for key in keys))

    @staticmethod
    def callee_ir(fn: Callable) -> ir.FunctionDef:
        """A called user function as IR, for analyses that look into callees."""
        return lower(fn)

    def check_closure(self, fn: Callable, foreign: str | None) -> None:
        """Called functions may not be closures yet (their cells cannot be bound)."""
        if fn is self.root or not fn.__closure__:
            return
        wrapper = running.decorator_wrapper(fn)
        if wrapper is not None:
            code = wrapper.__code__
            raise UsageError(
                f"{fn.__qualname__} is decorated: what runs when it is called is the "
                f"decorator's wrapper, {running.describe_wrapper(wrapper)}, which captures "
                f"variables of the decorator ({', '.join(code.co_freevars)}); a called "
                "function may not be a closure yet",
                loc=SourceLocation(
                    code.co_filename,
                    code.co_firstlineno,
                    0,
                    linecache.getline(code.co_filename, code.co_firstlineno),
                ),
                hint="differentiate the decorated function itself (its wrapper is "
                "differentiated then), or call the undecorated function here",
            )
        if foreign is not None:
            raise UsageError(
                f"{fn.__qualname__} is a closure from another module; s2sgrad cannot bind "
                "its captured variables yet",
                hint="define it at module level, or pass the captured values as arguments",
            )
        raise UsageError(
            f"{fn.__qualname__} captures variables of an enclosing function "
            f"({', '.join(fn.__code__.co_freevars)}); called functions may not be closures yet",
            hint="pass the captured values as arguments, or define it at module level",
        )

    def foreign(self, fn: Callable) -> str | None:
        """The module through which ``fn``'s free names are read, when they cannot be read
        as the root's are (None): ``fn`` has other globals (a decorator's wrapper lives in
        the decorator's module, though ``functools.wraps`` gives it the decorated function's
        ``__module__``), or the root's closure cells would shadow globals ``fn`` reads."""
        if fn is self.root:
            return None
        # grad(f) called inside: its composition function, and the functions of the
        # derivative module it calls, are read through one binding of that module.
        binding = composition.binding_of(self.root, fn)
        if binding is not None and fn.__globals__ is not self.root.__globals__:
            self.bindings[id(fn.__globals__)] = binding
            return binding
        if id(fn.__globals__) in self.bindings:
            return self.bindings[id(fn.__globals__)]
        cells = set(self.root.__code__.co_freevars)
        shadowed = cells and cells & set(_names_read(fn.__code__))
        if fn.__globals__ is self.root.__globals__ and not shadowed:
            return None
        name = fn.__globals__.get("__name__")
        module = sys.modules.get(name) if isinstance(name, str) else None
        if module is not None and getattr(module, "__dict__", None) is fn.__globals__:
            return name
        if fn.__module__ != self.root.__module__ or shadowed:
            return fn.__module__  # imported by that name when the derivative module loads
        return None


def _names_read(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names_read(const)
    return names


def derivative_ir(
    fn: Callable,
    *,
    mode: str,
    wrt: tuple[int, ...],
    name: str | None = None,
    compilation: Compilation | None = None,
    containers: tuple[int, ...] = (),
    has_aux: bool = False,
    scalars: tuple[int, ...] = (),
    value_unread: bool = False,
    ranks: tuple = (),
) -> ir.FunctionDef:
    """The optimized derivative function of ``fn`` as IR (``scalars``, ``value_unread``,
    ``ranks``: reverse mode only; see ``Request``)."""
    if mode not in MODES:
        raise UsageError(f"mode must be one of {MODES}, not {mode!r}")
    primal = lower(fn)
    n = len(primal.params)
    for i in wrt:
        if not 0 <= i < n:
            raise UsageError(f"wrt index {i} is out of range for {primal.name} with {n} parameters")
    compilation = compilation or Compilation(fn)
    # The module's functions named so far, and those named from now on, must not be
    # shadowed by this function's own variables (a local `helper_vjp` beside a call of
    # helper): rename the first kind, and keep the names from the second.
    primal = _clear_of_module_names(primal, frozenset(compilation.requests.values()))
    compilation.module_names.reserve(*dataflow.all_local_names(primal))
    reserved = _reserved_names(primal) | set(compilation.requests.values())
    names = FreshNames(reserved)
    if mode == "reverse":
        deriv = reverse(
            primal,
            tuple(wrt),
            names,
            compilation,
            containers,
            has_aux,
            scalars,
            value_unread,
            ranks,
            rerun_loops=compilation.rerun_loops,
            checkpoint=compilation.checkpoint,
            checkpointing_loops=not compilation.read_back,
        )
        deriv = split_key_cotangents(deriv, names)
    else:
        deriv = forward(primal, tuple(wrt), names, compilation, containers, has_aux)
    if name is not None:
        deriv = replace(deriv, name=name)
    return optimize(
        deriv,
        _same_shape_hints(deriv, primal, mode, wrt),
        protected=frozenset(dataflow.all_local_names(primal)),
    )


def _same_shape_hints(
    deriv: ir.FunctionDef, primal: ir.FunctionDef, mode: str, wrt: tuple[int, ...]
) -> dict[str, str | Shape]:
    """Extra parameters of a derivative and the names whose shapes they share."""
    extra = deriv.params[len(primal.params) :]
    if mode == "reverse":
        out = deriv.body[-1].value.elts[0]  # return out, (grads...)
        if out == ir.Const(None):  # a real scalar left uncomputed (transforms.unread_value)
            return {extra[0].name: SCALAR}
        return {extra[0].name: out.id} if isinstance(out, ir.Name) else {}
    return {t.name: primal.params[i].name for t, i in zip(extra, wrt)}


def _header(
    fn: Callable,
    primal_name: str,
    mode: str,
    wrt_names: tuple[str, ...],
    backend: backends.Backend = backends.NUMPY,
) -> str:
    target = running.function_that_runs(fn)
    try:
        where = f"{inspect.getsourcefile(target)}, line {sources.source_lines(target)[1]}"
    except (OSError, TypeError):
        where = "<unknown source>"
    kind = (
        "Reverse-mode derivative (vector-Jacobian product)"
        if mode == "reverse"
        else "Forward-mode derivative (Jacobian-vector product)"
    )
    lowered = f"\n{backend.header_note}\n" if backend.header_note else ""
    return (
        f"{kind} of `{primal_name}` with respect to {', '.join(wrt_names)}.\n{lowered}\n"
        f"Source: {where}.\n"
        f"Generated by s2sgrad {__version__}; regenerated whenever that source changes.\n"
    )


def generate(
    fn: Callable,
    *,
    mode: str,
    wrt: tuple[int, ...],
    backend: str = "numpy",
    options: tuple = (),
) -> GeneratedModule:
    """Compile the derivative of ``fn`` to module text (see GeneratedModule).

    ``options`` (pairs): ``("containers", positions)`` of tuple/list/dict
    arguments, ``("has_aux", True)`` for functions returning ``(value, aux)``,
    ``("scalars", positions)`` of arguments passed as numbers, ``("ranks", entries)``
    of those passed as arrays (``Request``), ``("value_unread", True)`` where the caller drops the
    value (``grad``; see ``transforms.unread_value``), ``("rerun_loops", flag)`` to
    rerun cheap loop bodies in the backward sweep or not, over the backend's default
    (``Backend.rematerializes_loops``; see ``transforms.remat``), ``("checkpoint", N)`` to
    checkpoint every loop that saves values with N snapshots (``transforms.checkpointing``).
    """
    with _collector_paused:
        return _generate(fn, mode, wrt, backend, settings=dict(options))


class _CollectorPause:
    """No automatic garbage collection while the compiler runs.

    A compilation allocates a great many small objects that live until it ends (the IR,
    shape environments, libcst's tree), and each of Python's full collections walks all
    of them: the collector made the compile of a 5,000-statement function superlinear
    (19 s, against 12.6 s without it). The compiler's garbage is mostly acyclic and freed
    by reference counting; what is cyclic is collected once it is done. Counted, so that
    compilations in several threads (or a composed function's, inside another) resume
    collection only when the last one ends, and only if it was on before the first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._was_enabled = False

    def __enter__(self) -> None:
        with self._lock:
            if self._running == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._running += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0 and self._was_enabled:
                gc.enable()


_collector_paused = _CollectorPause()


def _generate(fn: Callable, mode: str, wrt, backend: str, settings: dict) -> GeneratedModule:
    target = backends.get(backend)
    wrt = tuple(wrt)
    compilation = Compilation(
        fn,
        target,
        bool(settings.get("read_back", False)),
        bool(settings.get("rerun_loops", target.rematerializes_loops)),
        settings.get("checkpoint"),
    )
    entry = compilation.request(
        fn,
        mode,
        wrt,
        tuple(settings.get("containers", ())),
        bool(settings.get("has_aux", False)),
        tuple(settings.get("scalars", ())),
        bool(settings.get("value_unread", False)),
        tuple(settings.get("ranks", ())),
    )
    compilation.run()
    functions = target.lower(compilation)
    primal_params = [p.name for p in running.parameters(fn)]
    wrt_names = tuple(primal_params[i] for i in wrt)
    source, free = codegen.module_source(
        functions,
        entry=entry,
        header=_header(fn, fn.__name__, mode, wrt_names, target),
        backend=target,
    )
    return GeneratedModule(source=source, entry=entry, free_names=free)


def lowered_source(fn: Callable) -> str:
    """The user's function after the frontend and normalization, printed as a module.

    Executing it must behave exactly like ``fn``: tests use this to check the
    lowering passes independently of differentiation.
    """
    primal = lower(fn)
    source, _ = codegen.module_source(
        [(primal, None)], entry=primal.name, header=f"Lowered IR of `{primal.name}`."
    )
    return source
