"""Every refusal names file:line:col, shows the line with a caret, and gives a hint."""

from __future__ import annotations

import numpy as np
import pytest

import s2sgrad
from s2sgrad.errors import S2SGradError
from tests.markers import marked_line
from tests.programs import unsupported

CASES = [
    ("uses_try", s2sgrad.UnsupportedSyntaxError, "try/except"),
    ("uses_with", s2sgrad.UnsupportedSyntaxError, "with statements"),
    ("uses_global", s2sgrad.UnsupportedSyntaxError, "global statements"),
    ("defines_class", s2sgrad.UnsupportedSyntaxError, "class definitions"),
    ("uses_lambda", s2sgrad.UnsupportedSyntaxError, "lambda"),
    ("uses_print", s2sgrad.UnsupportedSyntaxError, "expression statement"),
    ("uses_comprehension", s2sgrad.UnsupportedSyntaxError, "comprehensions"),
    ("uses_yield", s2sgrad.UnsupportedSyntaxError, "generators"),
    ("is_async", s2sgrad.UnsupportedSyntaxError, "async"),
    ("no_rule", s2sgrad.NoDerivativeRuleError, "no derivative rule for `scaler`"),
    ("active_index", s2sgrad.NonDifferentiableError, "no derivative"),
    ("undefined_name", s2sgrad.UnsupportedSyntaxError, "not_defined_anywhere"),
    ("recursive_nested", s2sgrad.UnsupportedSyntaxError, "calls itself"),
    ("nested_as_value", s2sgrad.UnsupportedSyntaxError, "used as a value"),
    ("mutates_argument", s2sgrad.UnsupportedSyntaxError, "the caller's array"),
    ("mutates_a_view", s2sgrad.UnsupportedSyntaxError, "may share memory"),
    ("augments_a_view", s2sgrad.UnsupportedSyntaxError, "`y` may share memory with it"),
    ("augments_a_viewed_array", s2sgrad.UnsupportedSyntaxError, "`v` may share memory with it"),
    ("updates_through_an_alias", s2sgrad.UnsupportedSyntaxError, "`v` may share memory with it"),
    (
        "alias_rebound_on_one_path_only",
        s2sgrad.UnsupportedSyntaxError,
        "`v` may share memory with it",
    ),
    (
        "updates_a_transposed_alias_in_a_loop",
        s2sgrad.UnsupportedSyntaxError,
        "`t` may share memory with it",
    ),
    ("joins_lists", s2sgrad.UnsupportedSyntaxError, "joining or repeating Python lists"),
]


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name,error,words", CASES, ids=[c[0] for c in CASES])
def test_error_names_file_line_and_construct(name, error, words, mode):
    fn = getattr(unsupported, name)
    with pytest.raises(error) as info:
        s2sgrad.grad(fn, mode=mode)(np.ones(3))
    message = str(info.value)
    first = message.splitlines()[0]
    assert f"unsupported.py:{marked_line(getattr(unsupported, name))}:" in first, message
    assert words in message, message
    assert "hint:" in message, message
    # The offending line is shown, with a caret under the construct.
    shown, caret = message.splitlines()[1:3]
    assert shown.strip() and caret.strip() == "^", message
    col = int(first.split(":")[2]) - 1
    assert caret.index("^") - 4 == col, message


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_joining_sequences_at_run_time_is_refused(mode):
    """Tuples the compiler cannot see (returned by a call) joined with `+`: the array rule
    would give a wrong gradient, so the generated code stops instead."""
    with pytest.raises(s2sgrad.UnsupportedSyntaxError, match="joined Python lists or tuples"):
        s2sgrad.grad(unsupported.joins_returned_tuples, mode=mode)(np.ones(3))


def test_source_unavailable_for_builtins_and_exec():
    with pytest.raises(s2sgrad.SourceUnavailableError, match="not a Python function"):
        s2sgrad.grad(np.sin)(1.0)
    namespace: dict = {}
    exec("def f(x):\n    return x * 2\n", namespace)
    with pytest.raises(s2sgrad.SourceUnavailableError, match="cannot read the source"):
        s2sgrad.grad(namespace["f"])(1.0)


def test_all_errors_share_a_base_class():
    for cls in (
        s2sgrad.UnsupportedSyntaxError,
        s2sgrad.NoDerivativeRuleError,
        s2sgrad.NonDifferentiableError,
        s2sgrad.SourceUnavailableError,
        s2sgrad.UsageError,
    ):
        assert issubclass(cls, S2SGradError)


def test_integer_inputs_are_constants_in_vjp_and_jvp():
    def pick(x, n):
        return np.sum(x[n] ** 2)

    x = np.arange(4.0)
    out, vjp_fn = s2sgrad.vjp(pick, x, 2)
    dx, dn = vjp_fn(1.0)
    np.testing.assert_allclose(dx, [0.0, 0.0, 4.0, 0.0])
    assert np.shape(dn) == () and dn == 0
    _, tangent = s2sgrad.jvp(pick, (x, 2), (np.ones(4), 0))
    assert tangent == pytest.approx(4.0)
