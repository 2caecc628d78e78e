"""Generate, check and minimise many programs; count what happened; write the report."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.fuzz import check as chk
from tests.fuzz.generator import generate
from tests.fuzz.minimize import minimize

BACKENDS = ("numpy", "jax")
_MINIMISED: dict = (
    {}
)  # (backend, check, key) -> seed: minimise each kind of failure once per process

# Refusals of programs the generator cannot tell apart in advance, by a rule the docs
# state: an in-place update (``w *= t``, ``w[i] = v``) while a view of ``w`` is read
# later, which NumPy changes too (docs/python-subset.md, the aliasing rule).
DOCUMENTED_REFUSALS = ("may share memory with it",)


def fuzz_program(
    seed: str,
    backends: tuple,
    directory: str,
    minimise: bool = True,
    budget_s: float = 120.0,
    oracle: str = "autograd",
    probe_rate: float = 0.02,
    checks: tuple = chk.CHECKS,
) -> dict:
    """Check the program of ``seed`` on ``backends``: its outcomes and minimised failures."""
    program = generate(seed, probe_rate)
    result: dict = {"seed": seed, "features": sorted(program.features), "failures": []}
    try:
        prep = chk.prepare(program, directory, oracle)
    except chk.Rejected as exc:
        result["rejected"] = str(exc)
        return result
    try:
        outcomes = chk.run_checks(prep, backends, checks)
    finally:
        chk.unload(prep.modules)
    result["oracle"] = prep.oracle
    # The twin disagreed with stable central differences, and the checks that disagreed
    # with the twin were judged against those (check.differences_instead).
    result["differences_instead"] = bool(prep.differences)
    if program.expect_refusal:
        result["probe"] = program.expect_refusal
        for o in outcomes:
            if o.status == "ok":
                o.status, o.key = "accepted-probe", f"accepted: {program.expect_refusal}"
    seen = set()
    for o in outcomes:
        if o.status not in ("wrong", "crash") or (o.backend, o.key) in seen:
            continue
        shrunk = None
        if minimise and o.backend == "jax" and o.status == "wrong":
            # Always minimised: only a small program can show it is XLA's doing.
            shrunk = minimize(program, o, directory, budget_s, oracle=oracle)
            minimised = dataclasses.replace(program, source=shrunk[0])
            if chk.as_jitted_jax_computes_it(minimised, o.check, directory):
                for other in outcomes:  # the program's other checks show the same thing
                    if other.backend == "jax" and other.status == "wrong":
                        other.status, other.key = "xla", f"as jax.jit computes it: {other.check}"
                result["xla"] = shrunk[0]
                continue
        seen.add((o.backend, o.key))
        failure = {"backend": o.backend, "check": o.check, "status": o.status, "key": o.key}
        failure["detail"] = o.detail
        failure["source"] = program.source
        failure["args"] = repr(program.args)
        if shrunk is not None:
            failure["minimised"], failure["tries"] = shrunk
        elif minimise and result["failures"]:  # one minimisation per program is enough
            failure["note"] = f"not minimised: see this program's {result['failures'][0]['check']}"
        elif minimise and (o.backend, o.check, o.key) in _MINIMISED:
            failure["note"] = (
                f"not minimised: same class as seed {_MINIMISED[o.backend, o.check, o.key]}"
            )
        elif minimise:
            _MINIMISED[o.backend, o.check, o.key] = seed
            failure["minimised"], failure["tries"] = minimize(
                program, o, directory, budget_s, oracle=oracle
            )
        result["failures"].append(failure)
    result["outcomes"] = [(o.backend, o.check, o.status, o.key) for o in outcomes]
    return result


@dataclass
class Summary:
    programs: int = 0
    rejected: Counter = field(default_factory=Counter)
    oracles: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)  # (backend, check, status)
    refusals: Counter = field(default_factory=Counter)  # (backend, key)
    refusal_examples: dict = field(default_factory=dict)
    features: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)
    probes: Counter = field(default_factory=Counter)
    xla_programs: dict = field(default_factory=dict)  # seed -> minimised program ("xla")
    differences_instead: list = field(default_factory=list)  # seeds (check.differences_instead)
    seconds: float = 0.0
    interrupted: bool = False
    partial_report: str | None = None  # rewritten every 100 programs while the run goes on

    def add(self, result: dict) -> None:
        self.programs += 1
        if "rejected" in result:
            self.rejected[result["rejected"]] += 1
            return
        self.oracles[result["oracle"]] += 1
        if result.get("differences_instead"):
            self.differences_instead.append(result["seed"])
        self.features.update(result["features"])
        if "probe" in result:
            self.probes[result["probe"]] += 1
        for backend, check, status, key in result["outcomes"]:
            self.counts[(backend, check, status)] += 1
            if status == "refused":
                expected = "probe" in result or any(r in key for r in DOCUMENTED_REFUSALS)
                self.refusals[(backend, key, expected)] += 1
                self.refusal_examples.setdefault((backend, key), result["seed"])
        self.failures += [dict(f, seed=result["seed"]) for f in result["failures"]]
        if "xla" in result:
            self.xla_programs[result["seed"]] = result["xla"]

    def total(self, status: str) -> int:
        return sum(n for (_, _, s), n in self.counts.items() if s == status)

    def report(self) -> str:
        checked = self.programs - sum(self.rejected.values())
        lines = [
            f"s2sgrad differential fuzzer: {self.programs} programs generated, "
            f"{checked} checked, {sum(self.rejected.values())} rejected as ill-defined, "
            f"{self.seconds:.0f} s" + (" (INTERRUPTED: partial run)" if self.interrupted else ""),
            f"oracles: {dict(self.oracles)}",
            "programs whose twin disagreed with stable central differences, checks judged "
            f"against those: {len(self.differences_instead)}"
            + (
                f" (seeds {', '.join(self.differences_instead[:10])})"
                if self.differences_instead
                else ""
            ),
            "",
            f"{'backend':8} {'check':17} {'ok':>7} {'wrong':>6} {'refused':>8} {'crash':>6} "
            f"{'accepted-probe':>15} {'xla':>4}",
        ]
        keys = sorted({(b, c) for b, c, _ in self.counts})
        for b, c in keys:
            n = [self.counts[(b, c, s)] for s in ("ok", "wrong", "refused", "crash")]
            n += [self.counts[(b, c, "accepted-probe")], self.counts[(b, c, "xla")]]
            lines.append(f"{b:8} {c:17} {n[0]:7} {n[1]:6} {n[2]:8} {n[3]:6} {n[4]:15} {n[5]:4}")
        lines.append(
            f"total checks: {sum(self.counts.values())}; ok {self.total('ok')}, "
            f"wrong {self.total('wrong')}, refused {self.total('refused')}, "
            f"crash {self.total('crash')}, xla {self.total('xla')} (differs from the eager "
            "oracle exactly as jax.jit of jax.grad/jvp/vjp of the jnp twin does)"
        )
        lines += ["", "rejected programs, by reason:"]
        lines += [f"  {n:6}  {r}" for r, n in self.rejected.most_common()]
        lines += ["", "refusals (S2SGradError), by backend and message kind:"]
        for (b, key, probe), n in sorted(self.refusals.items(), key=lambda kv: -kv[1]):
            tag = (
                "expected: a probe, or a documented rule"
                if probe
                else "SUSPICIOUS: generator believes supported"
            )
            example = self.refusal_examples.get((b, key))
            lines.append(f"  {n:6}  {b:5}  {key}   [{tag}; e.g. seed {example}]")
        lines += ["", f"refusal probes generated: {dict(self.probes)}"]
        lines += [
            "",
            "programs where the JAX backend differs from the eager oracle exactly as jax.jit of "
            f"the jnp twin does (xla), minimised: {len(self.xla_programs)}",
        ]
        for seed, source in self.xla_programs.items():
            lines += ["", f"xla  seed={seed}", source.rstrip()]
        lines += ["", "features exercised (programs):"]
        lines += [f"  {n:6}  {f}" for f, n in self.features.most_common()]
        lines += ["", f"failures (wrong or crash), minimised: {len(self.failures)}"]
        for f in self.failures:
            lines += [
                "",
                "=" * 78,
                f"{f['status'].upper()}  backend={f['backend']}  check={f['check']}  "
                f"seed={f['seed']}  ({f['key']})",
                f["detail"].rstrip(),
                f.get("note", ""),
                f"args: {f['args']}",
                "minimised program:" if "minimised" in f else "program:",
                f.get("minimised", f["source"]).rstrip(),
            ]
        return "\n".join(lines) + "\n"


# Each checked JAX program compiles a few XLA executables (about 200 memory maps). Until
# s2sgrad's memos stopped keeping dropped functions alive, none was ever freed, and a
# one-process run passed Linux's vm.max_map_count (65,530) near program 400: LLVM failed
# to allocate and the process segfaulted. Workers are still replaced this often, so
# whatever JAX's own caches keep can never build up to that.
PROGRAMS_PER_PROCESS = 150
_CHUNK = 2  # programs handed to a worker at a time

_DIR: str | None = None


def _init_worker() -> None:
    global _DIR
    _DIR = tempfile.mkdtemp(prefix="s2sgrad-fuzz-")


def _work(job: tuple) -> dict:
    seed, backends, minimise, oracle, probe_rate, checks = job
    return fuzz_program(
        seed, backends, _DIR, minimise, oracle=oracle, probe_rate=probe_rate, checks=checks
    )


def run(
    count: int,
    seed: int | str = 0,
    backends: tuple = BACKENDS,
    jobs: int = 1,
    minimise: bool = True,
    progress: bool = False,
    start: int = 0,
    oracle: str = "autograd",
    probe_rate: float = 0.02,
    partial_report: str | None = None,
    checks: tuple = chk.CHECKS,
) -> Summary:
    """Fuzz programs ``start .. start + count - 1`` of run ``seed`` in a private s2sgrad cache
    (``checks``: which of ``check.CHECKS`` to run)."""
    t0 = time.monotonic()
    summary = Summary(partial_report=partial_report)
    cache_dir = tempfile.mkdtemp(prefix="s2sgrad-fuzz-cache-")
    work_dir = tempfile.mkdtemp(prefix="s2sgrad-fuzz-")
    old = os.environ.get("S2SGRAD_CACHE_DIR")
    os.environ["S2SGRAD_CACHE_DIR"] = os.path.join(cache_dir, "cache")
    jobs_list = [
        (f"{seed}-{i}", tuple(backends), minimise, oracle, probe_rate, tuple(checks))
        for i in range(start, start + count)
    ]
    try:
        if jobs <= 1 and count <= PROGRAMS_PER_PROCESS:
            global _DIR
            _DIR = work_dir
            results = map(_work, jobs_list)
            _report_progress(results, summary, count, t0, progress)
        else:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(
                max(jobs, 1),
                initializer=_init_worker,
                maxtasksperchild=PROGRAMS_PER_PROCESS // _CHUNK,
            ) as pool:
                results = pool.imap_unordered(_work, jobs_list, chunksize=_CHUNK)
                _report_progress(results, summary, count, t0, progress)
    finally:
        if old is None:
            os.environ.pop("S2SGRAD_CACHE_DIR", None)
        else:
            os.environ["S2SGRAD_CACHE_DIR"] = old
        shutil.rmtree(cache_dir, ignore_errors=True)
        shutil.rmtree(work_dir, ignore_errors=True)
    summary.seconds = time.monotonic() - t0
    return summary


def _report_progress(results, summary: Summary, count: int, t0: float, progress: bool) -> None:
    try:
        _consume(results, summary, count, t0, progress)
    except KeyboardInterrupt:  # ^C or SIGTERM (see __main__): report what ran
        summary.interrupted = True


def _consume(results, summary: Summary, count: int, t0: float, progress: bool) -> None:
    for k, result in enumerate(results, 1):
        summary.add(result)
        if summary.partial_report and k % 100 == 0:
            summary.seconds = time.monotonic() - t0
            with open(summary.partial_report, "w") as fh:
                fh.write(f"(partial: {k} of {count} programs)\n" + summary.report())
        if progress and (k % 50 == 0 or k == count):
            print(
                f"[{k}/{count}] {time.monotonic() - t0:.0f}s  wrong {summary.total('wrong')}  "
                f"crash {summary.total('crash')}  refused {summary.total('refused')}  "
                f"rejected {sum(summary.rejected.values())}",
                file=sys.stderr,
                flush=True,
            )
