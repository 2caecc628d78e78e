"""Every example runs, and passes its own gradient check (it exits non-zero otherwise).

Each runs with ``--small``: an example whose full size takes minutes (the long
simulation of ``long_simulation_checkpointing.py``) reads it; the others ignore it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_its_gradient_check_passes(path, tmp_path):
    env = dict(os.environ, S2SGRAD_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, str(path), "--small"], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
