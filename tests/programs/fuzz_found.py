"""Programs the differential fuzzer (``python -m tests.fuzz``) found s2sgrad getting wrong.

Each is the fuzzer's minimised program, cleaned up by hand, with the bug it
found in its docstring. ``ARGS`` gives each program's arguments as in
``control_flow.ARGS`` (a shape tuple: a random float array in [-1, 1]; ``()``:
a Python float in [0.5, 1.5]; ``("int", n)``: a constant int; ``("array", [...])``: that
float array). ``INPLACE``
marks the programs that write into arrays, which only central differences
can check. ``tests/test_fuzz.py`` runs every program in both modes, on both
backends, with ``grad``, ``value_and_grad``, ``jvp`` and ``vjp``.
"""

import numpy as np
import scipy.special


def parameter_made_varied_later(x, y):
    """Forward mode, gradient with respect to ``y``: ``x`` is a parameter outside ``wrt``
    that ``x = 0.5 * x + ...`` makes varied. With control flow in the function (no SSA
    renaming), the tangent of ``x`` was read before anything assigned it: an
    UnboundLocalError in the generated code."""
    if np.sum(y) > 100.0:
        y = y * 2.0
    v = np.sin(y) * x
    x = 0.5 * x + np.tanh(np.sum(y))
    return np.mean(v) + x


def parameter_made_varied_in_a_loop(x, y, n):
    """The same through a loop: ``s`` (a parameter) is varied only after the first pass."""
    s = x
    for i in range(n):
        s = s * 0.9 + np.sin(y[i]) * s
        x = x + s
    return np.sum(x)


def copy_then_update_the_original(x):
    """``v = w * 1.0`` was folded to ``v = w`` (an alias), so the later ``w[1:] = ...``
    changed ``v`` too: wrong values and gradients in both modes (gradient 4.8 and 7.6
    where the truth is 3)."""
    w = np.ones((3,))
    v = w * 1.0
    w[1:] = np.sum(x)
    return np.sum(v[-1] * x + w)


def copy_then_update_in_a_loop(x, n):
    """The same inside a loop with a branch: each pass copies, then updates the original."""
    w = np.zeros_like(x)
    total = 0.0
    for i in range(n):
        v = w * 1.0
        w[i] = np.sin(x[i]) + 0.5 * w[i - 1]
        if np.sum(x) > -10.0:
            total = total + np.sum(v * x)
    return total + np.sum(w**2)


def updates_of_different_shapes_in_branches(x, n):
    """JAX backend, reverse mode: one save stack per array and loop held the parts both
    branches overwrote (``w[i]``: a scalar; ``w[:1]``: shape (1,)); JAX records a stack as
    one array, so ``if_else`` failed with "Cannot broadcast to shape with fewer
    dimensions". Now each update statement has its own stack."""
    w = np.ones_like(x)
    d = np.sum(x * x)
    for i in range(n):
        if x[i] < 0.35:
            w[i] += 0.5 * x[i]
        else:
            w[:1] *= d
    return np.sum(w * x)


def augmented_assignment_on_an_argument(x):
    """``x *= 2.0`` on an argument writes into the caller's array in Python. s2sgrad
    compiles it as ``x = x * 2.0``, but ``vjp`` also called the function itself for the
    primal output, on the caller's arrays: the caller's ``x`` was doubled, and ``vjp_fn``
    then differentiated at the doubled point (cotangent 16, 32 for x = 1, 2; truth 8, 16).
    Fixed: ``vjp`` calls the function on copies of the arguments."""
    x *= 2.0
    return np.sum(x * x)


def enumerate_an_array_the_loop_rebinds(x, n):
    """JAX backend, reverse mode (fuzzer seed 18-36): iterating ``enumerate(v)`` while the
    body rebinds ``v`` (and a self-assignment ``v = v``) gave a wrong gradient; NumPy
    backend and forward mode were right. Both saves of ``v`` in one iteration went to
    one stack, and JAX records one value per stack and iteration. Fixed: one stack per
    saving statement (``transforms/reverse.py``)."""
    v = x
    for _i, _r in enumerate(v):
        v = np.sin(v)
        v = v
    return np.sum(v)


