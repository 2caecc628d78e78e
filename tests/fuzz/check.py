"""Run one generated program through s2sgrad and compare with an independent oracle.

``prepare`` loads the program from a real file (s2sgrad reads source with
``inspect.getsource``), runs it, rejects it if it is not well defined there
(non-finite or huge values, a branch test within rounding of its threshold,
an oracle that fails), and computes the references:

* the jnp twin (``tests.oracles.jnp_twin``) of the same source with in-place
  updates ``y[i] = v`` rewritten to ``y = y.at[i].set(v)``: ``jax.grad``,
  ``jax.jvp`` and ``jax.vjp`` give exact references;
* float64 central differences where the twin does not compute what NumPy
  computes (a view read after its base was updated in place: NumPy sees the
  write, the twin does not).

``run_checks`` then calls ``s2sgrad.grad`` (both modes), ``value_and_grad``,
``jvp``, ``vjp`` and ``hvp`` (second order: forward over reverse) on a backend and
classifies each call: ``ok``, ``wrong`` (value, dtype, shape or structure differs),
``refused`` (a ``S2SGradError``) or ``crash`` (any other exception). The Hessian-vector
product's reference is ``jax.jvp`` of ``jax.grad`` of the jnp twin, autograd's gradient
of its gradient's inner product, or, where only differences serve, central differences
of s2sgrad's gradient (checked itself against differences by the first-order checks)
with two step sizes that must agree.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import itertools
import os
import re
import sys
import traceback
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import s2sgrad
from s2sgrad.errors import S2SGradError, UnsupportedSyntaxError
from tests import oracles
from tests.fuzz.generator import Program
from tests.oracles import central_difference_grad, central_difference_jvp, jnp_twin

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")

CHECKS = (
    "grad-reverse",
    "grad-checkpointed",
    "grad-forward",
    "value_and_grad",
    "jvp",
    "vjp",
    "hvp",
    "jacfwd",
    "jacrev",
)
#: The checks beyond first order's five: Jacobians (every seed in one batched pass on
#: NumPy) and Hessian-vector products.
LATER = ("hvp", "jacfwd", "jacrev")
RTOL = 1e-6
ATOL = 1e-8  # times the size of the reference
FD_RTOL, FD_ATOL = 1e-5, 1e-6
MARGIN = 1e-7  # a branch test closer than this (relative) to its threshold is rejected
FD_MARGIN = 1e-3
BIG = 1e6

_counter = itertools.count()
S2SGRAD_DIR = os.path.dirname(os.path.dirname(os.path.abspath(s2sgrad.__file__)))


class Rejected(Exception):
    """The program is not well defined at its arguments (or the oracle cannot handle it)."""


@dataclass
class Outcome:
    backend: str
    check: str
    status: str  # ok, wrong, refused, crash; xla: wrong just as jitted JAX is (runner)
    detail: str = ""
    key: str = ""  # groups refusals by message kind and crashes by exception and place


@dataclass
class Prepared:
    program: Program
    fn: Any
    args: list
    wrt: tuple
    value: Any
    grads: tuple | None  # references; None when f returns an array
    tangents: list
    jvp_out: Any
    cotangent: Any
    vjp_cts: tuple
    oracle: str  # "jax", "autograd" or "finite differences"
    modules: list = field(default_factory=list)
    margin: float = 0.0  # how far (relative) the nearest branch test is from its threshold
    differences: Any = None  # the same with central differences as the oracle (computed once)
    hvp: Any = None  # the Hessian times the tangents (computed once; False: no reference)


# --------------------------------------------------------------------------- loading


def load(source: str, directory: str, stem: str = "fz") -> Any:
    """``source`` as a module imported from a fresh file in ``directory``."""
    name = f"{stem}_{os.getpid()}_{next(_counter)}"
    path = os.path.join(directory, name + ".py")
    with open(path, "w") as fh:
        fh.write(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def unload(modules: list) -> None:
    for m in modules:
        sys.modules.pop(m.__name__, None)
        try:
            os.remove(m.__file__)
        except OSError:
            pass


class _AtUpdates(ast.NodeTransformer):
    """``y[i] = v`` -> ``y = y.at[i].set(v)``; ``y[i] += v`` -> ``y = y.at[i].add(v)``."""

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        t = node.targets[0]
        if (
            len(node.targets) == 1
            and isinstance(t, ast.Subscript)
            and isinstance(t.value, ast.Name)
        ):
            return self._at(t, "set", node.value, node)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        t = node.target
        if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name):
            value = node.value
            if isinstance(node.op, ast.Add):
                return self._at(t, "add", value, node)
            if isinstance(node.op, ast.Sub):
                return self._at(t, "add", ast.UnaryOp(ast.USub(), value), node)
            if isinstance(node.op, ast.Mult):
                return self._at(t, "multiply", value, node)
        return node

    @staticmethod
    def _at(target: ast.Subscript, method: str, value: ast.AST, node: ast.AST) -> ast.AST:
        name = target.value.id
        at = ast.Subscript(
            ast.Attribute(ast.Name(name, ast.Load()), "at", ast.Load()), target.slice, ast.Load()
        )
        call = ast.Call(ast.Attribute(at, method, ast.Load()), [value], [])
        return ast.copy_location(ast.Assign([ast.Name(name, ast.Store())], call), node)


def twin_source(source: str) -> str:
    tree = _AtUpdates().visit(ast.parse(source))
    return ast.unparse(ast.fix_missing_locations(tree))


class _Margins(ast.NodeTransformer):
    """Every comparison ``a < b`` becomes ``_fz_cmp(a, b, '<')``, which records |a - b|, and
    every call of a function kinked at zero (``np.std``) records how far it is from zero."""

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if len(node.ops) != 1:
            return node
        op = type(node.ops[0]).__name__
        call = ast.Call(
            ast.Name("_fz_cmp", ast.Load()), [node.left, node.comparators[0], ast.Constant(op)], []
        )
        return ast.copy_location(call, node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        name = ast.unparse(node.func)
        if name in _KINKED_AT_ZERO:
            call = ast.Call(ast.Name("_fz_away_from_zero", ast.Load()), [node], [])
            return ast.copy_location(call, node)
        if name in _KINKED_AT_TIES and len(node.args) >= 2:
            # _fz_ties(np.maximum(a, b), a, b): how close a and b come (a kink of the result)
            call = ast.Call(ast.Name("_fz_ties", ast.Load()), [node, *node.args[:3]], [])
            return ast.copy_location(call, node)
        if name == "np.abs" and node.args:
            node.args[0] = ast.Call(ast.Name("_fz_away_from_zero", ast.Load()), [node.args[0]], [])
        return node


# Functions whose derivative is undefined (0/0) where their value is 0.
_KINKED_AT_ZERO = {"np.std", "np.linalg.norm", "np.sqrt", "np.ptp", "np.hypot"}
# Functions with a kink where two of their arguments tie (np.clip: the value and a bound).
_KINKED_AT_TIES = {"np.maximum", "np.minimum", "np.fmax", "np.fmin", "np.clip"}

_OPS = {
    "Lt": np.less,
    "LtE": np.less_equal,
    "Gt": np.greater,
    "GtE": np.greater_equal,
    "Eq": np.equal,
    "NotEq": np.not_equal,
}


def _margin_recorder(store: list, kinks: list):
    def _fz_cmp(a, b, op):
        if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
            return _OPS[op](a, b)
        a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        scale = 1.0 + np.abs(a_) + np.abs(b_)
        store.append(float(np.min(np.abs(a_ - b_) / scale)) if np.size(a_ - b_) else 1.0)
        return _OPS[op](a, b)

    def _fz_away_from_zero(value):
        v = np.abs(np.asarray(value, dtype=float))
        kinks.append(float(np.min(v)) if v.size else 1.0)
        return value

    def _fz_ties(value, a, *others):
        for b in others:
            a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
            d = np.abs(a_ - b_) / (1.0 + np.abs(a_) + np.abs(b_))
            kinks.append(float(np.min(d)) if d.size else 1.0)
        return value

    return _fz_cmp, _fz_away_from_zero, _fz_ties


def branch_margin(source: str, args: list, directory: str) -> tuple[float, float]:
    """How close the program's comparisons come to a tie (relative to their operands), and
    how close it comes to a kink (np.maximum's tie, np.std at 0): only differences mind those."""
    tree = _Margins().visit(ast.parse(source))
    module = load(ast.unparse(ast.fix_missing_locations(tree)), directory, "fzm")
    store: list = []
    kinks: list = []
    module._fz_cmp, module._fz_away_from_zero, module._fz_ties = _margin_recorder(store, kinks)
    try:
        module.f(*args)
    finally:
        unload([module])
    return min(store, default=1.0), min(kinks, default=1.0)


# --------------------------------------------------------------------------- references


def _float_positions(program: Program) -> tuple:
    return tuple(i for i, k in enumerate(program.arg_kinds) if k != "int")


def _finite(tree: Any) -> bool:
    leaves = jax.tree_util.tree_leaves(tree)
    return all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in leaves)


