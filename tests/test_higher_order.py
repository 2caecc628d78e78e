"""Second and third derivatives: s2sgrad differentiating its own derivative code, against JAX.

* ``hessian`` of every program of the control-flow and straight-line corpora, on
  both backends (on JAX every other control-flow program unless
  ``S2SGRAD_LONG_TESTS=1``), against ``jax.hessian`` of the jnp twin, or against
  central differences of the (separately verified) gradient where JAX cannot run the
  program (in-place updates);
* ``hvp`` against that Hessian times a vector;
* ``jacfwd``/``jacrev`` of vector-valued programs against ``jax.jacfwd``;
* third derivatives of the scalar programs against ``jax.grad`` three times: all
  reverse mode (through loops: adjoint stacks), and forward over forward over reverse;
* Hessians by reverse over reverse (``jacrev(grad(f))``) on a sample of the corpus, and
  ``grad`` of a function that calls ``grad(f)`` through a ``while`` loop, on both backends;
* composition to any depth keeps ``has_aux``, tuple ``wrt`` and the cache.

On the JAX backend a user function whose ``is None`` tests JAX would answer wrongly is
refused at its line for second derivatives as for first ones.
"""

from __future__ import annotations

import functools
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad import runtime
from s2sgrad.errors import UnsupportedSyntaxError
from tests.oracles import assert_close, jnp_twin
from tests.programs import control_flow as cf
from tests.programs import straight_line as sl
from tests.programs import vector_valued as vv
from tests.test_corpus import make_args as straight_line_args

PROGRAMS = {f"cf.{n}": (getattr(cf, n), n in cf.JNP_TWIN - cf.LONG_LOOPS) for n in cf.ARGS}
PROGRAMS |= {f"sl.{n}": (getattr(sl, n), True) for n in sl.SHAPES}


def _args(name: str) -> tuple[list, tuple[int, ...]]:
    corpus, short = name.split(".", 1)
    if corpus == "cf":
        return cf.make_args(short), cf.float_positions(short)
    return straight_line_args(sl.SHAPES[short]), tuple(range(len(sl.SHAPES[short])))


def _square(blocks, args: list, wrt: tuple[int, ...]) -> np.ndarray:
    """The Hessian blocks ``H[a][b]`` as one square matrix over the flattened ``wrt``."""
    sizes = [np.size(args[i]) for i in wrt]
    return np.block(
        [
            [np.reshape(np.asarray(blocks[a][b]), (sizes[a], sizes[b])) for b in range(len(wrt))]
            for a in range(len(wrt))
        ]
    )


@functools.cache
def reference_hessian(name: str) -> np.ndarray:
    """``jax.hessian`` of the jnp twin; where there is none, central differences of the
    gradient (itself checked against three oracles by test_control_flow)."""
    fn, twin = PROGRAMS[name]
    args, wrt = _args(name)
    if twin:
        return _square(jax.hessian(jnp_twin(fn), argnums=wrt)(*args), args, wrt)
    gradient = s2sgrad.grad(fn, wrt=wrt)
    columns = []
    for i in wrt:
        x = np.asarray(args[i], dtype=float)
        for idx in np.ndindex(x.shape):
            step = 1e-6 * max(1.0, abs(x[idx]))

            def at(delta, i=i, x=x, idx=idx):
                moved = x.copy()
                moved[idx] += delta
                shifted = list(args)
                shifted[i] = moved if x.ndim else float(moved)
                return np.concatenate([np.ravel(g) for g in gradient(*shifted)])

            columns.append((at(step) - at(-step)) / (2 * step))
    return np.stack(columns, axis=1)


def _tolerances(name: str) -> dict:
    twin = PROGRAMS[name][1]
    return {"rtol": 1e-9, "atol": 1e-10} if twin else {"rtol": 1e-5, "atol": 1e-6}


