"""Gradient of a two-layer perceptron's loss on a batch: the comparison Tangent published.

Tangent's paper (Wiltschko, van Merriënboer and Moldovan, "Tangent: Automatic
differentiation using source-code transformation in Python", 2017) compares its generated
gradients with autograd's on a multi-layer perceptron over a range of hidden sizes. This is
that problem in the style a scientist writes it: the parameters in a dict
``params = {"W1", "b1", "W2", "b2"}``, a tanh hidden layer, softmax cross-entropy through a
(stable) logsumexp, averaged over the batch. The gradient with respect to ``params`` comes
back as a dict of the same keys.

Sizes: a batch of 32 MNIST-shaped inputs (784 features), 10 classes, one case per hidden
size 64, 128, 256, 512, 1024 and 2048 at full size; smoke is 5 features, hidden size 4,
3 classes, a batch of 6. Weights are Glorot-scaled normals and the inputs standard
normals, so the hidden layer stays off tanh's flat tails. ``hand_gradient`` is the
backpropagation written out by hand.
"""

from __future__ import annotations

import numpy as np

from benchmarks.problem import Case, Problem

BATCH = 32
FEATURES = 784
CLASSES = 10
HIDDEN = (64, 128, 256, 512, 1024, 2048)


def logsumexp(z):
    """log(sum(exp(z))) over the last axis, shifted by the row maximum for stability."""
    top = np.max(z, axis=1, keepdims=True)
    return np.log(np.sum(np.exp(z - top), axis=1, keepdims=True)) + top


def mlp_loss(params, x, labels):
    """Mean softmax cross-entropy of a tanh MLP; ``labels`` is one-hot, (batch, classes)."""
    hidden = np.tanh(x @ params["W1"] + params["b1"])
    logits = hidden @ params["W2"] + params["b2"]
    log_probs = logits - logsumexp(logits)
    return -np.sum(labels * log_probs) / x.shape[0]


def hand_gradient(params, x, labels):
    """Backpropagation by hand: ({"W1": ..., "b1": ..., "W2": ..., "b2": ...},)."""
    hidden = np.tanh(x @ params["W1"] + params["b1"])
    logits = hidden @ params["W2"] + params["b2"]
    probs = np.exp(logits - logsumexp(logits))
    dlogits = (probs * np.sum(labels, axis=1, keepdims=True) - labels) / x.shape[0]
    dhidden = (dlogits @ params["W2"].T) * (1.0 - hidden**2)
    grads = {
        "W1": x.T @ dhidden,
        "b1": np.sum(dhidden, axis=0),
        "W2": hidden.T @ dlogits,
        "b2": np.sum(dlogits, axis=0),
    }
    return (grads,)


def inputs(features: int, hidden: int, classes: int, batch: int, seed: int = 0) -> tuple:
    """Arguments of ``mlp_loss``: (params, x, one-hot labels)."""
    rng = np.random.default_rng(seed)
    params = {
        "W1": rng.standard_normal((features, hidden)) * np.sqrt(1.0 / features),
        "b1": 0.1 * rng.standard_normal(hidden),
        "W2": rng.standard_normal((hidden, classes)) * np.sqrt(1.0 / hidden),
        "b2": 0.1 * rng.standard_normal(classes),
    }
    x = rng.standard_normal((batch, features))
    labels = np.eye(classes)[rng.integers(0, classes, batch)]
    return (params, x, labels)


def _cases(size: str) -> list[Case]:
    if size == "smoke":
        return [Case("H=4", inputs(5, 4, 3, 6))]
    return [Case(f"H={h}", inputs(FEATURES, h, CLASSES, BATCH)) for h in HIDDEN]


PROBLEM = Problem(
    name="MLP, batch of 32",
    objective=mlp_loss,
    wrt=("params",),
    cases=_cases,
    hand_gradient=hand_gradient,
    vectorized=True,
)
