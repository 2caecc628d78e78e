"""The user-facing transformations: grad, value_and_grad, jvp, vjp.

Semantics follow JAX (``jax.grad``, ``jax.value_and_grad``, ``jax.jvp``,
``jax.vjp``) so users can move between the two without surprises; ``wrt``
plays the role of ``argnums`` and also accepts parameter names.

The derivative is compiled lazily, on the first call, and fetched from the
on-disk cache (``cache.load_or_generate``): functions the user's function
calls may be defined after it, as in any Python module, and a fresh process
with an unchanged function loads the cached module without running the
compiler.
"""

from __future__ import annotations

import dataclasses
import functools
import linecache
from collections.abc import Callable
from typing import Any

import numpy as np

from s2sgrad import backends, cache, composition, running, trees
from s2sgrad.errors import UsageError

Wrt = int | str | tuple


def _name(fun: Callable) -> str:
    """How messages name ``fun``: ``s2sgrad.grad(f)`` for a derivative s2sgrad produced
    (``functools.wraps`` gave it ``f``'s own name)."""
    mark = running.produced(fun)
    if mark is not None and mark[1] is not None:
        return f"s2sgrad.{mark[0]}({getattr(mark[1], '__name__', '?')})"
    return getattr(fun, "__name__", repr(fun))


def _require_python_function(fun: Callable) -> None:
    """What runs when ``fun`` is called must be a Python function (a decorator's wrapper
    included), or a derivative s2sgrad produced that composes (``grad(f)``,
    ``value_and_grad(f)``: checked now, compiled on the first call)."""
    if running.produced(fun) is not None:
        composition.require_composable(fun)
    else:
        running.python_function_that_runs(fun)


def resolve_wrt(fun: Callable, wrt: Wrt) -> tuple[tuple[int, ...], bool]:
    """``wrt`` as a tuple of parameter indices, and whether the caller wants a tuple back."""
    params = running.parameters(fun)
    names = [p.name for p in params]
    single = not isinstance(wrt, (tuple, list))
    items = (wrt,) if single else tuple(wrt)
    if not items:
        raise UsageError("wrt must name at least one parameter")
    indices = []
    for item in items:
        if isinstance(item, str):
            if item not in names:
                raise UsageError(
                    f"wrt={item!r}: {_name(fun)} has no parameter named {item!r} "
                    f"(its parameters are {', '.join(names)})"
                )
            indices.append(names.index(item))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            i = int(item)
            if not -len(names) <= i < len(names):
                raise UsageError(f"wrt={item}: {_name(fun)} has only {len(names)} parameters")
            indices.append(i % len(names))
        else:
            raise UsageError(f"wrt entries must be parameter indices or names, not {item!r}")
    if len(set(indices)) != len(indices):
        raise UsageError(f"wrt={wrt!r} names a parameter twice")
    return tuple(indices), single


class _Bound:
    """Binds call arguments to the function's parameters, as positional values."""

    def __init__(self, fun: Callable):
        self.signature = running.signature(fun)
        self.simple = all(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            for p in self.signature.parameters.values()
        )
        self.n = len(self.signature.parameters)

    def __call__(self, args: tuple, kwargs: dict) -> tuple:
        if self.simple and not kwargs and len(args) == self.n:
            return args
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return tuple(bound.arguments.values())


def _check_scalar(out: Any, fun: Callable, what: str) -> None:
    if trees.is_container(out):
        raise UsageError(
            f"{what} requires {_name(fun)} to return a scalar, but it returned a "
            f"{type(out).__name__} of {len(out)} values",
            hint="return one scalar; to return other values beside it, return (value, aux) "
            "and pass has_aux=True; for several outputs use s2sgrad.vjp",
        )
    if np.ndim(out) != 0:
        raise UsageError(
            f"{what} requires {_name(fun)} to return a scalar, but it returned an array of "
            f"shape {np.shape(out)}",
            hint="reduce the output (e.g. np.sum) or use s2sgrad.vjp / s2sgrad.jvp",
        )


def _parameter_name(fun: Callable, i: int) -> str:
    try:
        return repr(running.parameters(fun)[i].name)
    except (IndexError, TypeError, ValueError):
        return str(i)


