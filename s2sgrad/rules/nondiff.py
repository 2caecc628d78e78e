"""Primitives whose results carry no derivative.

Shape queries, comparisons, rounding, sorting indices and array creation
produce integers, booleans, piecewise-constant values or constants, so their
derivative is zero (or absent): the compiler treats their results as
constants and never asks for a rule. ``np.full`` and ``np.full_like`` are not
here: their fill value may carry a derivative (see ``shape.py``).
"""

from __future__ import annotations

import builtins
import operator

import numpy as np

from s2sgrad import runtime
from s2sgrad.rules.registry import nondifferentiable

# Shapes, sizes, types and Python conversions to integers or booleans.
nondifferentiable(
    np.shape,
    np.ndim,
    np.size,
    builtins.len,
    builtins.int,
    builtins.bool,
    builtins.round,
    builtins.range,
    builtins.isinstance,
)

# Comparisons and logic (the frontend maps `<`, `==`, `not`, `&`, `|`, `^`, `~`, `is` here).
nondifferentiable(
    operator.lt,
    operator.le,
    operator.gt,
    operator.ge,
    operator.eq,
    operator.ne,
    operator.not_,
    operator.truth,
    operator.is_,
    operator.is_not,
    operator.and_,
    operator.or_,
    operator.xor,
    operator.invert,
    np.equal,
    np.not_equal,
    np.less,
    np.less_equal,
    np.greater,
    np.greater_equal,
    np.logical_and,
    np.logical_or,
    np.logical_not,
    np.logical_xor,
    np.isnan,
    np.isfinite,
    np.isinf,
    np.isclose,
    np.allclose,
    np.array_equal,
    np.all,
    np.any,
)

# Piecewise-constant functions: their derivative is zero wherever it exists.
nondifferentiable(
    np.sign,
    np.floor,
    np.ceil,
    np.round,
    np.around,
    np.rint,
    np.trunc,
    np.fix,
    np.floor_divide,
    operator.floordiv,
)

# Indices and counts.
nondifferentiable(
    np.argmax,
    np.argmin,
    np.argsort,
    np.nonzero,
    np.flatnonzero,
    np.argwhere,
    np.count_nonzero,
    np.searchsorted,
)

# Array creation from shapes alone.
nondifferentiable(
    np.zeros,
    np.ones,
    np.empty,
    np.zeros_like,
    np.ones_like,
    np.empty_like,
    np.eye,
    np.identity,
    np.arange,
    np.linspace,
)

# Helpers of derivative code whose results are piecewise constant (shares of ties and
# bounds), indices (a sort order), or made from constants (axes, zeros) or from a value's
# shape alone (a stand-in): derivative code differentiated again (higher order) treats
# them as constants.
nondifferentiable(
    runtime.greater_share,
    runtime.clip_shares,
    runtime.tie_shares,
    runtime.sort_order,
    runtime.inverse_permutation,
    runtime.negated_shift,
    runtime.zeros_like_tree,
    runtime.grouped_layout,
    runtime.norm_power,
    runtime.stand_in,
)

# np.trapezoid's weights: made from the sample points `x` and the spacing `dx`, which its
# rules do not differentiate (a differentiated `x` or `dx` is refused there, so derivative
# code never passes one), and from `y` only through its shape.
nondifferentiable(runtime.trapezoid_weights)
