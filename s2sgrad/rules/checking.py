"""Checking a new rule against central differences when it is registered (``check=``).

Rule templates are plain Python, so a template can be run directly on example
inputs: a jvp against the directional finite difference of the primitive, a
vjp by the dot-product test ``<g, J t> == <vjp(g), t>``. A wrong rule is then
caught where it is written, not as a wrong gradient later.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from s2sgrad.errors import S2SGradError

EPS = 1e-6
RTOL = 1e-5


class RuleCheckError(S2SGradError):
    """A registered derivative rule disagrees with finite differences."""


def _example_args(template: Callable, lead: int, check: Any) -> tuple:
    if check is True:
        params = list(inspect.signature(template).parameters.values())[lead:]
        required = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
        rng = np.random.default_rng(0)
        return tuple(rng.uniform(0.5, 1.5, size=3) for _ in required)
    return tuple(np.asarray(a, dtype=float) if np.ndim(a) else a for a in check)


def _flat(x: Any) -> np.ndarray:
    if isinstance(x, (tuple, list)):
        return np.concatenate([_flat(v) for v in x]) if x else np.zeros(0)
    return np.ravel(np.asarray(x, dtype=float))


def _directional(primitive: Callable, args: tuple, tangents: dict[int, Any]) -> np.ndarray:
    def shifted(sign: float) -> Any:
        moved = list(args)
        for i, t in tangents.items():
            moved[i] = args[i] + sign * EPS * t
        return primitive(*moved)

    return (_flat(shifted(1.0)) - _flat(shifted(-1.0))) / (2 * EPS)


def check_rule(
    primitive: Callable, template: Callable, kind: str, check: Any, outputs: int
) -> None:
    """Raise RuleCheckError if ``template`` disagrees with central differences."""
    lead = 1 if kind == "jvp" else 2
    args = _example_args(template, lead, check)
    params = list(inspect.signature(template).parameters)[lead:]
    ans = primitive(*args)
    rng = np.random.default_rng(1)
    name = getattr(primitive, "__qualname__", repr(primitive))
    if kind == "jvp":
        tangent_names = [
            p for p, v in inspect.signature(template).parameters.items() if v.kind is v.KEYWORD_ONLY
        ]
        positions = [params.index(t[1:]) for t in tangent_names]
        tangents = {i: rng.normal(size=np.shape(args[i])) for i in positions}
        result = template(ans, *args, **{t: tangents[i] for t, i in zip(tangent_names, positions)})
        if outputs == 1 and isinstance(result, tuple) and len(tangent_names) > 1:
            result = sum(result)
        got = _flat(result)
        want = _directional(primitive, args, tangents)
    else:
        g = (
            rng.normal(size=np.shape(_flat(ans))).reshape(np.shape(ans))
            if outputs == 1
            else tuple(rng.normal(size=np.shape(a)) for a in ans)
        )
        entries = template(g, ans, *args)
        if not isinstance(entries, tuple):
            entries = (entries,)
        tangents = {
            i: rng.normal(size=np.shape(args[i])) for i, e in enumerate(entries) if e is not None
        }
        got = np.array([sum(float(np.sum(entries[i] * t)) for i, t in tangents.items())])
        want = np.array([float(np.dot(_flat(g), _directional(primitive, args, tangents)))])
    if not np.allclose(got, want, rtol=RTOL, atol=RTOL * max(1.0, float(np.max(np.abs(want))))):
        raise RuleCheckError(
            f"the {kind} rule registered for {name} disagrees with central differences: "
            f"got {got[:5]}, expected {want[:5]}",
            hint="fix the template (run it by hand on the example inputs), or pass example "
            "inputs that suit the function with check=(arg1, arg2, ...)",
        )
