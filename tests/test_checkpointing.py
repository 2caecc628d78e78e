"""Binomial checkpointing (``transforms.checkpointing``, ``s2sgrad.runtime.revolve`` and
its JAX twin ``backends.jax.revolve``).

The schedule is checked against an independent dynamic program for the fewest reruns
any schedule with that many snapshots can make (and its snapshot bound, counted by the
runtime, and its memory, measured); gradients of checkpointed loops against JAX, central
differences, and the unscheduled gradient, on both backends, for snapshot counts from 1
to more than the trip count; every loop of the control-flow and rerun corpora is either
checkpointed with the same gradient or refused with an error that names the statement.
"""

from __future__ import annotations

import functools
import math
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2sgrad
from s2sgrad import api, cache, pipeline
from s2sgrad.backends.jax import revolve as jax_revolve
from s2sgrad.errors import UnsupportedSyntaxError, UsageError
from s2sgrad.runtime import revolve
from tests.oracles import assert_close, central_difference_grad, jnp_twin
from tests.programs import checkpointed as cp
from tests.programs import control_flow as cf
from tests.programs import rerun as rp

# --------------------------------------------------------------------------- the schedule


@functools.cache
def fewest_reruns(length: int, free: int) -> int:
    """The fewest iterations any schedule reruns to reverse ``length`` iterations from a
    snapshot at the first, with ``free`` more snapshots: each split tried (Griewank's
    recursion, by brute force)."""
    if length == 1:
        return 0
    if free == 0:
        return length * (length - 1) // 2
    return min(
        j + fewest_reruns(length - j, free - 1) + fewest_reruns(j, free) for j in range(1, length)
    )


def test_each_split_is_an_optimal_one():
    for free in range(1, 7):
        for length in range(2, 120):
            j = revolve._binomial_split(length, free)
            assert 1 <= j < length
            cost = j + fewest_reruns(length - j, free - 1) + fewest_reruns(j, free)
            assert cost == fewest_reruns(length, free), (length, free, j)


def _run_schedule(trips: int, snapshots: int, online: bool = False) -> tuple[int, int]:
    """Reverse a loop whose state is its position, as generated code drives the runtime:
    ``(iterations rerun, most snapshots held)``; checks each restored state. ``online``:
    a while loop's schedule, which learns the trip count at the end."""
    ck = revolve.checkpoints(snapshots, None if online else range(trips), None)
    state = 0
    for t in range(trips):
        ck = revolve.store_checkpoint(ck, state)
        state = t + 1
    reruns = 0
    for i in reversed(range(trips)):
        state, start, stop, ck = revolve.restore_checkpoint(ck)
        assert (state, stop) == (start, i)
        for t in range(start, stop):
            ck = revolve.store_checkpoint(ck, state)
            state, reruns = t + 1, reruns + 1
        assert state == i
    return reruns, ck.peak


@pytest.mark.parametrize("snapshots", [1, 2, 3, 5])
def test_the_schedule_reruns_the_fewest_iterations_and_holds_at_most_its_snapshots(snapshots):
    for trips in range(1, 70):
        reruns, peak = _run_schedule(trips, snapshots)
        # The forward sweep itself advances to the last iteration: revolve's first turn.
        assert reruns == fewest_reruns(trips, snapshots - 1) - (trips - 1), trips
        assert peak <= snapshots


def test_the_repetition_number_bound_holds_for_long_loops():
    """n <= C(s + r, s): each iteration runs at most r + 1 times besides the forward sweep."""
    for trips, snapshots in [(1000, 3), (10_000, 10), (20_000, 20)]:
        r = 0
        while math.comb(snapshots + r, snapshots) < trips:
            r += 1
        reruns, peak = _run_schedule(trips, snapshots)
        assert peak == snapshots
        assert reruns <= r * trips


