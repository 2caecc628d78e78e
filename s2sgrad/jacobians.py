"""Jacobians, Hessians and Hessian-vector products, built from the four transformations.

Semantics follow JAX (``jax.jacfwd``, ``jax.jacrev``, ``jax.hessian``; ``hvp`` is the
forward-over-reverse product JAX's documentation writes by hand): a Jacobian has the
output's structure, each leaf replaced by the Jacobian with respect to the ``wrt``
arguments (one array of shape ``out.shape + in.shape`` per input leaf; a tuple over
the arguments when ``wrt`` is a tuple).

Second order is composition, not a second mechanism: ``hessian(f)`` is ``jacfwd`` of
``grad(f)``, and ``grad(f)`` is differentiated as the code it runs
(``s2sgrad.composition``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from s2sgrad import api, backends, cache, running, trees
from s2sgrad.errors import UsageError


def jacfwd(
    fun: Callable, *, wrt: api.Wrt = 0, backend: str = "numpy", has_aux: bool = False
) -> Callable:
    """The Jacobian of ``fun`` by forward mode: one tangent pass per element of the
    ``wrt`` arguments (the cheaper way when there are fewer inputs than outputs).

    Each ``wrt`` argument gets a derivative compiled for it alone, as ``grad(mode=
    "forward")`` does: a NaN on another argument's path cannot leak into its columns.
    With ``has_aux=True``, ``fun`` returns ``(value, aux)`` and the result is
    ``(jacobian, aux)``.
    """
    return _jacobian_transform(fun, wrt, backend, has_aux, "jacfwd", _forward_slices)


def jacrev(
    fun: Callable, *, wrt: api.Wrt = 0, backend: str = "numpy", has_aux: bool = False
) -> Callable:
    """The Jacobian of ``fun`` by reverse mode: one backward sweep per output element
    (the cheaper way when there are fewer outputs than inputs). ``has_aux`` as in
    ``jacfwd``."""
    return _jacobian_transform(fun, wrt, backend, has_aux, "jacrev", _reverse_slices)


def _jacobian_transform(
    fun: Callable, wrt: api.Wrt, backend: str, has_aux: bool, kind: str, slices: Callable
) -> Callable:
    """``jacfwd``/``jacrev``: the API's checks, then the Jacobian from ``slices``."""
    api._check_backend(backend)
    api._require_python_function(fun)
    indices, single = api.resolve_wrt(fun, wrt)
    bind = api._Bound(fun)

    @functools.wraps(fun)
    def jacobian(*args: Any, **kwargs: Any) -> Any:
        primals = bind(args, kwargs)
        api._check_argument_types(fun, primals, indices, kind)
        out, parts, output_major = slices(fun, primals, indices, backend, has_aux)
        value = out[0] if has_aux else out
        api._check_real_result(fun, value)
        result = _assemble(
            value, [primals[i] for i in indices], single, parts, output_major, backend
        )
        return (result, out[1]) if has_aux else result

    return running.mark_produced(jacobian, kind, fun)


def _forward_slices(fun, primals, indices, backend, has_aux) -> tuple[Any, Callable, bool]:
    """The value, and ``parts(a, j, k)``: the tangents of output leaf ``k`` along each
    element of leaf ``j`` of argument ``a``, stacked on a leading axis (over the input)."""
    options = api._options(primals, has_aux, "forward")
    out = None
    tangents: list[list[Any]] = []  # per wrt argument, per input leaf: the batched tangent
    for i in indices:
        entry = cache.load_or_generate(fun, "forward", (i,), backend, options)
        per_leaf = []
        for basis in _basis(primals[i]):
            value, batch = _passes(entry, primals, basis, backend)
            out = value if value is not None else out
            per_leaf.append(batch)
        tangents.append(per_leaf)
    if out is None:  # every wrt argument is empty: no pass ran
        out = _value(fun, primals, backend, has_aux)
    return out, lambda a, j, k: _leaf(tangents[a][j], k), True


