"""What a benchmark problem provides: an objective as a scientist writes it, inputs, twins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    """One size of a problem: a label for the tables and the objective's arguments."""

    label: str
    args: tuple


@dataclass(frozen=True)
class Problem:
    """A benchmark problem.

    ``objective`` is the NumPy function s2sgrad differentiates, with respect to the
    parameters named in ``wrt`` (gradients come back as a tuple in that order).
    ``cases(size)`` gives the inputs for ``size`` "smoke" (tiny: correctness checks in
    CI) or "full" (the sizes of the report). ``static`` names the arguments that are
    Python ints (trip counts), static under ``jax.jit``.

    The peers get twins of the objective: by default ``benchmarks.twins.rebind`` of the
    same source against ``jax.numpy`` / ``autograd.numpy``; a problem whose objective
    cannot be rebound (in-place updates) gives ``jax_objective`` / ``autograd_objective``
    written by hand, or None to leave that tool out (with ``why_not`` saying why).
    ``hand_gradient`` is a hand-written NumPy gradient returning the same tuple as the
    s2sgrad gradient, where one is short to write.
    """

    name: str
    objective: Callable
    wrt: tuple[str, ...]
    cases: Callable[[str], list[Case]]
    static: tuple[str, ...] = ()
    jax_objective: Callable | None | str = "rebind"
    autograd_objective: Callable | None | str = "rebind"
    hand_gradient: Callable | None = None
    vectorized: bool = True
    why_not: dict[str, str] = field(default_factory=dict)
