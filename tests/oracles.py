"""Derivative oracles that share no code with s2sgrad.

* ``jnp_twin(fn)``: the same function source, re-executed with NumPy swapped for
  ``jax.numpy``, so ``jax.grad``/``jax.jvp``/``jax.vjp`` give reference derivatives
  of exactly the code under test.
* ``central_difference_grad`` / ``central_difference_jvp``: float64 central
  differences, slow and approximate but assumption-free.
* ``assert_close``: a comparison of nested results with messages that say which
  leaf differs, where, and by how much.
"""

from __future__ import annotations

import inspect
import textwrap
import types
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np
import scipy
import scipy.special

RTOL = 1e-6
ATOL = 1e-8

# --------------------------------------------------------------------------- jnp twin


def _jax_counterpart(value: Any) -> Any:
    """The jax object standing in for a NumPy or scipy.special module or function, or ``value``."""
    pairs = ((np, jnp), (np.linalg, jnp.linalg), (scipy.special, jax.scipy.special))
    for module, twin in (*pairs, (scipy, jax.scipy)):
        if value is module:
            return twin
    name = getattr(value, "__name__", None)
    if not isinstance(name, str) or isinstance(value, (type, types.ModuleType)):
        return value
    for np_mod, jax_mod in pairs:
        try:
            if getattr(np_mod, name, None) is value and hasattr(jax_mod, name):
                return getattr(jax_mod, name)
        except TypeError:  # objects with odd __eq__/__bool__
            continue
    return value


def _strip_decorators(source: str) -> str:
    lines = source.splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith(("def ", "async def ")))
    return "".join(lines[start:])


def jnp_twin(fn: Callable, _memo: dict[int, Callable] | None = None) -> Callable:
    """Re-create ``fn`` from its source with NumPy replaced by ``jax.numpy``.

    The copy of ``fn.__globals__`` it runs in maps the ``numpy`` module to
    ``jax.numpy``, ``numpy.linalg`` to ``jax.numpy.linalg``, ``scipy`` and
    ``scipy.special`` to ``jax.scipy`` and ``jax.scipy.special``, and every
    global bound to a NumPy or scipy.special function (``from numpy import
    sin``) to the jax function of that name. Plain functions defined in the same module that
    ``fn`` calls are twinned too, so helpers see jax as well. Decorators are
    stripped; closures are not supported (define oracle targets at module
    level).
    """
    memo = {} if _memo is None else _memo
    if id(fn) in memo:
        return memo[id(fn)]
    fn = inspect.unwrap(fn)
    source = _strip_decorators(textwrap.dedent(inspect.getsource(fn)))
    original_globals = fn.__globals__
    namespace: dict[str, Any] = {}
    for key, value in original_globals.items():
        namespace[key] = _jax_counterpart(value)
    code = compile(source, inspect.getsourcefile(fn) or "<jnp_twin>", "exec")
    exec(code, namespace)
    twin = namespace[fn.__name__]
    twin.__defaults__ = fn.__defaults__
    twin.__kwdefaults__ = fn.__kwdefaults__
    memo[id(fn)] = twin
    # Helpers from the same module: twin them in the same namespace, lazily resolved.
    for key, value in original_globals.items():
        if (
            isinstance(value, types.FunctionType)
            and value is not fn
            and value.__globals__ is original_globals
            and key in fn.__code__.co_names
        ):
            try:
                namespace[key] = jnp_twin(value, memo)
            except (OSError, TypeError):
                namespace[key] = value
    return twin


# --------------------------------------------------------------------------- central differences

_STEP = 1e-6


def _as_float_array(x: Any) -> np.ndarray:
    return np.array(x, dtype=np.float64)


def _like(value: np.ndarray, template: Any) -> Any:
    """``value`` as the same kind of object as ``template`` (a Python float stays a float)."""
    if isinstance(template, (float, int)) and not isinstance(template, bool):
        return float(value)
    return value


def central_difference_grad(f: Callable, args: Sequence[Any], argnum: int) -> Any:
    """The gradient of the scalar ``f(*args)`` with respect to ``args[argnum]``, by central differences.

    Each element gets a step of ``1e-6 * max(1, |x_i|)``; the arithmetic is float64.
    """
    args = list(args)
    x0 = _as_float_array(args[argnum])
    grad = np.zeros_like(x0)
    flat = grad.reshape(-1)
    for i in range(x0.size):
        h = _STEP * max(1.0, abs(x0.flat[i]))
        xp, xm = x0.copy(), x0.copy()
        xp.flat[i] += h
        xm.flat[i] -= h
        fp = float(np.sum(f(*_replace(args, argnum, _like(xp, args[argnum])))))
        fm = float(np.sum(f(*_replace(args, argnum, _like(xm, args[argnum])))))
        flat[i] = (fp - fm) / (2 * h)
    return _like(grad, args[argnum])


def _replace(args: list, i: int, value: Any) -> list:
    out = list(args)
    out[i] = value
    return out


