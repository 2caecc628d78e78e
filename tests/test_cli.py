"""Tests of the command line (s2sgrad/cli.py).

The contract under test: help that explains itself; every mistake in the
command, and every error the compiler reports about the user's code, is a
short message on stderr with exit status 2 and no traceback; ``inspect``
prints valid Python that contains the derivative function, with colour only
when asked or when stdout is a terminal.

In-process tests call ``main()`` with a fake compiler where the compiler is
not the point; the end-to-end tests run ``python -m s2sgrad`` with the real one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import s2sgrad
from s2sgrad import cli
from s2sgrad.errors import SourceLocation, UnsupportedSyntaxError

REPO = Path(__file__).resolve().parents[1]

MODEL = """\
import functools

import numpy as np

W = np.array([[1.0, -2.0], [0.5, 3.0]])
not_a_function = 3


def passthrough(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)

    return wrapper


def loss(x, W, b):
    h = np.tanh(x @ W + b)
    return np.sum(h * h)


@passthrough
def decorated(x):
    return np.sum(x * x)


def no_params():
    return 1.0


class Model:
    @staticmethod
    def energy(x):
        return np.sum(x * x)


def walrus(x):
    return np.sum((y := x * 2))


if __name__ == "__main__":
    raise SystemExit("the main block must not run")
