"""Every registered rule template, run directly as Python, against jax and central differences.

Templates are plain functions, so they can be tested without the compiler:
for each case of ``op_cases.CASES`` we evaluate the primitive's arguments,
call the jvp template with tangents (summing its contributions) and the vjp
template with a random cotangent (accumulating its entries onto the inputs),
and compare with ``jax.jvp``/``jax.vjp`` of the same expression over
``jax.numpy`` (or with central differences where jax cannot trace it).
"""

from __future__ import annotations

import ast
import inspect
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from op_cases import CASES, NAMESPACE, Case
from oracles import assert_close, central_difference_grad, central_difference_jvp

from s2sgrad.rules import lookup


def _numpy_fn(case: Case):
    return eval(f"lambda {', '.join(case.names)}: {case.expr}", dict(NAMESPACE))


def _jax_fn(case: Case):
    return eval(
        f"lambda {', '.join(case.names)}: {case.expr}",
        {"np": jnp, "operator": operator, "float": float, "abs": abs},
    )


class _Bound:
    """The primitive call of a case, bound to the template's parameter names."""

    def __init__(self, case: Case, template, skip: int):
        self.case = case
        self.inputs = dict(zip(case.names, case.draw(), strict=True))
        arg_src, kw_src = case.call_sources()
        params = [
            p.name
            for p in list(inspect.signature(template).parameters.values())[skip:]
            if p.kind is not p.KEYWORD_ONLY
        ]
        self.sources = dict(zip(params, arg_src, strict=False))
        self.sources.update(kw_src)
        unknown = set(self.sources) - set(params)
        assert not unknown, f"{case.expr}: template {template.__name__} lacks parameters {unknown}"
        self.params = params
        env = dict(NAMESPACE, **self.inputs)
        self.values = {p: eval(src, env) for p, src in self.sources.items()}
        self.ans = _numpy_fn(case)(*self.inputs.values())

    def elements(self, param: str) -> list[str] | None:
        """The source of each element when the argument is a list/tuple literal, else None."""
        node = ast.parse(self.sources[param], mode="eval").body
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ast.unparse(e) for e in node.elts]
        return None


def _zeros_like(value):
    return 0.0 if value is None else np.zeros(np.shape(value))


def _template_jvp(case: Case, tangents: dict[str, np.ndarray]):
    rule = lookup(case.primitive)
    bound = _Bound(case, rule.jvp, skip=1)
    env = dict(NAMESPACE, **bound.inputs)
    kw, active = {}, []
    for p in rule.diff_params:
        src = bound.sources.get(p)
        elements = bound.elements(p) if src is not None else None
        if elements is not None:
            kw["d" + p] = [
                tangents[e] if e in tangents else _zeros_like(eval(e, env)) for e in elements
            ]
            active.append(any(e in tangents for e in elements))
        else:
            kw["d" + p] = tangents[src] if src in tangents else _zeros_like(bound.values.get(p))
            active.append(src in tangents)
    out = rule.jvp(bound.ans, **bound.values, **kw)
    contributions = out if len(rule.diff_params) > 1 else (out,)
    assert len(contributions) == len(rule.diff_params), f"{rule.jvp.__name__}: wrong arity"
    total = 0.0
    for p, c, is_active in zip(rule.diff_params, contributions, active, strict=True):
        if not is_active:
            continue  # the compiler emits only the contributions of active arguments
        # A contribution must already have the output's shape: the compiler may emit it alone.
        assert np.shape(c) == np.shape(bound.ans), (
            f"{rule.jvp.__name__}: contribution of d{p} has shape {np.shape(c)}, "
            f"output has {np.shape(bound.ans)}"
        )
        total = total + c
    return bound.ans, total


def _template_vjp(case: Case, g):
    rule = lookup(case.primitive)
    bound = _Bound(case, rule.vjp, skip=2)
    out = rule.vjp(g, bound.ans, **bound.values)
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


def _random_like(value, seed: int):
    rng = np.random.default_rng(seed)
    if isinstance(value, float):
        return float(rng.standard_normal())
    return rng.standard_normal(np.shape(value))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_jvp_template(case: Case):
    inputs = case.draw()
    tangents = {n: _random_like(v, i) for i, (n, v) in enumerate(zip(case.names, inputs, strict=True))}
    ans, tangent_out = _template_jvp(case, tangents)
    if case.jax:
        _, expected = jax.jvp(_jax_fn(case), tuple(inputs), tuple(tangents.values()))
        assert_close(tangent_out, expected, rtol=case.rtol, what=f"jvp of {case.expr}")
    if case.smooth:
        fd = central_difference_jvp(_numpy_fn(case), inputs, list(tangents.values()))
        assert_close(tangent_out, fd, rtol=case.fd_rtol, atol=1e-7, what=f"jvp (FD) of {case.expr}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_vjp_template(case: Case):
    inputs = case.draw()
    ans = _numpy_fn(case)(*inputs)
    g = _random_like(ans if np.ndim(ans) else np.asarray(ans), 99)
    cts = _template_vjp(case, g)
    if case.jax:
        _, pullback = jax.vjp(_jax_fn(case), *inputs)
        expected = pullback(jnp.asarray(g))
        assert_close(cts, expected, rtol=case.rtol, what=f"vjp of {case.expr}")
    if case.smooth:
        f = _numpy_fn(case)

        def loss(*args):
            return np.sum(f(*args) * g)

        fd = tuple(central_difference_grad(loss, inputs, i) for i in range(len(inputs)))
        assert_close(
            cts, [np.asarray(c) for c in fd], rtol=case.fd_rtol, atol=1e-7, what=f"vjp (FD) of {case.expr}"
        )
