"""The ``Backend`` protocol: everything that differs between the array libraries generated
code can target, as fields and methods of one object per library.

The methods give NumPy's behaviour; a backend that differs overrides them and imports
its modules inside them, so choosing a backend never imports another's library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from s2sgrad import ir

#: The NumPy runtime: the helpers generated code imports, named as rules name them.
RUNTIME_MODULE = "s2sgrad.runtime"


def _faster_numpy(ref: Any) -> Any:
    """The runtime twin of a NumPy function that NumPy code calls instead (same
    signature, same derivative rules, faster in the common case), or ``ref`` itself."""
    if ref.value is np.cross:
        from s2sgrad import runtime

        return ir.Ref("cross", runtime.cross)
    return ref


@dataclass(frozen=True)
class Backend:
    """One array library generated code can target. The methods give NumPy's behaviour;
    a backend that differs overrides them (and imports its modules inside them)."""

    name: str
    #: How generated code names its array module, and the import that binds the name.
    array_alias: str
    array_import: str
    #: Where rules' helper modules come from: module a rule names -> module this backend
    #: imports instead (a backend's helpers keep the NumPy runtime's names).
    runtime_modules: Mapping[str, str]
    #: ``y[i] = v`` prints as ``y = y.at[i].set(v)``: the arrays are immutable.
    functional_updates: bool = False
    #: Libraries whose versions the generated code depends on (in the cache key).
    libraries: tuple[str, ...] = ("numpy",)
    #: A paragraph for the generated module's docstring ("" for none).
    header_note: str = ""
    #: The primal value comes from the generated forward code (so ``vjp`` works under a
    #: caller's ``jax.jit``, where the user's NumPy code would not), not from ``fun``.
    primal_from_generated_code: bool = False
    #: ``grad``'s derivative leaves out the work only its (discarded) value needs, where
    #: that value is provably a real scalar (``transforms.unread_value``). XLA removes dead
    #: work by itself, so JAX keeps one module for ``grad`` and ``value_and_grad``.
    drops_unread_value: bool = True
    #: Reverse mode reruns the body of a loop that is cheap to run and saves much per
    #: iteration, saving only its carried state (``transforms.remat``). Under XLA the rerun
    #: fuses into the backward step and the saved stacks shrink to the state; on NumPy
    #: every rerun operation pays its dispatch again, a trade of time for memory that a
    #: user asks for (a checkpoint directive) rather than one the compiler makes.
    rematerializes_loops: bool = False
    #: The schedule of a checkpointed loop whose trip count is known only at its end (a
    #: ``while`` loop, a ``for`` loop with a ``break``) is decided as it runs
    #: (``runtime.revolve``). The JAX runtime's schedule is tables made on the host for a
    #: trip count known at trace time, so the JAX backend refuses these loops.
    checkpoints_online: bool = True

    def splits_callee(self, callee: Any, per_iteration: bool) -> bool:
        """Whether reverse mode hands a called function's residuals from its forward pass
        to its backward pass (``transforms.residuals``) rather than recomputing its forward
        work in the backward sweep. ``callee`` is its IR; ``per_iteration``: the residuals
        would be saved per iteration of a loop (the call is in a loop, or in a function
        split for that reason). NumPy runs each operation as it is written: always."""
        return True

    def spelling(self, numpy_spelling: Any) -> Any:
        """How this backend writes what NumPy code writes as ``numpy_spelling``
        (a ``codegen.Spelling``); raises ``codegen.NoJaxEquivalentError`` where it cannot."""
        return numpy_spelling

    def lower(self, compilation: Any) -> list:
        """The compilation's functions as this backend prints them: NumPy code releases
        each value once nothing reads it (``transforms.lifetimes``), and calls the
        runtime's faster twins of a few NumPy functions (``_faster_numpy``)."""
        from s2sgrad.codegen import fold_candidates
        from s2sgrad.transforms.lifetimes import release_dead_values

        out = []
        for fn, foreign in compilation.functions:
            fn = replace(fn, body=ir.map_call_fns(fn.body, _faster_numpy))
            out.append(
                (release_dead_values(fn, frozenset(fold_candidates(fn.body, fn.temps))), foreign)
            )
        return out

    def runner(self, entry: Callable, max_steps: int | None) -> Callable:
        """The generated function as the API calls it."""
        return entry

    def gradient_runner(self, entry: Callable, max_steps: int | None, finish: Callable) -> Callable:
        """A reverse-mode gradient: ``finish(primals, *entry(*primals, 1.0))``, the seed 1.0
        and ``finish`` (checks and dtype casts of ``api._GradientResult``) as part of it."""
        return lambda *primals: finish(primals, *entry(*primals, 1.0))

    def repeat_runner(
        self, entry: Callable, primals: tuple, max_steps: int | None, finish: Callable
    ) -> Callable | None:
        """What ``gradient_runner`` runs for arguments like ``primals``, with whatever it
        decides per call decided for them, for calls that repeat the last one
        (``api._Repeat``); None where it cannot be decided once. Without ``finish``'s
        checks, which the call being repeated passed (``_GradientResult.repeated``)."""
        return lambda *primals: finish.repeated(primals, *entry(*primals, 1.0))

    def as_arrays(self, value: Any) -> Any:
        """``value`` with its leaves as this backend's arrays (what its users expect back)."""
        return value

    def array_module(self) -> Any:
        """The array module results are assembled with (Jacobian blocks under a caller's
        ``jax.jit`` are traced: NumPy cannot hold them)."""
        return np

    def over_seeds(self, entry: Callable, primals: tuple, seeds: Any, n: int) -> tuple:
        """``entry(*primals, seed)`` for the ``n`` seeds stacked on the leading axis of the
        tree ``seeds`` (Jacobians, Hessians): the first result of one call, and the second
        results stacked the same way.

        NumPy: one pass with every seed at once, each a ``runtime.batched.Batched`` that
        NumPy operations act on member by member. Where the derivative code does what a
        batch cannot (``BatchingError``), one pass per seed instead, from then on for
        that derivative (its memo ``unbatchable`` says why).
        """
        from s2sgrad import memos, trees
        from s2sgrad.runtime import batched

        leaves = trees.leaves(seeds)
        run = self.runner(entry, None)
        refused = memos.table_of(entry, "unbatchable")  # "why": one pass per seed
        if not refused:
            try:
                first, second = self.runner(batched.twin(entry, n), None)(
                    *primals, trees.unflatten(seeds, [batched.batch(v) for v in leaves])
                )
            except Exception as exc:  # noqa: BLE001  (the passes below are the reference)
                # What a batch cannot go through (``BatchingError``, or NumPy's own error
                # where it takes a batch for a sequence); a real error comes back below.
                refused["why"] = f"{type(exc).__name__}: {exc}"
            else:
                if not any(isinstance(v, batched.Batched) for v in trees.leaves(first)):
                    columns = [batched.unbatch(v, n) for v in trees.leaves(second)]
                    return first, trees.unflatten(second, columns)
                refused["why"] = "a primal value depends on the seed"
        results = [run(*primals, trees.unflatten(seeds, [v[k] for v in leaves])) for k in range(n)]
        columns = zip(*(trees.leaves(second) for _, second in results))
        return results[0][0], trees.unflatten(results[0][1], [np.stack(c) for c in columns])

    def dtype_for(self, dtype: Any) -> Any:
        """The dtype this backend gives a derivative whose input has ``dtype``."""
        return dtype
