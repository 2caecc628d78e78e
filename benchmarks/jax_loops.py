"""Loops on JAX/XLA: s2sgrad's JAX backend against ``jax.jit(jax.grad(f))``, side by side.

Two problems (see ``benchmarks/problems``):

* **RK4** (a Python ``for`` over time steps). ``jax.grad`` of the jnp twin traces the
  loop, so XLA compiles ``steps`` unrolled copies of the forward and backward bodies:
  compile time grows with the trip count. s2sgrad lowers the loop to one rolled
  ``lax.scan`` whatever the trip count. The hand-rolled ``lax.fori_loop`` twin, which a
  JAX user would have to write, is measured too.
* **Kepler** (a ``while`` loop: Newton's method until every residual is below a
  tolerance). ``jax.grad`` refuses ``lax.while_loop`` in reverse mode; s2sgrad's reverse
  mode records the iterations and runs under jit. The JAX workaround, a ``fori_loop`` of
  a fixed worst-case length, and the hand-derived implicit gradient are measured beside it.

Every gradient is checked against the others before it is timed. The unrolled JAX
compilation runs in a child process with a time budget, because it can take minutes.

Run ``python -m benchmarks.jax_loops`` (about 15 minutes on a 2-core machine, most of it
XLA compiling unrolled loops) or ``python -m benchmarks.jax_loops --smoke`` (seconds, no
timing claims: the correctness checks only). Results go to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import timing
from benchmarks.problems import kepler, rk4
from benchmarks.startup import transform_seconds
from benchmarks.suite import machine

RESULTS = Path(__file__).parent / "results"


def _enable_x64() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)


def _relative_difference(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def _check(what: str, value, reference, rtol: float) -> float:
    error = _relative_difference(value, reference)
    if not error <= rtol:
        raise AssertionError(f"{what}: relative difference {error:.2e} exceeds {rtol:.0e}")
    return error


# --------------------------------------------------------------------------- RK4


def rk4_s2sgrad(steps: int, smoke: bool) -> dict:
    """s2sgrad's JAX backend on the RK4 loss: first call (trace and compile) and steady time."""
    import s2sgrad

    args = rk4.inputs(steps)
    grad = s2sgrad.grad(rk4.loss, wrt="params", backend="jax")
    first, value = timing.first_call(lambda: grad(*args))
    row = {"first": first, "grad": np.asarray(value).tolist()}
    if not smoke:
        row["steady"] = timing.steady(lambda: grad(*args))
    return row


def rk4_jax(steps: int, variant: str, smoke: bool) -> dict:
    """``jax.jit(jax.grad(...))`` of a JAX twin: 'unrolled' (Python for) or 'fori' (hand-rolled)."""
    import jax

    loss_jnp, loss_fori = rk4.jax_twins()
    fun = loss_jnp if variant == "unrolled" else loss_fori
    args = rk4.inputs(steps)
    grad = jax.jit(jax.grad(fun), static_argnums=3)
    first, value = timing.first_call(lambda: grad(*args))
    row = {"first": first, "grad": np.asarray(value).tolist()}
    if not smoke:
        row["steady"] = timing.steady(lambda: grad(*args))
    return row


def rk4_numpy_reference(steps: int) -> np.ndarray:
    """The NumPy backend's gradient: the reference every JAX result must match."""
    import s2sgrad

    return np.asarray(s2sgrad.grad(rk4.loss, wrt="params")(*rk4.inputs(steps)))


