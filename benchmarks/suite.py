"""The side-by-side suite: every problem, every tool, in one process on the same inputs.

For each problem and size it measures T(f), the objective (NumPy; for the JAX tool the
jitted jnp twin), and for each tool T(grad), the steady-state median per gradient after
a warm-up, then reports T(grad)/T(f) and the ratio of s2sgrad to each peer. Before
timing, every tool's gradient is checked against s2sgrad's and finite differences
(``benchmarks.check``). In child processes with a fresh cache directory it also measures
what the decorator costs: the cold transform, and the warm-cache load in a new process.

Results: ``benchmarks/results/suite.md`` (tables), ``suite.json`` (the raw figures) and
``suite.png`` (T(grad)/T(f) per tool, log scale).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import check, timing, tools
from benchmarks.problems import NAMES, load

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def measure_case(problem, case, min_time: float, errors: dict) -> dict:
    """T(f) and each tool's first-call and steady T(grad) on one case; a tool whose
    gradient the check did not find right (``errors``) is not timed. The steady times
    are taken in turns (``timing.steady_together``): the ratios compare like with like.

    The first call includes making the gradient function (tangent-ad transforms then;
    s2sgrad compiles at its first call, which the check made already in this process:
    the startup table has its cold transform)."""
    row: dict = {"case": case.label, "f": {}, "grad": {}, "first": {}, "compiled": {}}
    timed: dict = {}  # what is timed in turns, below: ("f", kind) and ("grad", tool)
    for kind in ("numpy", "jax"):
        fn = tools.objective(problem, "jax" if kind == "jax" else "s2sgrad")
        if fn is not None:
            timed["f", kind] = lambda fn=fn: fn(*case.args)
    for tool in tools.TOOLS:
        if not check.usable(errors, tool):
            continue
        made: dict = {}

        def first(tool=tool, made=made):
            made["g"] = tools.gradient(problem, tool)
            return None if made["g"] is None else made["g"](*case.args)

        seconds, _ = timing.first_call(first)
        g = made["g"]
        if g is None:
            continue
        row["first"][tool] = seconds
        timed["grad", tool] = lambda g=g: g(*case.args)
        if tool in ("s2sgrad-jax", "jax"):
            row["compiled"][tool] = tools.compiled_cost(problem, g, case.args)
    for (kind, name), t in timing.steady_together(timed, min_time=min_time).items():
        row[kind][name] = t
    return row


def startup(name: str) -> dict:
    """Cold transform and warm-cache load of the problem's gradient, each in a new process."""
    with tempfile.TemporaryDirectory(prefix="s2sgrad-startup-") as directory:
        env = dict(os.environ, S2SGRAD_CACHE_DIR=directory)
        runs = []
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.startup", name],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=env,
                check=True,
            )
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    return {"cold": cold["seconds"], "warm": warm["seconds"], "lines": cold["objective_lines"]}


def run(names=NAMES, size: str = "full", min_time: float = 0.2, log=print) -> dict:
    names = list(names)
    results = {"machine": machine(), "size": size, "problems": []}
    for name in names:
        problem = load(name)
        errors = check.check(problem, size)
        entry = {
            "name": name,
            "title": problem.name,
            "vectorized": problem.vectorized,
            "errors": errors,
            "why_not": problem.why_not,
            # Two child processes each: at the smoke size, once is enough to test it.
            "startup": startup(name) if size == "full" or name == names[0] else None,
            "cases": [],
        }
        for case in problem.cases(size):
            entry["cases"].append(measure_case(problem, case, min_time, errors[case.label]))
            log(f"{name} {case.label}: {entry['cases'][-1]['grad']}")
        results["problems"].append(entry)
    return results


def machine() -> str:
    import jax
    import numpy as np

    device = jax.devices()[0]
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"NumPy {np.__version__} (BLAS threads: {blas_threads()}), JAX {jax.__version__} on "
        f"{device.platform.upper()}, x64"
    )


def blas_threads() -> str:
    """The BLAS thread setting NumPy started with (benchmarks/__init__.py sets 1)."""
    return os.environ.get("OPENBLAS_NUM_THREADS", "default")


# --------------------------------------------------------------------------- report

PEERS = {"s2sgrad": ("autograd", "tangent-ad", "hand"), "s2sgrad-jax": ("jax",)}


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "—"


