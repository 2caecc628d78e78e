"""The performance work of issue 6, pinned on generated code, each checked against an oracle.

* the shape analysis enters loops, so ``unbroadcast`` disappears where shapes provably
  match, a scalar's share is a plain ``np.sum`` (``np.vdot`` of a product), and values read only for their shape
  are not saved (TBR);
* index reads accumulate in place (``add_into``) into arrays the derivative owns, and
  an array read only inside a loop gets one zero buffer before it (no quadratic
  zeros-per-read);
* the cotangent of a dict read by key carries zero views for the other keys, and
  the user still receives ordinary arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from s2sgrad.transforms.shapes import statement_shapes

import s2sgrad
from s2sgrad import pipeline
from s2sgrad.runtime import add_into, unindex, zero_at
from tests.oracles import assert_close, central_difference_grad, jnp_twin


def stencil(u0, r, steps):
    u = u0.copy()
    for _ in range(steps):
        new = u.copy()
        new[1:-1] = u[1:-1] + r * (u[2:] - 2 * u[1:-1] + u[:-2])
        u = new
    return np.sum((u - 1.0) ** 2)


def scalar_loop(x):
    total = 0.0
    for i in range(x.shape[0] - 1):
        total = total + (x[i + 1] - x[i] ** 2) ** 2
    return total


def growing(x, n):
    s = 0.0
    for i in range(n):
        s = s + x * i  # s is a scalar on entry, an array after one step
    return np.sum(s)


def aliased(u, steps):
    for _ in range(steps):
        v = u
        w = u.copy()
        w[1:-1] = 0.5 * (v[2:] + v[:-2])
        u = w + v[0] * v
    return np.sum(u**2)


def mlp(params, x):
    hidden = np.tanh(x @ params["W1"] + params["b1"])
    return np.sum((hidden @ params["W2"] + params["b2"]) ** 2)


def _loop_body(source: str) -> str:
    """The backward sweep's loop of a generated module."""
    backward = source.split("# backward sweep", 1)[1]
    return backward.split("for _ in reversed(", 1)[1].split("return", 1)[0]


def test_loop_shapes_drop_unbroadcasts_and_saves():
    options = (("scalars", (1, 2)),)
    source = pipeline.generate(stencil, mode="reverse", wrt=(0, 1), options=options).source
    loop = _loop_body(source)
    assert "unbroadcast" not in loop, source
    assert "np.vdot(" in loop, source  # r's share of a stencil step: sum(dt9 * t7)
    assert source.count(".append(") == 1, source  # only the stencil's bracket is recorded
    u0 = np.random.default_rng(0).standard_normal(12)
    got = s2sgrad.grad(stencil, wrt=(0, 1))(u0, 0.3, 5)
    expected = (
        central_difference_grad(stencil, (u0, 0.3, 5), 0),
        central_difference_grad(stencil, (u0, 0.3, 5), 1),
    )
    assert_close(got, expected, rtol=1e-6)


def test_varying_loop_shapes_are_not_assumed_equal():
    source = pipeline.generate(growing, mode="reverse", wrt=(0,)).source
    assert "unbroadcast(" in source.split("# backward sweep", 1)[1], source
    x = np.arange(3.0)
    expected = jax.grad(jnp_twin(growing))(x, 4)
    assert_close(s2sgrad.grad(growing)(x, 4), np.asarray(expected), rtol=1e-12)


def test_statement_shapes_keep_only_what_every_iteration_keeps():
    from s2sgrad.pipeline import lower

    fn = lower(growing)
    envs = statement_shapes(fn)
    inner = fn.body[2].body[0]  # `t = x * i` inside the loop
    env = envs[id(inner)]
    assert env.shapes["s"] != env.shapes["x"]
    assert env.shapes["i"] == frozenset()  # a range target is a scalar