def central_difference_jvp(f: Callable, args: Sequence[Any], tangents: Sequence[Any]) -> Any:
    """The directional derivative of ``f`` at ``args`` along ``tangents``, by central differences.

    A tangent of None means that argument is held fixed. ``f`` may return an
    array or a pytree of arrays (tuples, lists, dicts). The step is ``1e-6``
    times the size of the largest argument, over that of the largest tangent.
    """
    args = list(args)
    scale_x = max([1.0] + [float(np.max(np.abs(a))) for a in args if _is_float(a)])
    scale_t = max([0.0] + [float(np.max(np.abs(t))) for t in tangents if t is not None])
    if scale_t == 0.0:
        return jax.tree_util.tree_map(lambda y: np.zeros_like(_as_float_array(y)), f(*args))
    h = _STEP * scale_x / scale_t

    def shifted(sign: float) -> list:
        out = []
        for a, t in zip(args, tangents, strict=True):
            out.append(
                a if t is None else _like(_as_float_array(a) + sign * h * _as_float_array(t), a)
            )
        return out

    plus, minus = f(*shifted(1.0)), f(*shifted(-1.0))
    return jax.tree_util.tree_map(
        lambda p, m: (_as_float_array(p) - _as_float_array(m)) / (2 * h), plus, minus
    )


def _is_float(a: Any) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.floating) and np.size(a) > 0


# --------------------------------------------------------------------------- comparisons


def _leaves(tree: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, (tuple, list)):
        return [leaf for i, t in enumerate(tree) for leaf in _leaves(t, f"{path}[{i}]")]
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in _leaves(tree[k], f"{path}[{k!r}]")]
    return [(path, tree)]


def _structure(tree: Any) -> Any:
    if isinstance(tree, (tuple, list)):
        return (type(tree).__name__, tuple(_structure(t) for t in tree))
    if isinstance(tree, dict):
        return ("dict", tuple((k, _structure(tree[k])) for k in sorted(tree)))
    return "leaf"


def _check_dtype(name: str, actual: Any, expected: Any) -> None:
    """A derivative from JAX fixes the dtype too: float32 in, float32 out. Only where the
    expected leaf is a jax array (from the jnp twin) and the actual leaf has a dtype."""
    if not isinstance(expected, jax.Array) or not hasattr(actual, "dtype"):
        return
    if np.dtype(actual.dtype) != np.dtype(expected.dtype):
        raise AssertionError(f"{name}: dtype {actual.dtype}, expected {expected.dtype} (as JAX)")


def assert_close(
    actual: Any, expected: Any, *, rtol: float = RTOL, atol: float = ATOL, what: str = "value"
) -> None:
    """Assert that two results (arrays, scalars, or nested tuples/lists/dicts of them) agree.

    Shapes must match exactly (a 0-d array and a Python float both have shape
    ``()``), dtypes too where the expected leaf is a jax array (JAX's derivative of a
    float32 input is float32), then values within ``|a - e| <= atol + rtol * |e|``. The failure
    message names the differing leaf, its shapes, the worst element and the
    largest absolute and relative errors.
    """
    if isinstance(actual, (tuple, list)) and isinstance(expected, (tuple, list)):
        if len(actual) != len(expected):
            raise AssertionError(
                f"{what}: {len(actual)} entries, expected {len(expected)}\n"
                f"  actual:   {actual!r}\n  expected: {expected!r}"
            )
    elif _structure(actual) != _structure(expected):
        raise AssertionError(
            f"{what}: structure {_structure(actual)} differs from expected {_structure(expected)}"
        )
    for (path, a), (_, e) in zip(_leaves(actual), _leaves(expected), strict=True):
        name = f"{what}{path}"
        if a is None or e is None:
            if a is not e:
                raise AssertionError(f"{name}: got {a!r}, expected {e!r}")
            continue
        _check_dtype(name, a, e)
        a_arr = np.asarray(a, dtype=np.float64)
        e_arr = np.asarray(e, dtype=np.float64)
        if a_arr.shape != e_arr.shape:
            raise AssertionError(f"{name}: shape {a_arr.shape}, expected shape {e_arr.shape}")
        err = np.abs(a_arr - e_arr)
        bad = ~(err <= atol + rtol * np.abs(e_arr))
        # nan == nan and inf == inf count as agreement.
        bad &= ~((np.isnan(a_arr) & np.isnan(e_arr)) | (a_arr == e_arr))
        if np.any(bad):
            worst = np.unravel_index(np.argmax(np.where(bad, err, -1.0)), a_arr.shape)
            rel = err / np.maximum(np.abs(e_arr), 1e-300)
            raise AssertionError(
                f"{name}: {int(np.sum(bad))} of {a_arr.size} elements differ "
                f"(rtol={rtol}, atol={atol}); max abs err {np.max(np.where(bad, err, 0)):.3g}, "
                f"max rel err {np.max(np.where(bad, rel, 0)):.3g}\n"
                f"  worst at index {tuple(int(i) for i in worst)}: "
                f"got {a_arr[worst]!r}, expected {e_arr[worst]!r}\n"
                f"  actual:   {np.array2string(a_arr, precision=8, threshold=30)}\n"
                f"  expected: {np.array2string(e_arr, precision=8, threshold=30)}"
            )
