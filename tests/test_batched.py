"""Batches of tangents (``s2sgrad.runtime.batched``): NumPy operations on a batch equal
the same operations member by member, and Jacobians take the batched pass.

The oracle of the batching layer is NumPy itself applied to each member: every
operation below runs on a ``Batched`` and on each member separately, and the
results must agree, including the shapes a rank-aligning broadcast, an axis shift
or a moved advanced-index axis would get wrong. The derivatives built on it are
checked against JAX here (jacfwd, jacrev, hessian take the batched pass) and in
tests/test_higher_order.py (every corpus Hessian goes through it on NumPy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad import backends, memos, runtime
from s2sgrad.runtime import batched
from s2sgrad.runtime.batched import Batched, BatchingError
from tests.oracles import assert_close

N = 4  # members in a batch
RNG = np.random.default_rng(3)


def _b(*shape: int) -> Batched:
    return Batched(RNG.normal(size=(N, *shape)))


def _a(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape)


MASK = np.array([[True, False, True], [False, True, True]])

# (what, function, arguments): each Batched argument is a batch, the rest are shared.
OPERATIONS = [
    ("vector + matrix (rank alignment)", np.add, (_b(3), _a(2, 3))),
    ("matrix * vector", np.multiply, (_b(2, 3), _a(3))),
    ("both batched, ranks differ", np.add, (_b(3), _b(2, 3))),
    ("sin", np.sin, (_b(2, 3),)),
    ("power", np.power, (_b(2, 3), 2)),
    ("scalar - batch", lambda x: 2.0 - x, (_b(3),)),
    ("-batch", lambda x: -x, (_b(2, 3),)),
    ("batch / array", lambda x, y: x / y, (_b(1, 3), _a(2, 1) + 3.0)),
    ("maximum", np.maximum, (_b(3), _a(2, 3))),
    ("where", np.where, (MASK, _b(3), 0.0)),
    ("where, both batched", np.where, (MASK, _b(2, 3), _b(3))),
    ("sum", np.sum, (_b(2, 3),)),
    ("sum axis 0", lambda x: np.sum(x, axis=0), (_b(2, 3),)),
    ("sum axis -1 keepdims", lambda x: np.sum(x, axis=-1, keepdims=True), (_b(2, 3),)),
    ("sum axes (0, 2)", lambda x: np.sum(x, axis=(0, 2)), (_b(2, 3, 2),)),
    ("mean axis 1", lambda x: np.mean(x, axis=1), (_b(2, 3),)),
    ("method sum", lambda x: x.sum(axis=0), (_b(2, 3),)),
    ("prod axis 0", lambda x: np.prod(x, axis=0), (_b(2, 3),)),
    ("cumsum axis -1", lambda x: np.cumsum(x, axis=-1), (_b(2, 3),)),
    ("add.reduce", lambda x: np.add.reduce(x), (_b(2, 3),)),
    ("vector @ matrix", np.matmul, (_b(3), _a(3, 4))),
    ("matrix @ vector", np.matmul, (_a(2, 3), _b(3))),
    ("matrix @ matrix", np.matmul, (_a(2, 3), _b(3, 4))),
    ("batched matrix @ vector", np.matmul, (_b(2, 3), _a(3))),
    ("batched matrix @ batched matrix", np.matmul, (_b(2, 3), _b(3, 4))),
    ("batched vector @ batched vector", np.matmul, (_b(3), _b(3))),
    ("batched vector @ batched matrix", np.matmul, (_b(3), _b(3, 4))),
    ("batched matrix @ batched vector", np.matmul, (_b(2, 3), _b(3))),
    ("vector @ batched vector", np.matmul, (_a(3), _b(3))),
    ("stack of matrices @ batched matrix", np.matmul, (_a(5, 2, 3), _b(3, 4))),
    ("operator @", lambda a, x: a @ x, (_a(2, 3), _b(3))),
    ("dot matrix, vector", np.dot, (_a(2, 3), _b(3))),
    ("dot with a scalar", np.dot, (_b(2, 3), 2.0)),
    ("dot of 3-d (per member)", np.dot, (_b(2, 2, 3), _a(3, 2))),
    ("reshape", lambda x: np.reshape(x, (3, 2)), (_b(2, 3),)),
    ("reshape -1", lambda x: np.reshape(x, -1), (_b(2, 3),)),
    ("method reshape", lambda x: x.reshape(3, 2), (_b(2, 3),)),
    ("transpose", np.transpose, (_b(2, 3, 4),)),
    ("transpose axes", lambda x: np.transpose(x, (1, -1, 0)), (_b(2, 3, 4),)),
    (".T", lambda x: x.T, (_b(2, 3),)),
    ("swapaxes", lambda x: np.swapaxes(x, 0, -1), (_b(2, 3, 4),)),
    ("moveaxis", lambda x: np.moveaxis(x, -1, 0), (_b(2, 3, 4),)),
    ("expand_dims", lambda x: np.expand_dims(x, -1), (_b(2, 3),)),
    ("squeeze", np.squeeze, (_b(1, 3, 1),)),
    ("ravel", np.ravel, (_b(2, 3),)),
    ("flip", np.flip, (_b(2, 3),)),
    ("diff", lambda x: np.diff(x, axis=0), (_b(3, 2),)),
    ("roll", lambda x: np.roll(x, 1), (_b(2, 3),)),
    ("roll axis -1", lambda x: np.roll(x, (1, 2), axis=(0, -1)), (_b(2, 3),)),
    ("broadcast_to", lambda x: np.broadcast_to(x, (2, 3)), (_b(3),)),
    ("concatenate", lambda x, y: np.concatenate([x, y]), (_b(2), _a(3))),
    ("concatenate axis 1", lambda x, y: np.concatenate([x, y], axis=1), (_b(2, 3), _b(2, 1))),
    ("stack axis 1", lambda x, y: np.stack([x, y], axis=1), (_b(2, 3), _a(2, 3))),
    ("index int", lambda x: x[1], (_b(3, 2),)),
    ("index column", lambda x: x[:, 0], (_b(3, 2),)),
    ("index ellipsis", lambda x: x[..., 1:], (_b(3, 2),)),
    ("index array", lambda x: x[np.array([0, 2, 0])], (_b(3, 2),)),
    ("index mask", lambda x: x[MASK], (_b(2, 3),)),
    ("index two arrays", lambda x: x[[0, 1], [1, 2]], (_b(2, 3),)),
    ("index int and array apart", lambda x: x[0, :, [0, 1]], (_b(2, 3, 2),)),
    ("index None", lambda x: x[None, :, 1], (_b(3, 2),)),
    ("copy", np.copy, (_b(2, 3),)),
    ("zeros_like", np.zeros_like, (_b(2, 3),)),
    ("astype", lambda x: x.astype(np.float32), (_b(2, 3),)),
    ("real", np.real, (_b(3),)),
    ("solve (per member)", np.linalg.solve, (_a(3, 3) + 3 * np.eye(3), _b(3))),
    ("einsum (per member)", lambda a, x: np.einsum("ij,j->i", a, x), (_a(2, 3), _b(3))),
    ("outer (per member)", np.outer, (_b(2), _a(3))),
    ("tensordot (per member)", lambda x, y: np.tensordot(x, y, 1), (_b(2, 3), _a(3, 2))),
]


def _members(args: tuple, k: int) -> tuple:
    return tuple(a.data[k] if isinstance(a, Batched) else a for a in args)


@pytest.mark.parametrize("what, fn, args", OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_an_operation_on_a_batch_is_the_operation_on_each_member(what, fn, args):
    got = fn(*args)
    want = np.stack([np.asarray(fn(*_members(args, k))) for k in range(N)])
    assert isinstance(got, Batched), what
    assert got.data.shape == want.shape, what
    assert got.dtype == want.dtype, what
    np.testing.assert_allclose(got.data, want, rtol=1e-13, atol=1e-13, err_msg=what)


def test_a_batch_looks_like_one_member():
    x = _b(2, 3)
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and len(x) == 2
    assert np.shape(x) == (2, 3) and np.ndim(x) == 2 and np.size(x) == 6
    assert np.result_type(x, 1.0) == np.float64


def test_in_place_updates_of_a_batch_update_each_member():
    x = _b(3, 2)
    before = x.data.copy()
    part = _b(2)
    x[1] += part
    x[:, 0] = 0.0
    x *= 2.0
    want = before.copy()
    want[:, 1] += part.data
    want[:, :, 0] = 0.0
    want *= 2.0
    np.testing.assert_array_equal(x.data, want)


@pytest.mark.parametrize(
    "use",
    [
        np.asarray,
        float,
        bool,
        lambda t: list(t),
        lambda t: np.zeros(3).__iadd__(t),
        lambda t: np.add.at(np.zeros(3), np.array([0, 0, 1]), t),
        lambda t: np.copyto(np.zeros(3), t),
        lambda t: np.negative(t, out=np.zeros(3)),
        lambda t: np.cumsum(t, out=np.zeros(3)),
    ],
    ids=[
        "asarray",
        "float",
        "bool",
        "iterate",
        "into an unbatched array",
        "add.at into an unbatched array",
        "copyto into an unbatched array",
        "ufunc out= unbatched",
        "function out= unbatched",
    ],
)
def test_what_a_batch_cannot_be_is_refused(use):
    with pytest.raises((BatchingError, ValueError, TypeError)):
        use(_b(3))


def test_a_pass_a_batch_cannot_go_through_runs_once_per_seed():
    """The per-seed passes are the reference: an entry that converts its seed to an
    array (as a batch cannot be) gets them, and is remembered with the reason."""
    calls = []

    def entry(x, seed):
        calls.append(seed)
        return x, np.asarray(seed) * 2.0

    seeds = np.eye(3)
    first, second = backends.get("numpy").over_seeds(entry, (1.0,), seeds, 3)
    np.testing.assert_array_equal(second, 2.0 * seeds)
    assert "BatchingError" in memos.table_of(entry, "unbatchable")["why"]
    assert len(calls) == 1 + 3  # the batch, refused; then one per seed


def _mlp(w, x):
    h = np.tanh(x @ np.reshape(w[:12], (3, 4)) + w[12:16])
    return np.sum((h @ w[16:20]) ** 2) / x.shape[0]


def _mlp_twin(w, x):
    h = jnp.tanh(x @ jnp.reshape(w[:12], (3, 4)) + w[12:16])
    return jnp.sum((h @ w[16:20]) ** 2) / x.shape[0]


def _field(x):
    y = np.empty_like(x)
    y[0] = x[0] ** 2
    for i in range(1, x.shape[0]):
        y[i] = np.sin(x[i]) * y[i - 1] + x[i - 1]
    return y


def _field_twin(x):
    y = [x[0] ** 2]
    for i in range(1, x.shape[0]):
        y.append(jnp.sin(x[i]) * y[i - 1] + x[i - 1])
    return jnp.stack(y)


W = np.linspace(-0.5, 0.6, 20)
X = np.linspace(-1.0, 1.0, 15).reshape(5, 3)


@pytest.mark.parametrize("kind", ["jacfwd", "jacrev", "hessian"])
def test_jacobians_on_numpy_take_one_batched_pass(kind, monkeypatch):
    """``jacfwd``/``jacrev``/``hessian`` of an MLP loss and of a loop with in-place
    element updates: against JAX, and through the batched pass (no derivative of
    these is left to one pass per seed)."""
    refusals = []
    table_of = memos.table_of

    def recording(fn, name):
        table = table_of(fn, name)
        if name == "unbatchable":
            refusals.append(table)
        return table

    monkeypatch.setattr(memos, "table_of", recording)
    if kind == "hessian":
        got = s2sgrad.hessian(_mlp)(W, X)
        want = jax.hessian(_mlp_twin)(W, X)
    else:
        got = getattr(s2sgrad, kind)(_field)(W[:6])
        want = getattr(jax, kind)(_field_twin)(W[:6])
    assert_close(got, np.asarray(want), rtol=1e-11, atol=1e-12, what=kind)
    assert refusals and not any(refusals), refusals


HELPERS = [
    ("unindex, basic", lambda g: runtime.unindex(g, np.zeros((3, 2)), 1), (2,)),
    (
        "unindex, repeated rows",
        lambda g: runtime.unindex(g, np.zeros((3, 2)), np.array([0, 2, 0])),
        (3, 2),
    ),
    ("zero_at", lambda d: runtime.zero_at(d, np.s_[1:]), (3, 2)),
    ("add_at into a shared array", lambda b: runtime.add_at(np.ones((3, 2)), np.s_[0], b), (2,)),
    ("add_at, repeated rows", lambda b: runtime.add_at(np.ones(4), np.array([1, 1]), b), (2,)),
    ("set_at", lambda b: runtime.set_at(np.ones((3, 2)), (0, 1), b), ()),
]


@pytest.mark.parametrize("what, helper, shape", HELPERS, ids=[h[0] for h in HELPERS])
def test_helpers_that_make_arrays_take_a_batch_whole(what, helper, shape, monkeypatch):
    """The cotangent helpers that allocate and write (the adjoints of reads and writes at
    an index) give a batch of results in one call, equal to the members' results."""
    batch = _b(*shape)
    want = np.stack([helper(batch.data[k]) for k in range(N)])
    monkeypatch.setattr(batched, "_each", _no_member_by_member)
    got = helper(batch)
    assert isinstance(got, Batched), what
    np.testing.assert_array_equal(got.data, want, err_msg=what)