def _size(tree: Any) -> float:
    leaves = jax.tree_util.tree_leaves(tree)
    return max([0.0] + [float(np.max(np.abs(np.asarray(v, dtype=float)))) for v in leaves])


def prepare(program: Program, directory: str, oracle: str = "autograd") -> Prepared:
    """Load ``program`` and compute its references; ``Rejected`` if it is not well defined."""
    try:
        module = load(program.source, directory)
    except Exception as exc:
        raise Rejected(f"import: {type(exc).__name__}") from exc
    modules = [module]
    try:
        return _prepare(program, module, modules, directory, oracle)
    except BaseException:
        unload(modules)
        raise


def _prepare(program: Program, module: Any, modules: list, directory: str, oracle: str) -> Prepared:
    fn = module.f
    args = program.args
    wrt = _float_positions(program)
    try:
        with np.errstate(all="raise"), warnings.catch_warnings():
            warnings.simplefilter("error")
            value = fn(*_copy(args))
    except Exception as exc:
        raise Rejected(f"primal: {type(exc).__name__}") from exc
    if not _finite(value) or _size(value) > BIG:
        raise Rejected("primal: non-finite or huge")
    if np.asarray(value).dtype != np.float64:
        raise Rejected("primal: not float64")
    margin, kink = branch_margin(program.source, args, directory)
    if margin < MARGIN:
        raise Rejected("branch test at its threshold")

    rng = np.random.default_rng(zlib.crc32(program.seed.encode()))
    tangents = [
        (
            (rng.uniform(-1, 1, np.shape(a)) if k == "array" else float(rng.uniform(-1, 1)))
            if k != "int"
            else 0
        )
        for a, k in zip(args, program.arg_kinds)
    ]
    scalar_out = np.ndim(value) == 0
    cotangent = 1.7 if scalar_out else rng.uniform(-1, 1, np.shape(value))

    refs = None
    if oracle == "none":  # enough to see whether a call crashes (minimising a crash)
        return Prepared(
            program, fn, args, wrt, value, None, tangents, None, cotangent, (), oracle, modules
        )
    # autograd cannot follow writes into arrays; the jnp twin has them as y = y.at[i].set(v)
    if oracle == "jax" or (oracle == "autograd" and not _writes_into_arrays(program.source)):
        refs = _twin_references(
            program, oracle, value, wrt, tangents, cotangent, modules, directory
        )
    if refs is None:
        if min(margin, kink) < FD_MARGIN:
            raise Rejected("no exact oracle, and a branch too near for differences")
        oracle = "finite differences"
        refs = _differences(fn, args, wrt, tangents, cotangent, scalar_out)
    grads, jvp_out, vjp_cts = refs
    if not _finite((grads, jvp_out, vjp_cts)) or _size((grads, jvp_out, vjp_cts)) > BIG:
        raise Rejected("reference non-finite or huge")
    return Prepared(
        program,
        fn,
        args,
        wrt,
        value,
        grads,
        tangents,
        jvp_out,
        cotangent,
        vjp_cts,
        oracle,
        modules,
        margin,
    )