def _check_argument_types(
    fun: Callable, primals: tuple, wrt: tuple[int, ...], what: str, label: str = "argument"
) -> None:
    """Refuse what s2sgrad would get wrong: complex values anywhere (not supported yet),
    and integer or boolean arguments in ``wrt`` (they have no derivative; JAX refuses
    them too)."""
    for i, p in enumerate(primals):
        kinds = trees.kinds(p)
        if "c" in kinds:
            raise UsageError(
                f"{what}: {label} {_parameter_name(fun, i)} of {_name(fun)} is complex; "
                "s2sgrad differentiates real-valued functions only, complex support is not "
                "there yet",
                hint="pass the real and imaginary parts as two real arguments",
            )
        if i in wrt and not kinds <= {"f"}:
            dtypes = sorted({str(trees.dtype_of(leaf)) for leaf in trees.leaves(p)})
            raise UsageError(
                f"{what}: wrt includes argument {_parameter_name(fun, i)} of {_name(fun)}, "
                f"which holds {', '.join(dtypes)} values; only floating-point arguments can be "
                "differentiated",
                hint="pass it as floats (e.g. x.astype(float)), or leave it out of wrt",
            )


def _check_real_result(fun: Callable, *results: Any) -> None:
    """A complex value computed inside ``fun`` from real inputs (a complex global, a
    ``dtype=complex``): refused rather than returned as a derivative of the wrong type."""
    for result in results:
        if "c" in trees.kinds(result):
            raise UsageError(
                f"{_name(fun)} computes with complex numbers (its value or derivative came out "
                "complex from real inputs); s2sgrad differentiates real-valued code only, "
                "complex support is not there yet",
                hint="keep the computation real, e.g. split complex values into real and "
                "imaginary parts",
            )


def _with_dtypes_of(derivative: Any, primal: Any, backend: str) -> Any:
    """``derivative`` with each leaf in the floating dtype of ``primal``'s leaf, as in JAX
    (a float32 input gets a float32 gradient, though on NumPy a rule's float64 value, a
    constant array or a float64 global, promotes what it meets), as the backend has it
    (JAX without x64: float32 for a float64 input, as ``jax.grad``)."""

    def cast(d: Any, p: Any) -> Any:
        dtype = getattr(p, "dtype", None)
        if dtype is None or dtype.kind != "f" or getattr(d, "dtype", None) == dtype:
            return d  # (a backend that has no float64 never gives a float64 derivative)
        dtype = backends.get(backend).dtype_for(dtype)
        if not hasattr(d, "dtype"):  # a Python float from the derivative code
            return dtype.type(d)
        return d if d.dtype == dtype else d.astype(dtype)

    if type(primal) is np.ndarray:  # the common case, decided without flattening
        return cast(derivative, primal)
    if type(primal) is dict and type(derivative) is dict and primal.keys() == derivative.keys():
        if all(type(p) is np.ndarray for p in primal.values()):  # a dict of parameters
            return {k: cast(derivative[k], primal[k]) for k in sorted(primal)}
    return trees.unflatten(
        primal, [cast(d, p) for d, p in zip(trees.leaves(derivative), trees.leaves(primal))]
    )


@dataclasses.dataclass(frozen=True)
class _GradientResult:
    """What ``grad`` and ``value_and_grad`` make of the derivative code's ``(value,
    cotangents)``: the value checked to be a real scalar, each gradient in its input's
    dtype, and the value dropped where the caller wants none.

    A backend may run it inside the derivative (``Backend.gradient_runner``): under JAX
    it then runs once, while the gradient is traced, and a jitted call pays nothing for
    it, nor for handing back a value ``grad`` throws away. Equal for equal arguments, so
    two ``grad(f)`` of one function share a jitted function.
    """

    fun: Callable
    wrt: tuple[int, ...]
    has_aux: bool
    backend: str
    what: str
    keep_value: bool

    def __call__(self, primals: tuple, out: Any, grads: tuple) -> tuple[Any, tuple]:
        value = out[0] if self.has_aux else out
        _check_scalar(value, self.fun, self.what)
        _check_real_result(self.fun, value, grads)
        return self.repeated(primals, out, grads)

    def repeated(self, primals: tuple, out: Any, grads: tuple) -> tuple[Any, tuple]:
        """Without the checks: for a call that repeats one whose result passed them
        (``_Repeat``: the same code, bindings and argument dtypes and ranks give a value
        and derivatives of the same dtypes and ranks)."""
        grads = tuple(_with_dtypes_of(g, primals[i], self.backend) for g, i in zip(grads, self.wrt))
        return (out if self.keep_value else None), grads


