"""Registering rules for one's own (or third-party) functions, checked at registration."""

from __future__ import annotations

import numpy as np
import pytest

import s2sgrad
from s2sgrad import pipeline
from s2sgrad.rules.checking import RuleCheckError
from tests.oracles import assert_close, central_difference_grad
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