def differences_instead(prep: Prepared) -> Prepared | None:
    """``prep`` with central differences as its oracle where the twin's derivative disagrees
    with them and they can serve; None where the twin's references stand.

    The twin applies the chain rule to what it computes, and at some points that is not
    the derivative of the function: entries equal by construction
    (``np.std(np.broadcast_to(s, (3,)))``, seed 31-4619) give a std of rounding noise,
    and autograd's ``centered / std`` of it is O(1) where the function is constant (its
    derivative there is 0; the differences see the constant). Asked only when a check
    disagrees with the twin: the failure is reported against the differences then, and
    stands when they cannot serve (a branch test near its threshold, or differences that
    change with the step, as across a kink). A kink alone does not bar them: std at
    equal entries is one, and differences along the program's path are stable there.
    """
    if prep.oracle not in ("jax", "autograd") or prep.margin < FD_MARGIN:
        return None
    if prep.differences is None:
        prep.differences = False
        scalar_out = np.ndim(prep.value) == 0
        try:
            refs = _differences(
                prep.fn, prep.args, prep.wrt, prep.tangents, prep.cotangent, scalar_out
            )
        except Rejected:
            return None
        grads, jvp_out, vjp_cts = refs
        fd = dataclasses.replace(
            prep,
            grads=grads,
            jvp_out=jvp_out,
            vjp_cts=vjp_cts,
            oracle="finite differences",
            hvp=None,
        )
        if compare(prep.vjp_cts, vjp_cts, "twin", fd) or compare(
            _arr(prep.jvp_out), _arr(jvp_out), "twin", fd
        ):
            prep.differences = fd
    return prep.differences or None


