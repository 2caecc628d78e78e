"""Rule templates lowered once across processes (``cache.stored``, ``templates.lower_template``).

A process that compiles reads the templates it needs from the cache directory as pickles
instead of parsing each again. What it reads must be what lowering gives (every built-in
template, compared after a round trip through the directory), and the files are held to
the derivative modules' rules: unsealed, tampered, foreign-writable files are not read,
and ``clear`` removes them.
"""

from __future__ import annotations

import linecache
import os
from dataclasses import replace

import numpy as np
import pytest
from s2sgrad.transforms import templates

import s2sgrad
from s2sgrad import cache
from s2sgrad.rules.registry import all_rules


@pytest.fixture
def directory(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV_VAR, str(path))
    templates.lower_template.cache_clear()
    yield path
    templates.lower_template.cache_clear()


def _same(a, b) -> bool:
    """Equal templates. (A number a template reads, np.pi, comes back equal but not the
    same object, which ir.Ref's equality asks for: compared by what they print.)"""
    return a.locals == b.locals and repr(replace(a, locals=None)) == repr(replace(b, locals=None))


def _stored(path) -> list:
    return sorted(p for p in path.iterdir() if p.name.endswith(".pickle"))


def test_every_builtin_template_reads_back_as_lowered(directory):
    linecache.clearcache()  # (as tests and doctest do: a deflinear template's text goes)
    builtin = [r for r in all_rules() if r.origin.startswith("s2sgrad.rules")]
    pairs = [(r.jvp, "jvp") for r in builtin if r.jvp] + [(r.vjp, "vjp") for r in builtin if r.vjp]
    assert len(builtin) > 100
    fresh = [templates._lower_template(fn, kind) for fn, kind in pairs]
    written = [templates.lower_template(fn, kind) for fn, kind in pairs]
    assert len(_stored(directory)) == len(set(pairs))  # (a few templates serve two rules)
    templates.lower_template.cache_clear()  # as in a new process
    read = [templates.lower_template(fn, kind) for fn, kind in pairs]
    for want, first, got in zip(fresh, written, read, strict=True):
        assert _same(first, want) and _same(got, want), want.fn
        assert got.fn is want.fn


def test_a_tampered_or_foreign_writable_file_is_not_read(directory, monkeypatch):
    rule = next(
        r for r in all_rules() if r.vjp is not None and r.origin == "s2sgrad.rules.elementwise"
    )
    want = templates._lower_template(rule.vjp, "vjp")
    templates.lower_template(rule.vjp, "vjp")
    [path] = _stored(directory)
    made = []
    real = templates._lower_template
    monkeypatch.setattr(
        templates, "_lower_template", lambda fn, kind: made.append(fn) or real(fn, kind)
    )

    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit of the pickle
    templates.lower_template.cache_clear()
    assert _same(templates.lower_template(rule.vjp, "vjp"), want) and len(made) == 1
    assert path.read_bytes() == data  # rewritten

    os.chmod(path, 0o666)
    templates.lower_template.cache_clear()
    assert _same(templates.lower_template(rule.vjp, "vjp"), want) and len(made) == 2

    os.chmod(path, 0o600)
    templates.lower_template.cache_clear()
    assert _same(templates.lower_template(rule.vjp, "vjp"), want) and len(made) == 2


def test_clear_removes_stored_templates_and_gradients_still_agree(directory):
    def f(x):
        return np.sum(np.tanh(x) * np.exp(x))

    x = np.array([0.1, -0.4, 0.7])
    want = (1 - np.tanh(x) ** 2) * np.exp(x) + np.tanh(x) * np.exp(x)
    np.testing.assert_allclose(s2sgrad.grad(f)(x), want, rtol=1e-12)
    assert _stored(directory)
    cache.clear()
    assert not _stored(directory) and not list(directory.glob("*.py"))
    templates.lower_template.cache_clear()
    np.testing.assert_allclose(s2sgrad.grad(f)(x), want, rtol=1e-12)


def test_a_template_is_kept_without_its_function(directory):
    def halve(x):
        return x * 0.5

    def halve_vjp(g, ans, x):  # (a local function: it would not pickle)
        return g * 0.5

    assert templates.lower_template(halve_vjp, "vjp").fn is halve_vjp
    assert len(_stored(directory)) == 1  # kept without the function, which this process has


USER_RULE = """
import numpy as np
import s2sgrad


def softclip(x):
    return np.log1p(np.exp(x))


@s2sgrad.defvjp(softclip)
def softclip_vjp(g, ans, x):
    slope = 1.0 / (1.0 + np.exp(-x))
    return g * slope


def loss(x):
    return np.sum(softclip(x) ** 2)
"""

RUN_USER_RULE = """
import json, sys
import numpy as np
import s2sgrad
from s2sgrad.rules import lookup
from s2sgrad.transforms import templates
import userrule
x = np.array([-1.0, 0.5, 2.0])
grad = s2sgrad.grad(userrule.loss)(x)
lowered = templates.lower_template(lookup(userrule.softclip).vjp, "vjp")
print(json.dumps({"grad": grad.tolist(), "line": lowered.body[0].loc.line}))
"""


def _run_user_rule(tmp_path, directory) -> dict:
    import json
    import subprocess
    import sys

    env = dict(os.environ, S2SGRAD_CACHE_DIR=str(directory), PYTHONPATH=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", RUN_USER_RULE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_user_rule_s_template_in_new_processes_and_moved_down_its_file(tmp_path, directory):
    """A user's rule, lowered in one process and read in the next: the same gradient
    (against its closed form); moved three lines down its file, the same text is lowered
    again, with its new lines (its IR carries them), not read back with the old ones."""
    module = tmp_path / "userrule.py"
    module.write_text(USER_RULE)
    x = np.array([-1.0, 0.5, 2.0])
    want = 2.0 * np.log1p(np.exp(x)) / (1.0 + np.exp(-x))
    first = _run_user_rule(tmp_path, directory)
    stored = _stored(directory)
    second = _run_user_rule(tmp_path, directory)
    assert _stored(directory) == stored  # read, not written again
    for run in (first, second):
        np.testing.assert_allclose(run["grad"], want, rtol=1e-12)
    module.write_text("\n\n\n" + USER_RULE)
    moved = _run_user_rule(tmp_path, directory)
    np.testing.assert_allclose(moved["grad"], want, rtol=1e-12)
    assert moved["line"] == first["line"] + 3
