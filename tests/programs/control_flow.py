"""Programs with control flow and in-place updates, written as a scientist would.

Each program takes float arrays or scalars (plus an int where that is natural,
such as a step count) and returns a scalar, so it can be checked with grad in
both modes. ``ARGS`` gives each program's argument spec, one entry per
parameter:

* a shape tuple: a random float array, uniform in [-1, 1] (``()`` is a
  Python float, uniform in [0.5, 1.5]), as in ``straight_line.SHAPES``;
* ``("uniform", shape, low, high)``: a random float array (or float, for
  shape ``()``) uniform in [low, high];
* ``("float", v)`` / ``("array", [...])``: that exact float or float array;
* ``("int", n)``: the Python int ``n``, never differentiated.

Conditional expressions and ``and``/``or`` appear too: normalize lowers them to
branches, so they are control flow like any ``if``.

Inputs are chosen away from branch boundaries, so central differences are
valid; ``test_control_flow.test_oracles_agree`` checks that jax, autograd and
finite differences agree on every program. ``INPLACE`` marks the programs that
write into arrays (``x[i] = v``): neither the jnp twin (jax arrays are
immutable) nor autograd (it cannot follow writes into arrays) can
differentiate them, so only finite differences check those.
"""

import numpy as np

# --------------------------------------------------------------------------- if / elif / else


def piecewise_potential(x, k):
    if x < -1.0:
        v = k * (x + 1.0) ** 2
    elif x < 1.0:
        v = 0.5 * k * np.sin(x) ** 2
    else:
        v = k * np.log(x) + 0.5 * k * np.sin(1.0) ** 2
    return v * x


def huber_loss(r, delta):
    total = 0.0
    for i in range(len(r)):
        a = np.abs(r[i])
        if a <= delta:
            total = total + 0.5 * r[i] ** 2
        else:
            total = total + delta * (a - 0.5 * delta)
    return total


def clip_gradient_norm(g, w):
    norm = np.sqrt(np.sum(g**2))
    if norm > 1.0:
        g = g / norm
        norm = 1.0
    return np.sum(w * g) + norm


def branch_reassigns_its_test(x, y):
    big = x > 0.8
    if big:
        big = y > 100.0
        x = x * y
    if big:
        return x**3
    return x + y


def tested_variable_reassigned_in_branch(x):
    if x > 0.0:
        x = -2.0 * x
        y = np.exp(x)
    else:
        y = np.cos(x)
    if x > 0.0:
        y = y * 10.0
    return y + x


def not_condition(x, y):
    if not x > y:
        z = x * y
    else:
        z = x - y
    if not z > 100.0:
        z = z * 2.0
    return z


def nested_if_else(x, y):
    if x > 0.0:
        if y > 0.0:
            s = x * y
        else:
            s = x - y
    else:
        if y > x:
            s = np.sin(x * y)
        else:
            s = np.cos(x + y)
    return s * s


def sign_of_sum(x):
    if np.sum(x) > 0.0:
        s = np.sum(x**2)
    else:
        s = -np.sum(np.sin(x))
    return s


def conditional_expressions(x, y):
    scale = 2.0 if x > y else 0.5
    z = x * scale + (np.sin(y) if y > 0.0 else y**2)
    return z * (x if z > 0.0 else -x)


def and_or_conditions(x, y):
    s = 0.0
    if x > 0.0 and y > 0.0:
        s = s + x * y
    if x > 1.0 or y < 0.5:
        s = s + np.exp(x - y)
    if not (x < 0.0 or y < 0.0):
        s = s * 2.0
    return s


# --------------------------------------------------------------------------- for over range


def horner(coeffs, x):
    acc = 0.0
    for i in range(len(coeffs)):
        acc = acc * x + coeffs[i]
    return acc


def range_start_stop_step(x):
    s = 0.0
    for i in range(1, 9, 3):
        s = s + x[i] * i
    return s


def reverse_cumulative(x):
    acc = 0.0
    s = 0.0
    for i in range(len(x) - 1, -1, -1):
        acc = acc * 0.5 + x[i]
        s = s + acc**2
    return s


def negative_step_stride(x):
    s = 0.0
    for i in range(7, 0, -2):
        s = s + np.exp(x[i]) / (i + 1)
    return s