# hvp compiles its own module (forward over reverse, all of wrt at once): every
# straight-line program and every third control-flow one keep the suite's time in bounds.
HVP_PROGRAMS = {n for n in PROGRAMS if n.startswith("sl.")} | {
    n for n in list(PROGRAMS)[::3] if n.startswith("cf.")
}
# The JAX backend compiles each second-order module with XLA (seconds each): the default
# run takes every straight-line program and every other control-flow one on JAX;
# S2SGRAD_LONG_TESTS=1 takes them all (a separate, longer run, like the fuzzer's).
JAX_PROGRAMS = (
    set(PROGRAMS)
    if os.environ.get("S2SGRAD_LONG_TESTS")
    else {n for n in PROGRAMS if n.startswith("sl.")} | set(list(PROGRAMS)[::2])
)


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_hessian_of_every_corpus_program_on_both_backends(name):
    """One test per program, so that the reference is computed once for both backends
    (and for ``hvp`` against the Hessian times a vector, on a sample of the programs)."""
    fn, _ = PROGRAMS[name]
    args, wrt = _args(name)
    want = reference_hessian(name)
    got = _square(s2sgrad.hessian(fn, wrt=wrt)(*args), args, wrt)
    assert_close(got, want, what=f"{name} Hessian", **_tolerances(name))
    if name in JAX_PROGRAMS:
        _check_jax_hessian(name, fn, args, wrt, want)
    if name in HVP_PROGRAMS:
        rng = np.random.default_rng(7)
        vs = tuple(rng.uniform(-1.0, 1.0, np.shape(args[i])) for i in wrt)
        product = s2sgrad.hvp(fn, wrt=wrt)(*args, vs)
        got = np.concatenate([np.ravel(g) for g in product])
        expected = want @ np.concatenate([np.ravel(v) for v in vs])
        assert_close(got, expected, what=f"{name} hvp", **_tolerances(name))


def _check_jax_hessian(name: str, fn, args: list, wrt: tuple, want: np.ndarray) -> None:
    got = _square(s2sgrad.hessian(fn, wrt=wrt, backend="jax")(*args), args, wrt)
    assert_close(got, want, what=f"{name} Hessian (jax)", **_tolerances(name))


# --------------------------------------------------------------------------- Jacobians


def _vector_args(name: str) -> list:
    rng = np.random.default_rng(3)
    return [
        float(rng.uniform(0.5, 1.5)) if s == () else rng.uniform(-1.0, 1.0, s)
        for s in vv.ARGS[name]
    ]


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("jacobian", ["jacfwd", "jacrev"])
@pytest.mark.parametrize("name", list(vv.ARGS))
def test_jacobians_of_vector_valued_programs(name, jacobian, backend):
    fn = getattr(vv, name)
    args = _vector_args(name)
    wrt = tuple(range(len(args)))
    got = getattr(s2sgrad, jacobian)(fn, wrt=wrt, backend=backend)(*args)
    want = jax.jacfwd(jnp_twin(fn), argnums=wrt)(*args)
    assert_close(jax.tree.map(np.asarray, got), jax.tree.map(np.asarray, want), rtol=1e-10)


def test_jacobian_structure_follows_jax_for_one_argument_and_tuples():
    args = _vector_args("polar_to_cartesian")
    got = s2sgrad.jacobian(vv.polar_to_cartesian)(*args)
    want = jax.jacrev(jnp_twin(vv.polar_to_cartesian))(*args)
    assert isinstance(got, tuple) and len(got) == 2
    assert_close(got, tuple(np.asarray(w) for w in want), rtol=1e-12)


# --------------------------------------------------------------------------- third order

SCALAR_PROGRAMS = [
    n
    for n in cf.ARGS
    if all(np.ndim(a) == 0 for a in cf.make_args(n)) and n in cf.JNP_TWIN - cf.LONG_LOOPS
]

# Third order on JAX compiles three modules through XLA: two loop programs and one with
# branches by default.
JAX_THIRD_ORDER = {"newton_sqrt", "while_with_break_and_continue", "piecewise_potential"}


@pytest.mark.parametrize("name", SCALAR_PROGRAMS)
def test_third_derivatives_of_scalar_programs(name):
    """Reverse over reverse over reverse, through the loops too (adjoint stacks), and
    forward over forward under it."""
    fn = getattr(cf, name)
    args = cf.make_args(name)
    want = jax.grad(jax.grad(jax.grad(jnp_twin(fn))))(*args)
    inner = s2sgrad.grad(s2sgrad.grad(fn, mode="forward"), mode="forward")
    assert_close(s2sgrad.grad(inner)(*args), np.asarray(want), rtol=1e-9, what=f"{name} f'''")
    backends = ["numpy", "jax"] if name in JAX_THIRD_ORDER else ["numpy"]
    for backend in backends:
        third = s2sgrad.grad(
            s2sgrad.grad(s2sgrad.grad(fn, backend=backend), backend=backend), backend=backend
        )
        assert_close(third(*args), np.asarray(want), rtol=1e-9, what=f"{name} f''' {backend}")


def test_straight_line_scalar_program_to_fourth_order():
    x, y = straight_line_args(sl.SHAPES["python_scalar_only"])
    twin = jnp_twin(sl.python_scalar_only)
    got, want = sl.python_scalar_only, twin
    for _ in range(4):
        got, want = s2sgrad.grad(got), jax.grad(want)
    assert_close(got(x, y), np.asarray(want(x, y)), rtol=1e-9)


