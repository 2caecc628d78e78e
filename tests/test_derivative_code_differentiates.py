"""Derivative code is code s2sgrad can differentiate again (issue 16, step 1).

The helpers generated code calls (``unbroadcast``, ``unreduce``, ``unindex``, the
product adjoints...) have rules of their own, so a first-order module s2sgrad wrote,
imported as an ordinary module, differentiates like user code. Here: the
Hessian-vector product as reverse over reverse and forward over reverse, through the
generated ``f_vjp`` of straight-line programs, against ``jax.hessian`` of the jnp twin.
The composition API (``grad(grad(f))``) is not built yet; this is the machinery it
will stand on.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad import pipeline
from tests.oracles import assert_close

PROGRAMS = {
    # matmul adjoints, unreduce of a full sum, a product rule
    "tanh_layer": (
        """
        def f(x, w):
            h = np.tanh(x @ w)
            return np.sum(h * h)
        """,
        lambda x, w: jnp.sum(jnp.tanh(x @ w) ** 2),
        [(2, 3), (3, 2)],
    ),
    # unbroadcast of a broadcast operand, unreduce along an axis, unindex of a slice
    "broadcast_axis_slice": (
        """
        def f(x, b):
            y = np.sin(x + b)
            m = np.mean(y * y, axis=0)
            return np.sum(m[1:] * x[0, 1:])
        """,
        lambda x, b: jnp.sum(jnp.mean(jnp.sin(x + b) ** 2, axis=0)[1:] * x[0, 1:]),
        [(3, 4), (4,)],
    ),
    # joins and splits, a take, a dot
    "stack_take_dot": (
        """
        def f(x, v):
            s = np.stack([x * x, np.cos(x)], axis=1)
            t = np.take(s, [0, 2], axis=0)
            return np.dot(np.ravel(t), np.concatenate([v, v]))
        """,
        lambda x, v: jnp.dot(
            jnp.ravel(jnp.take(jnp.stack([x * x, jnp.cos(x)], axis=1), jnp.array([0, 2]), axis=0)),
            jnp.concatenate([v, v]),
        ),
        [(3,), (2,)],
    ),
}


def _module(name: str, source: str, tmp_path) -> object:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def hvp_of(tmp_path):
    """``(hvp, args)``: the first-order module s2sgrad writes for a program, imported as
    an ordinary module, and a function ``hvp(*args, v)`` = d/dx <grad_x f, v>."""
    made = []

    def make(name: str, source: str):
        user = _module(
            f"ho_user_{name}", "import numpy as np\n\n" + textwrap.dedent(source), tmp_path
        )
        generated = pipeline.generate(user.f, mode="reverse", wrt=(0, 1)).source
        first = _module(f"ho_first_{name}", generated, tmp_path)
        second = _module(
            f"ho_second_{name}",
            "import numpy as np\n\n"
            f"from ho_first_{name} import {first.__s2sgrad_entry__} as f_vjp\n\n\n"
            "def along(x, other, v):\n"
            "    out, grads = f_vjp(x, other, 1.0)\n"
            "    return np.sum(grads[0] * v)\n",
            tmp_path,
        )
        made.extend([user.__name__, first.__name__, second.__name__])
        return second.along

    yield make
    for name in made:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", PROGRAMS)
def test_hessian_vector_product_through_generated_code(name, mode, hvp_of):
    source, twin, shapes = PROGRAMS[name]
    rng = np.random.default_rng(len(name))
    x, other = (rng.uniform(-1.0, 1.0, s) for s in shapes)
    v = rng.uniform(-1.0, 1.0, shapes[0])
    along = hvp_of(name, source)
    got_x, got_other = s2sgrad.grad(along, wrt=(0, 1), mode=mode)(x, other, v)
    hessian = jax.hessian(twin, argnums=(0, 1))(jnp.asarray(x), jnp.asarray(other))
    n = x.size
    want_x = np.reshape(np.reshape(hessian[0][0], (n, n)) @ np.ravel(v), x.shape)
    want_other = np.reshape(np.reshape(hessian[0][1], (n, other.size)).T @ np.ravel(v), other.shape)
    assert_close(got_x, want_x, rtol=1e-10, atol=1e-12)
    assert_close(got_other, want_other, rtol=1e-10, atol=1e-12)
