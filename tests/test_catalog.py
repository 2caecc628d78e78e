"""docs/operators.md and `s2sgrad rules` come from the registry, and stay in sync with it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from s2sgrad import catalog, cli
from s2sgrad.rules import all_rules

DOC = Path(__file__).parent.parent / "docs" / "operators.md"


def test_docs_page_matches_the_registry():
    assert DOC.read_text() == catalog.markdown(), (
        "docs/operators.md is out of date: regenerate it with "
        "`s2sgrad rules --markdown > docs/operators.md`"
    )


def test_every_registered_primitive_is_listed():
    assert len(catalog.entries()) == len([r for r in all_rules() if r.builtin])
    names = [e.name for e in catalog.entries()]
    assert "np.sin" in names and "a @ b" in names


def test_rules_count_command(capsys):
    assert cli.main(["rules", "--count"]) == 0
    assert int(capsys.readouterr().out) == catalog.count()


def test_at_least_150_numpy_and_scipy_functions_have_rules_in_both_modes():
    assert catalog.count() >= 150


def test_s2sgrad_works_without_scipy(tmp_path):
    """SciPy is optional: blocked, s2sgrad imports, differentiates, and lists no SciPy rules."""
    script = tmp_path / "no_scipy.py"
    script.write_text(textwrap.dedent("""
            import sys
            sys.modules["scipy"] = None  # `import scipy` now raises ImportError
            import numpy as np
            import s2sgrad
            from s2sgrad import catalog


            def f(x):
                return np.sum(x * x)


            assert s2sgrad.grad(f)(np.array([1.0, 2.0])).tolist() == [2.0, 4.0]
            assert not any(e.group == "SciPy" for e in catalog.entries())
            """))
    env = dict(os.environ, S2SGRAD_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
