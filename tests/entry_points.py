"""Every public way into s2sgrad, called on one function of one array: for tests that a
refusal (or a fix) holds whichever entry point a user comes through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import s2sgrad


def entry_points(x: np.ndarray) -> dict[str, Callable[[Callable], Any]]:
    """``name -> call`` for grad (both modes), value_and_grad, jvp, vjp and the JAX backend."""
    return {
        "grad": lambda fn: s2sgrad.grad(fn)(x),
        "grad_forward": lambda fn: s2sgrad.grad(fn, mode="forward")(x),
        "value_and_grad": lambda fn: s2sgrad.value_and_grad(fn)(x),
        "jvp": lambda fn: s2sgrad.jvp(fn, (x,), (np.ones(np.shape(x)),)),
        "vjp": lambda fn: s2sgrad.vjp(fn, x),
        "jax": lambda fn: s2sgrad.grad(fn, backend="jax")(x),
    }
