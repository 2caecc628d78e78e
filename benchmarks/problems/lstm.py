"""Gradient of ADBench's LSTM objective: Python ``for`` loops over time steps and layers.

The definition is ADBench's "lstm" (microsoft/ADBench, ``src/cpp/shared/lstm.h`` and the
PyTorch module ``src/python/modules/PyTorch/lstm_objective.py``), kept as GradBench keeps
it, quirks included:

- every weight "matrix" is diagonal: ``gates = concat(x, h, x, h) * weight + bias``, so the
  forget and output gates read the layer's input and the input gate and the candidate read
  its previous hidden state;
- the normaliser is ``log(2 + sum(exp(y)))`` rather than a plain logsumexp (ADBench
  issue #143; every ADBench tool adds the 2).

Arguments, with ``l`` layers, ``b`` bits per character and ``c`` characters:
``main_params`` (2l, 4b): rows 2i and 2i+1 are layer i's weights and biases for the four
gates (forget, input, output, change); ``extra_params`` (3, b): input weight, output weight,
output bias; ``state`` (2l, b): rows 2i and 2i+1 are layer i's hidden and cell state;
``sequence`` (c, b): the characters as bits. The loss is the negative mean log-likelihood
of each next character, over the c - 1 predictions. Differentiated with respect to
``main_params`` and ``extra_params``.

Sizes: full is l = 2 layers, b = 14 bits (ADBench's character width) and c = 50
characters, so T = 49 steps of the time loop (ADBench's own files use c = 1024 and 4096);
smoke is l = 2, b = 3, c = 4. Parameters and state are uniform in [0, 1) as in ADBench's
generator (GradBench's ``gen_lstm``), the sequence random bits (ADBench takes the bits
of a text), so every gate's argument stays within about 2 of zero: nothing saturates.

The objective updates the new state's rows in place (``new_state[2 * i] = hidden``), as
ADBench's C++ and PyTorch versions do; s2sgrad differentiates that, but jnp arrays are
immutable and autograd does not trace item assignment, so the peers rebind ``lstm_loss``
with ``predict_immutable`` in place of ``predict`` (the rows gathered in a list and
stacked, with ``rows.append``, which s2sgrad refuses). autograd gets that on
``autograd.numpy``. ``jax.grad`` gets ``lstm_loss_scan``, a hand-rolled ``lax.scan`` over
time steps around ``predict_immutable`` on ``jax.numpy``: the rebound twin of the whole
loss unrolls all l * (c - 1) = 98 cells, and ``jax.jit(jax.grad(...))`` of it took 43 s to
compile at the full size on a loaded 2-core machine (the scan: 2 s), then
1.9 ms per gradient against the scan's 0.9 ms.
"""

from __future__ import annotations

import functools

import numpy as np

from benchmarks.problem import Case, Problem
from benchmarks.twins import rebind


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_cell(weight, bias, hidden, cell, x):
    """One diagonal LSTM cell: the layer's new (hidden, cell) for input ``x``."""
    b = hidden.shape[0]
    gates = np.concatenate([x, hidden, x, hidden]) * weight + bias
    forget = sigmoid(gates[:b])
    ingate = sigmoid(gates[b : 2 * b])
    outgate = sigmoid(gates[2 * b : 3 * b])
    change = np.tanh(gates[3 * b :])
    cell = cell * forget + ingate * change
    hidden = outgate * np.tanh(cell)
    return hidden, cell


def predict(main_params, extra_params, state, x):
    """Run ``x`` through every layer: the prediction and the new state."""
    layers = state.shape[0] // 2
    x = x * extra_params[0]
    new_state = state.copy()
    for i in range(layers):
        hidden, cell = lstm_cell(
            main_params[2 * i], main_params[2 * i + 1], state[2 * i], state[2 * i + 1], x
        )
        new_state[2 * i] = hidden
        new_state[2 * i + 1] = cell
        x = hidden
    return x * extra_params[1] + extra_params[2], new_state


def lstm_loss(main_params, extra_params, state, sequence):
    total = 0.0
    count = 0
    for t in range(sequence.shape[0] - 1):
        ypred, state = predict(main_params, extra_params, state, sequence[t])
        ynorm = ypred - np.log(2.0 + np.sum(np.exp(ypred)))
        total = total + np.sum(sequence[t + 1] * ynorm)
        count = count + sequence.shape[1]
    return -total / count


def predict_immutable(main_params, extra_params, state, x):
    """``predict`` for immutable arrays: the new state's rows gathered in a list."""
    layers = state.shape[0] // 2
    x = x * extra_params[0]
    rows = []
    for i in range(layers):
        hidden, cell = lstm_cell(
            main_params[2 * i], main_params[2 * i + 1], state[2 * i], state[2 * i + 1], x
        )
        rows.append(hidden)
        rows.append(cell)
        x = hidden
    return x * extra_params[1] + extra_params[2], np.stack(rows)


@functools.cache
def _predict_jnp():
    import jax.numpy as jnp

    return rebind(predict_immutable, jnp)


def lstm_loss_scan(main_params, extra_params, state, sequence):
    """The hand-rolled ``lax.scan`` twin that ``jax.grad`` gets: the time loop rolled,
    the loop over layers (static, l = 2) unrolled; each step is ``predict_immutable``
    rebound to ``jax.numpy``. The rebound twin of the whole objective unrolls all
    l * (c - 1) cells under ``jax.jit``, which takes tens of seconds to compile."""
    import jax.numpy as jnp
    from jax import lax

    predict_jnp = _predict_jnp()

    def step(state, pair):
        x, ygold = pair
        ypred, state = predict_jnp(main_params, extra_params, state, x)
        ynorm = ypred - jnp.log(2.0 + jnp.sum(jnp.exp(ypred)))
        return state, jnp.sum(ygold * ynorm)

    _, terms = lax.scan(step, state, (sequence[:-1], sequence[1:]))
    return -jnp.sum(terms) / ((sequence.shape[0] - 1) * sequence.shape[1])


@functools.cache
def _loss_autograd():
    import autograd.numpy as anp

    return rebind(lstm_loss, anp, predict=predict_immutable)


def lstm_loss_autograd(main_params, extra_params, state, sequence):
    """The autograd twin: ``lstm_loss`` with ``predict_immutable``, on ``autograd.numpy``."""
    return _loss_autograd()(main_params, extra_params, state, sequence)


def inputs(layers: int, bits: int, chars: int, seed: int = 0) -> tuple:
    """Arguments of ``lstm_loss``."""
    rng = np.random.default_rng(seed)
    main_params = rng.random((2 * layers, 4 * bits))
    extra_params = rng.random((3, bits))
    state = rng.random((2 * layers, bits))
    sequence = rng.integers(0, 2, (chars, bits)).astype(float)
    return (main_params, extra_params, state, sequence)


def _cases(size: str) -> list[Case]:
    layers, bits, chars = (2, 3, 4) if size == "smoke" else (2, 14, 50)
    return [Case(f"l={layers}, b={bits}, c={chars}", inputs(layers, bits, chars))]


PROBLEM = Problem(
    name="LSTM (ADBench)",
    objective=lstm_loss,
    wrt=("main_params", "extra_params"),
    cases=_cases,
    jax_objective=lstm_loss_scan,
    autograd_objective=lstm_loss_autograd,
    vectorized=False,
)
