"""The ``s2sgrad`` command line: read the derivative code s2sgrad writes, manage its cache.

s2sgrad's promise is derivative code a person can read, so the first tool is
one that shows it: ``s2sgrad inspect model.py:loss`` prints the module the
compiler generates, exactly as the cache would store it. Mistakes in the
command (a missing file, a misspelt function or parameter) and errors the
compiler reports about the user's code are one-line messages (plus the
source line and caret a compiler error carries) and exit status 2, never a
traceback: a traceback would point into s2sgrad when the problem is in the
user's file or command.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

from s2sgrad import backends, running
from s2sgrad._version import __version__
from s2sgrad.errors import S2SGradError

EXIT_USER_ERROR = 2

DESCRIPTION = """\
s2sgrad: source-to-source automatic differentiation for NumPy-style Python.

It compiles a Python function into a new Python module that computes its
derivative (reverse mode: the gradient; forward mode: a Jacobian-vector
product), caches that module on disk and imports it.
"""

EPILOG = """\
examples:
  s2sgrad inspect examples/mlp_gradient.py:loss --wrt W1,b1
  s2sgrad inspect model.py:energy --mode forward --wrt 0 | less -R
  s2sgrad cache list
  python -m s2sgrad cache clear

Exit status: 0 on success, 2 for a mistake in the command or an error the
compiler reports about your code (printed as file:line:col: message).
"""

INSPECT_HELP = """\
Print the derivative module s2sgrad generates for FUNCTION in FILE.

FILE is imported as a module (its directory is put on sys.path while it is
imported; code under `if __name__ == "__main__":` does not run). FUNCTION may
be decorated with s2sgrad (the original function is used) and may be a dotted
path such as Model.energy. The output is the same text the cache stores: valid
Python you can read, save and import.
"""

CACHE_HELP = """\
Manage the cache of generated derivative modules.

