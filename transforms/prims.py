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
ZEROS_LIKE = ir.Ref("np.zeros_like", np.zeros_like)
ZEROS_LIKE_TREE = ir.Ref("zeros_like_tree", runtime.zeros_like_tree)
ZEROS_IF_NONE = ir.Ref("zeros_if_none", runtime.zeros_if_none)
ACCUMULATE = ir.Ref("accumulate", runtime.accumulate)
ZERO_AT = ir.Ref("zero_at", runtime.zero_at)
TRUE, FALSE, NONE = ir.Const(True), ir.Const(False), ir.Const(None)