def test_index_reads_accumulate_in_place():
    source = pipeline.generate(stencil, mode="reverse", wrt=(0,)).source
    loop = _loop_body(source)
    assert "add_into(" in loop and loop.count("unindex(") <= 1, source
    source = pipeline.generate(scalar_loop, mode="reverse", wrt=(0,)).source
    before_loop, loop = source.split("for i in reversed(", 1)
    assert "dx = np.zeros_like(x)" in before_loop.split("# backward sweep")[1], source
    assert "unindex(" not in loop and "accumulate(" not in loop, source
    assert loop.count("add_into(dx,") == 2, source
    x = np.random.default_rng(1).standard_normal(7)
    assert_close(s2sgrad.grad(scalar_loop)(x), central_difference_grad(scalar_loop, (x,), 0))


def test_in_place_accumulation_respects_aliases():
    u = np.random.default_rng(2).standard_normal(9)
    expected = central_difference_grad(aliased, (u, 3), 0)
    assert_close(s2sgrad.grad(aliased)(u, 3), expected, rtol=1e-6)
    assert_close(np.asarray(s2sgrad.grad(aliased, backend="jax")(u, 3)), expected, rtol=1e-6)


def test_dict_cotangents_skip_the_other_keys_and_return_arrays():
    rng = np.random.default_rng(3)
    params = {
        "W1": rng.standard_normal((4, 5)),
        "b1": rng.standard_normal(5),
        "W2": rng.standard_normal((5, 2)),
        "b2": rng.standard_normal(2),
        "unused": rng.standard_normal(3),
    }
    x = rng.standard_normal((6, 4))
    grads = s2sgrad.grad(mlp)(params, x)
    assert set(grads) == set(params)
    for key, value in grads.items():
        assert type(value) is np.ndarray and value.flags.writeable, key
    assert not grads["unused"].any()
    expected = jax.grad(jnp_twin(mlp))({k: v for k, v in params.items()}, x)
    assert_close(grads, {k: np.asarray(v) for k, v in expected.items()}, rtol=1e-10)


def element_writes(x):
    y = np.zeros_like(x)
    for i in range(x.shape[0]):
        y[i] = np.sin(x[i]) * 2.0
    return np.sum(y * y)


def row_writes(X):
    Y = np.zeros_like(X)
    for i in range(X.shape[0]):
        Y[i] = np.tanh(X[i]) * X[0]  # rows: d(Y)[i] is a view, copied before it is zeroed
    return np.sum(Y * Y) + np.sum(X[0] * Y[-1])


def test_element_writes_zero_their_adjoint_in_place():
    """``y[i] = ...`` in a loop zeroes one element of ``dy`` per iteration, in place: a copy
    of all of ``dy`` per iteration (``zero_at``) made the loop quadratic. The part read
    first is copied (a row would be a view), and the gradient matches JAX's."""

    source = pipeline.generate(element_writes, mode="reverse", wrt=(0,)).source
    loop = source.split("for i in reversed(", 1)[1]
    assert "dy = zero_into(dy, i)" in loop and "zero_at(" not in loop, source
    assert "part_copy(dy, i)" in loop, source
    x = np.linspace(-1.0, 1.0, 7)

    def twin(x):
        y = jnp.zeros_like(x)
        for i in range(x.shape[0]):
            y = y.at[i].set(jnp.sin(x[i]) * 2.0)
        return jnp.sum(y * y)

    assert_close(s2sgrad.grad(element_writes)(x), jax.grad(twin)(x))
    assert_close(
        s2sgrad.grad(element_writes, backend="jax")(x), jax.grad(twin)(x)
    )  # functional there
    assert_close(s2sgrad.hessian(element_writes)(x), jax.hessian(twin)(x))
    # reverse over reverse (the rules of zero_into and part_copy), and float32 in and out
    assert_close(s2sgrad.jacrev(s2sgrad.grad(element_writes))(x), jax.hessian(twin)(x))
    x32 = x.astype(np.float32)
    assert_close(s2sgrad.grad(element_writes)(x32), jax.grad(twin)(jnp.asarray(x32)), rtol=1e-5)
    X = np.random.default_rng(3).standard_normal((4, 3))
    assert_close(s2sgrad.grad(row_writes)(X), central_difference_grad(row_writes, (X,), 0))