# Array types whose call signature is type, dtype, rank and whether an axis has length 1
# (``_call_signature``); the JAX backend adds its array type when it loads.
ARRAY_TYPES: set[type] = {np.ndarray}


def _call_signature(value: Any) -> Any:
    """What about an argument (a tuple of them) decides which derivative runs and how:
    its type; for an array its dtype, rank and whether an axis has length 1 (what
    ``_options`` and ``_check_argument_types`` read); the same for each member of a tuple,
    list or dict of them. Shapes are left out: the code is the same for any (and JAX's
    jit retraces by itself). None where telling would cost what the full path does (any
    other type)."""
    t = type(value)
    if t in ARRAY_TYPES:
        return (t, value.dtype, value.ndim, 1 in value.shape)
    if t is float or t is int or t is bool:
        return t
    if t is tuple or t is list:
        parts = tuple(_call_signature(v) for v in value)
        return None if None in parts else (t, parts)
    if t is dict:
        parts = tuple((k, _call_signature(v)) for k, v in value.items())
        if all(type(k) is str and v is not None for k, v in parts):
            return (t, parts)
    return None


# Full calls in a row after which a gradient stops preparing repeats (each costs a lookup).
_REMEMBER_TRIES = 3


@dataclasses.dataclass(frozen=True)
class _Repeat:
    """The last call of a gradient, for the next one to repeat: called again with arguments
    of the same ``signature`` while its derivative's bindings are ``unchanged``
    (``cache.unchanged_since``), a call would bind the same arguments, pass the same checks,
    find the same entry and run the same ``run`` (``Backend.repeat_runner``). Repeating it
    skips those steps: the per-call cost of a gradient of a small problem."""

    signature: tuple
    unchanged: Callable[[], bool]
    run: Callable