def rk4_unrolled_in_child(steps: int, budget: float, smoke: bool) -> dict | None:
    """``rk4_jax(steps, 'unrolled')`` in a child process; None if it overran ``budget``."""
    command = [sys.executable, "-m", "benchmarks.jax_loops", "--child-unrolled", str(steps)]
    if smoke:
        command.append("--smoke")
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=budget, cwd=root, check=True
        )
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_rk4(steps_list, unrolled_steps, budget: float, smoke: bool) -> tuple[float, list, list]:
    transform = transform_seconds(rk4.loss, rk4.inputs(steps_list[0]), (0,), backend="jax")
    rows = []
    for steps in steps_list:
        reference = rk4_numpy_reference(steps)
        ours = rk4_s2sgrad(steps, smoke)
        fori = rk4_jax(steps, "fori", smoke)
        error = _check(
            f"s2sgrad JAX vs NumPy backend, {steps} steps", ours["grad"], reference, 1e-9
        )
        _check(f"jax fori_loop twin vs NumPy backend, {steps} steps", fori["grad"], reference, 1e-9)
        rows.append({"steps": steps, "s2sgrad": ours, "fori": fori, "error": error})
        print(f"rk4 {steps} steps: s2sgrad {ours}, fori {fori}", file=sys.stderr, flush=True)
    unrolled = []
    for steps in unrolled_steps:
        row = rk4_unrolled_in_child(steps, budget, smoke)
        if row is not None:
            _check(
                f"jax.grad unrolled vs NumPy backend, {steps} steps",
                row["grad"],
                rk4_numpy_reference(steps),
                1e-9,
            )
        unrolled.append({"steps": steps, "jax": row})
        print(f"rk4 unrolled {steps} steps: {row}", file=sys.stderr, flush=True)
        if row is None:
            break  # compile time only grows with the trip count
    return transform, rows, unrolled


# --------------------------------------------------------------------------- Kepler


def run_kepler(points: int, smoke: bool) -> dict:
    import jax

    import s2sgrad

    args = kepler.inputs(points)
    reference = kepler.implicit_gradient(*args)
    result: dict = {"points": points, "iterations": newton_iterations(args)}

    ours = s2sgrad.grad(kepler.orbit_loss, wrt=("e", "mean_anomaly"), backend="jax")
    first, value = timing.first_call(lambda: ours(*args))
    result["error"] = max(
        _check("s2sgrad JAX d/de vs implicit", value[0], reference[0], 1e-8),
        _check("s2sgrad JAX d/dM vs implicit", value[1], reference[1], 1e-8),
    )
    result["s2sgrad"] = {"first": first}

    numpy_grad = s2sgrad.grad(kepler.orbit_loss, wrt=("e", "mean_anomaly"))
    value = numpy_grad(*args)
    _check("s2sgrad NumPy d/dM vs implicit", value[1], reference[1], 1e-8)

    loss_while, loss_fori = kepler.jax_twins()
    try:
        jax.jit(jax.grad(loss_while, argnums=(0, 1)))(*args)
        result["while_refused"] = None
    except ValueError as exc:
        result["while_refused"] = str(exc).splitlines()[0]

    fixed = jax.jit(jax.grad(loss_fori, argnums=(0, 1)))
    first, value = timing.first_call(lambda: fixed(*args))
    _check("jax fori twin d/dM vs implicit", value[1], reference[1], 1e-8)
    result["fori"] = {"first": first}

    if not smoke:
        result["s2sgrad"]["steady"] = timing.steady(lambda: ours(*args))
        result["fori"]["steady"] = timing.steady(lambda: fixed(*args))
        result["numpy"] = {"steady": timing.steady(lambda: numpy_grad(*args))}
        result["implicit"] = {"steady": timing.steady(lambda: kepler.implicit_gradient(*args))}
    return result


def newton_iterations(args: tuple) -> int:
    """How many Newton steps ``solve_kepler`` takes on these inputs (for the report)."""
    e, mean_anomaly, _, _, tol = args
    anomaly = mean_anomaly + e * np.sin(mean_anomaly)
    count = 0
    while np.max(np.abs(anomaly - e * np.sin(anomaly) - mean_anomaly)) > tol:
        anomaly = anomaly - (anomaly - e * np.sin(anomaly) - mean_anomaly) / (
            1.0 - e * np.cos(anomaly)
        )
        count += 1
    return count


# --------------------------------------------------------------------------- report


def _t(row: dict | None, key: str) -> str:
    return timing.seconds(row[key]) if row and key in row else "—"


