"""Every notebook in notebooks/ runs top to bottom without an error.

The notebooks check their own results (gradients against finite differences)
with ``assert``, so a wrong result fails here like an exception does. Each one
runs in a fresh kernel of *this* interpreter: the ``python3`` kernel spec is
written by ipykernel for ``sys.executable`` into a private ``JUPYTER_PATH``,
which takes precedence over any ``python3`` spec of the user or the system that
might start another Python (and another s2sgrad). The kernel inherits the
environment, so ``S2SGRAD_CACHE_DIR`` points it at an empty cache.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    jupyter = tmp_path / "jupyter"
    write_kernel_spec(jupyter / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("S2SGRAD_CACHE_DIR", str(tmp_path / "cache"))
    workdir = tmp_path / "work"
    workdir.mkdir()

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    # First make sure the kernel runs this interpreter, so the s2sgrad under test is this one.
    nb.cells.insert(
        0, nbformat.v4.new_code_cell(f"import sys\nassert sys.prefix == {sys.prefix!r}, sys.prefix")
    )
    client = NotebookClient(
        nb,
        timeout=600,
        startup_timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    failure = None
    try:
        client.execute()
    except CellExecutionError as error:  # its message holds the cell's source and traceback
        failure = ANSI_ESCAPE.sub("", str(error))
    if failure is not None:
        pytest.fail(f"{path.name}: {failure}", pytrace=False)


def test_notebooks_are_stored_without_outputs():
    """Outputs are produced by running a notebook, not kept in the repository."""
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{path.name}: cell {index} has outputs"
                assert cell.execution_count is None, f"{path.name}: cell {index} was executed"
