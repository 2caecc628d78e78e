"""Second order, side by side: Hessian-vector products, Jacobians and Hessians against JAX.

``python -m benchmarks.second_order`` measures, in one process on the same inputs:

* **HVP ÷ gradient** on the MLP (the suite's problem, H=64 and 256) and the RK4 loop (200
  steps): s2sgrad's ``hvp`` (forward over reverse through the generated gradient) over
  its ``grad``, on NumPy; the peer is JAX's ``jvp`` of ``grad`` over ``grad``, both
  jitted. The issue's target is a ratio of at most 3.
* **Jacobian of an R^100 → R^100 map** (``tanh(A @ x) * x + 0.1 * roll(x)``): s2sgrad's
  ``jacfwd`` and ``jacrev`` (one batched pass: every basis seed at once,
  ``s2sgrad.runtime.batched``), and 100 separate ``jvp`` calls (what a Jacobian costs
  unbatched), against ``jax.jacfwd`` (jitted).
* **Hessian of a 100-parameter loss** (logistic regression with an L2 term, 200 samples):
  s2sgrad's ``hessian`` (``jacfwd`` of ``grad``, batched), 100 separate ``hvp`` calls, and
  the JAX backend's ``hessian``, against ``jax.hessian`` (jitted).

Every s2sgrad result is first checked against JAX's. Steady-state medians after a warm-up
(``benchmarks.timing``); compile time is not included. Results:
``benchmarks/results/second_order.md``. ``--smoke`` runs tiny sizes, checks only.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import timing
from benchmarks.problems import mlp, rk4

RESULTS = Path(__file__).parent / "results"


# --------------------------------------------------------------------------- objectives


def vector_map(x, A):
    """R^n -> R^n: a layer with a skip term, whose Jacobian is dense."""
    return np.tanh(A @ x) * x + 0.1 * np.roll(x, 1)


def logistic_loss(w, X, y):
    """Mean logistic loss with an L2 term: a 100-parameter loss whose Hessian is dense."""
    z = X @ w
    return np.mean(np.logaddexp(0.0, z) - y * z) + 0.01 * np.sum(w**2)


def _jnp(fn):
    import jax.numpy as jnp

    from benchmarks.twins import rebind

    return rebind(fn, jnp)


# --------------------------------------------------------------------------- measurements


def _check(got, want, what: str) -> None:
    import jax

    got_leaves = jax.tree_util.tree_leaves(got)
    want_leaves = jax.tree_util.tree_leaves(want)
    assert len(got_leaves) == len(want_leaves), what
    for g, w in zip(got_leaves, want_leaves):
        g, w = np.asarray(g), np.asarray(w)
        scale = max(1.0, float(np.max(np.abs(w))))
        if g.shape != w.shape or not np.allclose(g, w, rtol=1e-8, atol=1e-10 * scale):
            raise AssertionError(f"{what}: s2sgrad and JAX disagree")


def hvp_ratio(label: str, loss, jax_loss, args: tuple, static: tuple, min_time: float) -> dict:
    """T(hvp)/T(grad) for s2sgrad on NumPy and for jitted JAX (jvp of grad)."""
    import jax

    import s2sgrad

    v = jax.tree_util.tree_map(lambda a: np.ones_like(a) * 0.1, args[0])
    grad = s2sgrad.grad(loss)
    hvp = s2sgrad.hvp(loss)
    jax_grad = jax.jit(jax.grad(jax_loss), static_argnums=static)

    def jax_hvp_of(*a):
        return jax.jvp(lambda p: jax.grad(jax_loss)(p, *a[1:-1]), (a[0],), (a[-1],))[1]

    jax_hvp = jax.jit(jax_hvp_of, static_argnums=static)
    _check(hvp(*args, v), jax_hvp(*args, v), f"{label} hvp")
    row = {"case": label}
    row["s2sgrad grad"] = timing.steady(lambda: grad(*args), min_time=min_time)
    row["s2sgrad hvp"] = timing.steady(lambda: hvp(*args, v), min_time=min_time)
    row["jax grad"] = timing.steady(lambda: jax_grad(*args), min_time=min_time)
    row["jax hvp"] = timing.steady(lambda: jax_hvp(*args, v), min_time=min_time)
    return row


def jacobian_times(n: int, min_time: float) -> dict:
    import jax

    import s2sgrad

    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, n)
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    want = jax.jit(jax.jacfwd(_jnp(vector_map)))(x, A)
    jacfwd = s2sgrad.jacfwd(vector_map)
    jacrev = s2sgrad.jacrev(vector_map)
    _check(jacfwd(x, A), want, "jacfwd")
    _check(jacrev(x, A), want, "jacrev")
    basis = np.eye(n)

    def separate_jvps():
        return np.stack(
            [s2sgrad.jvp(vector_map, (x, A), (e, np.zeros_like(A)))[1] for e in basis], axis=1
        )

    _check(separate_jvps(), want, "separate jvps")
    on_jax = s2sgrad.jacfwd(vector_map, backend="jax")
    _check(on_jax(x, A), want, "jacfwd, JAX backend")
    jax_jacfwd = jax.jit(jax.jacfwd(_jnp(vector_map)))
    return {
        "case": f"R^{n} -> R^{n}",
        "f": timing.steady(lambda: vector_map(x, A), min_time=min_time),
        "s2sgrad jacfwd": timing.steady(lambda: jacfwd(x, A), min_time=min_time),
        "s2sgrad jacrev": timing.steady(lambda: jacrev(x, A), min_time=min_time),
        f"{n} separate s2sgrad jvps": timing.steady(separate_jvps, min_time=min_time),
        "s2sgrad jacfwd, JAX backend (vmap)": timing.steady(
            lambda: on_jax(x, A), min_time=min_time
        ),
        "jax.jacfwd (jit)": timing.steady(lambda: jax_jacfwd(x, A), min_time=min_time),
    }


def hessian_times(n: int, samples: int, min_time: float) -> dict:
    import jax

    import s2sgrad

    rng = np.random.default_rng(1)
    w = 0.1 * rng.standard_normal(n)
    X = rng.standard_normal((samples, n))
    y = (rng.uniform(size=samples) < 0.5).astype(float)
    hessian = s2sgrad.hessian(logistic_loss)
    jax_hessian = jax.jit(jax.hessian(_jnp(logistic_loss)))
    _check(hessian(w, X, y), jax_hessian(w, X, y), "hessian")
    on_jax = s2sgrad.hessian(logistic_loss, backend="jax")
    _check(on_jax(w, X, y), jax_hessian(w, X, y), "hessian, JAX backend")
    grad = s2sgrad.grad(logistic_loss)
    hvp = s2sgrad.hvp(logistic_loss)
    basis = np.eye(n)

    def separate_hvps():
        return np.stack([hvp(w, X, y, e) for e in basis])

    _check(separate_hvps(), jax_hessian(w, X, y), "separate hvps")
    return {
        "case": f"{n} parameters, {samples} samples",
        "s2sgrad grad": timing.steady(lambda: grad(w, X, y), min_time=min_time),
        "s2sgrad hessian": timing.steady(lambda: hessian(w, X, y), min_time=min_time),
        f"{n} separate s2sgrad hvps": timing.steady(separate_hvps, min_time=min_time),
        "s2sgrad hessian, JAX backend (vmap)": timing.steady(
            lambda: on_jax(w, X, y), min_time=min_time
        ),
        "jax.hessian (jit)": timing.steady(lambda: jax_hessian(w, X, y), min_time=min_time),
    }


def run(size: str = "full", min_time: float = 0.2) -> dict:
    smoke = size == "smoke"
    mlp_cases = [(4, (5, 4, 3, 6))] if smoke else [(64, None), (256, None)]
    hvp_rows = []
    for hidden, shape in mlp_cases:
        args = mlp.inputs(*shape) if shape else mlp.inputs(mlp.FEATURES, hidden, mlp.CLASSES, 32)
        row = hvp_ratio(
            f"MLP H={hidden}", mlp.mlp_loss, _jnp(mlp.mlp_loss), args, (), min_time=min_time
        )
        hvp_rows.append(row)
    steps = 20 if smoke else 200
    hvp_rows.append(
        hvp_ratio(
            f"RK4 {steps} steps",
            rk4.loss,
            rk4.loss_rolled,
            rk4.inputs(steps),
            (3,),
            min_time=min_time,
        )
    )
    n = 5 if smoke else 100
    return {
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "hvp": hvp_rows,
        "jacobian": jacobian_times(n, min_time),
        "hessian": hessian_times(n, 4 * n if smoke else 200, min_time),
    }


def report(results: dict) -> str:
    lines = [
        "# Second order: s2sgrad against JAX",
        "",
        "Generated by `python -m benchmarks.second_order` (see its docstring for what is "
        f"measured). Machine: {results['machine']}. Steady-state medians; s2sgrad runs NumPy, "
        "JAX runs jitted on the CPU. Every s2sgrad result was checked against JAX's first.",
        "",
        "## Hessian-vector product ÷ gradient",
        "",
        "| case | s2sgrad grad | s2sgrad hvp | **hvp ÷ grad** | JAX grad | JAX jvp(grad) | JAX ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["hvp"]:
        ours = r["s2sgrad hvp"] / r["s2sgrad grad"]
        theirs = r["jax hvp"] / r["jax grad"]
        lines.append(
            f"| {r['case']} | {timing.seconds(r['s2sgrad grad'])} | "
            f"{timing.seconds(r['s2sgrad hvp'])} | **{ours:.2f}** | "
            f"{timing.seconds(r['jax grad'])} | {timing.seconds(r['jax hvp'])} | {theirs:.2f} |"
        )
    j = results["jacobian"]
    lines += ["", f"## Jacobian, {j['case']}", "", "| method | time | ÷ f |", "|---|---|---|"]
    for key, value in j.items():
        if key not in ("case", "f"):
            lines.append(f"| {key} | {timing.seconds(value)} | {value / j['f']:.0f} |")
    h = results["hessian"]
    lines += ["", f"## Hessian, {h['case']}", "", "| method | time |", "|---|---|"]
    for key, value in h.items():
        if key != "case":
            lines.append(f"| {key} | {timing.seconds(value)} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.second_order", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, checks only")
    parser.add_argument("--output", type=Path, help="where to write second_order.md")
    args = parser.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    if args.smoke:
        output = args.output or Path(tempfile.mkdtemp(prefix="s2sgrad-bench-smoke-"))
        text = report(run("smoke", min_time=0.001))
        (output / "second_order.md").write_text(text)
        print(f"smoke run: every second derivative agrees with JAX; wrote {output}")
        return 0
    text = report(run("full"))
    (args.output or RESULTS).joinpath("second_order.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
