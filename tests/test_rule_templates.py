"""Every registered rule template, run directly as Python, against jax and central differences.

Templates are plain functions, so they can be tested without the compiler:
for each case of ``op_cases.CASES`` we evaluate the primitive's arguments,
call the jvp template with tangents (summing the contributions of the inputs,
as the compiler does for active arguments) and the vjp template with a
cotangent (accumulating its entries onto the inputs), and compare with jax
(``jnp_twin`` of the same expression) and with central differences.
"""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest
from op_cases import CASES, NAMESPACE, Case, reference
from oracles import assert_close

from s2sgrad.rules import lookup


class _Bound:
    """A case's primitive call, bound to a template's parameter names."""

    def __init__(self, case: Case, template, skip: int, primals: list):
        self.inputs = dict(zip(case.names, primals, strict=True))
        arg_src, kw_src = case.call_sources()
        self.params = [
            p.name
            for p in list(inspect.signature(template).parameters.values())[skip:]
            if p.kind is not p.KEYWORD_ONLY
        ]
        self.sources = dict(zip(self.params, arg_src, strict=False))
        self.sources.update(kw_src)
        unknown = set(self.sources) - set(self.params)
        assert not unknown, f"{case.expr}: template {template.__name__} lacks parameters {unknown}"
        self.env = dict(NAMESPACE, **self.inputs)
        self.values = {p: eval(src, self.env) for p, src in self.sources.items()}
        self.ans = eval(case.expr, self.env)

    def elements(self, param: str) -> list[str] | None:
        """The source of each element when the argument is a list/tuple literal, else None."""
        node = ast.parse(self.sources[param], mode="eval").body
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ast.unparse(e) for e in node.elts]
        return None


def _zeros_like(value):
    return 0.0 if value is None else np.zeros(np.shape(value))


def template_jvp(case: Case, primals: list, tangents: list):
    """The output tangent of the case's primitive, by its jvp template."""
    rule = lookup(case.primitive)
    bound = _Bound(case, rule.jvp, 1, primals)
    tangent_of = dict(zip(case.names, tangents, strict=True))
    kw, active = {}, []
    for p in rule.diff_params:
        src = bound.sources.get(p)
        elements = bound.elements(p) if src is not None else None
        if elements is not None:
            kw["d" + p] = [
                tangent_of[e] if e in tangent_of else _zeros_like(eval(e, bound.env))
                for e in elements
            ]
            active.append(any(e in tangent_of for e in elements))
        else:
            kw["d" + p] = tangent_of[src] if src in tangent_of else _zeros_like(bound.values.get(p))
            active.append(src in tangent_of)
    # Inactive contributions (which the compiler never emits) may warn, e.g. log(x) for x < 0.
    with np.errstate(all="ignore"):
        out = rule.jvp(bound.ans, **bound.values, **kw)
    if rule.outputs > 1:
        # A joint template: the tangent of every output, the case returns some of them.
        return case.select_outputs(out)
    if len(rule.diff_params) > 1 and not isinstance(out, tuple):
        # A joint template of one output (accumulate, set_at): every tangent is given
        # (zeros for inactive ones, as the compiler passes them), and it returns the sum.
        return out
    contributions = out if len(rule.diff_params) > 1 else (out,)
    assert len(contributions) == len(rule.diff_params), f"{rule.jvp.__name__}: wrong arity"
    if isinstance(bound.ans, list):  # np.split: the tangent is the list of the pieces'
        return next(c for c, is_active in zip(contributions, active, strict=True) if is_active)
    total = 0.0
    for p, c, is_active in zip(rule.diff_params, contributions, active, strict=True):
        if not is_active:
            continue  # the compiler emits only the contributions of active arguments
        # Each contribution must have the output's shape: the compiler may emit it alone.
        assert np.shape(c) == np.shape(bound.ans), (
            f"{rule.jvp.__name__}: contribution of d{p} has shape {np.shape(c)}, "
            f"the output has {np.shape(bound.ans)}"
        )
        total = total + c
    return total


def template_vjp(case: Case, primals: list, g):
    """The cotangent of each input of the case, by its primitive's vjp template."""
    rule = lookup(case.primitive)
    bound = _Bound(case, rule.vjp, 2, primals)
    with np.errstate(all="ignore"):
        out = rule.vjp(case.full_cotangent(g, bound.ans), bound.ans, **bound.values)
    entries = out if isinstance(out, tuple) else (out,)
    cts = {name: np.zeros(np.shape(v)) for name, v in bound.inputs.items()}
    for p, ct in zip(bound.params, entries, strict=False):
        if ct is None or p not in bound.sources:
            continue
        elements = bound.elements(p)
        pairs = zip(elements, ct, strict=True) if elements else [(bound.sources[p], ct)]
        for src, c in pairs:
            if src in cts:
                assert np.shape(c) == np.shape(cts[src]), (
                    f"{rule.vjp.__name__}: cotangent of {p} has shape {np.shape(c)}, "
                    f"input {src} has {np.shape(cts[src])}"
                )
                cts[src] = cts[src] + c
    return tuple(cts[n] for n in case.names)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_jvp_template(case: Case, op_module):
    ref = reference(case, op_module)
    tangent_out = template_jvp(case, ref.primals, ref.tangents)
    if ref.jax_jvp is not None:
        assert_close(tangent_out, ref.jax_jvp, rtol=case.rtol, what=f"jvp of {case.expr}")
    if ref.fd_jvp is not None:
        assert_close(
            tangent_out, ref.fd_jvp, rtol=case.fd_rtol, atol=1e-7, what=f"jvp (FD) of {case.expr}"
        )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_vjp_template(case: Case, op_module):
    ref = reference(case, op_module)
    cts = template_vjp(case, ref.primals, ref.cotangent)
    if ref.jax_vjp is not None:
        assert_close(cts, ref.jax_vjp, rtol=case.rtol, what=f"vjp of {case.expr}")
    if ref.fd_vjp is not None:
        assert_close(cts, ref.fd_vjp, rtol=case.fd_rtol, atol=1e-7, what=f"vjp (FD) of {case.expr}")
