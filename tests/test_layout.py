"""The package's layout keeps one place per idea: what differs between backends is
asked of the backend's object (``s2sgrad.backends``), never decided by its name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import s2sgrad
from s2sgrad import backends

ROOT = Path(__file__).resolve().parent.parent
# `backend == "jax"`, `backend != 'numpy'`, `if name == "jax"`: a decision by name.
_BY_NAME = re.compile(r"""(backend\w*\s*[!=]=)|([!=]=\s*["'](jax|numpy)["'])""")


def test_no_backend_is_decided_by_its_name_outside_the_backends():
    offenders = []
    for package in ("s2sgrad", "transforms"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "backends" in path.relative_to(ROOT).parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if _BY_NAME.search(line.split("#")[0]):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_every_backend_is_one_object_the_api_and_cli_accept(capsys):
    assert set(backends.BACKENDS) == {"numpy", "jax"}
    for name, backend in backends.BACKENDS.items():
        assert backends.get(name) is backend and backends.get(backend) is backend
    with pytest.raises(s2sgrad.UsageError, match=r"one of \('numpy', 'jax'\), not 'torch'"):
        backends.get("torch")
    from s2sgrad import cli

    with pytest.raises(SystemExit):
        cli.main(["inspect", "--help"])
    assert "--backend {" + ",".join(backends.BACKENDS) + "}" in capsys.readouterr().out


def test_everything_of_the_jax_backend_lives_in_its_package():
    """Only ``s2sgrad/backends/jax/`` imports JAX: runtime, lowering, control, call path."""
    importing = re.compile(r"^\s*(import jax\b|from jax\b)", re.MULTILINE)
    outside = [
        str(path.relative_to(ROOT))
        for package in ("s2sgrad", "transforms")
        for path in sorted((ROOT / package).rglob("*.py"))
        if importing.search(path.read_text())
        and path.relative_to(ROOT).parts[:3] != ("s2sgrad", "backends", "jax")
    ]
    assert not outside, outside
    jax_package = ROOT / "s2sgrad" / "backends" / "jax"
    assert {p.stem for p in jax_package.glob("*.py")} == {
        "__init__",
        "api",
        "control",
        "lowering",
        "masked",
        "masks",
        "none_tests",
        "revolve",
        "runtime",
        "spelling",
    }
    # Its top level imports no JAX (its methods do, once the backend is chosen).
    top_level = ast.parse((jax_package / "__init__.py").read_text()).body
    imported = {
        name.split(".")[0]
        for node in top_level
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
    }
    assert "jax" not in imported, imported