def _no_member_by_member(func, args, kwargs):
    raise AssertionError(f"{getattr(func, '__name__', func)} ran member by member")


def test_batched_helpers_do_not_share_an_accumulator():
    """``add_into`` given a batched part and a shared accumulator: each member adds into
    an accumulator of its own (adding every member into one array would be wrong)."""
    helper = batched._member_wise(s2sgrad.runtime.add_into, N)
    acc = np.zeros(3)
    part = _b()
    got = helper(acc, part, 1)
    want = np.zeros((N, 3))
    want[:, 1] = part.data
    np.testing.assert_array_equal(got.data, want)
    np.testing.assert_array_equal(acc, np.zeros(3))


SCALE = 2.0


def _scaled(x):
    return SCALE * np.sin(x)


def test_the_batched_pass_reads_the_globals_the_function_reads_now():
    """The cache rebinds a derivative module's free names before each use; the batched
    twin of the module must see them too (a global changed between two Jacobians; fuzz
    seed 61-93 found the twin reading the values it was made with)."""
    global SCALE
    x = np.linspace(0.1, 0.3, 3)
    try:
        first = s2sgrad.jacfwd(_scaled)(x)
        SCALE = 3.0
        second = s2sgrad.jacfwd(_scaled)(x)
    finally:
        SCALE = 2.0
    assert_close(first, np.diag(2.0 * np.cos(x)), rtol=1e-14)
    assert_close(second, np.diag(3.0 * np.cos(x)), rtol=1e-14)
