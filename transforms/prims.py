"""References to the primitives the compiler itself writes into generated code.

One table, so every pass spells ``x[i]``, ``a + b`` or ``np.zeros_like`` the same way.
"""

from __future__ import annotations

import builtins
import operator

import numpy as np

from s2sgrad import ir, runtime

ADD = ir.Ref("operator.add", operator.add)
GETITEM = ir.Ref("operator.getitem", operator.getitem)
IS_NOT = ir.Ref("operator.is_not", operator.is_not)
NOT = ir.Ref("operator.not_", operator.not_)
LEN = ir.Ref("len", builtins.len)
MIN = ir.Ref("min", builtins.min)
RANGE = ir.Ref("range", builtins.range)
REVERSED = ir.Ref("reversed", builtins.reversed)
COPY = ir.Ref("np.copy", np.copy)
OWNED_COPY = ir.Ref("owned_copy", runtime.owned_copy)
ZEROS_LIKE = ir.Ref("np.zeros_like", np.zeros_like)
ZEROS_LIKE_TREE = ir.Ref("zeros_like_tree", runtime.zeros_like_tree)
ZEROS_IF_NONE = ir.Ref("zeros_if_none", runtime.zeros_if_none)
ACCUMULATE = ir.Ref("accumulate", runtime.accumulate)
ZERO_AT = ir.Ref("zero_at", runtime.zero_at)
ZERO_INTO = ir.Ref("zero_into", runtime.zero_into)
PART_COPY = ir.Ref("part_copy", runtime.part_copy)
UNBROADCAST = ir.Ref("unbroadcast", runtime.unbroadcast)
ADD_INTO = ir.Ref("add_into", runtime.add_into)
ADD_AT = ir.Ref("add_at", runtime.add_at)
SUM = ir.Ref("np.sum", np.sum)
VDOT = ir.Ref("np.vdot", np.vdot)
TRUE, FALSE, NONE = ir.Const(True), ir.Const(False), ir.Const(None)


def is_runtime_function(fn: object) -> bool:
    """Whether ``fn`` is a function of ``s2sgrad.runtime`` (any of its family modules)."""
    return (getattr(fn, "__module__", None) or "").startswith("s2sgrad.runtime.")


def runtime_helper(value: object) -> str | None:
    """The name of the ``s2sgrad.runtime`` helper ``value`` calls, if it is such a call."""
    if isinstance(value, ir.Call) and isinstance(value.fn, ir.Ref):
        fn = value.fn.value
        if is_runtime_function(fn):
            return getattr(fn, "__name__", None)
    return None
