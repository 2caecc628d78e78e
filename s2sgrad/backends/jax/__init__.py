"""The JAX backend: control flow lowered to ``lax`` combinators, code run under ``jax.jit``.

Everything of this backend lives in this package: ``lowering`` (If/For/While into
combinator calls), ``control`` (the combinators generated modules call), ``runtime``
(the helpers whose JAX version differs; the rest are ``s2sgrad.runtime``'s, run with
``xp = jax.numpy``), ``masks`` (boolean-mask reads that end in reductions, rewritten
as masked computations) and ``masked`` (their helpers), ``spelling`` (``np.sin`` ->
``jnp.sin``), ``none_tests`` (what lowering refuses) and ``api`` (the call path: jit,
learned loop bounds, error messages). Only this module is imported when the backend
is not used: it imports no JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from s2sgrad.backends.base import RUNTIME_MODULE, Backend

# The names s2sgrad.backends.jax.control exports, which generated JAX modules import. Listed here,
# not read from that module, so the NumPy backend never imports JAX (seconds of start-up);
# control.__all__ is this list; tests/test_jax_backend.py checks each name is defined there.
JAX_CONTROL_NAMES = (
    "Range",
    "Tape",
    "LoopBoundExceeded",
    "if_else",
    "for_loop",
    "for_loop_recording",
    "replay",
    "replay_recording",
    "raise_if_overflowed",
    "reversed_range",
    "traced_range",
    "recording",
    "while_loop",
    "while_recording",
)

# The names s2sgrad.backends.jax.masked exports (the helpers of boolean-mask reads lowered
# as masked computations, backends/jax/masks.py), listed here for the same reason.
JAX_MASKED_NAMES = (
    "masked_read",
    "trailing_operand",
    "masked_sum",
    "masked_mean",
    "masked_max",
    "masked_min",
    "masked_prod",
    "masked_len",
    "masked_size",
    "masked_shape",
    "masked_unindex",
    "masked_add_at",
    "masked_unbroadcast",
    "masked_tie_shares",
    "masked_prod_of_others",
    "masked_prod_of_others_tangent",
)


@dataclass(frozen=True)
class _Jax(Backend):
    """JAX: control flow lowered to ``lax`` (``lowering``), code run under ``jax.jit``."""

    def spelling(self, numpy_spelling: Any) -> Any:
        from s2sgrad.backends.jax.spelling import spelling

        return spelling(numpy_spelling, self)

    def splits_callee(self, callee: Any, per_iteration: bool) -> bool:
        """Only where the residuals would be saved per iteration. Outside loops XLA merges
        the recomputed forward work with the first (and fuses it into the backward work),
        so splitting gains nothing there; in a loop, recomputing reruns the callee's
        forward work in every backward step, and once more per nesting level (the LSTM
        benchmark's cells: 19 exponentials per step, 7 with its callees split, as
        ``jax.grad`` of a scan). Not a callee whose boolean-mask reads are lowered as
        masked computations (``masks``): the read and its reductions must stay in one
        function."""
        from s2sgrad.backends.jax.masks import lowers_masked_reads

        return per_iteration and not lowers_masked_reads(callee)

    def lower(self, compilation: Any) -> list:
        from s2sgrad.backends.jax.lowering import lower_compilation

        return lower_compilation(compilation)

    def runner(self, entry: Callable, max_steps: int | None) -> Callable:
        from s2sgrad.backends.jax import api

        return lambda *args: api.call(entry, args, max_steps)

    def gradient_runner(self, entry: Callable, max_steps: int | None, finish: Callable) -> Callable:
        """Seed and ``finish`` inside the jitted function: they run once, while it is traced."""
        from s2sgrad.backends.jax import api

        return lambda *primals: api.call(entry, primals, max_steps, finish)

    def repeat_runner(
        self, entry: Callable, primals: tuple, max_steps: int | None, finish: Callable
    ) -> Callable | None:
        """The jitted gradient itself (``api.repeat``): no per-call decisions left."""
        from s2sgrad.backends.jax import api

        return api.repeat(entry, primals, max_steps, finish)

    def as_arrays(self, value: Any) -> Any:
        from s2sgrad.backends.jax import api

        return api.as_arrays(value)

    def array_module(self) -> Any:
        import jax.numpy as jnp

        return jnp

    def over_seeds(self, entry: Callable, primals: tuple, seeds: Any, n: int) -> tuple:
        """One jitted ``jax.vmap`` of the entry over the seeds (as ``jax.jacfwd`` does)."""
        from s2sgrad.backends.jax import api

        return api.over_seeds(entry, primals, seeds)

    def dtype_for(self, dtype: Any) -> Any:
        """float64 is float32 unless ``jax_enable_x64`` is set, as for ``jax.grad``."""
        from jax import dtypes

        return dtypes.canonicalize_dtype(dtype)


JAX = _Jax(
    name="jax",
    array_alias="jnp",
    array_import="import jax.numpy as jnp",
    runtime_modules={
        RUNTIME_MODULE: "s2sgrad.backends.jax.runtime",
        "s2sgrad.backends.jax.control": "s2sgrad.backends.jax.control",
        "s2sgrad.backends.jax.runtime": "s2sgrad.backends.jax.runtime",
        "s2sgrad.backends.jax.masked": "s2sgrad.backends.jax.masked",
    },
    functional_updates=True,
    libraries=("numpy", "jax", "jaxlib"),
    header_note=(
        "Lowered for JAX: loops are lax.scan / lax.while_loop, traced ifs lax.cond "
        "(s2sgrad.backends.jax.control)."
    ),
    primal_from_generated_code=True,
    drops_unread_value=False,
    rematerializes_loops=True,
    checkpoints_online=False,
)
