"""Reverse mode through long loops in bounded memory: binomial checkpointing, side by side.

The problem: the viscous Burgers equation on a periodic grid (explicit steps, a
10^4-element state in the full run), the gradient of the final energy with respect to
the initial state and the viscosity. Reversed

* by s2sgrad without checkpointing (one set of values saved per step);
* by s2sgrad with ``checkpoint=s`` for s = 10, 20, 50 (the binomial schedule);
* by the sqrt(n) schedule (what the maintained Tangent fork ships), written by hand
  around s2sgrad's vjp of one step: every ceil(sqrt(n))-th state kept, each segment
  rerun once keeping its states, then reversed step by step;
* on JAX: ``jax.grad`` of a ``lax.scan``, the same with ``jax.checkpoint`` on the scan
  body, and s2sgrad's JAX backend without and with checkpointing.

Measured: time per gradient, peak memory (NumPy: ``tracemalloc`` over the gradient
call; JAX: XLA's temporaries, ``compiled.memory_analysis()``), and for the binomial
schedule the iterations it reruns, counted by the runtime (``revolve.Checkpoints``),
next to the revolve bound r (n <= C(s + r, s)). Every gradient is checked against the
unscheduled one first.

Run ``python -m benchmarks.checkpointing`` (about ten minutes on a 2-core machine) or
``--smoke`` (seconds; the checks only). Results go to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks.suite import machine
from benchmarks.timing import seconds

RESULTS = Path(__file__).parent / "results"
SNAPSHOTS = (10, 20, 50)


def step(u, nu, dt, dx):
    """One explicit step of u_t + u u_x = nu u_xx (periodic)."""
    right, left = np.roll(u, -1), np.roll(u, 1)
    flux = u * (right - left) / (2.0 * dx)
    return u + dt * (nu * (right - 2.0 * u + left) / dx**2 - flux)


def energy(u0, nu, steps, dt, dx):
    """The kinetic energy after ``steps`` steps."""
    u = u0
    for _ in range(steps):
        right, left = np.roll(u, -1), np.roll(u, 1)
        flux = u * (right - left) / (2.0 * dx)
        u = u + dt * (nu * (right - 2.0 * u + left) / dx**2 - flux)
    return 0.5 * dx * np.sum(u**2)


def inputs(n: int, steps: int) -> tuple:
    dx = 1.0 / n
    x = np.arange(n) * dx
    u0 = 0.5 + 0.3 * np.sin(2 * np.pi * x) + 0.1 * np.cos(6 * np.pi * x)
    nu = 1e-4
    dt = min(0.2 * dx**2 / nu, 0.2 * dx / float(np.max(np.abs(u0))))
    return (u0, nu, steps, dt, dx)


def repetition_bound(steps: int, snapshots: int) -> int:
    """The least r with steps <= C(snapshots + r, snapshots)."""
    r = 0
    while math.comb(snapshots + r, snapshots) < steps:
        r += 1
    return r


# --------------------------------------------------------------------------- NumPy


def _measured(fn, args, runs: int = 2) -> tuple[float, int, object]:
    """(seconds, peak bytes allocated during the call, value): the fastest of ``runs``
    runs for the time, one more under ``tracemalloc`` (which slows allocation) for the
    memory."""
    elapsed = math.inf
    for _ in range(runs):
        start = time.perf_counter()
        value = fn(*args)
        elapsed = min(elapsed, time.perf_counter() - start)
    tracemalloc.start()
    try:
        fn(*args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return elapsed, peak, value


@contextlib.contextmanager
def _counting_schedules():
    """While it is open, the runtime's schedule class is one that counts its stores (the
    forward sweep's n, then one per rerun iteration: each moves ``position`` on by one);
    yields the list of the schedules made."""
    from s2sgrad.runtime import revolve

    made = []
    slot = revolve.Checkpoints.position  # (the slot's descriptor)

    class Counted(revolve.Checkpoints):
        __slots__ = ("stores",)

        def __init__(self, *args):
            self.stores = 0
            super().__init__(*args)
            made.append(self)

        @property
        def position(self):
            return slot.__get__(self)

        @position.setter
        def position(self, value):
            try:
                self.stores += value == slot.__get__(self) + 1
            except AttributeError:  # (the first, in __init__)
                pass
            slot.__set__(self, value)

    revolve.Checkpoints = Counted
    try:
        yield made
    finally:
        revolve.Checkpoints = Counted.__mro__[1]


def sqrt_schedule_gradient(u0, nu, steps, dt, dx):
    """The sqrt(n) schedule by hand around s2sgrad's vjp of ``step``."""
    import s2sgrad

    k = max(1, math.isqrt(steps - 1) + 1) if steps > 1 else 1
    kept = {}
    u = u0
    for t in range(steps):
        if t % k == 0:
            kept[t] = u
        u = step(u, nu, dt, dx)
    du, dnu = dx * u, 0.0  # d energy / d final state
    for start in reversed(range(0, steps, k)):
        segment = [kept.pop(start)]
        for _ in range(start, min(start + k, steps) - 1):
            segment.append(step(segment[-1], nu, dt, dx))
        for v in reversed(segment):
            _, pullback = s2sgrad.vjp(step, v, nu, dt, dx)
            du, dnu_t, _, _ = pullback(du)
            dnu += dnu_t
    return du, dnu


