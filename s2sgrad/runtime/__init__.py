"""Runtime helpers that derivative rules call, written once for every backend.

One module per family of rules (``core`` holds derivative code's own plumbing), all
re-exported here: generated code imports ``from s2sgrad.runtime import ...``.

Rule templates (``s2sgrad/rules/``) are inlined into generated code, so every
helper named here may appear in a user's derivative module. They are named
for what they compute, so generated code reads like hand-written math:
``dx = unbroadcast(dz * y, x)``, ``dx = unreduce(dz, x, 1, False)``,
``dx = unindex(dz, x, np.s_[:, 0])``. The ``un-`` helpers share one
signature shape: they take the cotangent ``g`` of an output and the primal
input ``x`` it came from, and return the cotangent of ``x``.

Every helper is pure: it never mutates its arguments (a result may be ``g``
itself or a read-only view of it, never a write into it), so a JAX version with
the same names and signatures can replace this module in the JAX backend.

One runtime, written once: array computations call ``xp``, the array namespace
(NumPy here), and ``np`` only does host-side work (shapes, axes, Python values).
The JAX runtime (``s2sgrad.backends.jax.runtime``) runs these same functions with ``xp``
bound to ``jax.numpy`` (``backends.rebinding``) and defines only the helpers whose
JAX version differs: in-place updates, scatters, what NumPy does with views. A
helper that uses ``np`` on arrays is NumPy-only, and the JAX runtime must have its own.

Helpers decorated with ``@foldable`` depend only on compile-time constants
(axes, permutations); the compiler evaluates them while generating code when
all their arguments are constants, so ``x.T`` differentiates to
``np.transpose(g)`` rather than ``np.transpose(g, inverse_permutation(None))``.
"""

from s2sgrad.runtime import (
    core,
    decompositions,
    elementwise,
    indexing,
    joins,
    linalg,
    reductions,
    revolve,
    scans,
    shape,
)
from s2sgrad.runtime.core import (
    accumulate,
    add_at,
    add_into,
    broadcast_like,
    cast_like,
    foldable,
    inverse_permutation,
    owned_copy,
    part_copy,
    set_at,
    stand_in,
    unbroadcast,
    unindex,
    zero_at,
    zero_into,
    zeros_if_none,
    zeros_like_tree,
)
from s2sgrad.runtime.decompositions import (
    matrix_power_adjoint,
    matrix_power_tangent,
    thin_svd_factor,
)
from s2sgrad.runtime.elementwise import (
    clip_shares,
    greater_share,
    power_slope_exponent,
)
from s2sgrad.runtime.indexing import (
    sort_order,
    undiag,
    undiagonal,
    untake,
    untake_along_axis,
)
from s2sgrad.runtime.joins import (
    concatenate_items,
    pad_tangent,
    rejoin,
    unconcatenate,
    unconcatenate_items,
    unjoin,
    unpad,
    unrepeat,
    unsplit,
    unstack,
    untile,
)
from s2sgrad.runtime.linalg import (
    cross,
    dot_adjoint_lhs,
    dot_adjoint_rhs,
    dual_blocks,
    einsum_adjoint,
    einsum_tangent,
    inner_adjoint_lhs,
    inner_adjoint_rhs,
    kron_adjoint_lhs,
    kron_adjoint_rhs,
    matmul_adjoint_lhs,
    matmul_adjoint_rhs,
    multi_dot_adjoint,
    multi_dot_tangent,
    tensordot_adjoint_lhs,
    tensordot_adjoint_rhs,
    undual_corner,
    undual_diagonal,
    with_slot,
    without_slot,
)
from s2sgrad.runtime.reductions import (
    average_weights,
    grouped_layout,
    logsumexp_shares,
    norm_direction,
    norm_power,
    prod_of_others,
    prod_of_others_tangent,
    rereduce,
    resolved_spread,
    tie_shares,
    unaverage_weights,
    unreduce,
)
from s2sgrad.runtime.revolve import (
    checkpoints,
    restore_checkpoint,
    store_checkpoint,
)
from s2sgrad.runtime.scans import (
    cumprod_tangent,
    trapezoid_weights,
    unconvolve,
    uncumprod,
    uncumulative_sum,
    undiff,
)
from s2sgrad.runtime.shape import (
    negated_shift,
)

#: The family modules, plumbing first: what a backend adopts (``backends.rebinding``).
FAMILIES = (
    core,
    elementwise,
    reductions,
    scans,
    shape,
    joins,
    indexing,
    linalg,
    decompositions,
    revolve,
)

__all__ = [
    "accumulate",
    "add_at",
    "add_into",
    "average_weights",
    "broadcast_like",
    "cast_like",
    "checkpoints",
    "clip_shares",
    "concatenate_items",
    "cross",
    "cumprod_tangent",
    "dot_adjoint_lhs",
    "dot_adjoint_rhs",
    "dual_blocks",
    "einsum_adjoint",
    "einsum_tangent",
    "foldable",
    "greater_share",
    "grouped_layout",
    "inner_adjoint_lhs",
    "inner_adjoint_rhs",
    "inverse_permutation",
    "kron_adjoint_lhs",
    "kron_adjoint_rhs",
    "logsumexp_shares",
    "matmul_adjoint_lhs",
    "matmul_adjoint_rhs",
    "matrix_power_adjoint",
    "matrix_power_tangent",
    "multi_dot_adjoint",
    "multi_dot_tangent",
    "negated_shift",
    "norm_direction",
    "norm_power",
    "owned_copy",
    "part_copy",
    "pad_tangent",
    "power_slope_exponent",
    "prod_of_others",
    "prod_of_others_tangent",
    "rejoin",
    "rereduce",
    "restore_checkpoint",
    "resolved_spread",
    "set_at",
    "sort_order",
    "stand_in",
    "store_checkpoint",
    "tensordot_adjoint_lhs",
    "tensordot_adjoint_rhs",
    "thin_svd_factor",
    "tie_shares",
    "trapezoid_weights",
    "unaverage_weights",
    "unbroadcast",
    "unconcatenate",
    "unconcatenate_items",
    "unconvolve",
    "uncumprod",
    "uncumulative_sum",
    "undiag",
    "undiagonal",
    "undiff",
    "undual_corner",
    "undual_diagonal",
    "unindex",
    "unjoin",
    "unpad",
    "unreduce",
    "unrepeat",
    "unsplit",
    "unstack",
    "untake",
    "untake_along_axis",
    "untile",
    "with_slot",
    "without_slot",
    "zero_at",
    "zero_into",
    "zeros_if_none",
    "zeros_like_tree",
]