# --------------------------------------------------------------------------- composition


def _loss(w, x):
    h = np.tanh(x @ w)
    return np.sum(h * h) + 0.1 * np.sum(w**4), np.max(h)


def _loss_twin(w, x):
    h = jnp.tanh(x @ w)
    return jnp.sum(h * h) + 0.1 * jnp.sum(w**4)


W = np.random.default_rng(0).uniform(-1.0, 1.0, (3, 2))
XS = np.random.default_rng(1).uniform(-1.0, 1.0, (4, 3))


def _f32_loss(p, x):
    return np.sum(np.sin(p["w"]) * x) + p["b"] ** 2 * np.sum(x)


def _f32_twin(p, x):
    return jnp.sum(jnp.sin(p["w"]) * x) + p["b"] ** 2 * jnp.sum(x)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_second_derivatives_keep_float32_as_jax_does(backend):
    """The first-order code runs with a float64 seed; what the composition returns is
    cast back to each argument's dtype, so Hessians and jvps of gradients of float32
    arguments are float32, leaf by leaf, as JAX's are."""
    p = {"w": np.linspace(0.1, 0.7, 3, dtype=np.float32), "b": np.float32(0.5)}
    x = np.linspace(1.0, 2.0, 3, dtype=np.float32)
    v = {"w": np.ones(3, np.float32), "b": np.float32(1.0)}
    got = {
        "hessian": s2sgrad.hessian(_f32_loss, backend=backend)(p, x),
        "jacfwd(grad)": s2sgrad.jacfwd(s2sgrad.grad(_f32_loss, backend=backend))(p, x),
        "jvp(grad)": s2sgrad.jvp(s2sgrad.grad(_f32_loss, backend=backend), (p, x), (v, 0 * x))[1],
        "hvp": s2sgrad.hvp(_f32_loss, backend=backend)(p, x, v),
    }
    want = {
        "hessian": jax.hessian(_f32_twin)(p, x),
        "jacfwd(grad)": jax.jacfwd(jax.grad(_f32_twin))(p, x),
        "jvp(grad)": jax.jvp(jax.grad(_f32_twin), (p, x), (v, 0 * x))[1],
        "hvp": jax.jvp(lambda q: jax.grad(_f32_twin)(q, x), (p,), (v,))[1],
    }
    for what in got:
        got_leaves, got_tree = jax.tree_util.tree_flatten(got[what])
        want_leaves, want_tree = jax.tree_util.tree_flatten(want[what])
        assert got_tree == want_tree, what
        for g, w in zip(got_leaves, want_leaves):
            assert np.asarray(g).dtype == np.float32 == w.dtype, what
            assert_close(np.asarray(g, np.float64), np.asarray(w, np.float64), rtol=1e-5, what=what)


def test_hessian_and_hvp_keep_has_aux():
    hessian, aux = s2sgrad.hessian(_loss, has_aux=True)(W, XS)
    want = np.asarray(jax.hessian(_loss_twin)(W, XS))
    assert_close(hessian, want, rtol=1e-10)
    assert aux == pytest.approx(np.max(np.tanh(XS @ W)))
    v = np.linspace(-1.0, 1.0, W.size).reshape(W.shape)
    product, aux = s2sgrad.hvp(_loss, has_aux=True)(W, XS, v)
    assert_close(product, np.tensordot(want, v, axes=v.ndim), rtol=1e-10, what="hvp")
    assert aux == pytest.approx(np.max(np.tanh(XS @ W)))


def test_grad_of_grad_with_tuple_wrt_and_has_aux_through_jvp():
    g = s2sgrad.grad(_loss, wrt=(0, 1), has_aux=True)
    v = (np.ones_like(W), np.zeros_like(XS))
    (grads, aux), (dgrads, daux) = s2sgrad.jvp(g, (W, XS), v)
    want = jax.jvp(jax.grad(_loss_twin, argnums=(0, 1)), (W, XS), v)
    assert_close(grads, tuple(np.asarray(w) for w in want[0]), rtol=1e-12)
    assert_close(dgrads, tuple(np.asarray(w) for w in want[1]), rtol=1e-10)


def test_hessian_vector_products_for_scipy_newton_cg():
    scipy_optimize = pytest.importorskip("scipy.optimize")

    def objective(w):
        return _loss(np.reshape(w, W.shape), XS)[0]

    value_and_gradient = s2sgrad.value_and_grad(_flat_loss)
    result = scipy_optimize.minimize(
        lambda w: value_and_gradient(w, XS),
        np.ravel(W),
        jac=True,
        hessp=lambda w, p: s2sgrad.hvp(_flat_loss)(w, XS, p),
        method="Newton-CG",
    )
    assert result.success
    assert np.linalg.norm(s2sgrad.grad(_flat_loss)(result.x, XS)) < 1e-6
    assert objective(result.x) <= objective(np.ravel(W))