def test_no_stack_is_pushed_that_nothing_pops_into_a_read():
    """The parts ``y[i] = ...`` overwrote are restored in the backward sweep only if
    something reads ``y`` there; here nothing does, so they are not saved at all."""
    source = pipeline.generate(element_writes, mode="reverse", wrt=(0,)).source
    assert "y_part_stack" not in source, source
    for stack in {w for w in source.split() if w.endswith("_stack.pop()")}:
        popped = stack.split(".pop()")[0]
        assert f"{popped}.append(" in source


def updated_in_the_loop(x):
    y = x * 1.0
    total = 0.0
    for i in range(x.shape[0] - 1):
        total = total + y[i] ** 2 * x[i + 1]
        y[i + 1] = y[i + 1] + y[i] * 0.5  # y changes after each read
    return total


def test_index_reads_of_unchanging_arrays_are_recomputed_not_saved():
    """``x[i]``, ``x[i + 1]`` and ``i + 1`` are read again in the backward sweep instead of
    pushed per iteration; a read of an array the loop updates is still saved, since
    reading it again later would see the update."""
    source = pipeline.generate(scalar_loop, mode="reverse", wrt=(0,)).source
    forward, backward = source.split("# backward sweep")
    assert "x[i]" in backward.split("for i in reversed(", 1)[1], source
    assert not any(
        f"{t}_stack.append(" in forward
        for t in {line.split(" = ")[0].strip() for line in forward.splitlines() if "= x[" in line}
    ), source
    x = np.random.default_rng(4).standard_normal(6)
    expected = jax.grad(jnp_twin(scalar_loop))(x)
    assert_close(s2sgrad.grad(scalar_loop)(x), expected)
    assert_close(s2sgrad.grad(scalar_loop, backend="jax")(x), expected)
    hessian = jax.hessian(jnp_twin(scalar_loop))(x)
    assert_close(s2sgrad.hessian(scalar_loop)(x), hessian)
    assert_close(s2sgrad.jacrev(s2sgrad.grad(scalar_loop))(x), hessian)  # reverse over reverse
    x32 = x.astype(np.float32)
    assert_close(
        s2sgrad.grad(scalar_loop)(x32), jax.grad(jnp_twin(scalar_loop))(jnp.asarray(x32)), rtol=1e-5
    )

    source = pipeline.generate(updated_in_the_loop, mode="reverse", wrt=(0,)).source
    backward_loop = source.split("# backward sweep")[1]
    assert "= y[i]" not in backward_loop and "= x[t" in backward_loop, source
    expected = central_difference_grad(updated_in_the_loop, (x,), 0)
    assert_close(s2sgrad.grad(updated_in_the_loop)(x), expected, rtol=1e-6)
    assert_close(s2sgrad.grad(updated_in_the_loop, backend="jax")(x), expected, rtol=1e-6)


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def outer_sum(a, b):
    return np.sum(np.sin(a * b) * 2.0)


def summed_then_indexed(x):
    t = np.exp(x) * 3.0
    return np.sum(t) + t[0]


def plain_sum(x, c):
    return np.sum(x) * c


def test_the_seed_of_a_sum_stays_a_number_through_elementwise_work():
    """``unreduce(dout, t10)`` spread the seed over an array that ``dt10 * 2`` and
    ``100.0 * dt10`` then copied; where every use is elementwise with numbers or with
    arrays of the same shape, the seed stays the number it is (``dout * 2 * t8``)."""
    x = np.linspace(-1.0, 1.5, 7)
    assert_close(s2sgrad.grad(rosenbrock)(x), jax.grad(jnp_twin(rosenbrock))(x))
    source = pipeline.generate(rosenbrock, mode="reverse", wrt=(0,)).source
    assert "unreduce" not in source and "100.0 * dout" in source, source