def _writes_into_arrays(source: str) -> bool:
    """Whether the program writes into an array (``y[i] = v``, ``y[i] += v``)."""
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AugAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Subscript) for t in targets):
            return True
    return False


_AUTOGRAD_HEADER = "from tests.fuzz.autograd_twin import np, scipy\n"


def _twin_references(program, oracle, value, wrt, tangents, cotangent, modules, directory):
    """(grads, jvp, vjp cotangents) from jax or autograd on the program's twin, or None."""
    args = program.args
    floats = [args[i] for i in wrt]
    scalar_out = np.ndim(value) == 0
    try:
        if oracle == "jax":
            twin = _jnp_twin_of(program, modules, directory)
        else:
            lines = program.source.splitlines(keepends=True)
            body = "".join(ln for ln in lines if not ln.startswith(("import ", "from ")))
            twin_module = load(_AUTOGRAD_HEADER + body, directory, "fza")
            modules.append(twin_module)
            twin = twin_module.f
        g = _of_floats(twin, args, wrt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            twin_value = g(*_copy(floats))
            if not _close(np.asarray(twin_value), np.asarray(value), 1e-9, 1e-12):
                return None  # NumPy view semantics the twin does not share
            if oracle == "jax":
                return _jax_refs(g, floats, tangents, wrt, cotangent, scalar_out)
            return _autograd_refs(g, floats, tangents, wrt, cotangent, scalar_out)
    except Exception:
        return None


def _jnp_twin_of(program: Program, modules: list, directory: str) -> Any:
    """The program's ``f`` as jax.numpy code (in-place updates as ``.at[...]``)."""
    twin_module = load(twin_source(program.source), directory, "fzt")
    modules.append(twin_module)
    return jnp_twin(twin_module.f)


def _of_floats(fn: Any, args: list, wrt: tuple) -> Any:
    """``fn`` as a function of the arguments in ``wrt`` alone, the others fixed."""

    def g(*fl):
        full = list(args)
        for i, v in zip(wrt, fl):
            full[i] = v
        return fn(*full)

    return g


def _jax_refs(g, floats, tangents, wrt, cotangent, scalar_out):
    grads = tuple(jax.grad(g, argnums=tuple(range(len(wrt))))(*floats)) if scalar_out else None
    _, jvp_out = jax.jvp(g, tuple(floats), tuple(tangents[i] for i in wrt))
    _, vjp_fn = jax.vjp(g, *floats)
    vjp_cts = tuple(vjp_fn(jnp.asarray(cotangent, dtype=jnp.float64)))
    return jax.tree_util.tree_map(np.asarray, (grads, jvp_out, vjp_cts))


def _autograd_refs(g, floats, tangents, wrt, cotangent, scalar_out):
    import autograd
    import autograd.numpy as anp

    def weighted(fl):
        return anp.sum(anp.asarray(cotangent) * g(*fl))

    vjp_cts = tuple(np.asarray(c, dtype=np.float64) for c in autograd.grad(weighted)(list(floats)))
    if scalar_out:
        grads = tuple(c / 1.7 for c in vjp_cts)
        jvp_out = np.float64(sum(np.sum(gr * tangents[i]) for gr, i in zip(grads, wrt)))
        return grads, jvp_out, vjp_cts
    jvp_out = 0.0
    for k, i in enumerate(wrt):

        def along(a, k=k):
            fl = list(floats)
            fl[k] = a
            return g(*fl)

        jac = np.asarray(autograd.jacobian(along)(np.asarray(floats[k], dtype=np.float64)))
        t = np.asarray(tangents[i], dtype=np.float64)
        jvp_out = jvp_out + np.tensordot(jac, t, axes=t.ndim)
    return None, jvp_out, vjp_cts


def _differences(fn, args, wrt, tangents, cotangent, scalar_out):
    def weighted(*a):
        return np.sum(np.asarray(cotangent) * fn(*_copy(a)))

    vjp_cts = tuple(central_difference_grad(weighted, args, i) for i in wrt)
    # The same with steps ten times larger: where the two disagree, the function curves
    # too much (or has a kink) for differences to serve as an oracle.
    step = oracles._STEP
    oracles._STEP = 10 * step
    try:
        coarse = tuple(central_difference_grad(weighted, args, i) for i in wrt)
    finally:
        oracles._STEP = step
    scale = max(1.0, _size(vjp_cts))
    if not all(_close(c, f, FD_RTOL / 10, FD_ATOL * scale / 10) for c, f in zip(coarse, vjp_cts)):
        raise Rejected("finite differences unstable (steep or kinked)")
    grads = tuple(c / 1.7 for c in vjp_cts) if scalar_out else None
    fd_tangents = [tangents[i] if i in wrt else None for i in range(len(args))]
    jvp_out = central_difference_jvp(lambda *a: fn(*_copy(a)), args, fd_tangents)
    return grads, jvp_out, vjp_cts


def _copy(args: Any) -> list:
    return [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]


# --------------------------------------------------------------------------- comparisons


def _close(a: Any, e: Any, rtol: float, atol: float) -> bool:
    a, e = np.asarray(a, dtype=np.float64), np.asarray(e, dtype=np.float64)
    if a.shape != e.shape:
        return False
    return bool(np.all(np.abs(a - e) <= atol + rtol * np.abs(e)))


def compare(got: Any, want: Any, what: str, prep: Prepared, scale: float | None = None) -> str:
    """'' if ``got`` matches ``want`` (structure, shapes, float64, values), else why not."""
    if prep.oracle == "none":
        return ""
    fd = prep.oracle != "jax"
    rtol = FD_RTOL if fd else RTOL
    scale = max(1.0, _size(want) if scale is None else scale)
    atol = (FD_ATOL if fd else ATOL) * scale
    if isinstance(want, tuple):
        if not isinstance(got, tuple) or len(got) != len(want):
            return f"{what}: structure {type(got).__name__} of {_len(got)}, expected {len(want)}"
        for k, (g, w) in enumerate(zip(got, want)):
            why = compare(g, w, f"{what}[{k}]", prep, scale)
            if why:
                return why
        return ""
    if isinstance(got, (tuple, list, dict)):
        return f"{what}: got a {type(got).__name__}, expected an array"
    dtype = getattr(got, "dtype", None)
    if dtype is None:
        if not isinstance(got, float):
            return f"{what}: got {type(got).__name__}, expected a float64 array or float"
    elif dtype != np.float64:
        return f"{what}: dtype {dtype}, expected float64"
    a = np.asarray(got, dtype=np.float64)
    e = np.asarray(want, dtype=np.float64)
    if a.shape != e.shape:
        return f"{what}: shape {a.shape}, expected {e.shape}"
    if not _close(a, e, rtol, atol):
        err = np.max(np.abs(a - e))
        return (
            f"{what}: max abs err {err:.3g} (oracle: {prep.oracle})\n"
            f"  got:      {np.array2string(a, precision=10, threshold=20)}\n"
            f"  expected: {np.array2string(e, precision=10, threshold=20)}"
        )
    return ""


def _len(x: Any) -> Any:
    try:
        return len(x)
    except TypeError:
        return "-"


# --------------------------------------------------------------------------- checks


def _refusal_key(exc: S2SGradError) -> str:
    message = getattr(exc, "message", str(exc)).splitlines()[0]
    message = re.sub(r"`[^`]*`|'[^']*'|\"[^\"]*\"", "…", message)
    message = re.sub(r"\b[a-z_]+\d+\b|\d+", "…", message)
    return f"{type(exc).__name__}: {message[:120]}"


def _crash_key(exc: BaseException) -> tuple[str, str]:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "s2sgrad" in f.filename and "/tests/" not in f.filename]
    where = "?"
    if ours:
        last = ours[-1]
        if S2SGRAD_DIR in os.path.abspath(last.filename):
            where = f"{os.path.relpath(last.filename, S2SGRAD_DIR)}:{last.lineno}"
        else:  # a generated module in the cache: its name changes with the program,
            # its functions' with the user's line numbers (``else_line21``)
            where = f"generated code ({re.sub(r'[0-9]+', '…', last.name)})"
    first = (str(exc).splitlines() or [""])[0][:160]
    message = re.sub(r"\b[a-z_]+\d+\b|\d+", "…", (str(exc).splitlines() or [""])[0])[:60]
    key = f"{type(exc).__name__} at {where}: {message}"
    return key, f"{key}: {first}\n" + "".join(traceback.format_exception(exc)[-6:])


