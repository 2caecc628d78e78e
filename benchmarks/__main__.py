"""``python -m benchmarks``: the side-by-side suite (see benchmarks/suite.py).

``python -m benchmarks`` runs every problem at full size and writes the tables and the
plot to benchmarks/results/ (tens of minutes on a 2-core machine). ``--smoke`` runs tiny
sizes with a short timing budget into a temporary directory: every tool's gradient is
checked and the report machinery runs, but its figures mean nothing (what CI runs).
``python -m benchmarks.jax_loops`` is the separate JAX-loops benchmark, and
``python -m benchmarks.second_order`` the one of Hessian-vector products, Jacobians and
Hessians.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks import suite
from benchmarks.problems import NAMES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("names", nargs="*", default=list(NAMES), help=f"problems, of {NAMES}")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, checks only")
    parser.add_argument("--output", type=Path, help="where to write the results")
    args = parser.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    unknown = sorted(set(args.names) - set(NAMES))
    if unknown:
        parser.error(f"unknown problems {unknown}; the problems are {NAMES}")
    if args.smoke:
        output = args.output or Path(tempfile.mkdtemp(prefix="s2sgrad-bench-smoke-"))
        results = suite.run(args.names, size="smoke", min_time=0.001, log=lambda *_: None)
        suite.write(results, output)
        print(f"smoke run: every gradient agrees; report machinery wrote {output}")
        return 0
    results = suite.run(args.names, size="full", log=lambda *a: print(*a, file=sys.stderr))
    print(suite.write(results, args.output or suite.RESULTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