def test_a_spread_seed_stays_an_array_where_a_use_needs_one():
    """Broadcasting operands (a column times a row), a spread met by an index's adjoint,
    and a spread that is the gradient itself (kept: the gradient has x's shape)."""
    a, b = np.linspace(0.1, 1.0, 3)[:, None], np.linspace(-1.0, 1.0, 4)[None, :]
    x = np.linspace(0.1, 1.0, 5)
    cases = ((outer_sum, (a, b), (0, 1)), (summed_then_indexed, (x,), 0), (plain_sum, (x, 2.5), 0))
    for fn, args, wrt in cases:
        want = jax.grad(jnp_twin(fn), argnums=wrt)(*args)
        for backend in ("numpy", "jax"):
            assert_close(s2sgrad.grad(fn, wrt=wrt, backend=backend)(*args), want)
            assert_close(
                s2sgrad.hessian(fn, backend=backend)(*args), jax.hessian(jnp_twin(fn))(*args)
            )
    assert "unreduce(" in pipeline.generate(plain_sum, mode="reverse", wrt=(0,)).source


def test_a_stencil_steps_adjoint_adds_into_its_copy():
    """The step ``new = u.copy(); new[1:-1] = ...``: the reads of ``u`` add into ``dnew``
    (no zeros, no ``du + dnew``), ``r``'s share is one ``np.vdot``, and ``-dt7`` then
    ``2 * dt4`` is one ``-2 * dt7``."""
    options = (("scalars", (1, 2)),)
    source = pipeline.generate(stencil, mode="reverse", wrt=(0, 1), options=options).source
    loop = _loop_body(source)
    assert "du = add_into(dnew, " in loop and "+ dnew" not in loop, source
    assert "unindex(" not in loop and "np.vdot(" in loop and "np.sum(" not in loop, source
    assert "-2 * dt7" in loop and "-dt7" not in loop, source
    u0 = np.random.default_rng(4).standard_normal(12)
    expected = tuple(central_difference_grad(stencil, (u0, 0.3, 6), i) for i in (0, 1))
    for dtype, rtol in ((np.float64, 1e-6), (np.float32, 2e-4)):
        for backend in ("numpy", "jax"):
            got = s2sgrad.grad(stencil, wrt=(0, 1), backend=backend)(u0.astype(dtype), 0.3, 6)
            what = f"{dtype.__name__} {backend}"
            assert_close(
                tuple(np.asarray(g, np.float64) for g in got), expected, rtol=rtol, what=what
            )
            assert np.asarray(got[0]).dtype == dtype, what


def _in_place(fn):
    """``fn`` lowered, through ``accumulate_in_place``, printed and loaded: the source and
    the function."""
    from s2sgrad.transforms.inplace import accumulate_in_place

    from s2sgrad import codegen

    lowered = accumulate_in_place(pipeline.lower(fn))
    source, _ = codegen.module_source([(lowered, None)], entry=lowered.name, header="test")
    namespace: dict = {}
    exec(compile(source, "<in place>", "exec"), namespace)
    return source, namespace[lowered.name]


# (Each body sits in a loop, where names keep one spelling, as derivative code's adjoints.)
def adds_into_the_copy(d, g):
    for _ in range(1):
        y = zero_at(d, np.s_[1:-1])
        d = unindex(g, d, np.s_[:-2])
        d = add_into(d, 2.0 * g, np.s_[2:])
        d = d + y
    return d


def reads_the_sum_midway(d, g):
    seen = d
    for _ in range(1):
        y = zero_at(d, np.s_[1:-1])
        d = unindex(g, d, np.s_[:-2])
        seen = d * 1.0
        d = d + y
    return d, seen


