"""The systematic op test: every differentiable primitive, compiled by s2sgrad, in both modes.

Generated from the rule registry and the case table in ``op_cases.py``: every
case is a one-primitive function in a real module file (the ``op_module``
fixture), differentiated by ``s2sgrad.vjp`` (reverse), ``s2sgrad.jvp``
(forward) and ``s2sgrad.grad`` of a scalar wrapper ``np.sum(np.sin(expr))``
in both modes, and compared with jax (``jnp_twin``) and central differences.
``test_every_rule_has_a_case`` keeps the table complete, so a rule cannot be
registered without being tested here.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from op_cases import CASES, Case, cases_for, function_name, reference
from oracles import assert_close

from s2sgrad.rules import all_rules, lookup

IDS = [c.id for c in CASES]


def _api():
    """The public API, or a skip while it does not exist yet."""
    if importlib.util.find_spec("s2sgrad.api") is None:
        pytest.skip("s2sgrad.api is not written yet")
    import s2sgrad

    return s2sgrad


def _is_builtin(rule) -> bool:
    """Registered by s2sgrad's own rule modules (not by a test registering a user rule)."""
    template = rule.vjp or rule.jvp
    return template is not None and template.__module__.startswith("s2sgrad.rules.")


# Rules checked elsewhere, and why: a case evaluates its expression on the same input
# arrays again and again, which an update in place would change.
CHECKED_ELSEWHERE = {
    "s2sgrad.runtime.core.add_into": "updates its first argument in place: test_higher_order.py",
    "s2sgrad.runtime.core.zero_into": "updates its first argument in place: test_higher_order.py",
}


def test_every_rule_has_a_case():
    missing = [
        rule.name
        for rule in all_rules()
        if _is_builtin(rule)
        and not rule.nondifferentiable
        and not cases_for(rule.primitive)
        and rule.name not in CHECKED_ELSEWHERE
    ]
    assert (
        not missing
    ), "differentiable primitives without a case in tests/op_cases.py: " + ", ".join(missing)


def test_every_builtin_rule_has_both_modes():
    one_mode = [r.name for r in all_rules() if _is_builtin(r) and not (r.jvp and r.vjp)]
    assert not one_mode, f"built-in rules without a jvp or a vjp template: {one_mode}"


def test_every_case_exercises_a_registered_rule():
    unregistered = [c.expr for c in CASES if lookup(c.primitive) is None]
    assert not unregistered, f"cases whose primitive has no rule: {unregistered}"
    both = [c.expr for c in CASES if set(lookup(c.primitive).modes) != {"forward", "reverse"}]
    assert not both, f"cases whose primitive lacks a forward or reverse rule: {both}"


def _check(actual, ref_jax, ref_fd, case: Case, what: str) -> None:
    if ref_jax is not None:
        assert_close(actual, ref_jax, rtol=case.rtol, what=f"{what} of {case.expr} (vs jax)")
    if ref_fd is not None:
        assert_close(
            actual, ref_fd, rtol=case.fd_rtol, atol=1e-7, what=f"{what} of {case.expr} (vs FD)"
        )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reverse(case: Case, op_module):
    s2sgrad = _api()
    ref = reference(case, op_module)
    f = getattr(op_module, function_name(case))
    out, vjp_fn = s2sgrad.vjp(f, *ref.primals)
    assert_close(out, ref.out, what=f"value of {case.expr}")
    cotangents = vjp_fn(ref.cotangent)
    assert isinstance(cotangents, tuple) and len(cotangents) == len(ref.primals)
    _check(cotangents, ref.jax_vjp, ref.fd_vjp, case, "vjp")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward(case: Case, op_module):
    s2sgrad = _api()
    ref = reference(case, op_module)
    f = getattr(op_module, function_name(case))
    out, tangent_out = s2sgrad.jvp(f, ref.primals, ref.tangents)
    assert_close(out, ref.out, what=f"value of {case.expr}")
    _check(tangent_out, ref.jax_jvp, ref.fd_jvp, case, "jvp")


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_grad_of_scalar_wrapper(case: Case, mode: str, op_module):
    s2sgrad = _api()
    ref = reference(case, op_module)
    f_scalar = getattr(op_module, function_name(case) + "_scalar")
    wrt = tuple(range(len(ref.primals)))
    grads = s2sgrad.grad(f_scalar, wrt=wrt, mode=mode)(*ref.primals)
    assert isinstance(grads, tuple) and len(grads) == len(wrt)
    _check(tuple(np.asarray(g) for g in grads), ref.jax_grad, ref.fd_grad, case, f"grad ({mode})")