def report(transform: float, rk4_rows, unrolled, kepler_result, budget: float) -> str:
    lines = [
        "# Loops on JAX/XLA: s2sgrad's JAX backend vs `jax.jit(jax.grad(f))`",
        "",
        f"Machine: {machine()}.",
        "First call = trace + compile + one run. Steady = median per call after warm-up.",
        f"s2sgrad wrote the RK4 derivative module in {timing.seconds(transform)} (cold cache,",
        "once for every trip count: `steps` is a static argument, not part of the code).",
        "Generated by `python -m benchmarks.jax_loops`.",
        "",
        "## RK4 gradient (Lotka–Volterra, 4 parameters, Python `for` over steps)",
        "",
        "| steps | s2sgrad first call | s2sgrad steady | jax.grad, hand-written"
        " `fori_loop`: first | steady | s2sgrad / fori steady |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rk4_rows:
        ours, fori = row["s2sgrad"], row["fori"]
        ratio = f"{ours['steady'] / fori['steady']:.2f}" if "steady" in ours else "—"
        lines.append(
            f"| {row['steps']:,} | {_t(ours, 'first')} | {_t(ours, 'steady')} | "
            f"{_t(fori, 'first')} | {_t(fori, 'steady')} | {ratio} |"
        )
    lines += [
        "",
        "`jax.jit(jax.grad(f))` on the same loop written with a Python `for` (the jnp twin of",
        "the source s2sgrad reads): JAX traces the loop, so XLA compiles every step, forward",
        f"and backward. Each size runs in a child process with a budget of {budget:.0f} s.",
        "",
        "| steps | jax.jit(jax.grad) first call | steady |",
        "|---:|---:|---:|",
    ]
    for row in unrolled:
        jax_row = row["jax"]
        if jax_row is None:
            lines.append(f"| {row['steps']:,} | not done in {budget:.0f} s | — |")
        else:
            lines.append(f"| {row['steps']:,} | {_t(jax_row, 'first')} | {_t(jax_row, 'steady')} |")
    attempted = {row["steps"] for row in unrolled}
    skipped = [row["steps"] for row in rk4_rows if row["steps"] not in attempted]
    if skipped:
        why = (
            "a smaller size already overran the budget"
            if unrolled and unrolled[-1]["jax"] is None
            else "compile time grows faster than the trip count: see the sizes above"
        )
        lines.append(f"| {', '.join(f'{s:,}' for s in skipped)} | not attempted ({why}) | — |")
    k = kepler_result
    lines += [
        "",
        f"## `while` solver in reverse mode under jit (Kepler's equation, {k['points']:,} points)",
        "",
        f"Newton's method runs until every residual is below 1e-12 ({k['iterations']} "
        "iterations on these inputs); the gradient is with respect to the eccentricity and "
        "every mean anomaly.",
        "",
        "| method | first call | steady |",
        "|---|---:|---:|",
        f'| s2sgrad `backend="jax"`, reverse through the `while` loop | '
        f"{_t(k['s2sgrad'], 'first')} | {_t(k['s2sgrad'], 'steady')} |",
        f"| `jax.grad` of the `lax.while_loop` twin | refused: "
        f"{(k['while_refused'] or 'accepted').rstrip('.')} | — |",
        f"| `jax.grad` of a `fori_loop` of a fixed {kepler.FIXED_ITERATIONS} iterations | "
        f"{_t(k['fori'], 'first')} | {_t(k['fori'], 'steady')} |",
        f"| s2sgrad NumPy backend | — | {_t(k.get('numpy'), 'steady')} |",
        f"| implicit-function gradient derived by hand (NumPy) | — | "
        f"{_t(k.get('implicit'), 'steady')} |",
        "",
        f"s2sgrad's gradient matches the implicit-function gradient to {k['error']:.1e} "
        "(max relative difference).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--unrolled-steps", type=int, nargs="+", default=[10, 20, 40, 100])
    parser.add_argument("--unrolled-budget", type=float, default=600.0)
    parser.add_argument("--points", type=int, default=1_000)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, checks only")
    parser.add_argument("--output", type=Path, default=RESULTS / "jax_loops.md")
    parser.add_argument("--child-unrolled", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _enable_x64()
    if args.child_unrolled is not None:
        print(json.dumps(rk4_jax(args.child_unrolled, "unrolled", args.smoke)))
        return 0
    if args.smoke:
        args.steps, args.unrolled_steps, args.points = [5, 50], [5], 20
    os.environ.setdefault("S2SGRAD_CACHE_DIR", tempfile.mkdtemp(prefix="s2sgrad-bench-"))
    transform, rk4_rows, unrolled = run_rk4(
        args.steps, args.unrolled_steps, args.unrolled_budget, args.smoke
    )
    kepler_result = run_kepler(args.points, args.smoke)
    text = report(transform, rk4_rows, unrolled, kepler_result, args.unrolled_budget)
    if args.smoke:
        print("smoke run: every gradient agrees; no timings written")
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