def branches_around_a_loop_on_jax(x):
    """JAX backend, reverse mode (fuzzer seed 18-73, minimised): the generated module
    raised ``TypeError: cos requires ndarray or scalar arguments, got NoneType``. The
    inner test ``-0.1 > 0.05`` is a Python constant on its path, but came out of the
    outer traced ``if`` traced, so the backward sweep traced the inner branch whose
    saves the forward sweep never made. Fixed: ``backends.jax.control.if_else`` keeps such
    path constants concrete."""
    if np.sum(np.negative(x)) > -0.41:
        w1 = np.full((4,), 0.5)
        w1 += w1
    elif -0.1 > 0.05:
        x = np.sin(x) + 0.3 * x
    else:
        x = x * 0.9 + 0.1 * -1.23 * np.ones((4,))
    v2 = scipy.special.erf(np.rad2deg(np.tanh(np.reshape(x, (-1,)))))
    if np.max(x) < 0.26:
        w3 = x * 1.0
        for i4 in range(2):
            v5 = x[i4]
            w3 += np.broadcast_to(np.log10(1.0 + np.cos(np.sum(v5)) ** 2), (4,))
        v6 = np.sum(-0.92)  # noqa: F841 (dead code is part of the trigger)
    else:
        w7 = np.zeros((4,))
        if np.mean(v2) >= 0.31:
            v8 = np.negative(  # noqa: F841
                np.logaddexp2(np.clip(x, -0.6, 0.7), scipy.special.erf(w7))
            )
            v9 = -0.6  # noqa: F841
    v10 = np.subtract(v2.sum(), v2)
    return np.mean(v2) + 0.5 * np.sum(v10)


def constant_test_inside_a_loop_on_jax(x, y, n):
    """JAX backend, reverse mode (fuzzer seed 31-44, minimised): ``0.24 > 0.33 and ...``
    is a Python constant (False) on every iteration, so the forward sweep never ran the
    branch nor made its saves; but the loop stacked the test onto its tape, the backward
    sweep read it back traced and lowered the ``if`` to ``lax.cond``, whose branch read
    the missing saves: ``TypeError: '>' not supported between NoneType and a tracer``.
    Fixed: ``backends.jax.control`` keeps a save that is a Python constant in the trace out of
    the tape (held in its structure, ``_Static``), so the backward ``if`` stays a Python
    ``if``."""
    w6 = np.ones((2, 3))
    for _i, r7 in enumerate(y):
        if 0.24 > 0.33 and np.sum(np.cos(x)) < 0.8:
            w6 += np.minimum(y, np.fmin(y, r7[0]))
        else:
            pass
    v13 = np.expand_dims(np.positive((np.square(y) + 0.5) ** np.tanh(w6)), 0)
    return np.sum(w6) + np.sum(v13) + np.sum(x)


def std_of_a_constant_from_a_branch(x, y):
    """Forward mode (fuzzer seed 31-2132, minimised): the branch taken returns a constant,
    so ``v``'s tangent is zeros, and ``np.std`` of its equal entries is 0. The std rule's
    ``centered * dv / std`` was 0 / 0: NaN gradients, where jax (whose tangent of a
    constant is a symbolic zero) gives the finite answer. Fixed: the std and nanstd rules
    give 0 where std is 0 (tests/op_cases.py: rows of equal entries)."""
    w = np.zeros(3)
    v = np.ones((1, 3)) if np.max(w) <= 0.41 else y[:1] * w
    return np.mean(np.std(v, axis=1)) + np.sum(np.sin(x) * y)


def std_of_entries_equal_by_construction(x):
    """Fuzzer seed 31-4619 (``np.std`` of ``np.broadcast_to(np.sum(...), (3,))``): ``v``
    is std of three equal entries, 0 for every ``x``, so it adds nothing to the
    derivative. Their mean rounds away from them, though (here in NumPy, in other
    programs only in XLA's fusions), so std comes out as 4e-16, and the rule's
    ``centered / std`` was noise over noise: d v / d s = 1, a gradient off by O(1) on
    both backends, as autograd's (jax.grad gives NaN). Fixed: a std within the rounding
    of the mean counts as 0 (``runtime.resolved_spread``)."""
    s = np.sum(np.hypot(x, 0.5))
    v = np.std(np.broadcast_to(s, (3,)))
    return np.sum(np.sin(x) * (1.0 + v))


