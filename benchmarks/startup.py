"""What the decorator costs in a fresh process: a cold transform, then a warm-cache load.

``python -m benchmarks.startup NAME`` (run by the suite in a child process, with its own
``S2SGRAD_CACHE_DIR``) times ``cache.load_or_generate`` for the problem's gradient, the
step behind a first ``s2sgrad.grad(f)(...)`` call: with an empty cache directory it runs
the compiler and writes the module; run again on the same directory, in a new process, it
imports the cached module. It prints one JSON line: ``{"seconds": ..., "source":
"generated" | "loaded", "objective_lines": <source lines of the objective>}``.
"""

from __future__ import annotations

import inspect
import json
import sys
import time


def transform_seconds(fun, args: tuple, wrt: tuple[int, ...], backend: str = "numpy") -> float:
    """Seconds to get the reverse-mode derivative module of ``fun`` for these arguments:
    the compiler's run with an empty cache, an import with a warm one."""
    from s2sgrad import cache
    from s2sgrad.api import _options

    start = time.perf_counter()
    cache.load_or_generate(fun, "reverse", wrt, backend, _options(args, False, "reverse"))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    name = (argv if argv is not None else sys.argv[1:])[0]
    from benchmarks.problems import load
    from s2sgrad import cache
    from s2sgrad.api import resolve_wrt

    problem = load(name)
    args = problem.cases("smoke")[0].args
    wrt, _ = resolve_wrt(problem.objective, problem.wrt)
    before = dict(cache.stats)
    seconds = transform_seconds(problem.objective, args, wrt)
    source = "generated" if cache.stats["generated"] > before["generated"] else "loaded"
    lines = len(inspect.getsourcelines(problem.objective)[0])
    print(json.dumps({"seconds": seconds, "source": source, "objective_lines": lines}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
