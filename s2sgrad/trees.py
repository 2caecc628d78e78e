"""Tuples, lists and dicts of arrays ("trees") at the API boundary.

Users pass parameters as ``{"W1": ..., "b1": ...}`` or ``(W, b)``; gradients come
back in the same structure, as in JAX. Generated code handles containers itself
(see ``runtime.accumulate``); these helpers serve the API's own bookkeeping:
forward-mode gradients one leaf at a time, and shape checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_container(x: Any) -> bool:
    return isinstance(x, (tuple, list, dict))


def is_scalar(x: Any) -> bool:
    """A number or 0-d array (also a traced one): its shape is ``()`` whatever it broadcasts with."""
    return not is_container(x) and np.ndim(x) == 0


def leaves(x: Any) -> list[Any]:
    """The arrays and scalars of a tree, in a deterministic order (dict keys sorted)."""
    if isinstance(x, dict):
        return [leaf for k in sorted(x) for leaf in leaves(x[k])]
    if isinstance(x, (tuple, list)):
        return [leaf for v in x for leaf in leaves(v)]
    return [x]


def unflatten(template: Any, values: list[Any]) -> Any:
    """A tree shaped like ``template`` holding ``values`` (as returned by ``leaves``)."""
    it = iter(values)

    def build(t: Any) -> Any:
        if isinstance(t, dict):
            return {k: build(t[k]) for k in sorted(t)}
        if isinstance(t, (tuple, list)):
            return type(t)(build(v) for v in t)
        return next(it)

    return build(template)


def shapes(x: Any) -> Any:
    """The tree of ``np.shape`` of each leaf (for comparing structures in error messages)."""
    if isinstance(x, dict):
        return {k: shapes(x[k]) for k in sorted(x)}
    if isinstance(x, (tuple, list)):
        return type(x)(shapes(v) for v in x)
    return np.shape(x)


def dtype_of(leaf: Any) -> np.dtype:
    """The dtype of an array (a traced one too, without converting it) or of a Python value
    (``"U"`` for a string such as einsum's subscripts, ``"O"`` for None and other objects)."""
    dtype = getattr(leaf, "dtype", None)
    return dtype if dtype is not None else np.asarray(leaf).dtype


def kinds(x: Any) -> set[str]:
    """The dtype kinds (``"f"``, ``"c"``, ``"i"``, ``"b"``, ``"U"``...) of a tree's leaves."""
    if not isinstance(x, (tuple, list, dict)):  # one leaf: the common case, no flattening
        dtype = getattr(x, "dtype", None)
        if dtype is not None:
            return {dtype.kind}
    elif type(x) is dict and all(type(v) is np.ndarray for v in x.values()):
        return {v.dtype.kind for v in x.values()}  # a dict of parameters: no flattening
    return {dtype_of(leaf).kind for leaf in leaves(x)}


def is_inexact(x: Any) -> bool:
    """Whether a value (or any leaf of a tree) is float or complex: something to differentiate."""
    return bool(kinds(x) & {"f", "c"})