class _Derivative:
    """Shared machinery of the grad-like wrappers: lazy compile, argument binding."""

    def __init__(
        self,
        fun: Callable,
        wrt: Wrt,
        mode: str,
        backend: str,
        has_aux: bool = False,
        max_steps: int | None = None,
        what: str = "grad",
        checkpoint: int | None = None,
    ):
        if mode not in ("reverse", "forward"):
            raise UsageError(f"mode must be 'reverse' or 'forward', not {mode!r}")
        _check_backend(backend)
        self.checkpoint = _checked_snapshots(checkpoint)
        _require_python_function(fun)
        self.fun = fun
        self.mode = mode
        self.backend = backend
        self.max_steps = max_steps
        self.wrt, self.single = resolve_wrt(fun, wrt)
        self.bind = _Bound(fun)
        self.has_aux = has_aux
        self.what = what
        # ``grad`` without aux wants no value: under JAX one output fewer to hand back.
        self.finish = _GradientResult(
            fun, self.wrt, has_aux, backend, what, keep_value=what != "grad" or has_aux
        )
        # The value is dropped: the compiler may leave it uncomputed (transforms.unread_value).
        self.value_unread = not self.finish.keep_value and backends.get(backend).drops_unread_value
        self._last_runner: tuple[Callable, Callable] | None = None
        self._repeat: _Repeat | None = None
        self._full_calls = 0  # calls since the last repeat (``remember`` gives up after a few)

    def entry(self, primals: tuple, wrt: tuple[int, ...] | None = None) -> Callable:
        """The compiled derivative for these arguments' structure, looked up on every call.

        The in-process memo makes that a dictionary hit, and the lookup re-binds the
        free names of the generated module, so a reassigned global is seen.
        """
        options = _options(primals, self.has_aux, self.mode, self.value_unread, self.checkpoint)
        wrt = self.wrt if wrt is None else wrt
        entry = cache.load_or_generate(self.fun, self.mode, wrt, self.backend, options)
        last = self._last_runner
        if last is not None and last[0] is entry:  # the same module as last call: its runner
            return last[1]
        if self.mode == "reverse":
            runner = backends.get(self.backend).gradient_runner(entry, self.max_steps, self.finish)
        else:
            runner = _runner(entry, self.backend, self.max_steps)
        self._last_runner = (entry, runner)
        return runner

    def repeat_last(self, args: tuple) -> tuple[bool, Any]:
        """``(True, result)`` where a call with ``args`` (positional only) may skip every
        per-call step and run what the last call ran (``_Repeat``), else ``(False, None)``."""
        repeat = self._repeat
        if repeat is None or _call_signature(args) != repeat.signature or not repeat.unchanged():
            return False, None
        try:
            result = repeat.run(*args)
        except Exception:  # noqa: BLE001  (the full path runs it again and reports it)
            self._repeat = None
            return False, None
        self._full_calls = 0
        return True, result

    def remember(self, args: tuple, primals: tuple) -> None:
        """After a reverse-mode call that ran in full: what a next call with arguments like
        ``args`` may repeat (``_Repeat``), where that is cheap to tell."""
        self._repeat = None
        self._full_calls += 1
        if self._full_calls > _REMEMBER_TRIES:
            return  # (arguments of changing structure, a global reassigned on every call)
        signature = _call_signature(args) if args is primals else None
        if signature is None:
            return
        options = _options(primals, self.has_aux, self.mode, self.value_unread, self.checkpoint)
        unchanged = cache.unchanged_since(self.fun, self.mode, self.wrt, self.backend, options)
        if unchanged is None:
            return
        entry = cache.load_or_generate(self.fun, self.mode, self.wrt, self.backend, options)
        run = backends.get(self.backend).repeat_runner(entry, primals, self.max_steps, self.finish)
        if run is not None:
            self._repeat = _Repeat(signature, unchanged, run)

    def value_of(self, out: Any) -> Any:
        return out[0] if self.has_aux else out

    def value_and_grads(self, args: tuple, kwargs: dict) -> tuple[Any, tuple]:
        """``(value, gradients)``; the value is None where the caller wants none (``grad``
        without aux)."""
        if not kwargs:
            repeated, result = self.repeat_last(args)
            if repeated:
                return result
        primals = self.bind(args, kwargs)
        _check_argument_types(self.fun, primals, self.wrt, self.what)
        if self.mode == "forward":
            return self.finish(primals, *self._forward_grads(primals))
        runner = self.entry(primals)
        try:
            result = runner(*primals)
        except Exception as exc:
            # A non-scalar output can make the backward sweep fail on the scalar seed;
            # report that mistake rather than NumPy's complaint about its consequence.
            try:
                value = self.value_of(self.fun(*primals))
            except Exception:
                raise exc from None
            _check_scalar(value, self.fun, self.what)
            raise
        self.remember(args, primals)
        return result

    def _forward_grads(self, primals: tuple) -> tuple[Any, tuple]:
        """Gradient by forward mode: one tangent pass per input element (fine for few inputs).

        Each argument in ``wrt`` gets a derivative compiled for it alone, so the other
        arguments' tangents are absent from the code rather than numerical zeros: a
        NaN on another argument's path (``0 * inf`` at a singular point) cannot leak
        into this argument's gradient, as it cannot in reverse mode. Works leaf by
        leaf, so tuple/list/dict arguments get gradients of the same structure.
        """
        out = None
        grads = []
        for i in self.wrt:
            entry = self.entry(primals, (i,))
            arg_leaves = trees.leaves(primals[i])
            leaf_grads = []
            for j, leaf in enumerate(arg_leaves):
                shape = np.shape(leaf)
                g = np.zeros(shape)
                for idx in np.ndindex(shape):
                    e = np.zeros(shape)
                    e[idx] = 1.0
                    seed = [np.zeros(np.shape(v)) for v in arg_leaves]
                    seed[j] = e if shape else 1.0
                    out, tangent = entry(*primals, trees.unflatten(primals[i], seed))
                    _check_scalar(self.value_of(out), self.fun, self.what)
                    _check_real_result(self.fun, tangent)
                    g[idx] = tangent
                leaf_grads.append(g if shape else g[()])
            grads.append(trees.unflatten(primals[i], leaf_grads))
        if out is None:
            out = self.fun(*primals)
        grads = [backends.get(self.backend).as_arrays(g) for g in grads]
        return out, tuple(grads)

    def shape(self, grads: tuple) -> Any:
        return grads[0] if self.single else tuple(grads)


def _decorator(factory: Callable[..., Callable]) -> Callable:
    """Lets ``factory`` be used as ``@f``, ``@f(wrt=...)`` and ``f(fun, wrt=...)``."""

    @functools.wraps(factory)
    def wrapper(fun: Callable | None = None, **options: Any) -> Any:
        if fun is None:
            return lambda f: factory(f, **options)
        return factory(fun, **options)

    return wrapper