def runtime_bounds(x, lo, hi):
    s = 1.0
    for i in range(lo, hi):
        s = s * (1.0 + 0.1 * x[i])
    return s


def zero_trip_range(x, n):
    s = np.sum(x**2)
    for i in range(n):
        s = s * x[i]
    return s


def zero_trip_negative_step(x):
    s = np.sum(np.sin(x))
    for i in range(0, 5, -1):
        s = s + x[i] ** 2
    return s


def loop_variable_arithmetic(a, n):
    s = 0.0
    for k in range(1, n + 1):
        s = s + a**k / k
    return s


# --------------------------------------------------------------------------- for over arrays, enumerate, zip


def row_norms(X):
    total = 0.0
    for row in X:
        total = total + np.sqrt(np.sum(row**2) + 1.0)
    return total


def enumerate_weighted_rows(X):
    total = 0.0
    for i, row in enumerate(X):
        total = total + (i + 1) * np.sum(row**2)
    return total


def enumerate_with_start(x):
    s = 0.0
    for k, v in enumerate(x, start=1):
        s = s + v**2 / k
    return s


def zip_dot(a, b):
    s = 0.0
    for ai, bi in zip(a, b):
        s = s + ai * bi
    return s


def zip_uneven(a, b, c):
    s = 0.0
    for u, v, w in zip(a, b, c):
        s = s + u * v - np.tanh(w)
    return s


def enumerate_zip(a, b):
    s = 0.0
    for i, (u, v) in enumerate(zip(a, b)):
        s = s + (i + 0.5) * u * np.exp(v)
    return s


def unpack_rows(P):
    perimeter = 0.0
    for x, y in P:
        perimeter = perimeter + np.sqrt(x**2 + y**2)
    return perimeter


def loop_over_transpose(X):
    s = 0.0
    for col in X.T:
        s = s + np.max(col) * np.sum(col)
    return s


def sequence_rebound_in_loop(x):
    s = 0.0
    for v in x:
        s = s + v
        x = x * 2.0
    return s + np.sum(x)


# --------------------------------------------------------------------------- nested loops


def pairwise_soft_energy(X):
    n = X.shape[0]
    e = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d = X[i] - X[j]
            e = e + 1.0 / (1.0 + np.sum(d**2))
    return e


def triple_loop_bilinear(A, B):
    s = 0.0
    for i in range(A.shape[0]):
        for j in range(B.shape[1]):
            for k in range(A.shape[1]):
                s = s + A[i, k] * B[k, j] * (i - j + 0.5)
    return s


# --------------------------------------------------------------------------- while


def newton_sqrt(a):
    x = a
    while np.abs(x * x - a) > 1e-12 * a:
        x = 0.5 * (x + a / x)
    return x * a


def grow_until_threshold(x):
    s = 1.0 + x**2
    n = 0
    while s < 10.0:
        s = s * 1.7 + x
        n += 1
    return s * n


def while_with_counter(x, n):
    i = 0
    s = 0.0
    while i < n:
        s = s + np.sin(x * i)
        i += 1
    return s


def while_with_and(x):
    s = 1.0
    n = 0
    while s < 20.0 and n < 100:
        s = s * (1.0 + x**2)
        n += 1
    return s / n


def while_zero_trip(x):
    s = x * 2.0
    while s > 100.0:
        s = s / 2.0
    return s**2


def while_true_break(x):
    y = x
    while True:
        y = y * 1.1 + 0.1
        if y > 5.0:
            break
    return y


# --------------------------------------------------------------------------- break and continue


def first_exceedance(x, threshold):
    s = 0.0
    for v in x:
        if v > threshold:
            break
        s = s + v**2
    return s


def skip_negative(x):
    s = 0.0
    for v in x:
        if v < 0.0:
            continue
        s = s + v**2
    return s


def break_on_first_iteration(x):
    s = 0.0
    for i in range(5):
        s = s + x[i] * 3.0
        break
    return s


def continue_and_break(x):
    s = 0.0
    for i in range(len(x)):
        if x[i] < -0.5:
            continue
        s = s + np.exp(x[i])
        if s > 4.0:
            break
        s = s * 0.9
    return s


def inner_break_outer_continue(X):
    total = 0.0
    for row in X:
        if np.sum(row) < -1.0:
            continue
        for v in row:
            if v > 0.7:
                break
            total = total + v**2
    return total


