"""``python -m tests.fuzz --count N --seed S [--backend numpy|jax|both] [--jobs J] [--report FILE]``."""

from __future__ import annotations

import argparse
import signal
import sys

from tests.fuzz.runner import BACKENDS, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--count", type=int, default=200, help="programs to generate")
    parser.add_argument("--seed", default="0", help="the run's seed (program i uses SEED-i)")
    parser.add_argument("--start", type=int, default=0, help="index of the first program")
    parser.add_argument("--backend", choices=["numpy", "jax", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--oracle",
        choices=["autograd", "jax"],
        default="autograd",
        help="exact oracle: autograd (fast) or jax.grad of the jnp twin (slow: op-by-op XLA); "
        "programs it cannot take are checked against float64 central differences",
    )
    parser.add_argument("--report", help="write the report here as well as to stdout")
    parser.add_argument("--no-minimise", action="store_true", help="report failures as found")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill PID: a partial report
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    summary = run(
        args.count,
        args.seed,
        backends,
        jobs=args.jobs,
        minimise=not args.no_minimise,
        progress=True,
        start=args.start,
        oracle=args.oracle,
        partial_report=args.report,
    )
    text = summary.report()
    if args.report:
        with open(args.report, "w") as fh:
            fh.write(text)
    sys.stdout.write(text)
    return 1 if summary.total("wrong") or summary.total("crash") else 0


if __name__ == "__main__":
    sys.exit(main())
