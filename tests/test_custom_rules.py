"""Registering rules for one's own (or third-party) functions, checked at registration."""

from __future__ import annotations

import importlib.util
import inspect
import linecache

import numpy as np
import pytest
from s2sgrad.transforms import templates

import s2sgrad
from s2sgrad import pipeline
from s2sgrad.rules.checking import RuleCheckError
from tests.oracles import assert_close, central_difference_grad, central_difference_jvp
from tests.programs import uses_custom_rules


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_custom_rule_and_zero_derivative_function(mode):
    x, w = np.linspace(-1, 1, 5) + 0.1, np.linspace(0.5, 2, 5)
    got = s2sgrad.grad(uses_custom_rules.model, wrt=(0, 1), mode=mode)(x, w)
    for i in (0, 1):
        fd = central_difference_grad(uses_custom_rules.model, [x, w], i)
        assert_close(got[i], fd, rtol=1e-6, atol=1e-8)


def test_custom_rule_reads_like_its_template_in_generated_code():
    source = pipeline.generate(uses_custom_rules.model, mode="reverse", wrt=(1,)).source
    assert "_tests_programs_custom_rules._softplus_slope(" in source
    assert '"_tests_programs_custom_rules=tests.programs.custom_rules"' in source


def test_a_wrong_rule_is_refused_at_registration():
    def cube(x):
        return x**3

    with pytest.raises(RuleCheckError, match="disagrees with central differences"):

        @s2sgrad.defvjp(cube, check=True)
        def cube_vjp(g, ans, x):
            return g * 2 * x**2  # should be 3 x**2

    with pytest.raises(RuleCheckError):

        @s2sgrad.defjvp(cube, check=(np.array([1.0, 2.0]),))
        def cube_jvp(ans, x, *, dx):
            return dx * x**2

    @s2sgrad.defjvp(cube, check=(np.array([1.0, 2.0]),))
    def cube_jvp_right(ans, x, *, dx):
        return dx * 3 * x**2


def shift_rows(a, k=1):
    """Linear in ``a``: a primitive once it has rules (s2sgrad then calls it)."""
    return np.roll(a, k, axis=0)


def _shift_rows_model(x):
    return np.sum(np.sin(shift_rows(x * x, 2)) * np.arange(1.0, 7.0).reshape(3, 2))


def _register_shift_rows():
    @s2sgrad.defvjp(shift_rows)
    def shift_rows_vjp(g, ans, a, k=1):
        return np.roll(g, -k, axis=0)

    return s2sgrad.deflinear(shift_rows, params="a, k=1")


def test_deflinear_writes_the_forward_rule_a_person_would():
    template = _register_shift_rows()
    assert inspect.getsource(template) == (
        "def shift_rows_jvp(ans, a, k=1, *, da):\n    return shift_rows(da, k=k)\n"
    )
    assert "shift_rows_jvp" not in globals()  # the registering module gains no name
    x = np.linspace(-1.0, 1.0, 6).reshape(3, 2)
    v = np.cos(np.arange(6.0)).reshape(3, 2)
    _, tangent = s2sgrad.jvp(_shift_rows_model, (x,), (v,))
    assert_close(tangent, central_difference_jvp(_shift_rows_model, [x], [v]), rtol=1e-7)
    forward = s2sgrad.grad(_shift_rows_model, mode="forward")(x)
    assert_close(forward, central_difference_grad(_shift_rows_model, [x], 0), rtol=1e-7)
    source = pipeline.generate(_shift_rows_model, mode="forward", wrt=(0,)).source
    alias = "_" + __name__.replace(".", "_")  # the module's alias in generated code
    assert f"dt2 = {alias}.shift_rows(dt1, k=2)" in source


def test_a_deflinear_rule_survives_a_cleared_linecache():
    """Its text has no file: ``linecache.clearcache()`` must not make it unreadable."""
    _register_shift_rows()
    linecache.clearcache()
    templates.lower_template.cache_clear()
    x = np.linspace(-1.0, 1.0, 6).reshape(3, 2)
    got = s2sgrad.grad(_shift_rows_model, mode="forward")(x)
    assert_close(got, central_difference_grad(_shift_rows_model, [x], 0), rtol=1e-7)


def test_deflinear_refuses_what_it_cannot_write():
    def local_linear(a):
        return 2.0 * a

    with pytest.raises(TypeError, match="not reachable as `np.local_linear` or `local_linear`"):
        s2sgrad.deflinear(local_linear, params="a")
    with pytest.raises(TypeError, match="plain parameters only"):
        s2sgrad.deflinear(shift_rows, params="a, *rest")


@pytest.mark.parametrize(
    "call, tangent",
    [
        ("np.sum(x, axis=0, out=None)", "np.sum(dx, axis=0)"),
        ("np.transpose(x, (1, 0))", "np.transpose(dx, axes=(1, 0))"),
        ("np.swapaxes(x, 0, 1)", "np.swapaxes(dx, 0, 1)"),
    ],
)
def test_builtin_linear_rules_pass_arguments_on_as_the_call_gave_them(call, tangent, tmp_path):
    """Required parameters by position, defaulted ones by keyword (defaults left out),
    ``out`` never; and the tangent is right (against central differences)."""
    path = tmp_path / "linear_calls.py"
    path.write_text(f"import numpy as np\n\n\ndef f(x):\n    return np.sum(np.sin({call}))\n")
    spec = importlib.util.spec_from_file_location("linear_calls", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = pipeline.generate(module.f, mode="forward", wrt=(0,)).source
    assert tangent in source
    x = np.linspace(0.1, 1.2, 6).reshape(2, 3)
    got = s2sgrad.grad(module.f, mode="forward")(x)
    assert_close(got, central_difference_grad(module.f, [x], 0), rtol=1e-7)