def run_numpy(n: int, steps_list: tuple, long_steps: int | None) -> list[dict]:
    with _counting_schedules() as made:
        return _numpy_rows(n, steps_list, long_steps, made)


def _numpy_rows(n: int, steps_list: tuple, long_steps: int | None, made: list) -> list[dict]:
    import s2sgrad

    rows = []
    for steps in steps_list:
        args = inputs(n, steps)
        plain = s2sgrad.grad(energy, wrt=(0, 1))
        plain(*inputs(n, 3))  # compile outside the timing
        t, peak, want = _measured(plain, args)
        rows.append({"steps": steps, "how": "no checkpointing", "time": t, "peak": peak})
        for s in SNAPSHOTS:
            g = s2sgrad.grad(energy, wrt=(0, 1), checkpoint=s)
            g(*inputs(n, 3))
            t, peak, got = _measured(g, args)
            _check(f"{s} snapshots, {steps} steps", got, want)
            reruns = made[-1].stores - steps
            rows.append(
                {
                    "steps": steps,
                    "how": f"binomial, s = {s}",
                    "time": t,
                    "peak": peak,
                    "reruns": reruns / steps,
                    "bound": repetition_bound(steps, s),
                }
            )
        t, peak, got = _measured(sqrt_schedule_gradient, args)
        _check(f"sqrt(n) schedule, {steps} steps", got, want)
        rows.append(
            {"steps": steps, "how": "sqrt(n) by hand", "time": t, "peak": peak, "reruns": 2.0}
        )
        print(f"numpy {steps} steps done", file=sys.stderr, flush=True)
    if long_steps:
        args = inputs(n, long_steps)
        reference = None
        for s in SNAPSHOTS[1:]:
            g = s2sgrad.grad(energy, wrt=(0, 1), checkpoint=s)
            t, peak, got = _measured(g, args, runs=1)  # (each run takes a minute or two)
            if reference is None:
                reference = got
            _check(f"{s} snapshots, {long_steps} steps", got, reference)
            rows.append(
                {
                    "steps": long_steps,
                    "how": f"binomial, s = {s}",
                    "time": t,
                    "peak": peak,
                    "reruns": (made[-1].stores - long_steps) / long_steps,
                    "bound": repetition_bound(long_steps, s),
                }
            )
            print(f"numpy {long_steps} steps, s = {s} done", file=sys.stderr, flush=True)
    return rows


def _check(what: str, got, want, rtol: float = 1e-9) -> None:
    for a, b in zip(got, want):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        error = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))
        if not error <= rtol:
            raise AssertionError(f"{what}: relative difference {error:.2e} from unscheduled")


# --------------------------------------------------------------------------- JAX


def run_jax(n: int, steps: int) -> list[dict]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    import s2sgrad

    jax.config.update("jax_enable_x64", True)
    u0, nu, _, dt, dx = inputs(n, steps)
    u0 = jnp.asarray(u0)

    def jnp_step(u, nu):
        right, left = jnp.roll(u, -1), jnp.roll(u, 1)
        flux = u * (right - left) / (2.0 * dx)
        return u + dt * (nu * (right - 2.0 * u + left) / dx**2 - flux)

    def scan_energy(u0, nu, remat: bool):
        body = lambda u, _: (jnp_step(u, nu), None)
        body = jax.checkpoint(body) if remat else body
        u, _ = lax.scan(body, u0, None, length=steps)
        return 0.5 * dx * jnp.sum(u**2)

    variants = {
        "jax.grad of lax.scan": jax.jit(
            jax.grad(lambda u, v: scan_energy(u, v, False), argnums=(0, 1))
        ),
        "jax.grad, jax.checkpoint on the scan body": jax.jit(
            jax.grad(lambda u, v: scan_energy(u, v, True), argnums=(0, 1))
        ),
    }
    for s in (None, *SNAPSHOTS):
        g = s2sgrad.grad(energy, wrt=(0, 1), backend="jax", checkpoint=s)
        name = "s2sgrad-jax, no checkpointing" if s is None else f"s2sgrad-jax, binomial, s = {s}"
        # (no checkpointing: the JAX backend reruns this cheap body per step, saving the state)
        variants[name] = jax.jit(lambda u, v, g=g: g(u, v, steps, dt, dx))
    rows, want = [], None
    for name, fn in variants.items():
        compiled = fn.lower(u0, nu).compile()
        temp = compiled.memory_analysis().temp_size_in_bytes
        value = jax.block_until_ready(fn(u0, nu))
        if want is None:
            want = value
        _check(f"{name}, {steps} steps", value, want)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            jax.block_until_ready(fn(u0, nu))
            times.append(time.perf_counter() - start)
        rows.append({"steps": steps, "how": name, "time": min(times), "peak": temp})
        print(f"jax {name} done", file=sys.stderr, flush=True)
    return rows