def while_with_break_and_continue(x):
    y = x
    n = 0
    s = 0.0
    while n < 30:
        n += 1
        y = y * 1.3
        if y < 2.0:
            continue
        s = s + y
        if s > 50.0:
            break
    return s + y


def continue_then_rest(x):
    s = 0.0
    for i in range(len(x)):
        t = x[i] * 2.0
        if t > 0.0:
            s = s + t
            continue
        s = s - np.sin(t)
    return s


# --------------------------------------------------------------------------- returns


def early_return_scalar(x):
    if x > 2.0:
        return x**2
    return np.sin(x)


def elif_returns(x):
    if x < 0.0:
        return -x
    elif x < 1.0:
        return x**2
    elif x < 2.0:
        return np.sqrt(x)
    else:
        return np.log(x)


def return_inside_loop(x, tol):
    s = 0.0
    for i in range(len(x)):
        s = s + x[i] ** 2
        if s > tol:
            return s * 2.0
    return s


def return_from_nested_loops(X):
    s = 0.0
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            s = s + X[i, j] ** 2
            if s > 1.5:
                return s + i
        s = s * 0.5
    return -s


def return_in_while(x):
    y = x
    while y < 100.0:
        y = y * y + 1.0
        if y > 50.0:
            return y / 10.0
    return y


def return_never_taken(x):
    s = 0.0
    for v in x:
        if v > 10.0:
            return v
        s = s + np.cos(v)
    return s


def return_in_both_branches_in_loop(x):
    for i in range(len(x)):
        if x[i] > 0.5:
            return x[i] * 10.0
        elif x[i] < -0.5:
            return x[i] * 3.0
    return np.sum(x)


# --------------------------------------------------------------------------- long loops


def logistic_map(r, x0):
    x = x0
    for _ in range(1200):
        x = r * x * (1.0 - x)
    return x


def euler_decay(k, y0):
    y = y0
    dt = 1e-3
    for _ in range(2000):
        y = y - dt * k * y
    return y


def verlet_oscillator(params):
    omega, gamma = params[0], params[1]
    x = 1.0
    v = 0.0
    dt = 0.01
    for _ in range(1000):
        a = -(omega**2) * x - gamma * v
        x = x + dt * v + 0.5 * dt * dt * a
        v = v + dt * a
    return x**2 + v**2


# --------------------------------------------------------------------------- in-place updates


def cumulative_sum_in_place(x):
    y = np.zeros(len(x))
    y[0] = x[0]
    for i in range(1, len(x)):
        y[i] = y[i - 1] + x[i]
    return np.sum(y**2)


def outer_product_accumulate(x):
    M = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            M[i, j] += x[i] * x[j]
    return np.sum(M * M) + M[0, 0] - M[1, 2]


def slice_update(x):
    y = x.copy()
    y[1:] = y[1:] * 2.0 + y[:-1]
    y[0] = -y[0]
    return np.sum(y**3)


def nonlinear_stencil_in_place(x):
    # The slices read on the right are views of u: the backward sweep must see them as
    # they were in each step, before the update overwrote them.
    u = x.copy()
    for _ in range(3):
        u[1:-1] = u[1:-1] * u[1:-1] + 0.1 * u[2:]
    return np.sum(u * u)


def view_read_before_update(x):
    u = x.copy()
    a = u[1:]
    u[1:] = a * a
    return np.sum(u * u)


def transpose_view_read_before_update(x):
    # `a` is a view through `.T`, not an index: the same restore must stay.
    u = np.reshape(x, (2, 3)) * 1.0
    a = u.T
    b = a * a
    u[0] = u[0] * 2.0
    return np.sum(b) + np.sum(u * u)


def update_of_a_shifted_copy(x):
    # `x + 1.0` is a new array, but its tangent is the tangent of x itself: updating
    # the tangent in place must not reach the caller's tangent.
    u = x + 1.0
    u[0] = 0.0
    return np.sum(u * u)


def euler_trajectory(y0, k, n):
    dt = 0.05
    traj = np.empty((n + 1, 2))
    traj[0] = y0
    for i in range(n):
        traj[i + 1, 0] = traj[i, 0] + dt * traj[i, 1]
        traj[i + 1, 1] = traj[i, 1] - dt * k * traj[i, 0]
    return np.sum(traj[:, 0] ** 2)