def _call(check: str, prep: Prepared, backend: str) -> str:
    """Run one check; '' if it agrees with the references, else the difference."""
    fn, args, wrt = prep.fn, _copy(prep.args), prep.wrt
    scalar_out = np.ndim(prep.value) == 0
    if check == "grad-checkpointed":
        # Every loop that saves values reversed with 2 snapshots (binomial checkpointing):
        # the same gradient, or the checkpointing's own refusal (an inner loop, ...).
        if not scalar_out or not re.search(r"^\s*(for|while) ", prep.program.source, re.M):
            return "skip"
        try:
            got = s2sgrad.grad(fn, wrt=wrt, backend=backend, checkpoint=2)(*args)
        except UnsupportedSyntaxError as exc:
            if "checkpointing the loop" in str(exc):
                return "skip"
            raise
        return compare(got, prep.grads, check, prep)
    if check.startswith("grad-"):
        if not scalar_out:
            return "skip"
        got = s2sgrad.grad(fn, wrt=wrt, mode=check[5:], backend=backend)(*args)
        return compare(got, prep.grads, check, prep)
    if check == "value_and_grad":
        if not scalar_out:
            return "skip"
        value, got = s2sgrad.value_and_grad(fn, wrt=wrt, backend=backend)(*args)
        return compare(value, np.float64(prep.value), "value", prep) or compare(
            got, prep.grads, "gradient", prep
        )
    if check == "hvp":
        if not scalar_out:
            return "skip"
        want = hvp_reference(prep)
        if want is None:
            return "skip"
        vs = tuple(_as_float(prep.tangents[i]) for i in wrt)
        got = s2sgrad.hvp(fn, wrt=wrt, backend=backend)(*args, vs)
        return compare(tuple(got), want, "hvp", prep)
    if check in ("jacfwd", "jacrev"):
        return _jacobian_check(check, prep, backend)
    if check == "jvp":
        out, tangent = s2sgrad.jvp(fn, args, prep.tangents, backend=backend)
        return compare(_arr(out), _arr(prep.value), "primal", prep) or compare(
            _arr(tangent), _arr(prep.jvp_out), "tangent", prep
        )
    out, vjp_fn = s2sgrad.vjp(fn, *args, backend=backend)
    why = compare(_arr(out), _arr(prep.value), "primal", prep)
    if why:
        return why
    cts = vjp_fn(prep.cotangent)
    if not isinstance(cts, tuple) or len(cts) != len(args):
        return f"vjp: {type(cts).__name__} of {_len(cts)} cotangents, expected {len(args)}"
    return compare(tuple(cts[i] for i in wrt), prep.vjp_cts, "cotangents", prep)