# --------------------------------------------------------------------------- report


def _mb(b: float) -> str:
    return f"{b / 1e6:,.1f} MB" if b < 1e9 else f"{b / 1e9:,.2f} GB"


def report(n: int, numpy_rows: list[dict], jax_rows: list[dict]) -> str:
    lines = [
        "# Checkpointing: reverse mode through long loops in bounded memory",
        "",
        f"Machine: {machine()}.",
        f"Viscous Burgers, periodic, {n:,}-element state (8 bytes each: {_mb(8 * n)} per state);",
        "the gradient of the final energy with respect to the initial state and the viscosity.",
        "Time: one gradient. Memory: NumPy, the peak allocated during the gradient",
        "(`tracemalloc`); JAX, XLA's temporaries (`memory_analysis()`). Reruns: iterations",
        "rerun per iteration of the loop, counted by the runtime; bound: revolve's r",
        "(n <= C(s + r, s)). Generated by `python -m benchmarks.checkpointing`.",
        "",
        "## NumPy backend",
        "",
        "| steps | reversed by | time | peak memory | reruns / n | bound r |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in numpy_rows:
        reruns = f"{r['reruns']:.2f}" if "reruns" in r else "0"
        bound = str(r["bound"]) if "bound" in r else "—"
        lines.append(
            f"| {r['steps']:,} | {r['how']} | {seconds(r['time'])} | {_mb(r['peak'])} "
            f"| {reruns} | {bound} |"
        )
    unscheduled = [r for r in numpy_rows if r["how"] == "no checkpointing"]
    long_rows = [r for r in numpy_rows if r["steps"] > max(x["steps"] for x in unscheduled)]
    if unscheduled and long_rows:
        last = unscheduled[-1]
        estimate = last["peak"] / last["steps"] * long_rows[0]["steps"]
        lines += [
            "",
            f"Without checkpointing, {long_rows[0]['steps']:,} steps would need about "
            f"{_mb(estimate)} (the {last['steps']:,}-step peak, scaled).",
        ]
    lines += [
        "",
        "The sqrt(n) schedule evaluates each step three times (forward sweep, segment",
        "rerun, and the step's vjp) and holds about 2 sqrt(n) states.",
        "",
        "## JAX backend",
        "",
        "| steps | reversed by | time | XLA temporaries |",
        "|---:|---|---:|---:|",
    ]
    for r in jax_rows:
        lines.append(f"| {r['steps']:,} | {r['how']} | {seconds(r['time'])} | {_mb(r['peak'])} |")
    lines += [
        "",
        "`jax.checkpoint` on a scan body recomputes the body's intermediates but still saves",
        "the carry of every step: its memory grows with the trip count. The binomial",
        "schedule's does not (s + 2 states, plus the schedule's tables: 4 bytes per store).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, checks only")
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args(argv)
    if options.smoke:
        n, steps_list, long_steps, jax_steps = 64, (60,), 120, 60
    else:
        n, steps_list, long_steps, jax_steps = 10_000, (1_000, 10_000), 100_000, 10_000
    numpy_rows = run_numpy(n, steps_list, long_steps)
    jax_rows = run_jax(n, jax_steps)
    text = report(n, numpy_rows, jax_rows)
    print(text)
    if not options.smoke:
        options.output.mkdir(parents=True, exist_ok=True)
        (options.output / "checkpointing.md").write_text(text)
        data = {"n": n, "numpy": numpy_rows, "jax": jax_rows}
        (options.output / "checkpointing.json").write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