def markdown(results: dict) -> str:
    lines = [
        "# s2sgrad side by side",
        "",
        f"Machine: {results['machine']}. Size: {results['size']}.",
        "",
        "T(f) is the objective (NumPy; for JAX the jitted twin). T(grad) is the median time",
        "per gradient in steady state (warm-up first); the functions of a case are timed in",
        "turns, one batch each per round, so a change in the machine's load moves them alike.",
        "`/f` is T(grad)/T(f) against the matching T(f). The last columns compare s2sgrad (NumPy backend) with autograd,",
        "tangent-ad and the hand-written gradient, and s2sgrad's JAX backend with",
        "`jax.jit(jax.grad)` (below 1: s2sgrad is faster). Every gradient was checked against",
        "s2sgrad's and finite differences first; a peer that cannot differentiate a problem,",
        "or gets it wrong, is listed below the tables instead. Generated by",
        "`python -m benchmarks`.",
        "",
        "| problem | case | T(f) | s2sgrad | /f | s2sgrad-jax | /f | autograd | jax |"
        " tangent-ad | hand | s2sgrad ÷ autograd | s2sgrad ÷ tangent-ad | s2sgrad ÷ hand |"
        " s2sgrad-jax ÷ jax |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in results["problems"]:
        for row in p["cases"]:
            f, g = row["f"], row["grad"]
            t = {tool: g.get(tool) for tool in tools.TOOLS}

            def shown(tool, t=t):
                return timing.seconds(t[tool]) if t[tool] is not None else "—"

            lines.append(
                f"| {p['title']} | {row['case']} | {timing.seconds(f['numpy'])} | "
                f"{shown('s2sgrad')} | {_ratio(t['s2sgrad'], f.get('numpy'))} | "
                f"{shown('s2sgrad-jax')} | {_ratio(t['s2sgrad-jax'], f.get('jax'))} | "
                f"{shown('autograd')} | {shown('jax')} | {shown('tangent-ad')} | "
                f"{shown('hand')} | {_ratio(t['s2sgrad'], t['autograd'])} | "
                f"{_ratio(t['s2sgrad'], t['tangent-ad'])} | {_ratio(t['s2sgrad'], t['hand'])} | "
                f"{_ratio(t['s2sgrad-jax'], t['jax'])} |"
            )
    lines += [
        "",
        "## What the decorator costs (fresh process, NumPy backend)",
        "",
        "Cold: the compiler runs and writes the cached module. Warm: a new process imports it.",
        "",
        "| problem | objective lines | cold transform | warm-cache load |",
        "|---|---:|---:|---:|",
    ]
    for p in results["problems"]:
        s = p["startup"]
        if s is None:
            continue
        lines.append(
            f"| {p['title']} | {s['lines']} | {timing.seconds(s['cold'])} | "
            f"{timing.seconds(s['warm'])} |"
        )
    lines += _compiled_costs(results)
    firsts = ("autograd", "jax", "tangent-ad")
    lines += [
        "",
        "## First call in the process (making the gradient function included)",
        "",
        "s2sgrad compiled already for the check: its cold transform, in a new process, is",
        "the table above's. The jax column includes tracing and XLA's compilation,",
        "tangent-ad's its transform (its in-process cache emptied first).",
        "",
        "| problem | case | " + " | ".join(firsts) + " |",
        "|---|---|" + "---:|" * len(firsts),
    ]
    for p in results["problems"]:
        for row in p["cases"]:
            shown = [
                timing.seconds(row["first"][tool]) if tool in row["first"] else "—"
                for tool in firsts
            ]
            lines.append(f"| {p['title']} | {row['case']} | " + " | ".join(shown) + " |")
    notes = [
        (p["title"], tool, why) for p in results["problems"] for tool, why in p["why_not"].items()
    ]
    notes += sorted(
        {
            (p["title"], tool, why)
            for p in results["problems"]
            for errors in p["errors"].values()
            for tool, why in errors.items()
            if isinstance(why, str)
        }
    )
    if notes:
        lines += ["", "## Tools left out", ""]
        lines += [f"- {title}, {tool}: {why}" for title, tool, why in notes]
    lines.append("")
    return "\n".join(lines)


def _compiled_costs(results: dict) -> list[str]:
    """The two JAX programs of each case side by side, as XLA's cost analysis counts them."""
    lines = [
        "",
        "## The JAX programs compared (XLA's cost analysis)",
        "",
        "What the compiled gradient computes and moves, for s2sgrad's JAX backend and",
        "`jax.jit(jax.grad)`: counts, not timings, so the same on every run. Where the",
        "two programs do the same work, their time ratio above is 1 give or take this",
        "machine's noise (a ratio moves by up to 15% from run to run on a shared 2-core",
        "machine, for code that did not change).",
        "",
        "| problem | case | flops, s2sgrad-jax | jax | transcendentals, s2sgrad-jax | jax |"
        " bytes accessed, s2sgrad-jax | jax |",
        "|---|---|" + "---:|" * 6,
    ]

    def count(x: float) -> str:
        return f"{x:,.0f}"

    for p in results["problems"]:
        for row in p["cases"]:
            costs = row.get("compiled", {})
            if {"s2sgrad-jax", "jax"} - set(costs):
                continue
            s, j = costs["s2sgrad-jax"], costs["jax"]
            lines.append(
                f"| {p['title']} | {row['case']} | "
                + " | ".join(
                    f"{count(s[k])} | {count(j[k])}" for k in ("flops", "transcendentals", "bytes")
                )
                + " |"
            )
    return lines


def plot(results: dict, path: Path) -> None:
    """Grouped bars of T(grad)/T(f) per case and tool, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, series = [], {tool: [] for tool in tools.TOOLS}
    for p in results["problems"]:
        for row in p["cases"]:
            case = row["case"] if len(row["case"]) <= 14 else row["case"].split(",")[0][:14]
            labels.append(f"{p['name']}\n{case}")
            for tool in tools.TOOLS:
                base = row["f"].get("jax" if tool in ("jax", "s2sgrad-jax") else "numpy")
                value = row["grad"].get(tool)
                series[tool].append(value / base if value is not None and base else float("nan"))
    width = 0.8 / len(tools.TOOLS)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(labels)), 4.5))
    for k, tool in enumerate(tools.TOOLS):
        xs = [i + (k - (len(tools.TOOLS) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, series[tool], width, label=tool)
    ax.set_yscale("log")
    ax.axhline(3.0, color="gray", linestyle="--", linewidth=0.8)
    ax.set_ylabel("T(grad) / T(f)")
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_title("Gradient cost relative to the objective (lower is better; dashed: 3)")
    ax.legend(fontsize=8, ncols=len(tools.TOOLS))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(results: dict, directory: Path = RESULTS) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    text = markdown(results)
    (directory / "suite.md").write_text(text)
    (directory / "suite.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, directory / "suite.png")
    return text