def _jacobian_check(check: str, prep: Prepared, backend: str) -> str:
    """The Jacobian against the jvp and vjp references: ``J t`` (summed over the ``wrt``
    arguments) is the jvp's tangent, ``uᵀ J`` each argument's cotangent. Programs with
    tuple or dict arguments or results are skipped (the contraction is per leaf)."""
    fn, args, wrt = prep.fn, _copy(prep.args), prep.wrt
    if any(isinstance(x, (tuple, list, dict)) for x in (prep.value, *(args[i] for i in wrt))):
        return "skip"
    blocks = getattr(s2sgrad, check)(fn, wrt=wrt, backend=backend)(*args)  # (wrt is a tuple)
    if check == "jacfwd":
        got = sum(
            np.tensordot(_arr(b), _arr(prep.tangents[i]), axes=np.ndim(prep.tangents[i]))
            for b, i in zip(blocks, wrt)
        )
        return compare(_arr(got), _arr(prep.jvp_out), "J t", prep)
    u = _arr(prep.cotangent)
    got = tuple(np.tensordot(u, _arr(b), axes=u.ndim) for b in blocks)
    return compare(got, prep.vjp_cts, "uᵀ J", prep)


def _as_float(t: Any) -> Any:
    return t if isinstance(t, float) else np.asarray(t, dtype=np.float64)


