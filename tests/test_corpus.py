"""The straight-line corpus: every program, both modes, against JAX and finite differences."""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest

import s2sgrad
from tests.oracles import assert_close, central_difference_grad, jnp_twin
from tests.programs import import_styles, straight_line

PROGRAMS = [(name, getattr(straight_line, name)) for name in straight_line.SHAPES]


def make_args(shapes, seed=0):
    rng = np.random.default_rng(seed)
    args = []
    for shape in shapes:
        if shape == ():
            args.append(float(rng.uniform(0.5, 1.5)))
        else:
            args.append(rng.uniform(-1.0, 1.0, size=shape))
    return args


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name,fn", PROGRAMS, ids=[n for n, _ in PROGRAMS])
def test_grad_matches_jax_and_finite_differences(name, fn, mode):
    args = make_args(straight_line.SHAPES[name])
    wrt = tuple(range(len(args)))
    got = s2sgrad.grad(fn, wrt=wrt, mode=mode)(*args)
    want = jax.grad(jnp_twin(fn), argnums=wrt)(*args)
    assert_close(got, tuple(np.asarray(w) for w in want), what=f"{name} {mode}")
    for i in wrt:
        fd = central_difference_grad(fn, args, i)
        assert_close(got[i], fd, rtol=1e-5, atol=1e-6, what=f"{name} {mode} vs FD, arg {i}")


@pytest.mark.parametrize("name,fn", PROGRAMS, ids=[n for n, _ in PROGRAMS])
def test_jvp_and_vjp_match_jax(name, fn):
    args = make_args(straight_line.SHAPES[name])
    tangents = make_args(straight_line.SHAPES[name], seed=1)
    twin = jnp_twin(fn)
    out, tangent_out = s2sgrad.jvp(fn, args, tangents)
    want_out, want_tangent = jax.jvp(twin, tuple(args), tuple(tangents))
    assert_close(out, np.asarray(want_out), what=f"{name} jvp primal")
    assert_close(tangent_out, np.asarray(want_tangent), what=f"{name} jvp tangent")
    out, vjp_fn = s2sgrad.vjp(fn, *args)
    cts = vjp_fn(1.7)
    _, jax_vjp = jax.vjp(twin, *args)
    assert_close(cts, tuple(np.asarray(c) for c in jax_vjp(1.7)), what=f"{name} vjp")


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize(
    "fn", [import_styles.plain_numpy, import_styles.renamed_module, import_styles.from_imports]
)
def test_every_import_style_resolves_to_the_same_rules(fn, mode):
    x = np.linspace(-1.0, 1.0, 5)
    want = np.cos(x) * np.exp(x) + np.sin(x) * np.exp(x)
    assert_close(s2sgrad.grad(fn, mode=mode)(x), want, what=fn.__name__)


def test_generated_code_spells_numpy_canonically_whatever_the_import_style():
    from s2sgrad import pipeline

    texts = {
        fn.__name__: pipeline.generate(fn, mode="reverse", wrt=(0,)).source
        for fn in (
            import_styles.plain_numpy,
            import_styles.renamed_module,
            import_styles.from_imports,
        )
    }
    for name, text in texts.items():
        code = "\n".join(line.split("#")[0] for line in text.split('"""')[-1].splitlines())
        assert "np.cos(x)" in code, (name, text)
        assert "onp." not in code and "numpy." not in code, (name, text)


