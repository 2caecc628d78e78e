"""Second derivatives through the runtime helpers that derivative code calls, against JAX.

Each function below uses a NumPy (or scipy) function whose derivative code calls a
helper with rules of its own (``tests/op_cases.py`` checks each rule in both modes):
``s2sgrad.hessian`` of it, on both backends, must match ``jax.hessian`` of its jnp twin.
A few third derivatives (along a line) check the rules of the helpers those rules call.
What has no second derivative is refused, never answered wrongly.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.special

import s2sgrad
from s2sgrad import runtime
from s2sgrad.errors import NoDerivativeRuleError, NonDifferentiableError
from s2sgrad.rules import lookup
from tests.oracles import assert_close, jnp_twin

RNG = np.random.default_rng(7)
M = RNG.uniform(-1.0, 1.0, (3, 3))
B = RNG.uniform(-1.0, 1.0, (3, 4))
X = RNG.uniform(0.5, 1.5, (2, 3))
WITH_ZERO = np.array([[0.7, 0.0, 1.3], [1.1, -0.4, 0.9]])


def matrix_power(a):  # matrix_power_tangent, matrix_power_adjoint
    return np.sum(np.sin(np.linalg.matrix_power(a, 3)))


def cumprod(x):  # cumprod_tangent, uncumprod (exact at the zero)
    return np.sum(np.sin(np.cumprod(x)))


def std(x):  # resolved_spread
    return np.sum(np.std(x, axis=1))


def einsum(a):  # einsum_tangent, einsum_adjoint
    return np.sum(np.sin(np.einsum("ij,jk->ik", a, a)))


def multi_dot(a):  # multi_dot_tangent, multi_dot_adjoint
    return np.sum(np.sin(np.linalg.multi_dot([a, B, B.T, a.T])))


def norm(x):  # norm_direction: the 2-norm and a p-norm
    return np.linalg.norm(x) + np.sum(np.linalg.norm(x, 3, axis=1))


def logsumexp(x):  # logsumexp_shares
    return np.sum(np.sin(scipy.special.logsumexp(x, axis=1)))


def trapezoid(x):  # trapezoid_weights (a constant: the spacing is not differentiated)
    return np.sum(np.sin(np.trapezoid(x**2, dx=0.5)))


PROGRAMS = {
    "matrix_power": (matrix_power, M + 2.0 * np.eye(3)),
    "cumprod": (cumprod, WITH_ZERO),
    "std": (std, X),
    "einsum": (einsum, M),
    "multi_dot": (multi_dot, M),
    "norm": (norm, X - 1.0),
    "logsumexp": (logsumexp, X),
    "trapezoid": (trapezoid, X),
}


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_hessian_matches_jax(name, backend):
    fn, x = PROGRAMS[name]
    got = s2sgrad.hessian(fn, backend=backend)(x)
    want = jax.hessian(jnp_twin(fn))(x)
    assert_close(np.asarray(got), np.asarray(want), rtol=1e-9, what=f"hessian of {name}")


# Third derivatives along a line x + s v through the programs (scalar functions of s):
# the rules of the helpers that the helpers' rules call.
V = RNG.standard_normal((3, 3))
V23 = RNG.standard_normal((2, 3))


def einsum_line(s):
    return einsum(M + s * V)


def prod_line(s):  # prod_of_others_tangent
    return np.sum(np.sin(np.prod(WITH_ZERO + s * V23, axis=1)))


@pytest.mark.parametrize("line", [einsum_line, prod_line])
def test_third_derivatives_along_a_line(line):
    want = jax.grad(jax.grad(jax.grad(jnp_twin(line))))(0.25)
    got = s2sgrad.grad(s2sgrad.grad(s2sgrad.grad(line)))(0.25)
    assert_close(got, np.asarray(want), rtol=1e-8, what=line.__name__)


def test_every_helper_derivative_code_calls_has_rules():
    """Each public helper has rules in both modes or is a constant; ``foldable`` is a
    decorator, which no generated code calls, and the checkpoint schedule's helpers are
    only in modules never differentiated again (a module read back for higher order is
    generated without checkpointing: ``Compilation.read_back``)."""
    missing = []
    schedule = {"foldable", "checkpoints", "store_checkpoint", "restore_checkpoint"}
    for name in runtime.__all__:
        rule = lookup(getattr(runtime, name))
        complete = rule is not None and (rule.nondifferentiable or len(rule.modes) == 2)
        if name not in schedule and not complete:
            missing.append(name)
    assert not missing, missing


def test_std_of_equal_entries_has_a_zero_second_derivative_term():
    """Where resolved_spread makes a spread of rounding noise infinite, its derivative is
    0 (a constant), not nan: the derivative of std there is 0, and so is its change."""
    rule = lookup(runtime.resolved_spread)
    spread = np.array([4e-17, 0.5])
    a = np.array([[0.3, 0.3, 0.3], [0.1, -0.4, 0.8]])
    ans = runtime.resolved_spread(spread, a, 1)
    assert np.isinf(ans[0])
    assert_close(rule.jvp(ans, spread, a, 1, dspread=np.ones(2)), np.array([0.0, 1.0]))
    assert_close(rule.vjp(np.ones(2), ans, spread, a, 1), np.array([0.0, 1.0]))


def _nuclear(x):
    return np.linalg.norm(x, "nuc")


def _sublist_einsum(a):
    return np.sum(np.einsum(a, [0, 1], a, [1, 2], [0, 2]) ** 2)


def _trapezoid_spacing(dx, y):
    return np.trapezoid(y, dx=dx)


def test_what_has_no_second_derivative_rule_is_refused():
    with pytest.raises(NoDerivativeRuleError, match="nuc"):
        s2sgrad.hessian(_nuclear)(M)
    # the sublist form's first operand is einsum's `subscripts` argument
    with pytest.raises(NonDifferentiableError, match="subscripts"):
        s2sgrad.hessian(_sublist_einsum)(M)
    # so derivative code never passes trapezoid_weights a differentiated spacing
    with pytest.raises(NonDifferentiableError, match="dx"):
        s2sgrad.grad(_trapezoid_spacing)(0.5, X[0])
