"""Programs whose work is in functions they call: nested helpers, helpers in loops, a
helper that sets a value on one path only, a helper with a loop of its own. Reverse mode
hands each loop-free callee's residuals to its backward pass (transforms.residuals)."""

import numpy as np

import s2sgrad


class CountedSquare:
    """x**2 behind a rule, counting how often its forward value is computed."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return x * x


counted_square = CountedSquare()


@s2sgrad.defvjp(counted_square)
def _counted_square_vjp(g, ans, x):
    return 2.0 * g * x


@s2sgrad.defjvp(counted_square)
def _counted_square_jvp(ans, x, *, dx):
    return 2.0 * x * dx


def innermost(x):
    return np.sin(counted_square(x)) + x


def middle(x, w):
    y = innermost(x * w)
    return np.tanh(y) * w


def counted_nest(x, w):
    """Two levels of callees, the innermost computing ``counted_square`` once per call."""
    return np.sum(middle(x, w) ** 2)


def rotate(v, angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def scaled_norm(v, k):
    r = np.sqrt(np.sum(v**2) + 1e-3)
    return k * r, r


def helpers_nested(v, angle, k):
    """A helper returning a tuple, a helper of a helper, each called twice."""
    a, r = scaled_norm(rotate(v, angle), k)
    b, _ = scaled_norm(rotate(v, 2.0 * angle), k * r)
    return a * b + r


def clipped(x, limit):
    if np.sum(x) > limit:
        t = np.tanh(x)
        y = t * limit
    else:
        y = x * x
    return y


def one_path_residual(x, limit):
    """``t`` exists on one path of the helper only: its residual is None on the other."""
    return np.sum(clipped(x, limit) * x)


def step(y, p):
    return y + 0.05 * np.sin(p * y) * y


def helper_in_loop(y0, p):
    """The caller's loop saves the callee's residuals per iteration."""
    y = y0
    for _ in range(12):
        y = step(y, p)
    return np.sum(y**2)


def power_sum(x, n):
    s = np.zeros_like(x)
    for k in range(n):
        s = s + x ** (k + 1) / (k + 1)
    return s


def with_loop_inside(x, w):
    """A split callee (``weighted``) calling one with a loop (``power_sum``), which keeps
    recomputation."""
    return np.sum(weighted(x, w))


def weighted(x, w):
    return power_sum(x * w, 3) * w


def dense(params, x):
    h = np.tanh(x @ params["W"] + params["b"])
    return {"h": h, "s": np.sum(h**2)}


def dict_through_callee(params, x):
    """A dict of parameters into a split callee, and a dict out of it."""
    out = dense(params, x)
    return out["s"] + np.sum(out["h"])


def vector_through_callee(params, x):
    return dense(params, x)["h"] * 2.0


def aux_through_callee(params, x):
    out = dense(params, x)
    return out["s"], out["h"]


def damped(x, n):
    """A callee whose loop saves a value per iteration: its stack is a residual."""
    for _ in range(n):
        x = np.tanh(x) * 0.9 + 0.1 * x
    return x


def damped_twice_in_a_loop(x, w):
    total = 0.0
    for k in range(3):
        y = damped(x * w, 2 + k)
        total = total + np.sum(y**2) + np.sum(damped(y, 1))
    return total


def gate(z):
    return 1.0 / (1.0 + np.exp(-z))


def cell(w, h, x):
    """A callee whose residuals hold a Python integer (``n``, a slice bound) and the
    residuals of its own callee (``gate``)."""
    n = h.shape[0]
    z = np.concatenate([x, h]) * w
    return gate(z[:n]) * np.tanh(z[n:] + h)


def layers(w, h, x):
    """A callee with a loop over layers, each a ``cell``: its residuals hold a tape."""
    for k in range(w.shape[0]):
        x = cell(w[k], h, x)
    return x


def recurrent(w, h0, xs):
    """The LSTM benchmark's shape: a time loop calling a callee with a loop over layers
    calling a cell that calls a gate."""
    h = h0
    total = 0.0
    for t in range(xs.shape[0]):
        h = layers(w, h, xs[t])
        total = total + np.sum(h * xs[t])
    return total


def recurrent_while(w, h0, x, limit):
    """The cell in a ``while`` loop whose trip count the data decides."""
    h = h0
    total = 0.0
    while total < limit:
        h = cell(w, h, x)
        total = total + np.sum(h**2) + 0.1
    return total


def masked_mean(y):
    return np.mean(np.exp(y[y < 0.5]))


def masked_in_loop(x, w):
    """A callee whose boolean-mask read the JAX backend lowers as a masked computation,
    called in a loop."""
    total = 0.0
    for k in range(3):
        total = total + masked_mean(x * w + k * 0.1)
    return total


def dense_step(W, h):
    return np.tanh(W @ h)


def deep_recurrence(W, h0):
    """A callee reading a large parameter, called in a loop: its residuals hand ``W`` back
    every iteration."""
    h = h0
    for _ in range(40):
        h = dense_step(W, h)
    return np.sum(h)


def dense_tanh(w, h):
    return np.tanh(w @ h)


def through_layers(W, h):
    for k in range(W.shape[0]):
        h = dense_tanh(W[k], h)
    return h


def layers_in_time(W, h0):
    """A loop over layers, each a callee given a row of ``W`` (its residuals hand the row
    back), inside a time loop: the inner loop's rows of ``W`` are the same every step."""
    h = h0
    for _ in range(30):
        h = through_layers(W, h)
    return np.sum(h)


def layers_with_a_while(W, h):
    for k in range(2):
        h = dense_tanh(W[k], h)
        s = np.sum(h**2)
        while s < 5.0:
            s = s * 2.0
        h = h * s / (1.0 + s)
    return h


def while_inside_layers_in_time(W, h0):
    """A loop over layers with a ``while`` whose trip count the state decides, inside a
    time loop: the layers' saved rows of ``W`` stay stacked (run on zeros before the
    loop to hoist them, the ``while`` would never end)."""
    h = h0
    for _ in range(3):
        h = layers_with_a_while(W, h)
    return np.sum(h)