class TestWrt:
    W = np.arange(6.0).reshape(2, 3) / 10
    b = np.array([0.1, -0.2, 0.3])
    x = np.array([[1.0, 2.0], [-1.0, 0.5]])

    def expected(self, argnums):
        return jax.grad(jnp_twin(straight_line.mlp_loss), argnums=argnums)(self.W, self.b, self.x)

    def test_by_index_returns_one_array(self):
        got = s2sgrad.grad(straight_line.mlp_loss, wrt=1)(self.W, self.b, self.x)
        assert_close(got, np.asarray(self.expected(1)))

    def test_by_tuple_of_indices_returns_a_tuple(self):
        got = s2sgrad.grad(straight_line.mlp_loss, wrt=(2, 0))(self.W, self.b, self.x)
        assert isinstance(got, tuple) and len(got) == 2
        assert_close(got, tuple(np.asarray(g) for g in self.expected((2, 0))))

    def test_by_name_and_tuple_of_names(self):
        got = s2sgrad.grad(straight_line.mlp_loss, wrt="W")(self.W, self.b, self.x)
        assert_close(got, np.asarray(self.expected(0)))
        got = s2sgrad.grad(straight_line.mlp_loss, wrt=("W", "b"))(self.W, self.b, self.x)
        assert_close(got, tuple(np.asarray(g) for g in self.expected((0, 1))))

    def test_keyword_call_arguments_bind_like_python(self):
        g = s2sgrad.grad(straight_line.mlp_loss, wrt="b")
        assert_close(g(self.W, x=self.x, b=self.b), np.asarray(self.expected(1)))

    def test_decorator_forms(self):
        def loss(W, b, x):
            return np.sum(np.tanh(x @ W + b) ** 2)

        bare = s2sgrad.grad(loss)
        configured = s2sgrad.grad(wrt=("W", "b"), mode="forward")(loss)
        want = jax.grad(jnp_twin(loss), argnums=(0, 1))(self.W, self.b, self.x)
        assert_close(bare(self.W, self.b, self.x), np.asarray(want[0]))
        assert_close(configured(self.W, self.b, self.x), tuple(np.asarray(w) for w in want))
        assert inspect.unwrap(bare) is loss

    def test_value_and_grad(self):
        value, g = s2sgrad.value_and_grad(straight_line.mlp_loss, wrt=0)(self.W, self.b, self.x)
        assert_close(value, straight_line.mlp_loss(self.W, self.b, self.x))
        assert_close(g, np.asarray(self.expected(0)))

    def test_gradient_of_an_unused_input_is_zero(self):
        def ignores_y(x, y):
            return np.sum(x**2)

        gx, gy = s2sgrad.grad(ignores_y, wrt=(0, 1))(np.ones(3), np.ones(2))
        assert_close(gy, np.zeros(2))
        assert_close(gx, 2 * np.ones(3))


class TestUsageErrors:
    def test_non_scalar_output_given_to_grad(self):
        def vector(x):
            return np.sin(x)

        for mode in ("reverse", "forward"):
            with pytest.raises(s2sgrad.UsageError, match=r"scalar.*shape \(3,\)"):
                s2sgrad.grad(vector, mode=mode)(np.ones(3))

    def test_bad_wrt(self):
        with pytest.raises(s2sgrad.UsageError, match="no parameter named 'q'"):
            s2sgrad.grad(straight_line.mlp_loss, wrt="q")
        with pytest.raises(s2sgrad.UsageError, match="only 3 parameters"):
            s2sgrad.grad(straight_line.mlp_loss, wrt=5)
        with pytest.raises(s2sgrad.UsageError, match="twice"):
            s2sgrad.grad(straight_line.mlp_loss, wrt=(0, "W"))

    def test_jvp_shape_mismatch(self):
        with pytest.raises(s2sgrad.UsageError, match="tangent 0"):
            s2sgrad.jvp(straight_line.transcendental, (np.ones(6),), (np.ones(5),))


def test_a_reassigned_global_is_seen_by_an_existing_gradient(monkeypatch):
    fn = straight_line.unary_and_constants
    g = s2sgrad.grad(fn, wrt=0)
    args = make_args(straight_line.SHAPES["unary_and_constants"])
    before = g(*args)
    monkeypatch.setattr(straight_line, "SCALE", 2 * straight_line.SCALE)
    after = g(*args)
    assert_close(after, np.asarray(jax.grad(jnp_twin(fn))(*args)))
    assert not np.allclose(before, after)
