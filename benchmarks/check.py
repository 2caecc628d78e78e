"""Correctness first: every tool's gradient of a problem agrees with the others and with
central finite differences, before anything is timed.

``python -m benchmarks.check NAME [--size smoke|full]`` checks one problem (all with no
NAME). The test suite runs this at the smoke size for every problem.
"""

from __future__ import annotations

import argparse
import inspect
import sys

import numpy as np

from benchmarks import tools
from benchmarks.problem import Problem
from benchmarks.problems import NAMES, load


def _leaves(tree) -> list[np.ndarray]:
    import jax

    return [np.asarray(x, dtype=float) for x in jax.tree_util.tree_leaves(tree)]


def _relative(a, b) -> float:
    a, b = _leaves(a), _leaves(b)
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        return float("inf")
    scale = max(max(float(np.max(np.abs(y), initial=0.0)) for y in b), 1e-300)
    return max(float(np.max(np.abs(x - y), initial=0.0)) for x, y in zip(a, b, strict=True)) / scale


def finite_difference_probe(problem: Problem, args: tuple, grads: tuple, probes: int = 3) -> float:
    """Worst relative error of ``grads`` against central differences along random
    directions (one per probe), each a directional derivative d/dt f(x + t v)."""
    import jax

    rng = np.random.default_rng(1)
    names = list(inspect.signature(problem.objective).parameters)
    positions = [names.index(w) for w in problem.wrt]
    worst = 0.0
    for _ in range(probes):
        directions = [
            jax.tree_util.tree_map(lambda x: rng.standard_normal(np.shape(x)), args[i])
            for i in positions
        ]

        def shifted(t, directions=directions):
            moved = list(args)
            for i, v in zip(positions, directions, strict=True):
                moved[i] = jax.tree_util.tree_map(lambda x, d: np.asarray(x) + t * d, args[i], v)
            return float(problem.objective(*moved))

        eps = 1e-6
        fd = (shifted(eps) - shifted(-eps)) / (2 * eps)
        exact = sum(
            float(np.sum(g * v))
            for gs, vs in zip(grads, directions, strict=True)
            for g, v in zip(_leaves(gs), _leaves(vs), strict=True)
        )
        worst = max(worst, abs(fd - exact) / max(abs(exact), 1e-8))
    return worst


def check(problem: Problem, size: str = "smoke", rtol: float = 1e-7, fd_rtol: float = 1e-5):
    """Raise AssertionError unless every tool agrees with s2sgrad (NumPy backend) and that
    agrees with finite differences; returns {case label: {tool: relative difference}}.

    A peer of ``tools.PEERS_THAT_MAY_FAIL`` that cannot differentiate the problem, or
    whose gradient disagrees, gets a sentence saying so instead of a number."""
    import jax

    jax.config.update("jax_enable_x64", True)
    report = {}
    for case in problem.cases(size):
        reference = tools.to_numpy(tools.gradient(problem, "s2sgrad")(*case.args))
        fd = finite_difference_probe(problem, case.args, reference)
        if not fd <= fd_rtol:
            raise AssertionError(
                f"{problem.name} {case.label}: s2sgrad vs finite differences {fd:.1e}"
            )
        errors = {"finite differences": fd}
        for tool in tools.TOOLS[1:]:
            if tool in tools.PEERS_THAT_MAY_FAIL:
                errors[tool] = _peer_error(problem, tool, case.args, reference, rtol)
                continue
            g = tools.gradient(problem, tool)
            if g is None:
                continue
            errors[tool] = _relative(tools.to_numpy(g(*case.args)), reference)
            if not errors[tool] <= rtol:
                raise AssertionError(
                    f"{problem.name} {case.label}: {tool} differs from s2sgrad by {errors[tool]:.1e}"
                )
        report[case.label] = errors
    return report


def _peer_error(problem: Problem, tool: str, args: tuple, reference, rtol: float):
    """The relative difference of ``tool``'s gradient from s2sgrad's, or why there is none."""
    try:
        g = tools.gradient(problem, tool)
        if g is None:
            return f"{tool} is not installed"
        error = _relative(tools.to_numpy(g(*args)), reference)
    except Exception as exc:  # noqa: BLE001  (the peer's own refusal: report it)
        lines = [ln.strip() for ln in str(exc).splitlines() if any(c.isalnum() for c in ln)]
        first = lines[0] if lines else ""
        return f"cannot differentiate it ({type(exc).__name__}{': ' + first if first else ''})"
    if not error <= rtol:
        return f"its gradient differs from s2sgrad's and finite differences by {error:.1e}"
    return error


def usable(errors: dict, tool: str) -> bool:
    """Whether a case's check found ``tool``'s gradient right (so it is timed)."""
    return isinstance(errors.get(tool), float) or tool == "s2sgrad"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(NAMES))
    parser.add_argument("--size", choices=("smoke", "full"), default="smoke")
    args = parser.parse_args(argv)
    for name in args.names:
        for label, errors in check(load(name), args.size).items():
            shown = ", ".join(
                f"{tool} {e:.1e}" if isinstance(e, float) else f"{tool}: {e}"
                for tool, e in errors.items()
            )
            print(f"{name} {label}: ok ({shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