def constant_test_in_a_traced_branch_of_a_loop_on_jax(x, y):
    """JAX backend, reverse mode (fuzzer seed 31-44, the whole program): as above, but the
    constant test sits in the else branch of a traced ``if``, so its value is carried
    from one iteration to the next (None, then False): the loop carried it traced, and
    the ``if`` passed the state's constants through ``lax.cond`` traced. Fixed: loops
    and ifs bind the Python constants of their state into the trace instead of carrying
    them (``backends.jax.control._infer_carry``, ``if_else``)."""
    w = np.ones((2, 3))
    for i, r in enumerate(y):
        if np.mean(x) > 0.02:
            pass
        elif 0.24 > 0.33 and np.sum(np.cos(x)) < 0.8:
            w += np.minimum(y, np.fmin(y, r[0]))
        elif np.max(y[i]) >= -0.36:
            w = w * 2
    return np.sum(w) + np.sum(x * y[0])


def constant_conditional_expression_in_a_loop_that_breaks_on_jax(x, y, n):
    """JAX backend, reverse mode (fuzzer seed 31-1399, minimised by hand): the test of the
    conditional expression is a Python constant, but its temporary ``cond_1`` is None
    before the loop and True after each iteration, so the loop carried it traced (None
    became zeros of its type), the backward sweep's ``if`` on it became a ``lax.cond``,
    and tracing the branch never taken read saves the forward sweep never made (None *
    tracer). Fixed: a loop binds a None its body turns into a Python constant as that
    constant from the start, once a second trace shows the body never tells None from a
    value (``backends.jax.control._check_none_unread``; a user's ``is None`` test is refused)."""
    for i in range(n):
        if np.mean(y) > 0.12:
            break
        x = 0.5 * x + np.tanh(x[i] if 0.83 >= -0.36 else np.sum(np.arctan2(x, 1.0 + x[i] ** 2)))
    return np.sum(x)


def a_loop_that_runs_no_time_and_returns_from_inside_on_jax(x, y):
    """JAX backend, reverse mode (fuzzer seed 31-6234, and 31-7142, minimised):
    ``range(1, len(y))`` with one row runs no iteration, so its tapes have no rows, but
    the early return makes the backward loop's trip count traced, and ``replay`` indexed
    the empty tapes at a traced position, which JAX refuses while tracing. Fixed: tapes
    with no rows replay no iteration (``backends.jax.control.replay``)."""
    v = 0.5 * np.sum(x)
    for _ in range(1, len(y)):
        w = 0.5
        return np.sum(np.cos(y - w))
    return v


def an_early_return_from_a_loop_in_a_traced_branch_on_jax(x, y):
    """JAX backend, reverse mode (fuzzer seed 31-2351, 60 programs of its run, minimised by
    hand): the backward loop of ``for r in y: ... return r`` pops no saves, so it was
    lowered as a plain ``for_loop``, whose first trace checks that no None of its state is
    told from a value; but its Nones are adjoints (``dr``), which generated code tests
    (``dr is not None``) only to skip adding zeros: a false refusal. Fixed: every loop of
    the backward sweep is a ``replay``, saves or none (``backends.jax``)."""
    if np.sum(x) > 10.0:
        for r in y:
            if np.max(x) >= -0.46:
                return r
    return np.sum(x * x) + np.sum(y)


def matmul_of_a_row_then_broadcast(x):
    """Reverse mode (fuzzer seed 41-1361, minimised): ``y = np.matmul(x, x[-1])`` has shape
    (1,) for x of shape (1, 3), and ``np.arctan2(x, y)`` broadcasts it to (1, 3). The shape
    analysis took ``np.matmul`` (a generalized ufunc) for an elementwise one, so it dropped
    ``y``'s unbroadcast and the matmul adjoint crashed on a (1, 3) cotangent. Fixed:
    ``shapes._elementwise_ufunc`` leaves out ufuncs with a signature."""
    y = np.matmul(x, x[-1])
    return np.sum(np.arctan2(x, y))