Each cached module is a plain .py file named
<module>_<function>_<mode>_<key>.py; the key hashes the function's source and
everything else the generated code depends on, so stale entries are never
used, only left behind. The directory is $S2SGRAD_CACHE_DIR if set, else
the platform's user cache directory.
"""


class CommandError(Exception):
    """A mistake in the command line: reported in one line, exit status 2."""


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s2sgrad",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"s2sgrad {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    commands.required = True
    _add_inspect(commands)
    _add_cache(commands)
    _add_rules(commands)
    return parser


def _add_inspect(commands: Any) -> None:
    inspect_cmd = commands.add_parser(
        "inspect",
        help="print the derivative code generated for a function",
        description=INSPECT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect_cmd.add_argument(
        "target", metavar="FILE.py:FUNCTION", help="the function to differentiate"
    )
    inspect_cmd.add_argument(
        "--mode",
        choices=("reverse", "forward"),
        default=None,
        help="reverse: gradient / vector-Jacobian product (default, or what the function's "
        "@s2sgrad.grad decorator says); forward: Jacobian-vector product",
    )
    inspect_cmd.add_argument(
        "--wrt",
        metavar="PARAMS",
        help="comma-separated parameter names or 0-based positions to differentiate with "
        "respect to, e.g. W,b or 0,1 (default: the decorator's wrt, else the first parameter)",
    )
    inspect_cmd.add_argument(
        "--order",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: the second-order module (forward mode over the reverse-mode gradient, what "
        "s2sgrad.hessian and s2sgrad.hvp run; --mode reverse for grad of grad)",
    )
    inspect_cmd.add_argument(
        "--backend",
        choices=tuple(backends.BACKENDS),
        default="numpy",
        help="array library the generated code targets (default: numpy)",
    )
    inspect_cmd.add_argument(
        "--color",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="syntax-highlight the output (default: only when stdout is a terminal and NO_COLOR "
        "is unset)",
    )
    inspect_cmd.set_defaults(handler=run_inspect)


def _add_cache(commands: Any) -> None:
    cache_cmd = commands.add_parser(
        "cache",
        help="show, list or clear the cache of generated modules",
        description=CACHE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = cache_cmd.add_subparsers(title="actions", dest="action", metavar="ACTION")
    actions.required = True
    for action, help_text, handler in (
        ("path", "print the cache directory", run_cache_path),
        ("list", "list the cached derivative modules", run_cache_list),
        ("clear", "delete the cached derivative modules", run_cache_clear),
    ):
        actions.add_parser(action, help=help_text).set_defaults(handler=handler)


def _add_rules(commands: Any) -> None:
    rules_cmd = commands.add_parser(
        "rules",
        help="list the functions s2sgrad can differentiate",
        description="List every function with a derivative rule (and those known to have a zero "
        "derivative), as in docs/operators.md.",
    )
    rules_cmd.add_argument(
        "--count",
        action="store_true",
        help="print only the number of NumPy/scipy.special functions with rules in both modes",
    )
    rules_cmd.add_argument(
        "--markdown", action="store_true", help="print the docs/operators.md page"
    )
    rules_cmd.set_defaults(handler=run_rules)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CommandError as exc:
        print(f"s2sgrad: error: {exc}", file=sys.stderr)
    except S2SGradError as exc:
        text = str(exc)
        # A located error already reads `file:line:col: message`, as compilers print it.
        print(text if exc.loc is not None else f"s2sgrad: error: {text}", file=sys.stderr)
    except BrokenPipeError:
        # `s2sgrad inspect ... | head`: the reader left; do not print a traceback at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return EXIT_USER_ERROR


# --------------------------------------------------------------------------- inspect


def run_inspect(args: argparse.Namespace) -> int:
    fn = load_function(args.target)
    defaults = getattr(fn, "__s2sgrad_defaults__", {})
    wrt = parse_wrt(args.wrt, fn) if args.wrt or not defaults else defaults["wrt"]
    if args.order == 2:
        from s2sgrad.api import derivative_source

        text = derivative_source(fn, wrt=wrt, mode=args.mode, backend=args.backend, order=2)
        # the module as cached, less its cache seal
        source = "".join(ln for ln in text.splitlines(True) if not ln.startswith("# s2sgrad-cache"))
        sys.stdout.write(highlight(source) if want_color(args.color) else source)
        sys.stdout.flush()
        return 0
    mode = args.mode or defaults.get("mode", "reverse")
    from s2sgrad import pipeline  # the compiler: heavy, so only for this command

    try:
        generated = pipeline.generate(fn, mode=mode, wrt=wrt, backend=args.backend)
    except NotImplementedError as exc:
        raise CommandError(str(exc) or f"{args.backend} backend is not implemented yet") from None
    source = generated.source if generated.source.endswith("\n") else generated.source + "\n"
    sys.stdout.write(highlight(source) if want_color(args.color) else source)
    sys.stdout.flush()
    return 0


def load_function(target: str) -> types.FunctionType:
    """Import ``FILE.py`` of ``FILE.py:FUNCTION`` and return the plain function it names.

    When the name is an s2sgrad-decorated function, the decorator's settings
    (``wrt``, ``mode``) ride along as ``fn.__s2sgrad_defaults__`` for inspect.
    """
    path_text, sep, qualname = target.rpartition(":")
    if not sep or not path_text or not qualname:
        raise CommandError(f"expected FILE.py:FUNCTION, got {target!r}")
    path = Path(path_text)
    if not path.is_file():
        raise CommandError(f"no such file: {path_text}")
    module = import_file(path)
    obj: object = module
    for depth, part in enumerate(qualname.split(".")):
        if not hasattr(obj, part):
            hint = _did_you_mean(part, obj) if depth == 0 else ""
            raise CommandError(f"no function {qualname!r} in {path_text}{hint}")
        obj = getattr(obj, part)
    # The function under @s2sgrad.grad is the one to inspect; under a user's decorator it is
    # the decorator's wrapper, which is what runs.
    fn = running.primal_of(obj)
    settings = getattr(obj, "__s2sgrad__", None) if running.produced(obj) else None
    if settings is not None and isinstance(fn, types.FunctionType):
        fn.__s2sgrad_defaults__ = {"wrt": settings.wrt, "mode": settings.mode}
    if not isinstance(fn, types.FunctionType):
        raise CommandError(f"{qualname} in {path_text} is a {type(obj).__name__}, not a function")
    return fn


def _did_you_mean(name: str, module: object) -> str:
    functions = [k for k, v in vars(module).items() if isinstance(v, types.FunctionType)]
    close = difflib.get_close_matches(name, functions, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def import_file(path: Path) -> types.ModuleType:
    """Import a .py file as a module, with its directory on sys.path meanwhile.

    It is imported under its own name (unless that name is taken, e.g. a file
    called ``json.py``), not as ``__main__``, so a script's main block does
    not run.
    """
    stem = path.stem
    name = stem
    if not stem.isidentifier() or stem in sys.modules:
        name = "_s2sgrad_user_" + "".join(c if c.isalnum() else "_" for c in stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CommandError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    directory = str(path.resolve().parent)
    sys.path.insert(0, directory)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CommandError(
            f"importing {path} failed: {type(exc).__name__}" + (f": {detail}" if detail else "")
        ) from None
    finally:
        if directory in sys.path:
            sys.path.remove(directory)
    return module


def parse_wrt(text: str | None, fn: types.FunctionType) -> tuple[int, ...]:
    """``"W,b"`` or ``"0,1"`` (or a mix) -> positions of ``fn``'s positional parameters."""
    params = [
        p.name
        for p in running.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    listing = f"parameters of {fn.__name__}: {', '.join(params) or 'none'}"
    if text is None:
        if not params:
            raise CommandError(f"{fn.__name__} has no positional parameter to differentiate")
        return (0,)
    positions: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if item.isdecimal():
            position = int(item)
            if position >= len(params):
                raise CommandError(
                    f"bad --wrt {text!r}: no parameter at position {item} ({listing})"
                )
        elif item in params:
            position = params.index(item)
        else:
            what = "an empty entry" if not item else f"no parameter {item!r}"
            raise CommandError(f"bad --wrt {text!r}: {what} ({listing})")
        if position in positions:
            raise CommandError(f"bad --wrt {text!r}: {params[position]} is named twice")
        positions.append(position)
    return tuple(positions)


def want_color(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    return not os.environ.get("NO_COLOR") and sys.stdout.isatty()


def highlight(source: str) -> str:
    from pygments import highlight as pygments_highlight
    from pygments.formatters import Terminal256Formatter, TerminalFormatter
    from pygments.lexers import PythonLexer

    colors = os.environ.get("TERM", "") + os.environ.get("COLORTERM", "")
    rich = "256" in colors or "truecolor" in colors or "24bit" in colors
    formatter = Terminal256Formatter() if rich else TerminalFormatter()
    return pygments_highlight(source, PythonLexer(), formatter)


# --------------------------------------------------------------------------- cache


def run_rules(args: argparse.Namespace) -> int:
    from s2sgrad import catalog

    if args.count:
        print(catalog.count())
    elif args.markdown:
        sys.stdout.write(catalog.markdown())
    else:
        for e in catalog.entries():
            modes = "zero derivative" if not e.differentiable else "forward, reverse"
            print(f"{e.name:<40} {modes}")
    return 0


def run_cache_path(args: argparse.Namespace) -> int:
    from s2sgrad import cache

    print(cache.configured_cache_dir())
    return 0


def run_cache_list(args: argparse.Namespace) -> int:
    from s2sgrad import cache

    entries = cache.list_entries()
    for entry in entries:
        print(f"{entry.mode:<8} {entry.key12}  {entry.size:>8} B  {entry.path.name}")
    total = sum(entry.size for entry in entries)
    print(
        f"{len(entries)} cached derivative module(s), {total} bytes, in {cache.configured_cache_dir()}",
        file=sys.stderr,
    )
    return 0


def run_cache_clear(args: argparse.Namespace) -> int:
    from s2sgrad import cache

    removed = cache.clear()
    print(f"removed {removed} cached derivative module(s) from {cache.configured_cache_dir()}")
    return 0
