"""Helpers of the decomposition rules (``rules/decompositions.py``): thin SVD factors,
matrix powers.

Written once for every backend: see ``s2sgrad/runtime/__init__.py``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as xp

from s2sgrad.runtime.core import _host


def _power_factors(a: Any, n: int) -> tuple[Any, int]:
    """The base and exponent of ``matrix_power(a, n)`` as a non-negative power (``inv(a)`` for n < 0)."""
    return (xp.linalg.inv(a), -n) if n < 0 else (a, n)


def thin_svd_factor(u: Any, a: Any, full_matrices: Any = True) -> Any:
    """``u`` of ``np.linalg.svd(a, full_matrices)``, checked to be the thin factor.

    The svd rules (jax's formulas) differentiate the thin SVD; with ``full_matrices=True``
    a non-square ``a`` has a square ``u`` or ``vt`` whose extra columns are not unique,
    and jax refuses it too. Raises a clear error there instead of a shape mismatch.
    """
    _check_thin_svd(xp.shape(a), full_matrices)
    return u


@_host
def _check_thin_svd(shape: tuple[int, ...], full_matrices: Any) -> None:
    m, n = shape[-2:]
    if full_matrices and m != n:
        from s2sgrad.errors import NonDifferentiableError

        raise NonDifferentiableError(
            f"np.linalg.svd of a non-square {m}x{n} matrix with full_matrices=True has no "
            "derivative: the extra singular vectors are not unique",
            hint="pass full_matrices=False (the thin SVD), which s2sgrad differentiates",
        )


def matrix_power_tangent(a: Any, n: int, t: Any) -> Any:
    """The tangent of ``np.linalg.matrix_power(a, n)`` given the tangent ``t`` of ``a``.

    ``sum_k M^k dM M^(m-1-k)`` with ``M = a`` and ``m = n`` (``M = inv(a)``,
    ``dM = -M t M``, ``m = -n`` for a negative ``n``).
    """
    m_, m = _power_factors(a, operator.index(n))
    dm = -m_ @ t @ m_ if n < 0 else t
    powers = [xp.broadcast_to(xp.eye(xp.shape(a)[-1]), xp.shape(a))]
    for _ in range(m - 1):
        powers.append(powers[-1] @ m_)
    total = xp.zeros(xp.shape(a), dtype=xp.result_type(a, t, 1.0))
    for k in range(m):
        total = total + powers[k] @ dm @ powers[m - 1 - k]
    return total


def matrix_power_adjoint(g: Any, a: Any, n: int) -> Any:
    """The cotangent of ``a`` in ``np.linalg.matrix_power(a, n)`` (the transpose of the tangent map)."""
    m_, m = _power_factors(a, operator.index(n))
    mt = xp.swapaxes(m_, -1, -2)
    powers = [xp.broadcast_to(xp.eye(xp.shape(a)[-1]), xp.shape(a))]
    for _ in range(m - 1):
        powers.append(powers[-1] @ mt)
    total = xp.zeros(xp.shape(a), dtype=xp.result_type(a, g, 1.0))
    for k in range(m):
        total = total + powers[k] @ g @ powers[m - 1 - k]
    if n < 0:
        total = -mt @ total @ mt
    return total