def _flat_loss(w, x):
    h = np.tanh(x @ np.reshape(w, (3, 2)))
    return np.sum(h * h) + 0.1 * np.sum(w**4)


# Reverse over reverse compiles a second-order adjoint per program: a sample by default,
# every program with S2SGRAD_LONG_TESTS=1 (all 81 match on NumPy, stop 26).
REVERSE_OVER_REVERSE = (
    set(PROGRAMS) if os.environ.get("S2SGRAD_LONG_TESTS") else set(list(PROGRAMS)[1::8])
)


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@pytest.mark.parametrize("name", sorted(REVERSE_OVER_REVERSE))
def test_hessian_by_reverse_over_reverse_through_loops(name):
    """``jacrev(grad(f))``: the adjoint of the first-order adjoint, whose loops save and
    restore values on stacks (each gets an adjoint stack), against ``jax.hessian``."""
    fn, _ = PROGRAMS[name]
    args, wrt = _args(name)
    got = _square(s2sgrad.jacrev(s2sgrad.grad(fn, wrt=wrt), wrt=wrt)(*args), args, wrt)
    assert_close(got, reference_hessian(name), what=f"{name} jacrev(grad)", **_tolerances(name))


def _gradient_norm(x):
    return _inner_gradient(x) ** 2


_inner_gradient = None  # set by the test: a grad(f) read through a global


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_grad_of_a_function_calling_grad_through_a_while_loop(backend):
    """``grad(h)`` where ``h`` calls ``g = grad(f)`` and ``f`` iterates a ``while``
    loop with ``break``: reverse over reverse through the recorded loop, on both
    backends (JAX: a backward loop that replays and records in one scan)."""
    global _inner_gradient
    name = "while_with_break_and_continue"
    fn = getattr(cf, name)
    args = cf.make_args(name)
    twin = jnp_twin(fn)
    _inner_gradient = s2sgrad.grad(fn, backend=backend)
    try:
        got = s2sgrad.grad(_gradient_norm, backend=backend)(*args)
    finally:
        _inner_gradient = None
    want = jax.grad(lambda x: jax.grad(twin)(x) ** 2)(*args)
    assert_close(got, np.asarray(want), rtol=1e-9, what=f"grad of grad({name})^2 ({backend})")


def test_hessian_rejects_what_grad_rejects():
    with pytest.raises(s2sgrad.UsageError):
        s2sgrad.hessian(_flat_loss, wrt="nope")
    with pytest.raises(s2sgrad.UsageError):
        s2sgrad.hvp(_flat_loss)(np.ravel(W), XS)  # no v
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s2sgrad.hvp(_flat_loss)(np.ravel(W), XS, np.ones(6))


def test_second_order_code_is_printed_by_derivative_source_and_inspect(tmp_path, capsys):
    path = tmp_path / "springs.py"
    path.write_text(
        "import numpy as np\n\n\n"
        "def energy(x, k):\n"
        "    d = x[1:] - x[:-1]\n"
        "    return 0.5 * k * np.sum(d**2) + 0.25 * np.sum(x**4)\n"
    )
    from s2sgrad.cli import load_function, main

    energy = load_function(f"{path}:energy")
    source = s2sgrad.derivative_source(energy, order=2)
    assert "def grad_of_energy_jvp(x, k, dx):" in source
    assert "energy_vjp_jvp(x, k, np.ones(()), dx)" in source  # first-order code, differentiated
    assert "# line " in source and "ddx" in source
    assert main(["inspect", f"{path}:energy", "--order", "2"]) == 0
    printed = capsys.readouterr().out
    assert "def grad_of_energy_jvp(x, k, dx):" in printed and "s2sgrad-cache" not in printed
    reverse = s2sgrad.derivative_source(energy, order=2, mode="reverse")
    assert "def grad_of_energy_vjp(" in reverse


def _accumulates_in_place(x, v):
    a = np.sin(x) * 2.0
    a = runtime.add_into(a, v * v, np.s_[1:])
    a = runtime.add_into(a, x[:2] * v[:2], np.array([0, 2]))
    a = runtime.zero_into(a, 3)
    return np.sum(a * a)