def hvp_reference(prep: Prepared) -> tuple | None:
    """The Hessian of the program times its tangents, from the program's oracle (see the
    module docstring); None where there is none. Computed once per program and oracle."""
    if prep.hvp is None:
        prep.hvp = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                want = _hvp_of(prep)
            except Exception:
                want = None
        if want is not None and _finite(want) and _size(want) <= BIG:
            prep.hvp = tuple(np.asarray(w, dtype=np.float64) for w in want)
    return prep.hvp or None


def _hvp_of(prep: Prepared) -> Any:
    args, wrt = prep.args, prep.wrt
    floats = [_as_float(args[i]) for i in wrt]
    vs = [_as_float(prep.tangents[i]) for i in wrt]
    directory = os.path.dirname(prep.modules[0].__file__)
    if prep.oracle == "jax":
        g = _of_floats(_jnp_twin_of(prep.program, prep.modules, directory), args, wrt)
        argnums = tuple(range(len(wrt)))
        return jax.jvp(jax.grad(g, argnums=argnums), tuple(floats), tuple(vs))[1]
    if prep.oracle == "autograd":
        import autograd
        import autograd.numpy as anp

        lines = prep.program.source.splitlines(keepends=True)
        body = "".join(ln for ln in lines if not ln.startswith(("import ", "from ")))
        twin_module = load(_AUTOGRAD_HEADER + body, directory, "fza")
        prep.modules.append(twin_module)
        g = _of_floats(twin_module.f, args, wrt)
        gradient = autograd.grad(lambda fl: g(*fl))

        def along(fl):
            return sum(anp.sum(gk * vk) for gk, vk in zip(gradient(fl), vs))

        return autograd.grad(along)(list(floats))
    # differences of the (separately checked) gradient, at two step sizes that must agree
    gradient = s2sgrad.grad(prep.fn, wrt=wrt)

    def moved(step: float) -> list:
        full = _copy(args)
        for i, v in zip(wrt, vs):
            full[i] = full[i] + step * v
        return [np.asarray(g, dtype=np.float64) for g in gradient(*full)]

    estimates = []
    for h in (1e-6, 1e-5):
        estimates.append([(a - b) / (2 * h) for a, b in zip(moved(h), moved(-h))])
    scale = max(1.0, _size(estimates[0]))
    fine, coarse = estimates
    if not all(_close(c, f, FD_RTOL, FD_ATOL * scale) for c, f in zip(coarse, fine)):
        return None
    return fine


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) if not isinstance(x, (tuple, list)) else x


