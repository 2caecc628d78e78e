"""Timing helpers shared by the benchmarks: medians of repeated runs after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def block(value: Any) -> Any:
    """Wait for JAX's asynchronous dispatch (a no-op for NumPy results)."""
    import jax

    return jax.block_until_ready(value)


def first_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds for one call, including whatever tracing and compiling it triggers."""
    start = time.perf_counter()
    value = block(fn())
    return time.perf_counter() - start, value


def steady(fn: Callable[[], Any], *, min_time: float = 0.2, repeats: int = 7) -> float:
    """Median seconds per call of a warmed-up ``fn``.

    Each of ``repeats`` samples times a batch of calls long enough (about ``min_time``
    seconds) for the clock's resolution not to matter.
    """
    return steady_together({"fn": fn}, min_time=min_time, repeats=repeats)["fn"]


def _batch(fn: Callable[[], Any], min_time: float) -> int:
    """After a warm-up call, how many calls of ``fn`` take about ``min_time`` seconds."""
    block(fn())
    start = time.perf_counter()
    block(fn())
    return max(1, int(min_time / max(time.perf_counter() - start, 1e-7)))


def steady_together(
    fns: dict[str, Callable[[], Any]], *, min_time: float = 0.2, repeats: int = 7
) -> dict[str, float]:
    """``steady`` of each of ``fns``, their samples taken in turns: round k times one batch
    of each (the order rotating from round to round), so that a change in the machine's
    load (this 2-core machine has others' work on it) moves every function's samples
    alike instead of one function's, and a ratio of two medians measures the code."""
    batches = {name: _batch(fn, min_time) for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for k in range(repeats):
        for name in names[k % len(names) :] + names[: k % len(names)]:
            fn, batch = fns[name], batches[name]
            start = time.perf_counter()
            for _ in range(batch):
                value = fn()
            block(value)
            samples[name].append((time.perf_counter() - start) / batch)
    return {name: statistics.median(times) for name, times in samples.items()}


def seconds(t: float) -> str:
    """A duration in the unit that reads best."""
    if t >= 1.0:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.1f} µs"