def _reverse_slices(fun, primals, indices, backend, has_aux) -> tuple[Any, Callable, bool]:
    """The value, and ``parts(a, j, k)``: the cotangents of leaf ``j`` of argument ``a``
    for each element of output leaf ``k``, stacked on a leading axis (over the output)."""
    out = _value(fun, primals, backend, has_aux)
    options = api._options(primals, has_aux, "reverse")
    entry = cache.load_or_generate(fun, "reverse", indices, backend, options)
    rows = [_passes(entry, primals, b, backend)[1] for b in _basis(out[0] if has_aux else out)]
    return out, lambda a, j, k: None if rows[k] is None else _leaf(rows[k][a], j), False


def _leaf(tree: Any, k: int) -> Any:
    return None if tree is None else trees.leaves(tree)[k]


def jacobian(
    fun: Callable, *, wrt: api.Wrt = 0, backend: str = "numpy", has_aux: bool = False
) -> Callable:
    """``jacrev``, as ``jax.jacobian``."""
    return jacrev(fun, wrt=wrt, backend=backend, has_aux=has_aux)


def hessian(
    fun: Callable, *, wrt: api.Wrt = 0, backend: str = "numpy", has_aux: bool = False
) -> Callable:
    """The Hessian of scalar-valued ``fun``: ``jacfwd(grad(fun))`` (forward over reverse).

    For an array argument of shape ``s`` it has shape ``s + s``; with a tuple ``wrt``
    it is the nested tuple ``H[i][j]`` of blocks, as ``jax.hessian(argnums=...)``.
    """
    gradient = api.grad(fun, wrt=wrt, has_aux=has_aux)
    return running.mark_produced(
        functools.wraps(fun)(jacfwd(gradient, wrt=wrt, backend=backend, has_aux=has_aux)),
        "hessian",
        fun,
    )


def hvp(
    fun: Callable, *, wrt: api.Wrt = 0, backend: str = "numpy", has_aux: bool = False
) -> Callable:
    """``hvp(fun)(*args, v)``: the Hessian of scalar-valued ``fun`` times ``v``, in one
    forward-over-reverse pass (the Hessian itself is never formed).

    ``v`` is shaped like the ``wrt`` argument (a tuple of such, one per argument,
    when ``wrt`` is a tuple); the product has the same structure. Made for
    ``scipy.optimize.minimize(..., hessp=...)`` and Newton-CG. With ``has_aux=True``,
    ``fun`` returns ``(value, aux)`` and the result is ``(product, aux)``.
    """
    api._check_backend(backend)
    gradient = api.grad(fun, wrt=wrt, has_aux=has_aux)
    d = gradient.__s2sgrad__
    n = len(running.parameters(fun))

    @functools.wraps(fun)
    def product(*args: Any) -> Any:
        if len(args) != n + 1:
            raise UsageError(
                f"hvp({api._name(fun)}) takes the {n} arguments of {api._name(fun)} and then the "
                f"vector v, but got {len(args)} arguments"
            )
        primals, v = tuple(args[:-1]), args[-1]
        vs = (v,) if d.single else tuple(v)
        if len(vs) != len(d.wrt):
            raise UsageError(f"hvp: wrt names {len(d.wrt)} arguments, so v must be a tuple of them")
        for i, vi in zip(d.wrt, vs):
            if trees.shapes(vi) != trees.shapes(primals[i]):
                raise UsageError(
                    f"hvp: v has shape {trees.shapes(vi)} but argument "
                    f"{api._parameter_name(fun, i)} has shape {trees.shapes(primals[i])}"
                )
        api._check_argument_types(fun, primals, d.wrt, "hvp")
        options = api._options(primals, has_aux, "forward")
        entry = cache.load_or_generate(gradient, "forward", d.wrt, backend, options)
        out, tangent = api._runner(entry, backend, None)(*primals, *vs)
        api._check_real_result(fun, tangent)
        if d.single:
            product = api._with_dtypes_of(tangent, primals[d.wrt[0]], backend)
        else:
            product = tuple(
                api._with_dtypes_of(t, primals[i], backend) for t, i in zip(tangent, d.wrt)
            )
        return (product, out[1]) if has_aux else product

    return running.mark_produced(product, "hvp", fun)


# ----------------------------------------------------------------------------- pieces