def list_of_indices_into_take(x):
    """``np.take`` with a Python list of indices: on ``backend="jax"`` the generated
    module called ``jnp.take(x, [0, 2])`` and JAX raised TypeError (it takes no lists).
    Fixed: such literals become ``np.asarray([...])`` (``templates.with_array_arguments``)."""
    v = np.take(x, [0, 2], axis=0)
    return np.sum(v * v) + np.sum(np.sin(x))


def mean_and_a_row_sum(x):
    """Reverse mode: the cotangent of ``np.mean(x)`` is one number spread over ``x``, kept a
    number where it only meets arrays of ``x``'s shape; then the cotangent of ``x[0]`` was
    added into it in place, as into an array (``add_into(dv, g, 0)`` on a float)."""
    v = x
    row = x[0]
    return np.mean(v) + np.sum(row)


ARGS = {
    "parameter_made_varied_later": [(), (4,)],
    "mean_and_a_row_sum": [(2, 2)],
    "parameter_made_varied_in_a_loop": [(3,), (3,), ("int", 3)],
    "copy_then_update_the_original": [(3,)],
    "copy_then_update_in_a_loop": [(3,), ("int", 3)],
    "augmented_assignment_on_an_argument": [(2,)],
    "updates_of_different_shapes_in_branches": [("array", [0.5, 0.1, 0.6, -0.4]), ("int", 4)],
    "list_of_indices_into_take": [(3,)],
    "matmul_of_a_row_then_broadcast": [("array", [[0.36607489, 0.34082188, 0.67178835]])],
    "std_of_a_constant_from_a_branch": [(3,), (3,)],
    "std_of_entries_equal_by_construction": [("array", [0.87014485, 0.63170711, -0.994523])],
    "constant_test_in_a_traced_branch_of_a_loop_on_jax": [
        ("array", [-0.81229141, -0.05225753, 0.93505326]),
        (
            "array",
            [[-0.29963278, 0.38817078, -0.82867608], [-0.90591833, -0.69368226, -0.37772021]],
        ),
    ],
    "constant_test_inside_a_loop_on_jax": [(3,), (2, 3), ("int", 2)],
    "branches_around_a_loop_on_jax": [("array", [0.44735945, 0.17728057, 0.74308099, -0.39053187])],
    "enumerate_an_array_the_loop_rebinds": [(2, 3), ("int", 2)],
    "a_loop_that_runs_no_time_and_returns_from_inside_on_jax": [(2, 1), (1, 3)],
    "an_early_return_from_a_loop_in_a_traced_branch_on_jax": [(2, 1), (3,)],
    "constant_conditional_expression_in_a_loop_that_breaks_on_jax": [
        (4,),
        ("array", [[0.04], [0.01]]),
        ("int", 2),
    ],
}

INPLACE = {
    "augmented_assignment_on_a_viewed_array",
    "updates_of_different_shapes_in_branches",
    "augmented_assignment_on_a_view",
    "copy_then_update_the_original",
    "copy_then_update_in_a_loop",
    "augmented_assignment_on_an_argument",
}

# Programs jax.numpy cannot run as written, or where jax.grad of the jnp twin is not the
# derivative (NaN for std of equal entries): the jnp twin is no oracle for them.
NO_JNP_TWIN = INPLACE | {"list_of_indices_into_take", "std_of_entries_equal_by_construction"}

# (program, check, backend) -> why it still fails: bugs found here whose fix belongs to
# another part of s2sgrad. The tests mark these xfail(strict=True), so a fix shows up.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}


def make_args(name, seed=0):
    rng = np.random.default_rng(seed)
    args = []
    for spec in ARGS[name]:
        if spec[:1] == ("int",):
            args.append(spec[1])
        elif spec[:1] == ("array",):
            args.append(np.array(spec[1], dtype=float))
        elif spec == ():
            args.append(float(rng.uniform(0.5, 1.5)))
        else:
            args.append(rng.uniform(-1.0, 1.0, size=spec))
    return args


def float_positions(name):
    return tuple(i for i, spec in enumerate(ARGS[name]) if spec[:1] != ("int",))