def _accumulates_twin(x, v):
    a = jnp.sin(x) * 2.0
    a = a.at[1:].add(v * v)
    a = a.at[jnp.array([0, 2])].add(x[:2] * v[:2])
    a = a.at[3].set(0.0)
    return jnp.sum(a * a)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_add_into_rules_in_both_modes(mode):
    """``add_into`` and ``zero_into`` update their first argument in place, so the
    systematic cases (which evaluate one expression on the same arrays repeatedly) cannot
    check them: here, on a fresh array, through first and second derivatives."""
    x = np.array([0.3, -0.8, 1.1, 0.5])
    v = np.array([0.7, -0.2, 0.4])
    got = s2sgrad.grad(_accumulates_in_place, wrt=(0, 1), mode=mode)(x, v)
    want = jax.grad(_accumulates_twin, argnums=(0, 1))(x, v)
    assert_close(got, tuple(np.asarray(w) for w in want), rtol=1e-12)
    hessian = s2sgrad.hessian(_accumulates_in_place, wrt=(0, 1))(x, v)
    want = jax.hessian(_accumulates_twin, argnums=(0, 1))(x, v)
    assert_close(hessian, jax.tree.map(np.asarray, want), rtol=1e-10)


def _running_with_a_none(x):
    prev = None
    s = 0.0
    for _ in range(3):
        if prev is None:
            s = s + np.sum(x**2)
        else:
            s = s + np.sum(x * prev)
        prev = x * 0.5
    return s


def test_a_none_test_jax_cannot_follow_is_refused_at_the_users_line_for_second_order_too():
    x = np.array([0.3, 0.7])
    assert_close(s2sgrad.hessian(_running_with_a_none)(x), 4.0 * np.eye(2), rtol=1e-12)
    with pytest.raises(UnsupportedSyntaxError) as info:
        s2sgrad.hessian(_running_with_a_none, backend="jax")(x)
    first = str(info.value).splitlines()[0]
    assert "test_higher_order.py" in first and "`prev` may be None or a value" in first


def test_second_derivatives_under_the_callers_jax_jit():
    """``backend="jax"`` Hessians, Jacobians of gradients and hvps run inside a caller's
    ``jax.jit`` (the Jacobian is assembled with ``jax.numpy``, which holds tracers), through
    a loop, as ``jax.hessian`` does."""
    x = np.linspace(0.2, 0.9, 4)
    want = jax.hessian(_loop_twin)(x)
    v = np.linspace(1.0, -1.0, 4)
    cases = {
        "hessian": (jax.jit(s2sgrad.hessian(_loop, backend="jax")), want),
        "jacrev(grad)": (
            jax.jit(s2sgrad.jacrev(s2sgrad.grad(_loop, backend="jax"), backend="jax")),
            want,
        ),
        "hvp": (jax.jit(lambda y: s2sgrad.hvp(_loop, backend="jax")(y, v)), want @ v),
    }
    for what, (run, expected) in cases.items():
        assert_close(np.asarray(run(x)), np.asarray(expected), rtol=1e-12, what=what)


def _loop(x):
    s = 0.0
    for i in range(x.shape[0]):
        s = s + np.sin(x[i]) * x[i] ** 2 * s + x[i]
    return s


def _loop_twin(x):
    s = 0.0
    for i in range(x.shape[0]):
        s = s + jnp.sin(x[i]) * x[i] ** 2 * s + x[i]
    return s


def _update_then_rebind(x):
    w = np.copy(x)
    w[1:] *= np.tanh(np.sum(x))
    w = w + np.sin(x)
    return np.sum(w)


def _update_then_rebind_twin(x):
    w = x.at[1:].multiply(jnp.tanh(jnp.sum(x)))
    return jnp.sum(w + jnp.sin(x))


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_second_order_through_a_view_the_first_order_code_restores(backend):
    """Fuzz seed 62-250: the first-order code reads ``t1 = w[1:]`` (a view), updates ``w``
    in place, rebinds ``w``, and in the backward sweep restores both (``w = w_saved``,
    ``w[1:] = old``) before reading ``t1``. The tangents must alias as the values do: a
    copy of ``w``'s tangent at the rebinding left ``t1``'s tangent view stale."""
    x = np.array([[-0.44290668], [0.21942194]])
    v = np.array([[0.3], [-0.8]])
    want = np.asarray(jax.hessian(_update_then_rebind_twin)(jnp.asarray(x))).reshape(2, 2)
    got = s2sgrad.hessian(_update_then_rebind, backend=backend)(x).reshape(2, 2)
    assert_close(got, want, rtol=1e-12, what=f"hessian ({backend})")
    product = np.asarray(s2sgrad.hvp(_update_then_rebind, backend=backend)(x, v)).ravel()
    assert_close(product, want @ v.ravel(), rtol=1e-12, what=f"hvp ({backend})")
