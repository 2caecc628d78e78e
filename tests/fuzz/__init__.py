"""A differential fuzzer for s2sgrad: random NumPy programs against independent oracles.

``python -m tests.fuzz --count N --seed S [--backend numpy|jax|both] [--jobs J] [--report FILE]``
generates N programs (see ``generator``), checks each with ``grad`` in both modes,
``value_and_grad``, ``jvp`` and ``vjp`` on the chosen backends against ``jax.grad``
of the jnp twin or float64 central differences (see ``check``), minimises every
wrong result and internal traceback (see ``minimize``) and writes a report.
``tests/test_fuzz.py`` runs a fixed-seed sample of it in the test suite.
"""

from tests.fuzz.runner import Summary, fuzz_program, run

__all__ = ["Summary", "fuzz_program", "run"]
