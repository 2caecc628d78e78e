"""The benchmarks' smoke runs: every tool's gradient checked against the others at tiny
sizes (no timing claims), so the benchmark code cannot rot between full runs."""

from __future__ import annotations

from benchmarks import jax_loops


def test_jax_loops_smoke(capsys):
    assert jax_loops.main(["--smoke"]) == 0
    assert "every gradient agrees" in capsys.readouterr().out


def test_suite_smoke(tmp_path, capsys):
    """Every problem, every tool: gradients agree at tiny sizes; the report and plot are written."""
    from benchmarks.__main__ import main

    assert main(["--smoke", "--output", str(tmp_path)]) == 0
    assert "every gradient agrees" in capsys.readouterr().out
    assert {"suite.md", "suite.json", "suite.png"} <= {p.name for p in tmp_path.iterdir()}
    # The JAX programs' costs, one row per case that both JAX tools differentiate.
    report = (tmp_path / "suite.md").read_text()
    costs = report.split("## The JAX programs compared")[1].split("\n## ")[0]
    assert costs.count("\n| Rosenbrock |") == 1 and costs.count("\n| LSTM (ADBench) |") == 1


def test_second_order_smoke(tmp_path, capsys):
    """Hessian-vector products, Jacobians and Hessians agree with JAX at tiny sizes."""
    from benchmarks import second_order

    assert second_order.main(["--smoke", "--output", str(tmp_path)]) == 0
    assert "every second derivative agrees with JAX" in capsys.readouterr().out
    assert (tmp_path / "second_order.md").is_file()


def test_compile_time_smoke(tmp_path, capsys):
    """The growth series runs (small sizes, new processes) and every gradient is right."""
    from benchmarks import compile_time

    assert compile_time.main(["--smoke", "--output", str(tmp_path)]) == 0
    assert "every gradient agrees" in capsys.readouterr().out
    assert (tmp_path / "compile_time.md").is_file()


def test_checkpointing_smoke(tmp_path, capsys):
    """Every way of reversing the long loop checked against the unscheduled gradient."""
    from benchmarks import checkpointing

    assert checkpointing.main(["--smoke", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "binomial, s = 20" in out and "jax.checkpoint on the scan body" in out