"""


@dataclass(frozen=True)
class FakeGenerated:
    source: str
    entry: str
    free_names: tuple[str, ...]


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return path


@pytest.fixture
def fake_generate(monkeypatch):
    """Replace the compiler: record what inspect asked for, return a tiny module."""
    calls = []

    def generate(fn, *, mode, wrt, backend="numpy"):
        calls.append((fn, mode, wrt, backend))
        entry = f"{fn.__name__}_{'vjp' if mode == 'reverse' else 'jvp'}"
        source = f"def {entry}(x, g):\n    return x, (g,)\n\n\n__s2sgrad_entry__ = {entry!r}\n"
        return FakeGenerated(source, entry, ())

    fake = types.ModuleType("s2sgrad.pipeline")
    fake.generate = generate
    monkeypatch.setitem(sys.modules, "s2sgrad.pipeline", fake)
    monkeypatch.setattr(s2sgrad, "pipeline", fake, raising=False)
    return calls


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("s2sgrad: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# ----------------------------------------------------------------------------- help


def test_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for word in ("inspect", "cache", "examples:", "Exit status"):
        assert word in out


@pytest.mark.parametrize("argv", [["inspect", "--help"], ["cache", "--help"]])
def test_subcommand_help(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert (
        ("--wrt" in out and "--mode" in out) if argv[0] == "inspect" else "S2SGRAD_CACHE_DIR" in out
    )


def test_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


# ----------------------------------------------------------------------------- user errors


def test_missing_file(capsys, tmp_path):
    code, out, err = run_main(capsys, "inspect", f"{tmp_path}/nope.py:f")
    assert_one_line_error(code, err, "no such file", "nope.py")
    assert out == ""


def test_target_without_function(capsys, model):
    assert_one_line_error(*run_main(capsys, "inspect", str(model))[::2], "FILE.py:FUNCTION")


def test_missing_function_suggests_a_name(capsys, model, fake_generate):
    code, _, err = run_main(capsys, "inspect", f"{model}:los")
    assert_one_line_error(code, err, "no function 'los'", "did you mean 'loss'?")


def test_not_a_function(capsys, model, fake_generate):
    code, _, err = run_main(capsys, "inspect", f"{model}:not_a_function")
    assert_one_line_error(code, err, "not_a_function", "is a int, not a function")


@pytest.mark.parametrize(
    ("wrt", "fragment"),
    [
        ("z", "no parameter 'z'"),
        ("3", "no parameter at position 3"),
        ("x,,W", "an empty entry"),
        ("W,1", "W is named twice"),
        ("-1", "no parameter '-1'"),
    ],
)
def test_bad_wrt(capsys, model, fake_generate, wrt, fragment):
    code, _, err = run_main(capsys, "inspect", f"{model}:loss", "--wrt", wrt)
    listing = "" if "twice" in fragment else "parameters of loss: x, W, b"
    assert_one_line_error(code, err, "bad --wrt", fragment, listing)
    assert fake_generate == []


def test_function_without_parameters(capsys, model, fake_generate):
    code, _, err = run_main(capsys, "inspect", f"{model}:no_params")
    assert_one_line_error(code, err, "no positional parameter")


def test_import_failure_is_one_line(capsys, tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import numpy as np\n1 / 0\n")
    code, _, err = run_main(capsys, "inspect", f"{path}:f")
    assert_one_line_error(code, err, "importing", "ZeroDivisionError: division by zero")


def test_compiler_error_prints_location_first(capsys, model, monkeypatch):
    def generate(fn, *, mode, wrt, backend="numpy"):
        loc = SourceLocation(str(model), 38, 19, "    return np.sum((y := x * 2))\n")
        raise UnsupportedSyntaxError(
            "the walrus operator is not supported", loc, "use a separate assignment"
        )

    fake = types.ModuleType("s2sgrad.pipeline")
    fake.generate = generate
    monkeypatch.setitem(sys.modules, "s2sgrad.pipeline", fake)
    monkeypatch.setattr(s2sgrad, "pipeline", fake, raising=False)
    code, out, err = run_main(capsys, "inspect", f"{model}:walrus")
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0] == f"{model}:38:20: the walrus operator is not supported"
    assert lines[-1] == "hint: use a separate assignment"
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- inspect


def test_inspect_passes_mode_and_wrt_and_prints_plain_python(capsys, model, fake_generate):
    code, out, err = run_main(
        capsys, "inspect", f"{model}:loss", "--wrt", "b,0", "--mode", "forward"
    )
    assert code == 0 and err == ""
    [(fn, mode, wrt, backend)] = fake_generate
    assert (fn.__name__, mode, wrt, backend) == ("loss", "forward", (2, 0), "numpy")
    assert "def loss_jvp(" in out
    assert "\x1b[" not in out  # capsys is not a terminal
    compile(out, "<inspect output>", "exec")


def test_inspect_defaults_to_first_parameter_reverse(capsys, model, fake_generate):
    assert run_main(capsys, "inspect", f"{model}:loss")[0] == 0
    assert [call[1:3] for call in fake_generate] == [("reverse", (0,))]


def test_inspect_unwraps_decorators_and_follows_dotted_names(capsys, model, fake_generate):
    assert run_main(capsys, "inspect", f"{model}:decorated")[0] == 0
    assert run_main(capsys, "inspect", f"{model}:Model.energy")[0] == 0
    assert [call[0].__qualname__ for call in fake_generate] == ["decorated", "Model.energy"]


def test_color_is_forced_or_suppressed(capsys, model, fake_generate, monkeypatch):
    code, out, _ = run_main(capsys, "inspect", f"{model}:loss", "--color")
    assert code == 0 and "\x1b[" in out
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert cli.want_color(None) is True
    assert cli.want_color(False) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli.want_color(None) is False


def test_user_file_leaves_sys_path_as_it_was(capsys, model, fake_generate):
    before = list(sys.path)
    run_main(capsys, "inspect", f"{model}:loss")
    assert sys.path == before


# ----------------------------------------------------------------------------- cache


def test_cache_path_list_clear(capsys, tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv("S2SGRAD_CACHE_DIR", str(directory))
    assert run_main(capsys, "cache", "path")[1].strip() == str(directory)
    directory.mkdir()
    (directory / "m_f_reverse_0123456789ab.py").write_text("x = 1\n")
    code, out, err = run_main(capsys, "cache", "list")
    assert code == 0 and "m_f_reverse_0123456789ab.py" in out and "1 cached" in err
    code, out, _ = run_main(capsys, "cache", "clear")
    assert code == 0 and out.startswith("removed 1 ")
    assert list(directory.iterdir()) == []


# ----------------------------------------------------------------------------- end to end


def _core_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("s2sgrad.pipeline") is not None


def _s2sgrad(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), S2SGRAD_CACHE_DIR=str(cwd / "cache"))
    env.pop("NO_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "s2sgrad", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(not _core_available(), reason="the compiler core is not there yet")
@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_python_m_s2sgrad_inspect_end_to_end(model, mode):
    result = _s2sgrad(
        "inspect", f"{model.name}:loss", "--mode", mode, "--wrt", "x,W", cwd=model.parent
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b[" not in out  # a pipe is not a terminal
    namespace: dict = {}
    exec(compile(out, "<inspect output>", "exec"), namespace)
    entry = namespace["__s2sgrad_entry__"]
    assert f"def {entry}(" in out and callable(namespace[entry])


@pytest.mark.skipif(not _core_available(), reason="the compiler core is not there yet")
def test_python_m_s2sgrad_reports_compiler_errors_in_one_line(model):
    result = _s2sgrad("inspect", f"{model.name}:walrus", cwd=model.parent)
    assert result.returncode == 2 and result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{model}:") and "walrus" in first
    assert "Traceback" not in result.stderr


def test_python_m_s2sgrad_user_error_without_compiler(tmp_path):
    result = _s2sgrad("inspect", "missing.py:f", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "s2sgrad: error: no such file: missing.py\n"