@_decorator
def grad(
    fun: Callable,
    *,
    wrt: Wrt = 0,
    mode: str = "reverse",
    backend: str = "numpy",
    has_aux: bool = False,
    max_steps: int | None = None,
    checkpoint: int | None = None,
) -> Callable:
    """The gradient of a scalar-valued function with respect to the ``wrt`` parameters.

    ``wrt`` is a parameter index or name (the gradient has that parameter's
    shape) or a tuple of them (a tuple of gradients comes back). ``mode`` picks
    reverse mode (one backward sweep; the default) or forward mode (one tangent
    sweep per input element). Usable as ``@grad``, ``@grad(wrt=...)`` or
    ``grad(f, wrt=...)``. Parameters may be tuples, lists or dicts of arrays; their
    gradients have the same structure. With ``has_aux=True``, ``fun`` returns
    ``(value, aux)`` and the result is ``(gradient, aux)``, as in JAX.

    ``backend="jax"`` runs the derivative as jitted JAX (loops rolled into
    ``lax.scan``/``lax.while_loop``); it takes and returns jax arrays. ``max_steps``
    bounds the iterations of a ``while`` loop (or a range of traced length) that
    reverse mode records; by default the bound starts at 128 and doubles as needed
    (under your own ``jax.jit`` it is 1024, and a run past it raises).

    ``checkpoint=N``: reverse mode keeps at most N states of each loop that saves values
    and recomputes the rest (binomial checkpointing; ``docs/checkpointing.md``), as a
    ``# s2sgrad: checkpoint(snapshots=N)`` comment on a loop asks for that loop.
    """
    d = _Derivative(fun, wrt, mode, backend, has_aux, max_steps, "grad", checkpoint)

    @functools.wraps(fun)
    def gradient(*args: Any, **kwargs: Any) -> Any:
        out, grads = d.value_and_grads(args, kwargs)
        return (d.shape(grads), out[1]) if has_aux else d.shape(grads)

    gradient.__s2sgrad__ = d
    running.mark_produced(gradient, "grad", fun)
    return gradient


