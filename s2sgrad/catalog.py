"""The list of supported functions, made from the rule registry itself.

``docs/operators.md`` and ``s2sgrad rules`` are generated from here, so what
the documentation says is exactly what the compiler knows (a test keeps the
committed page in sync).
"""

from __future__ import annotations

import builtins
import operator
from dataclasses import dataclass

import numpy as np

from s2sgrad.rules import all_rules
from s2sgrad.rules.registry import Rule

_NAMESPACES = [("np", np), ("np.linalg", np.linalg), ("np.fft", np.fft)]
_DERIVATIVE_CODE = "Derivative code"
_OPERATOR_SYMBOLS = {
    operator.add: "a + b",
    operator.sub: "a - b",
    operator.mul: "a * b",
    operator.truediv: "a / b",
    operator.floordiv: "a // b",
    operator.mod: "a % b",
    operator.pow: "a ** b",
    operator.matmul: "a @ b",
    operator.neg: "-a",
    operator.pos: "+a",
    operator.getitem: "a[index]",
}


@dataclass(frozen=True)
class Entry:
    name: str  # how users write it: np.sin, scipy.special.expit, a + b, abs
    group: str  # "NumPy", "SciPy", "Python", "Derivative code"
    forward: bool
    reverse: bool
    differentiable: bool


def _spelling(rule: Rule) -> tuple[str, str]:
    from s2sgrad import runtime

    value = rule.primitive
    if value is runtime.concatenate_items:  # what the frontend lowers np.r_[...] to
        return "np.r_[...], np.c_[...]", "NumPy"
    if value in _OPERATOR_SYMBOLS:
        return _OPERATOR_SYMBOLS[value], "Python"
    if getattr(value, "__module__", "").startswith(runtime.__name__ + "."):
        return f"s2sgrad.runtime.{value.__name__}", _DERIVATIVE_CODE
    if (
        isinstance(value, type(abs))
        and getattr(builtins, getattr(value, "__name__", ""), None) is value
    ):
        return f"{value.__name__}(x)", "Python"
    if getattr(value, "__module__", "") in ("_operator", "operator"):
        return f"operator.{value.__name__}", "Python"
    name = getattr(value, "__name__", None)
    for prefix, namespace in _NAMESPACES:
        if isinstance(name, str) and getattr(namespace, name, None) is value:
            return f"{prefix}.{name}", "NumPy"
    try:
        import scipy.special

        if isinstance(name, str) and getattr(scipy.special, name, None) is value:
            return f"scipy.special.{name}", "SciPy"
    except ImportError:  # pragma: no cover - scipy is optional
        pass
    return rule.name, "Python"


def entries() -> list[Entry]:
    """Every built-in primitive, in a stable order (group, then name).

    Rules a program registers for its own functions are not part of s2sgrad's list.
    """
    out = []
    for rule in all_rules():
        if not rule.builtin:
            continue
        name, group = _spelling(rule)
        out.append(
            Entry(
                name=name,
                group=group,
                forward=rule.nondifferentiable or rule.jvp is not None,
                reverse=rule.nondifferentiable or rule.vjp is not None,
                differentiable=not rule.nondifferentiable,
            )
        )
    order = {"NumPy": 0, "SciPy": 1, "Python": 2, _DERIVATIVE_CODE: 3}
    return sorted(out, key=lambda e: (order[e.group], e.name))


def count() -> int:
    """NumPy and scipy.special functions with derivative rules in both modes (not Python's
    operators, nor the runtime helpers of derivative code)."""
    return sum(
        1
        for e in entries()
        if e.group in ("NumPy", "SciPy") and e.differentiable and e.forward and e.reverse
    )


def markdown() -> str:
    """The text of docs/operators.md."""
    rows = entries()
    lines = [
        "# Supported functions",
        "",
        "Generated from s2sgrad's rule registry by `s2sgrad rules --markdown`; do not edit by",
        "hand (a test checks that this page matches the registry).",
        "",
        f"**{count()}** NumPy and `scipy.special` functions have derivative rules in both modes.",
        "Functions marked *zero derivative* are piecewise constant or integer-valued (comparisons,",
        "`np.argmax`, `np.floor`, creation functions such as `np.zeros`): their derivative is zero,",
        "and s2sgrad treats their results as constants. A call of any other function on a",
        "differentiated value is a compile-time error naming the function and the line, with a hint",
        "on registering a rule (`s2sgrad.defjvp` / `s2sgrad.defvjp`).",
        "",
    ]
    for group in ("NumPy", "SciPy", "Python", _DERIVATIVE_CODE):
        members = [e for e in rows if e.group == group]
        if not members:
            continue
        lines += [f"## {group}", ""]
        if group == _DERIVATIVE_CODE:
            lines += [
                "The helpers of `s2sgrad.runtime` that generated derivative code calls, with",
                "rules of their own so that derivative code can be differentiated again (higher",
                "order, in progress). Users do not call them.",
                "",
            ]
        lines += ["| function | forward | reverse |", "|---|---|---|"]
        for e in members:
            if not e.differentiable:
                lines.append(f"| `{e.name}` | zero derivative | zero derivative |")
            else:
                mark = {True: "yes", False: "no"}
                lines.append(f"| `{e.name}` | {mark[e.forward]} | {mark[e.reverse]} |")
        lines.append("")
    return "\n".join(lines)