def reads_the_copy_midway(d, g):
    seen = d
    for _ in range(1):
        y = zero_at(d, np.s_[1:-1])
        d = unindex(g, d, np.s_[:-2])
        seen = y * 1.0
        d = d + y
    return d, seen


def makes_the_copy_after(d, g):
    for _ in range(1):
        e = unindex(g, d, np.s_[:-2])
        y = zero_at(d, np.s_[1:-1])
        e = e + y
    return e


def test_an_index_adjoint_adds_into_an_owned_array_only_where_nothing_sees_it():
    d, g = np.arange(1.0, 7.0), np.array([10.0, 20.0, 30.0, 40.0])
    for fn, fuses in [
        (adds_into_the_copy, True),
        (reads_the_sum_midway, False),
        (reads_the_copy_midway, False),
        (makes_the_copy_after, False),
    ]:
        source, rewritten = _in_place(fn)
        assert ("add_into(y, g" in source) == fuses, (fn.__name__, source)
        expected = fn(d.copy(), g)
        assert_close(rewritten(d.copy(), g), expected, what=fn.__name__)


def layered(params, x):
    hidden = np.tanh(x @ params["W"] + params["b"])
    scale = params["layer"]["scale"]
    return np.sum((hidden * scale) ** 2) + 0.1 * np.sum(params["W"] ** 2)


def test_a_dict_read_by_constant_keys_gets_one_cotangent_per_key():
    """No ``unindex``/``accumulate`` of whole dicts: one name per key, assembled once; a key
    read twice adds up, an unread key gets zeros, a nested dict is one key's cotangent;
    checked against JAX on both backends, with has_aux, and by second derivatives."""
    rng = np.random.default_rng(5)
    params = {
        "W": rng.standard_normal((4, 3)),
        "unused": rng.standard_normal(2),
        "b": rng.standard_normal(3),
        "layer": {"scale": rng.standard_normal(3), "shift": rng.standard_normal(3)},
    }
    x = rng.standard_normal((5, 4))
    options = (("containers", (0,)),)
    source = pipeline.generate(layered, mode="reverse", wrt=(0,), options=options).source
    backward = source.split("# backward sweep", 1)[1]
    assert ", params, " not in backward and "accumulate(dparams" not in backward, source
    assert "dparams_W = accumulate(" in backward, source  # "W" is read twice
    assert 'dparams = zeros_if_none({"W": dparams_W, "layer": ' in backward, source
    expected = jax.grad(jnp_twin(layered))(params, x)
    for backend in ("numpy", "jax"):
        got = s2sgrad.grad(layered, backend=backend)(params, x)
        assert set(got) == set(params) and set(got["layer"]) == {"scale", "shift"}
        assert_close(got, expected, rtol=1e-10, what=backend)
        assert not np.asarray(got["unused"]).any() and not np.asarray(got["layer"]["shift"]).any()
    params32 = {k: (v.astype(np.float32) if k != "layer" else v) for k, v in params.items()}
    got = s2sgrad.grad(layered)(params32, x.astype(np.float32))
    assert got["W"].dtype == np.float32 and got["b"].dtype == np.float32
    assert_close(got, jax.grad(jnp_twin(layered))(params32, x.astype(np.float32)), rtol=1e-5)
    got, aux = s2sgrad.grad(layered_with_aux, has_aux=True)(params, x)
    assert_close(got, expected, rtol=1e-10, what="has_aux")
    v = {
        k: (np.ones_like(a) if k != "layer" else {"scale": a["scale"], "shift": a["shift"]})
        for k, a in params.items()
    }
    got_hvp = s2sgrad.hvp(layered)(params, x, v)
    expected_hvp = jax.jvp(lambda p: jax.grad(jnp_twin(layered))(p, x), (params,), (v,))[1]
    assert_close(got_hvp, expected_hvp, rtol=1e-8, what="hvp")


def layered_with_aux(params, x):
    return layered(params, x), params["b"]