def run_check(check: str, prep: Prepared, backend: str) -> Outcome | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            why = _call(check, prep, backend)
            if why and why != "skip" and differences_instead(prep) is not None:
                why = _call(check, differences_instead(prep), backend)
    except S2SGradError as exc:
        return Outcome(backend, check, "refused", str(exc), _refusal_key(exc))
    except Exception as exc:
        key, detail = _crash_key(exc)
        return Outcome(backend, check, "crash", detail, key)
    if why == "skip":
        return None
    if why:
        return Outcome(backend, check, "wrong", why, f"wrong {check}")
    return Outcome(backend, check, "ok")


def run_checks(prep: Prepared, backends: tuple, checks: tuple = CHECKS) -> list[Outcome]:
    out = []
    for backend in backends:
        for check in checks:
            outcome = run_check(check, prep, backend)
            if outcome is not None:
                out.append(outcome)
    return out


def as_jitted_jax_computes_it(program: Program, check: str, directory: str) -> bool:
    """Whether the JAX backend's ``check`` of ``program`` (a minimised failure) gives what
    ``jax.jit`` of ``jax.grad``/``jvp``/``vjp`` of its jnp twin gives.

    XLA on the CPU may compute one expression in several fusions and round it differently
    in each (seed 31-1010: ``np.ptp`` of ``x + 0.3 * np.inner(x, x)``, where ``x == min``
    fails in the fusion that scatters the cotangent). Jitted JAX then gives the same
    result, and s2sgrad, whose JAX backend always runs jitted, can only agree. Asked of
    the minimised program only: a twin with Python control flow on values cannot be
    jitted whole (False), so such a failure stays "wrong".
    """
    try:
        prep = prepare(program, directory)
    except Rejected:
        return False
    try:
        refs = _jitted_references(prep, check)
        if refs is None:
            return False
        prep = Prepared(**{**prep.__dict__, "oracle": "jax"})
        prep.grads, prep.jvp_out, prep.vjp_cts = refs
        outcome = run_check(check, prep, "jax")
        return outcome is not None and outcome.status == "ok"
    finally:
        unload(prep.modules)


def _jitted_references(prep: Prepared, check: str = "") -> tuple | None:
    """(grads, jvp, vjp cotangents) of the jnp twin, each under ``jax.jit``; None when the
    twin cannot be made or run. For the Jacobian checks, the jvp and the cotangents are
    those of ``jax.jit(jax.jacfwd)`` / ``jax.jit(jax.jacrev)`` (XLA batches the seeds,
    and its CPU fusion of ``cumsum(pad(t))`` over a batch is wrong in jax 0.10.2: seed
    62-17, ``jax.jit(jax.jacfwd(g))(0.7)`` is 3.0 where the eager answer is 2.0)."""
    program, args, wrt = prep.program, prep.args, prep.wrt
    try:
        directory = os.path.dirname(prep.modules[0].__file__)
        g = _of_floats(_jnp_twin_of(program, prep.modules, directory), args, wrt)
        floats = tuple(jnp.asarray(args[i], dtype=jnp.float64) for i in wrt)
        tangents = tuple(jnp.asarray(prep.tangents[i], dtype=jnp.float64) for i in wrt)
        scalar_out = np.ndim(prep.value) == 0
        argnums = tuple(range(len(wrt)))
        grads = tuple(jax.jit(jax.grad(g, argnums=argnums))(*floats)) if scalar_out else None
        jvp_out = jax.jit(lambda fl, t: jax.jvp(g, fl, t)[1])(floats, tangents)
        cotangent = jnp.asarray(prep.cotangent, dtype=jnp.float64)
        vjp_cts = tuple(jax.jit(lambda fl, c: jax.vjp(g, *fl)[1](c))(floats, cotangent))
        if check == "jacfwd":
            blocks = jax.jit(jax.jacfwd(g, argnums=argnums))(*floats)
            jvp_out = sum(jnp.tensordot(b, t, axes=t.ndim) for b, t in zip(blocks, tangents))
        if check == "jacrev":
            blocks = jax.jit(jax.jacrev(g, argnums=argnums))(*floats)
            vjp_cts = tuple(jnp.tensordot(cotangent, b, axes=cotangent.ndim) for b in blocks)
        return jax.tree_util.tree_map(np.asarray, (grads, jvp_out, vjp_cts))
    except Exception:
        return None
