"""The tools compared: each turns a Problem into a gradient function of the objective's
arguments that returns a tuple of NumPy arrays (one per ``wrt`` name), or None where the
tool cannot run the problem (the problem says why).

``tangent-ad`` (the maintained fork of Google's Tangent, source-to-source like s2sgrad)
differentiates the objective as written, with no twin; where it refuses a problem or its
gradient disagrees, the suite says so and does not time it (``PEERS_THAT_MAY_FAIL``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from benchmarks.problem import Problem
from benchmarks.twins import rebind

TOOLS = ("s2sgrad", "s2sgrad-jax", "autograd", "jax", "tangent-ad", "hand")
# Peers whose failure to differentiate a problem, or disagreement, is a finding to report
# rather than a broken benchmark.
PEERS_THAT_MAY_FAIL = ("tangent-ad",)


def _positions(problem: Problem) -> tuple[int, ...]:
    names = list(inspect.signature(problem.objective).parameters)
    return tuple(names.index(w) for w in problem.wrt)


def _static(problem: Problem) -> tuple[int, ...]:
    names = list(inspect.signature(problem.objective).parameters)
    return tuple(names.index(s) for s in problem.static)


def _twin(problem: Problem, which: str, module) -> Callable | None:
    given = getattr(problem, f"{which}_objective")
    return rebind(problem.objective, module) if given == "rebind" else given


def objective(problem: Problem, tool: str) -> Callable | None:
    """The function whose time T(f) the ratios of ``tool`` are taken against."""
    if tool == "jax":
        import jax
        import jax.numpy as jnp

        twin = _twin(problem, "jax", jnp)
        return None if twin is None else jax.jit(twin, static_argnums=_static(problem))
    return problem.objective


def compiled_cost(problem: Problem, g: Callable, args: tuple) -> dict[str, float]:
    """XLA's cost analysis of the JAX gradient ``g`` compiled for ``args`` (the static
    arguments as the jax column has them): what the program computes and moves, which
    no timer's noise blurs."""
    import jax

    cost = jax.jit(g, static_argnums=_static(problem)).lower(*args).compile().cost_analysis()
    if isinstance(cost, list):  # (older jaxlibs: one dict per program)
        cost = cost[0]
    return {
        "flops": float(cost.get("flops", 0.0)),
        "transcendentals": float(cost.get("transcendentals", 0.0)),
        "bytes": float(cost.get("bytes accessed", 0.0)),
    }


def gradient(problem: Problem, tool: str) -> Callable | None:
    """``tool``'s gradient function for ``problem``: args -> tuple of arrays, or None."""
    import s2sgrad

    wrt = problem.wrt
    if tool == "s2sgrad":
        g = s2sgrad.grad(problem.objective, wrt=wrt)
    elif tool == "s2sgrad-jax":
        g = s2sgrad.grad(problem.objective, wrt=wrt, backend="jax")
    elif tool == "autograd":
        import autograd
        import autograd.numpy as anp

        twin = _twin(problem, "autograd", anp)
        if twin is None:
            return None
        g = autograd.grad(twin, _positions(problem))
    elif tool == "jax":
        import jax
        import jax.numpy as jnp

        twin = _twin(problem, "jax", jnp)
        if twin is None:
            return None
        g = jax.jit(jax.grad(twin, _positions(problem)), static_argnums=_static(problem))
    elif tool == "tangent-ad":
        try:
            import tangent
            from tangent.function_cache import clear_cache
        except ImportError:
            return None
        clear_cache()  # tangent keeps its transforms in the process: time a fresh one
        g = tangent.grad(problem.objective, wrt=_positions(problem), verbose=0)
        if len(wrt) == 1:  # one parameter: tangent returns its gradient, not a tuple
            return lambda *args, g=g: (g(*args),)
    elif tool == "hand":
        if problem.hand_gradient is None:
            return None
        g = problem.hand_gradient
    else:
        raise ValueError(f"unknown tool {tool!r}; the tools are {TOOLS}")
    return lambda *args: tuple(g(*args))  # wrt is a tuple: every tool returns a tuple


def to_numpy(grads: tuple) -> tuple:
    """Gradients as NumPy arrays (JAX results copied to the host), structures kept."""
    import jax

    return tuple(jax.tree_util.tree_map(np.asarray, g) for g in grads)