def element_loop(x):
    total = 0.0
    for i in range(x.shape[0] - 1):
        j = x.shape[0] - 1 - i  # an index computed from integers
        total = total + (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[j]) ** 2
    return np.sum(total)


def test_elements_of_a_vector_are_scalars():
    """Called with a 1-D array, ``x[i]`` (an integer index) is a scalar to the shape
    analysis: nothing is saved for its shape alone, no ``unbroadcast`` or ``np.sum`` of a
    number remains. Called with a 2-D array, ``x[i]`` is a row: another module, also right."""
    options = (("ranks", ((0, 1, True),)), ("value_unread", True))
    source = pipeline.generate(element_loop, mode="reverse", wrt=(0,), options=options).source
    backward = source.split("# backward sweep", 1)[1]
    backward = "\n".join(ln for ln in backward.splitlines() if not ln.strip().startswith("#"))
    # Saved: the two values the adjoint multiplies, and the index j it adds at.
    assert source.count("_stack = []") == 3 and "j_stack = []" in source, source
    assert "unbroadcast(" not in source and "np.sum(" not in backward, source
    rng = np.random.default_rng(6)
    for x in (rng.standard_normal(7), rng.standard_normal((5, 3))):
        expected = jax.grad(jnp_twin(element_loop))(x)
        assert_close(s2sgrad.grad(element_loop)(x), expected, rtol=1e-10, what=str(x.shape))
        assert_close(s2sgrad.value_and_grad(element_loop)(x)[1], expected, rtol=1e-10)
        assert_close(s2sgrad.grad(element_loop, backend="jax")(x), expected, rtol=1e-10)
    # float32 elements, a Python-float total, and second derivatives through the loop
    x32 = rng.standard_normal(6).astype(np.float32)
    got = s2sgrad.grad(element_loop)(x32)
    assert got.dtype == np.float32
    assert_close(got, jax.grad(jnp_twin(element_loop))(x32), rtol=1e-5)
    x = rng.standard_normal(5)
    expected = jax.hessian(jnp_twin(element_loop))(x)
    assert_close(s2sgrad.hessian(element_loop)(x), expected, rtol=1e-9, what="hessian")
    assert_close(s2sgrad.jacrev(s2sgrad.grad(element_loop))(x), expected, rtol=1e-9)


def rotated(a, b):
    return np.sum(np.cross(a, b) ** 2 * a) + np.sum(np.cross(b, a[0]))


def test_np_cross_runs_as_runtime_cross_in_numpy_code():
    """NumPy derivative code calls ``runtime.cross`` for ``np.cross`` (3-vectors, faster);
    its gradients, dtypes and second derivatives match JAX, with broadcast operands."""
    source = pipeline.generate(rotated, mode="reverse", wrt=(0, 1)).source
    code = "\n".join(ln for ln in source.splitlines() if not ln.strip().startswith("#"))
    assert "np.cross(" not in code and "cross(" in code, source
    rng = np.random.default_rng(9)
    for a, b in [
        (rng.standard_normal((4, 3)), rng.standard_normal((4, 3))),
        (rng.standard_normal((4, 3)), rng.standard_normal(3)),
        (rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)),
    ]:
        tol = 1e-5 if a.dtype == np.float32 else 1e-10
        expected = jax.grad(jnp_twin(rotated), argnums=(0, 1))(a, b)
        for backend in ("numpy", "jax"):
            got = s2sgrad.grad(rotated, wrt=(0, 1), backend=backend)(a, b)
            assert np.asarray(got[0]).dtype == a.dtype
            assert_close(got, expected, rtol=tol, what=f"{a.shape} {b.shape} {backend}")
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    expected = jax.hessian(jnp_twin(rotated), argnums=(0, 1))(a, b)
    assert_close(s2sgrad.hessian(rotated, wrt=(0, 1))(a, b), expected, rtol=1e-9)