def _basis(tree: Any) -> Iterator[tuple[int, Any]]:
    """Per leaf of ``tree`` with ``n`` elements: ``n`` and the basis seeds stacked on a
    leading axis, a tree shaped like ``tree`` (with that axis) that is zero but for a 1 at
    element ``k`` of that leaf in seed ``k`` (element order: ``np.ndindex``)."""
    leaves = trees.leaves(tree)
    for j, leaf in enumerate(leaves):
        n = int(np.size(leaf))
        stacked = [np.zeros((n, *np.shape(v))) for v in leaves]
        stacked[j] = np.eye(n).reshape((n, *np.shape(leaf)))
        yield n, trees.unflatten(tree, stacked)


def _passes(entry: Callable, primals: tuple, basis: tuple[int, Any], backend: str) -> tuple:
    """``entry(*primals, seed)`` for every seed of ``basis`` (``_basis``): the first result
    of one of them (None if there are no seeds), and the second results stacked on a
    leading axis (a tree). The backend runs them (``Backend.over_seeds``): on JAX one
    jitted ``jax.vmap``, on NumPy one pass per seed."""
    n, seeds = basis
    if n == 0:
        return None, None
    return backends.get(backend).over_seeds(entry, primals, seeds, n)


def _value(fun: Callable, primals: tuple, backend: str, has_aux: bool) -> Any:
    """``fun(*primals)``: the user's function on NumPy (on copies: it may update its
    arguments in place); the generated code's value on a backend that needs it."""
    if not backends.get(backend).primal_from_generated_code:
        return fun(*(api._copy_arrays(p) for p in primals))
    options = api._options(primals, has_aux, "forward")
    wrt = api._float_positions(primals)
    entry = api._runner(
        cache.load_or_generate(fun, "forward", wrt, backend, options), backend, None
    )
    zeros = [
        trees.unflatten(primals[i], [np.zeros(np.shape(v)) for v in trees.leaves(primals[i])])
        for i in wrt
    ]
    return entry(*primals, *zeros)[0]


def _assemble(
    value: Any,
    arguments: list[Any],
    single: bool,
    parts: Callable[[int, int, int], Any],
    output_major: bool,
    backend: str,
) -> Any:
    """The Jacobian tree: ``value``'s structure, each leaf ``k`` replaced by (a tuple over
    the arguments ``a`` of) the argument's structure, each leaf ``j`` an array of shape
    ``out.shape + in.shape``. ``parts(a, j, k)`` is its slices stacked on a leading axis
    in element order: over the input (forward mode, ``output_major``) or over the output
    (reverse mode); None for none."""
    xp = backends.get(backend).array_module()
    per_output = []
    for k, out_leaf in enumerate(trees.leaves(value)):
        out_shape = np.shape(out_leaf)
        per_argument = []
        for a, argument in enumerate(arguments):
            blocks = []
            for j, in_leaf in enumerate(trees.leaves(argument)):
                shape = np.shape(in_leaf)
                stacked = parts(a, j, k)
                if stacked is None:  # an empty leaf: no pass ran
                    block = xp.zeros(out_shape + shape)
                elif output_major:  # stacked over the input: each slice shaped like the output
                    block = xp.moveaxis(xp.asarray(stacked), 0, -1)
                    block = xp.reshape(block, out_shape + shape)
                else:  # stacked over the output: each slice shaped like the input
                    block = xp.reshape(xp.asarray(stacked), out_shape + shape)
                blocks.append(_as_dtype(block, out_leaf, in_leaf, backend))
            per_argument.append(trees.unflatten(argument, blocks))
        per_output.append(per_argument[0] if single else tuple(per_argument))
    return trees.unflatten(value, per_output)


def _as_dtype(block: Any, out_leaf: Any, in_leaf: Any, backend: str) -> Any:
    """The block in the floating dtype JAX gives it (the promotion of output and input),
    as the backend's array type."""
    kinds = [trees.dtype_of(x) for x in (out_leaf, in_leaf)]
    floats = [k for k in kinds if k.kind == "f"]
    dtype = np.result_type(*floats) if floats else np.dtype(float)
    target = backends.get(backend)
    xp = target.array_module()
    return target.as_arrays(xp.asarray(block, dtype=target.dtype_for(dtype)))


# The transformations themselves: calling one inside a differentiated function is higher order.
for _transformation in (jacfwd, jacrev, jacobian, hessian, hvp):
    running.mark_produced(_transformation, _transformation.__name__, None)
del _transformation
