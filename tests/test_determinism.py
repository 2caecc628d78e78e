"""Generated code is deterministic: the same function gives the same module text in every
process. The JAX lowering once ordered a loop's or branch's state by a set's iteration
order, so the text changed with ``PYTHONHASHSEED`` (and a second process's cache entry
was written with other bytes under the same key)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_SCRIPT = """
from s2sgrad import pipeline
from tests.programs import control_flow as P

for name, specs in P.ARGS.items():
    wrt = tuple(i for i, spec in enumerate(specs) if spec[:1] != ("int",))[:1]
    for mode in ("reverse", "forward"):
        try:
            text = pipeline.generate(getattr(P, name), mode=mode, wrt=wrt, backend="jax").source
        except Exception as exc:  # refused forms: the refusal must be deterministic too
            text = f"{type(exc).__name__}: {exc}"
        print(f"=== {name} {mode}")
        print(text)
"""


def _generated(seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=seed)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_jax_modules_do_not_depend_on_the_hash_seed():
    first, second = _generated("0"), _generated("1")
    assert first.count("=== ") > 20
    assert first == second