@_decorator
def value_and_grad(
    fun: Callable,
    *,
    wrt: Wrt = 0,
    mode: str = "reverse",
    backend: str = "numpy",
    has_aux: bool = False,
    max_steps: int | None = None,
    checkpoint: int | None = None,
) -> Callable:
    """Like ``grad``, but returns ``(value, gradient)`` from one evaluation.

    With ``has_aux=True``: ``((value, aux), gradient)``, as in JAX.
    """
    d = _Derivative(fun, wrt, mode, backend, has_aux, max_steps, "value_and_grad", checkpoint)

    @functools.wraps(fun)
    def value_and_gradient(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        out, grads = d.value_and_grads(args, kwargs)
        return out, d.shape(grads)

    value_and_gradient.__s2sgrad__ = d
    running.mark_produced(value_and_gradient, "value_and_grad", fun)
    return value_and_gradient


def jvp(fun: Callable, primals: tuple | list, tangents: tuple | list, *, backend: str = "numpy"):
    """``(fun(*primals), J @ tangents)``: the Jacobian-vector product, in forward mode."""
    _check_backend(backend)
    _require_python_function(fun)
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise UsageError(
            f"jvp got {len(primals)} primals but {len(tangents)} tangents; pass one tangent per primal"
        )
    for i, (p, t) in enumerate(zip(primals, tangents)):
        if trees.shapes(p) != trees.shapes(t):
            raise UsageError(
                f"jvp: tangent {i} has shape {trees.shapes(t)} but its primal has shape "
                f"{trees.shapes(p)}"
            )
    _check_argument_types(fun, primals, (), "jvp")
    _check_argument_types(fun, tangents, (), "jvp", label="the tangent of argument")
    wrt = _float_positions(primals)
    # Parameters left out take their defaults, as in ``fun(*primals)``: constants, no tangent.
    primals = _Bound(fun)(primals, {})
    entry = cache.load_or_generate(
        fun, "forward", wrt, backend, _options(primals, False, "forward")
    )
    entry = _runner(entry, backend, None)
    out, tangent_out = entry(*primals, *(tangents[i] for i in wrt))
    _check_real_result(fun, out, tangent_out)
    return out, _with_dtypes_of(tangent_out, out, backend)


def vjp(
    fun: Callable,
    *primals: Any,
    backend: str = "numpy",
    max_steps: int | None = None,
    checkpoint: int | None = None,
):
    """``(fun(*primals), vjp_fn)`` where ``vjp_fn(ct)`` gives one cotangent per primal.

    The backward sweep recomputes the forward sweep when ``vjp_fn`` is called,
    so nothing from the first evaluation is kept alive in between. ``checkpoint``: as
    for ``grad``.
    """
    _check_backend(backend)
    checkpoint = _checked_snapshots(checkpoint)
    _require_python_function(fun)
    _check_argument_types(fun, primals, (), "vjp")
    wrt = _float_positions(primals)
    given = primals
    # Parameters left out take their defaults, as in ``fun(*primals)``: constants.
    primals = _Bound(fun)(primals, {})
    entry = cache.load_or_generate(
        fun, "reverse", wrt, backend, _options(primals, False, "reverse", checkpoint=checkpoint)
    )
    entry = _runner(entry, backend, max_steps)
    if backends.get(backend).primal_from_generated_code:
        out = _primal_from_generated_code(fun, primals, wrt, backend)
    else:
        # On copies: a function that updates an argument in place (``x *= 2.0``, which
        # NumPy does in place) must not change the point vjp_fn differentiates at.
        out = fun(*(_copy_arrays(p) for p in given))

    def vjp_fn(cotangent: Any) -> tuple:
        if trees.shapes(cotangent) != trees.shapes(out):
            raise UsageError(
                f"vjp_fn: cotangent has shape {trees.shapes(cotangent)} but the output has shape "
                f"{trees.shapes(out)}"
            )
        if "c" in trees.kinds(cotangent):
            raise UsageError(
                "vjp_fn: the cotangent is complex; complex support is not there yet",
                hint="pass a real cotangent",
            )
        cotangents = entry(*primals, cotangent)[1]
        _check_real_result(fun, cotangents)
        cotangents = iter(cotangents)
        return tuple(
            (_with_dtypes_of(next(cotangents), p, backend) if i in wrt else _constant_cotangent(p))
            for i, p in enumerate(given)
        )

    running.mark_produced(vjp_fn, "vjp_fn", fun)
    return out, vjp_fn


def _copy_arrays(tree: Any) -> Any:
    """``tree`` with every NumPy array leaf copied."""
    if type(tree) is np.ndarray:
        return tree.copy()
    if not trees.is_container(tree):
        return tree
    return trees.unflatten(
        tree, [v.copy() if isinstance(v, np.ndarray) else v for v in trees.leaves(tree)]
    )


def _constant_cotangent(primal: Any) -> Any:
    """The cotangent of an argument that is not differentiated: zeros shaped like a
    numeric one (integers, booleans), None for what is not numbers (a string such as
    einsum's subscripts, None)."""
    if not trees.kinds(primal) <= set("biuf"):
        return None
    return trees.unflatten(primal, [np.zeros(np.shape(v)) for v in trees.leaves(primal)])


def _check_backend(backend: str) -> None:
    backends.get(backend)  # a UsageError naming the backends there are


def _runner(entry: Callable, backend: str, max_steps: int | None) -> Callable:
    """The generated function as the API calls it: as is for NumPy, jitted for JAX."""
    return backends.get(backend).runner(entry, max_steps)


def _primal_from_generated_code(
    fun: Callable, primals: tuple, wrt: tuple[int, ...], backend: str
) -> Any:
    """``fun(*primals)`` computed by the backend's forward-mode code with zero tangents:
    under a caller's ``jax.jit`` this works where the user's NumPy code would not."""
    options = _options(primals, False, "forward")
    entry = cache.load_or_generate(fun, "forward", wrt, backend, options)
    zeros = [
        trees.unflatten(primals[i], [np.zeros(np.shape(v)) for v in trees.leaves(primals[i])])
        for i in wrt
    ]
    return _runner(entry, backend, None)(*primals, *zeros)[0]


def _float_positions(primals: tuple) -> tuple[int, ...]:
    """Positions of the inexact (float or complex) primals; integers and booleans are constants.

    As in JAX, integer inputs carry no derivative: their cotangents are zeros and
    their tangents are ignored. That also lets them serve as axes and indices.
    """
    return tuple(i for i, p in enumerate(primals) if trees.is_inexact(p))


def _checked_snapshots(checkpoint: Any) -> int | None:
    """``checkpoint=`` as given: None, or a number of snapshots (at least 1)."""
    if checkpoint is None:
        return None
    if isinstance(checkpoint, bool) or not isinstance(checkpoint, (int, np.integer)):
        raise UsageError(
            f"checkpoint must be a number of snapshots (an int >= 1) or None, not {checkpoint!r}"
        )
    if checkpoint < 1:
        raise UsageError(f"checkpoint={checkpoint}: a checkpointed loop needs a snapshot")
    return int(checkpoint)


def _options(
    primals: tuple,
    has_aux: bool,
    mode: str,
    value_unread: bool = False,
    checkpoint: int | None = None,
) -> tuple:
    """Compile options that depend on the call: which arguments are containers, has_aux,
    and (reverse mode) which are scalars and the rank of each array (and whether it has
    an axis of length 1), which lets the shape analysis drop more ``unbroadcast`` calls
    and saves (a dict's arrays included, by key), and whether the caller drops the
    value (``grad``: the compiler may then leave it uncomputed, ``transforms.unread_value``).

    They are part of the cache key, so a function called once with arrays and once
    with a dict gets two derivative modules.
    """
    containers: list[int] = []
    scalars: list[int] = []
    ranks: list[tuple] = []
    for i, p in enumerate(primals):
        if type(p) is np.ndarray:  # the common case, decided without a call
            if p.ndim == 0:
                scalars.append(i)
            else:
                ranks.append((i, p.ndim, 1 not in p.shape))
        elif trees.is_container(p):
            containers.append(i)
            if type(p) is dict:  # a dict of parameters: its arrays' ranks, by key
                ranks += [
                    ((i, k), v.ndim, 1 not in v.shape)
                    for k, v in p.items()
                    if type(v) is np.ndarray and type(k) is str and v.ndim
                ]
        elif trees.is_scalar(p):
            scalars.append(i)
    options = []
    if containers:
        options.append(("containers", tuple(containers)))
    if scalars and mode == "reverse":
        options.append(("scalars", tuple(scalars)))
    if ranks and mode == "reverse":
        options.append(("ranks", tuple(ranks)))
    if has_aux:
        options.append(("has_aux", True))
    if value_unread and mode == "reverse":
        options.append(("value_unread", True))
    if checkpoint is not None and mode == "reverse":
        options.append(("checkpoint", checkpoint))
    return tuple(options)


def derivative_source(
    fun: Callable,
    *example_args: Any,
    wrt: Wrt = 0,
    mode: str | None = None,
    backend: str = "numpy",
    has_aux: bool = False,
    order: int = 1,
    checkpoint: int | None = None,
) -> str:
    """The source of the derivative module that ``grad(fun, wrt=..., mode=...)`` runs.

    With example arguments it is exactly the module a call with arguments of that
    structure uses (a dict, a Python float and an array can each change the code),
    taken from the cache or compiled into it. Without them it is the module for
    plain arrays, as ``s2sgrad inspect`` prints it. Reverse mode's function is the
    vector-Jacobian product ``f_vjp(*args, dout) -> (out, grads)``, forward mode's
    the Jacobian-vector product ``f_jvp(*args, *tangents) -> (out, tangent)``.

    ``order=2``: the second-order module, the derivative (``mode``, forward by
    default: the module ``hessian`` and ``hvp`` run) of ``grad(fun, wrt=...)``.
    It calls the first-order module's functions and their derivatives.
    ``checkpoint``: as for ``grad`` (first order).
    """
    fun = running.primal_of(fun)  # the function under @s2sgrad.grad is the target here
    if order not in (1, 2):
        raise UsageError(f"order must be 1 or 2, not {order!r}")
    d = _Derivative(fun, wrt, "reverse", backend, has_aux, checkpoint=checkpoint)
    primals = d.bind(example_args, {}) if example_args else ()
    if order == 2:  # grad(fun, has_aux=True) returns (gradient, aux): aux rides along
        fun = grad(fun, wrt=wrt, has_aux=has_aux)
    mode = mode or ("forward" if order == 2 else "reverse")
    if mode not in ("reverse", "forward"):
        raise UsageError(f"mode must be 'reverse' or 'forward', not {mode!r}")
    options = _options(primals, has_aux, mode, checkpoint=d.checkpoint if order == 1 else None)
    entry = cache.load_or_generate(fun, mode, d.wrt, backend, options)
    return "".join(linecache.getlines(entry.__code__.co_filename))


# s2sgrad's transformations: calling one inside a differentiated function is higher order.
for _transformation in (grad, value_and_grad, jvp, vjp, derivative_source):
    running.mark_produced(_transformation, _transformation.__name__, None)
del _transformation
