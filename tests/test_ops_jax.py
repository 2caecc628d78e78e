"""The systematic op test again, on the JAX backend: every rule, lowered to jax.numpy.

The same case table as ``test_ops_systematic.py`` (so a new rule is tested on
both backends), the same oracles: ``jax.vjp``/``jax.jvp`` of the jnp twin and
central differences. The generated modules run eagerly here (one jnp call at a
time: fast to test, and every rule's lowering is exercised); jitted runs through
the API are tested in ``test_jax_backend.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from op_cases import CASES, Case, function_name, reference
from oracles import assert_close

from s2sgrad import cache
from s2sgrad.api import _float_positions, _options

# Rules whose templates the JAX backend cannot lower yet; each raises (never a wrong value).
KNOWN_GAPS: dict[str, str] = {}


def _params(cases):
    out = []
    for c in cases:
        gap = next((why for op, why in KNOWN_GAPS.items() if c.expr.startswith(op + "(")), None)
        marks = [pytest.mark.xfail(reason=gap, raises=TypeError, strict=False)] if gap else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


PARAMS = _params(CASES)


def _check(actual, ref_jax, ref_fd, case: Case, what: str) -> None:
    actual = _numpy(actual)
    if ref_jax is not None:
        assert_close(actual, ref_jax, rtol=case.rtol, what=f"{what} of {case.expr} (vs jax)")
    if ref_fd is not None:
        assert_close(
            actual, ref_fd, rtol=case.fd_rtol, atol=1e-7, what=f"{what} of {case.expr} (vs FD)"
        )


def _numpy(tree):
    if isinstance(tree, (tuple, list)):
        return type(tree)(_numpy(t) for t in tree)
    if isinstance(tree, dict):
        return {k: _numpy(v) for k, v in tree.items()}
    return np.asarray(tree)


def _entry(f, mode, primals):
    wrt = _float_positions(primals)
    return wrt, cache.load_or_generate(f, mode, wrt, "jax", _options(primals, False, mode))


@pytest.mark.parametrize("case", PARAMS)
def test_reverse_jax(case: Case, op_module):
    ref = reference(case, op_module)
    f = getattr(op_module, function_name(case))
    wrt, entry = _entry(f, "reverse", ref.primals)
    out, cotangents = entry(*ref.primals, ref.cotangent)
    assert_close(_numpy(out), ref.out, rtol=case.rtol, what=f"value of {case.expr}")
    got = tuple(cotangents[wrt.index(i)] if i in wrt else None for i in range(len(ref.primals)))
    want_jax = ref.jax_vjp and tuple(ref.jax_vjp[i] for i in wrt)
    want_fd = ref.fd_vjp and tuple(ref.fd_vjp[i] for i in wrt)
    _check(tuple(g for g in got if g is not None), want_jax, want_fd, case, "vjp")


@pytest.mark.parametrize("case", PARAMS)
def test_forward_jax(case: Case, op_module):
    ref = reference(case, op_module)
    f = getattr(op_module, function_name(case))
    wrt, entry = _entry(f, "forward", ref.primals)
    out, tangent_out = entry(*ref.primals, *(ref.tangents[i] for i in wrt))
    assert_close(_numpy(out), ref.out, rtol=case.rtol, what=f"value of {case.expr}")
    _check(tangent_out, ref.jax_jvp, ref.fd_jvp, case, "jvp")