@pytest.mark.parametrize("snapshots", [1, 2, 3, 4, 7, 20])
def test_the_online_schedule_of_while_loops_keeps_its_bound(snapshots):
    """Without the trip count: at most ``snapshots`` held, and (s >= 3) each iteration
    rerun at most r times for the bound the runtime's docstring proves."""
    for trips in [*range(1, 80), 500, 3000]:
        reruns, peak = _run_schedule(trips, snapshots, online=True)
        assert peak <= snapshots
        if snapshots >= 3:
            half = (snapshots + 1) // 2
            stretch = 2 * trips / (half - 1)
            r = 0
            while math.comb(snapshots // 2 + 1 + r, r) < stretch:
                r += 1
            assert reruns <= r * trips, (trips, reruns, r)


@pytest.mark.parametrize("trips,snapshots", [(1, 1), (2, 1), (9, 2), (40, 3), (64, 50)])
def test_the_jax_tables_follow_the_numpy_schedule(trips, snapshots):
    plan = jax_revolve.Schedule(trips, snapshots)
    rows = [None] * (snapshots + 2)
    stores = iter(plan.store_rows)
    for t in range(trips):
        rows[next(stores)] = t
    for k, i in enumerate(reversed(range(trips))):
        start = int(plan.starts[k])
        assert rows[plan.restore_rows[k]] == start <= i
        for t in range(start, i):
            rows[next(stores)] = t
    assert next(stores, None) is None


@pytest.mark.parametrize("trips,snapshots", [(1, 2), (7, 1), (30, 3)])
def test_the_jax_runtime_restores_what_the_numpy_runtime_restores(trips, snapshots):
    """Both runtimes driven as generated code drives them, the state a pair (an array and
    a number): the same states come back, from the same positions."""
    runs = {}
    for name, rt in (("numpy", revolve), ("jax", jax_revolve)):
        state = (np.zeros(3), 0.0)
        ck = rt.checkpoints(snapshots, range(trips), state)
        for t in range(trips):
            ck = rt.store_checkpoint(ck, state)
            state = (state[0] + 1.0, float(t + 1))
        restored = []
        for _ in range(trips):
            kept, start, stop, ck = rt.restore_checkpoint(ck)
            restored.append((np.asarray(kept[0]), float(kept[1]), int(start), int(stop)))
            state = kept
            for t in range(int(start), int(stop)):
                ck = rt.store_checkpoint(ck, state)
                state = (state[0] + 1.0, float(t + 1))
        runs[name] = restored
    for (a, x, start, stop), (b, y, *bounds) in zip(runs["numpy"], runs["jax"]):
        assert_close(b, a)
        assert (y, *bounds) == (x, start, stop) and x == start


# --------------------------------------------------------------------------- gradients


def _floats(args) -> tuple[int, ...]:
    return tuple(i for i, a in enumerate(args) if not isinstance(a, int))


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("name", sorted(cp.ARGS))
def test_checkpointed_loops_differentiate_as_jax_and_central_differences(name, backend):
    fn, args = getattr(cp, name), cp.ARGS[name]
    wrt = _floats(args)
    got = s2sgrad.grad(fn, wrt=wrt, backend=backend)(*args)
    source = s2sgrad.derivative_source(fn, *args, wrt=wrt, backend=backend)
    assert "restore_checkpoint" in source
    if name != "inside_an_outer_loop":  # (whose outer loop saves, as it would anyway)
        assert "_stack" not in source  # no value saved per iteration
    if name not in cp.IN_PLACE:  # (a jnp twin cannot write into its arrays)
        want = jax.grad(jnp_twin(fn), argnums=wrt)(*args)
        assert_close(got, tuple(np.asarray(w) for w in want), what=f"{name} on {backend}")
    if backend == "numpy" or name in cp.IN_PLACE:
        for k, i in enumerate(wrt):
            fd = central_difference_grad(fn, list(args), i)
            assert_close(got[k], fd, rtol=1e-5, atol=1e-6, what=f"{name} vs FD, argument {i}")


def _trip_count(x, c, tol) -> int:
    r, n = x.copy(), 0
    while np.max(np.abs(r)) > tol:
        r, n = r * c + 0.01 * np.sin(r), n + 1
    return n


def while_until_small_unrolled(x, c, steps):  # (the JAX oracle, as many steps as it ran)
    r = x
    for _ in range(steps):
        r = r * c + 0.01 * jnp.sin(r)
    return jnp.sum(r**2)


def breaks_when_small_unrolled(x, c, steps):  # (the JAX oracle, as many steps as it ran)
    r = x
    for k in range(steps):
        r = r * c + 0.01 * jnp.sin(r) * k
    return jnp.sum(r**2)


@pytest.mark.parametrize("tol", [0.5, 0.05, 1e-4])
def test_checkpointed_loops_that_break_differentiate_as_jax(tol):
    """A for loop with a break has its trip count at its end: the online schedule."""
    x = np.linspace(-1.0, 1.0, 5)
    got = s2sgrad.grad(cp.breaks_when_small, wrt=(0, 1))(x, 0.8, tol)
    r, steps = x.copy(), 0
    for k in range(200):
        if np.max(np.abs(r)) < tol:
            break
        r, steps = r * 0.8 + 0.01 * np.sin(r) * k, steps + 1
    want = jax.grad(breaks_when_small_unrolled, argnums=(0, 1))(x, 0.8, steps)
    assert_close(got, tuple(np.asarray(w) for w in want))


@pytest.mark.parametrize("shift", [0.5, -0.5])
def test_a_checkpointed_loop_that_returns_differentiates_as_central_differences(shift):
    x = np.linspace(-1.0, 1.0, 4) + shift  # (returns at the third step; runs through)
    got = s2sgrad.grad(cp.returns_from_the_loop, wrt=(0, 1))(x, 0.7)
    for k in (0, 1):
        fd = central_difference_grad(cp.returns_from_the_loop, [x, 0.7], k)
        assert_close(got[k], fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("tol", [0.5, 0.05, 1e-4])
def test_checkpointed_while_loops_differentiate_as_jax_and_central_differences(tol):
    x = np.linspace(-1.0, 1.0, 5)
    got = s2sgrad.grad(cp.while_until_small, wrt=(0, 1))(x, 0.8, tol)
    steps = _trip_count(x, 0.8, tol)
    want = jax.grad(while_until_small_unrolled, argnums=(0, 1))(x, 0.8, steps)
    assert_close(got, tuple(np.asarray(w) for w in want))
    got = s2sgrad.grad(cp.while_counted, wrt=(0, 1))(x, 0.7)
    want = jax.grad(jnp_twin(cp.while_counted), argnums=(0, 1))(x, 0.7)
    assert_close(got, tuple(np.asarray(w) for w in want))
    for k, i in enumerate((0, 1)):
        fd = central_difference_grad(cp.while_counted, [x, 0.7], i)
        assert_close(got[k], fd, rtol=1e-5, atol=1e-6)


def _vjp(fn, args, wrt, checkpoint, backend="numpy"):
    options = api._options(tuple(args), False, "reverse", checkpoint=checkpoint)
    return cache.load_or_generate(fn, "reverse", wrt, backend, options)


_CORPUS = [("cf", n) for n in sorted(cf.ARGS)] + [("rp", n) for n in sorted(rp.ARGS)]


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@pytest.mark.parametrize("corpus,name", _CORPUS)
def test_every_corpus_loop_is_checkpointed_with_the_same_gradient_or_refused(corpus, name):
    """``grad(..., checkpoint=N)`` over the loop corpora: for 1, 3 and more snapshots
    than iterations, the gradient of the unscheduled module, or an error naming the
    statement in the way and what to do."""
    if corpus == "cf":
        fn, args, wrt = getattr(cf, name), cf.make_args(name), cf.float_positions(name)
    else:
        fn, args = getattr(rp, name), rp.ARGS[name]
        wrt = _floats(args)
    if not wrt:
        pytest.skip("nothing to differentiate")
    want = _vjp(fn, args, wrt, None)(*args, 1.0)[1]
    for snapshots in (1, 3, 10_000):
        try:
            vjp = _vjp(fn, args, wrt, snapshots)
        except UnsupportedSyntaxError as exc:
            assert "checkpointing the loop at line" in str(exc) and exc.hint, str(exc)
            return
        got = vjp(*args, 1.0)[1]
        assert_close(got, want, rtol=1e-10, atol=1e-12, what=f"{name}, {snapshots} snapshots")


def test_most_of_the_corpus_is_checkpointed():
    """The test above passes vacuously for a program refused, or one whose loops save
    nothing (those are left as they are): 28 of the corpora's programs are taken."""
    taken = 0
    for corpus, name in _CORPUS:
        fn = getattr(cf if corpus == "cf" else rp, name)
        args = cf.make_args(name) if corpus == "cf" else rp.ARGS[name]
        wrt = cf.float_positions(name) if corpus == "cf" else _floats(args)
        if not wrt:
            continue
        options = api._options(tuple(args), False, "reverse", checkpoint=2)
        try:
            source = pipeline.generate(fn, mode="reverse", wrt=wrt, options=options).source
        except UnsupportedSyntaxError:
            continue
        taken += "restore_checkpoint" in source
    assert taken >= 28


@pytest.mark.parametrize("name", sorted(rp.ARGS))
def test_the_jax_backend_checkpoints_the_rerun_corpus(name):
    if name in rp.NUMPY_ONLY:
        pytest.skip("the JAX backend compiles every function the derivative calls")
    fn, args = getattr(rp, name), rp.ARGS[name]
    wrt = _floats(args)
    want = jax.grad(jnp_twin(fn), argnums=wrt)(*args)
    for snapshots in (1, 4):
        try:
            got = s2sgrad.grad(fn, wrt=wrt, backend="jax", checkpoint=snapshots)(*args)
        except UnsupportedSyntaxError as exc:  # (a branch, an inner loop: as on NumPy)
            assert "checkpointing the loop at line" in str(exc) and exc.hint, str(exc)
            return
        assert_close(got, tuple(np.asarray(w) for w in want), what=f"{name}, {snapshots}")


# --------------------------------------------------------------------------- memory


def _peak_bytes(fn, *args) -> int:
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_live_snapshots_stay_within_the_bound(monkeypatch):
    """The runtime counts the snapshots it holds; with N of them the count never passes N
    (and the schedule uses them all)."""
    schedules = []

    class Counted(revolve.Checkpoints):
        __slots__ = ()

        def __init__(self, *args):
            super().__init__(*args)
            schedules.append(self)

    monkeypatch.setattr(revolve, "Checkpoints", Counted)
    u = np.linspace(0.0, 1.0, 64)
    for snapshots in (1, 3, 7):
        got = s2sgrad.grad(cp.long_heat, checkpoint=snapshots)(u, 150)
        assert_close(got, s2sgrad.grad(cp.long_heat)(u, 150), rtol=1e-12, atol=1e-14)
        assert schedules[-1].peak == snapshots
    assert len(schedules) == 3


def test_memory_is_bounded_by_the_snapshots_not_the_trip_count():
    """Measured, not counted: the unscheduled backward sweep holds a few arrays per
    iteration (200 iterations of 40 kB); with 4 snapshots, the memory of a few states."""
    u = np.linspace(0.0, 1.0, 5000)
    state = u.nbytes
    plain = s2sgrad.grad(cp.long_heat)
    scheduled = s2sgrad.grad(cp.long_heat, checkpoint=4)
    assert_close(scheduled(u, 200), plain(u, 200), rtol=1e-12, atol=1e-14)
    assert _peak_bytes(plain, u, 200) > 150 * state
    assert _peak_bytes(scheduled, u, 200) < 20 * state


# --------------------------------------------------------------------------- composition


def test_a_hessian_through_a_checkpointed_loop_is_jaxs():
    """Differentiated again, the first-order module keeps its ordinary saves (a module
    read back is not checkpointed): the second derivative is right."""
    fn, (params, initial, _, dt) = cp.lotka_volterra_rk2, cp.ARGS["lotka_volterra_rk2"]
    got = s2sgrad.hessian(fn)(params, initial, 9, dt)
    want = jax.hessian(jnp_twin(fn))(params, initial, 9, dt)
    assert_close(got, np.asarray(want), rtol=1e-9, atol=1e-10)


def test_under_jit_with_a_static_trip_count_and_vmap():
    fn, (params, initial, steps, dt) = cp.lotka_volterra_rk2, cp.ARGS["lotka_volterra_rk2"]
    g = s2sgrad.grad(fn, backend="jax")
    jitted = jax.jit(g, static_argnums=2)
    want = jax.grad(jnp_twin(fn))(params, initial, steps, dt)
    assert_close(jitted(params, initial, steps, dt), np.asarray(want))
    batch = jnp.stack([params, params * 1.1])
    got = jax.vmap(g, in_axes=(0, None, None, None))(batch, initial, steps, dt)
    for k in range(2):
        w = jax.grad(jnp_twin(fn))(np.asarray(batch[k]), initial, steps, dt)
        assert_close(got[k], np.asarray(w))


def test_every_entry_point_takes_the_option_or_ignores_the_directive_rightly():
    """value_and_grad and vjp with ``checkpoint=``; forward mode (jvp, jacfwd of the JAX
    gradient) has no tape, and a directive changes nothing there."""
    fn, (params, initial, steps, dt) = cp.lotka_volterra_rk2, cp.ARGS["lotka_volterra_rk2"]
    twin = jnp_twin(fn)
    value, grads = s2sgrad.value_and_grad(cp.long_heat, checkpoint=2)(np.linspace(0, 1, 8), 30)
    want_value, want_grads = jax.value_and_grad(jnp_twin(cp.long_heat))(np.linspace(0, 1, 8), 30)
    assert_close((value, grads), (float(want_value), np.asarray(want_grads)))
    out, pullback = s2sgrad.vjp(cp.long_heat, np.linspace(0, 1, 8), 30, checkpoint=3)
    got, _ = pullback(1.0)
    assert_close(got, np.asarray(want_grads))
    tangent = np.array([0.1, -0.2, 0.3, 0.05])
    _, got = s2sgrad.jvp(fn, (params, initial, steps, dt), (tangent, np.zeros(2), 0, 0.0))
    _, want = jax.jvp(lambda p: twin(p, initial, steps, dt), (params,), (tangent,))
    assert_close(got, np.asarray(want))
    g = s2sgrad.grad(fn, backend="jax")
    got = jax.jacfwd(lambda p: g(p, initial, steps, dt))(jnp.asarray(params))
    assert_close(got, np.asarray(jax.hessian(twin)(params, initial, steps, dt)))


@pytest.mark.parametrize("steps", [0, 1, 2])
def test_loops_of_no_one_or_two_iterations(steps):
    fn, (params, initial, _, dt) = cp.lotka_volterra_rk2, cp.ARGS["lotka_volterra_rk2"]
    want = jax.grad(jnp_twin(fn), argnums=(0, 1))(params, initial, steps, dt)
    for backend in ("numpy", "jax"):
        got = s2sgrad.grad(fn, wrt=(0, 1), backend=backend)(params, initial, steps, dt)
        assert_close(got, tuple(np.asarray(w) for w in want), what=f"{steps} on {backend}")


def test_a_traced_trip_count_is_refused_on_jax_with_a_hint():
    fn, (params, initial, steps, dt) = cp.lotka_volterra_rk2, cp.ARGS["lotka_volterra_rk2"]
    g = jax.jit(s2sgrad.grad(fn, backend="jax"))
    with pytest.raises(TypeError, match="trip count when the function is traced"):
        g(params, initial, steps, dt)


# --------------------------------------------------------------------------- errors


def test_unknown_directives_and_loops_that_cannot_be_checkpointed_are_errors():
    with pytest.raises(UnsupportedSyntaxError, match="unknown s2sgrad directive `checkpiont"):
        s2sgrad.grad(cp.misspelt)(np.ones(3))
    with pytest.raises(UnsupportedSyntaxError, match="directive is not on a loop") as info:
        s2sgrad.grad(cp.directive_on_an_assignment)(np.ones(3))
    assert "x = np.sin(x)" in str(info.value)
    with pytest.raises(UnsupportedSyntaxError, match="needs a snapshot"):
        s2sgrad.grad(cp.no_snapshots)(np.ones(3))
    with pytest.raises(UnsupportedSyntaxError, match="its body has a nested loop") as info:
        s2sgrad.grad(cp.inner_loop_in_the_body)(np.ones(3))
    assert "move the inner loop into a function" in info.value.hint
    assert info.value.loc.line > 0
    for fn, args in [(cp.while_counted, (0.5,)), (cp.breaks_when_small, (0.8, 0.01))]:
        with pytest.raises(UnsupportedSyntaxError, match="not checkpointed on the jax backend"):
            s2sgrad.grad(fn, backend="jax")(np.ones(3), *args)


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "sqrt"])
def test_checkpoint_must_be_a_number_of_snapshots(bad):
    with pytest.raises(UsageError, match="checkpoint"):
        s2sgrad.grad(cp.long_heat, checkpoint=bad)