def in_place_in_branch(x):
    y = np.zeros(len(x))
    for i in range(len(x)):
        if x[i] > 0.0:
            y[i] = x[i] ** 2
        else:
            y[i] = np.sin(x[i])
    return np.sum(y * x)


# --------------------------------------------------------------------------- nested combinations


def loop_in_branch_in_loop(X):
    s = 0.0
    for row in X:
        if np.sum(row) > 0.0:
            for v in row:
                s = s + v**2
        else:
            s = s - np.sum(row) * 0.5
    return s


def while_in_for(x):
    total = 0.0
    for v in x:
        y = 1.0 + v**2
        while y < 3.0:
            y = y * 1.5
        total = total + y
    return total


def for_in_while_with_return(x):
    s = 0.0
    rounds = 0
    while rounds < 10:
        rounds += 1
        for v in x:
            s = s + v**2
            if s > 3.0:
                return s * rounds
    return s


def accumulate_into_an_element(x):
    """``acc = x[0]`` is a number (x is 1-D): ``acc += ...`` is not an update of ``x``."""
    acc = x[0]
    for i in range(1, 4):
        acc += x[i] * x[i - 1]
    return acc + np.sum(x)


def row_view_read_before_the_next_row_is_written(x):
    """``prev = path[i]`` is a view, but only read before row i + 1 is written, and bound
    afresh on each iteration: the alias check must not refuse it."""
    path = np.zeros((4, 2))
    path[0] = x
    for i in range(3):
        prev = path[i]
        path[i + 1] = prev + 0.1 * np.sin(prev)
    return np.sum(path**2)


def alias_rebound_after_the_update(x):
    w = np.ones(3)
    v = w
    w *= x
    v = np.cos(x)
    return np.sum(v * w)


# --------------------------------------------------------------------------- argument specs

ARGS = {
    "piecewise_potential": [("float", 0.4), ("float", 1.3)],
    "huber_loss": [("array", [0.3, -1.2, 0.7, 2.0, -0.1]), ("float", 0.8)],
    "clip_gradient_norm": [("array", [0.9, -0.8, 0.6]), (3,)],
    "branch_reassigns_its_test": [("float", 1.2), ("float", 0.7)],
    "tested_variable_reassigned_in_branch": [("float", 0.6)],
    "not_condition": [("float", 0.3), ("float", 0.9)],
    "nested_if_else": [("float", -0.4), ("float", 0.3)],
    "sign_of_sum": [("array", [0.4, -0.2, 0.5])],
    "conditional_expressions": [("float", 0.6), ("float", 0.35)],
    "and_or_conditions": [("float", 0.7), ("float", 0.3)],
    "horner": [(5,), ("float", 0.7)],
    "range_start_stop_step": [(9,)],
    "reverse_cumulative": [(6,)],
    "negative_step_stride": [(8,)],
    "runtime_bounds": [(8,), ("int", 2), ("int", 7)],
    "zero_trip_range": [(4,), ("int", 0)],
    "zero_trip_negative_step": [(5,)],
    "loop_variable_arithmetic": [("float", 0.6), ("int", 6)],
    "row_norms": [(4, 3)],
    "enumerate_weighted_rows": [(3, 4)],
    "enumerate_with_start": [(5,)],
    "zip_dot": [(5,), (5,)],
    "zip_uneven": [(5,), (3,), (4,)],
    "enumerate_zip": [(4,), (6,)],
    "unpack_rows": [(5, 2)],
    "loop_over_transpose": [(3, 4)],
    "sequence_rebound_in_loop": [(4,)],
    "pairwise_soft_energy": [(4, 2)],
    "triple_loop_bilinear": [(2, 3), (3, 2)],
    "newton_sqrt": [("float", 2.7)],
    "grow_until_threshold": [("float", 0.35)],
    "while_with_counter": [("float", 0.8), ("int", 7)],
    "while_with_and": [("float", 0.45)],
    "while_zero_trip": [("float", 1.1)],
    "while_true_break": [("float", 0.9)],
    "first_exceedance": [("array", [0.1, -0.4, 0.3, 0.9, 0.2]), ("float", 0.6)],
    "skip_negative": [("array", [0.5, -0.3, 0.8, -0.9, 0.1])],
    "break_on_first_iteration": [(5,)],
    "continue_and_break": [("array", [0.2, -0.8, 0.9, 0.4, 1.0, 0.3])],
    "inner_break_outer_continue": [
        ("array", [[0.2, 0.9, 0.1], [-0.9, -0.6, 0.3], [0.4, -0.2, 0.5], [0.1, 0.2, 0.95]])
    ],
    "while_with_break_and_continue": [("float", 0.55)],
    "continue_then_rest": [("array", [0.3, -0.6, 0.2, -0.1, 0.8])],
    "early_return_scalar": [("float", 2.5)],
    "elif_returns": [("float", 1.4)],
    "return_inside_loop": [("array", [0.6, -0.7, 0.5, 0.9, 0.2]), ("float", 1.0)],
    "return_from_nested_loops": [("array", [[0.3, -0.5, 0.4], [0.8, 0.6, -0.2], [0.9, 0.1, 0.7]])],
    "return_in_while": [("float", 1.6)],
    "return_never_taken": [(4,)],
    "return_in_both_branches_in_loop": [("array", [0.2, -0.3, -0.7, 0.9])],
    "logistic_map": [("float", 2.6), ("float", 0.3)],
    "euler_decay": [("float", 0.8), ("float", 1.5)],
    "verlet_oscillator": [("array", [1.3, 0.2])],
    "cumulative_sum_in_place": [(5,)],
    "outer_product_accumulate": [(3,)],
    "slice_update": [(5,)],
    "nonlinear_stencil_in_place": [(6,)],
    "view_read_before_update": [(6,)],
    "transpose_view_read_before_update": [(6,)],
    "update_of_a_shifted_copy": [(5,)],
    "euler_trajectory": [("array", [1.0, 0.3]), ("float", 2.0), ("int", 12)],
    "in_place_in_branch": [("array", [0.5, -0.4, 0.9, -0.2])],
    "loop_in_branch_in_loop": [("array", [[0.5, 0.2, -0.1], [-0.6, 0.3, -0.4], [0.9, -0.8, 0.7]])],
    "while_in_for": [("array", [0.3, -0.9, 1.5, 0.1])],
    "for_in_while_with_return": [("array", [0.4, -0.3, 0.2])],
    "accumulate_into_an_element": [(4,)],
    "row_view_read_before_the_next_row_is_written": [(2,)],
    "alias_rebound_after_the_update": [(3,)],
}

INPLACE = {
    "cumulative_sum_in_place",
    "outer_product_accumulate",
    "slice_update",
    "nonlinear_stencil_in_place",
    "view_read_before_update",
    "transpose_view_read_before_update",
    "update_of_a_shifted_copy",
    "euler_trajectory",
    "in_place_in_branch",
    "row_view_read_before_the_next_row_is_written",
    "alias_rebound_after_the_update",
}

# Programs the jnp twin and the autograd twin can differentiate: all but the in-place ones.
JNP_TWIN = set(ARGS) - INPLACE
AUTOGRAD_TWIN = set(ARGS) - INPLACE

# 1000+ step loops: jax runs these eagerly, op by op, which takes seconds; tests check them
# with autograd and finite differences only, to stay fast.
LONG_LOOPS = {"logistic_map", "euler_decay", "verlet_oscillator"}


def make_args(name, seed=0):
    """The arguments of program ``name`` (random parts drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    args = []
    for spec in ARGS[name]:
        kind = spec[0] if spec and isinstance(spec[0], str) else "shape"
        if kind == "shape":
            spec = ("uniform", spec, 0.5, 1.5) if spec == () else ("uniform", spec, -1.0, 1.0)
            kind = "uniform"
        if kind == "uniform":
            _, shape, low, high = spec
            value = rng.uniform(low, high, size=shape)
            args.append(float(value) if shape == () else value)
        elif kind == "int":
            args.append(int(spec[1]))
        elif kind == "float":
            args.append(float(spec[1]))
        elif kind == "array":
            args.append(np.array(spec[1], dtype=np.float64))
        else:
            raise ValueError(f"unknown argument spec {spec!r} of {name}")
    return args


def float_positions(name):
    """Positions of the arguments to differentiate with respect to (all but the ints)."""
    return tuple(i for i, spec in enumerate(ARGS[name]) if spec[:1] != ("int",))
