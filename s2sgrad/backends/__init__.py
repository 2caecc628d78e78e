"""Backends: the array libraries generated code targets. NumPy code is printed as is;
``jax`` lowers control flow first (``s2sgrad.backends.jax``)."""

BACKENDS = ("numpy", "jax")

# The names s2sgrad.jax_control exports, which generated JAX modules import. Listed here,
# not read from that module, so the NumPy backend never imports JAX (seconds of start-up);
# jax_control.__all__ is this list; tests/test_jax_backend.py checks each name is defined there.
JAX_CONTROL_NAMES = (
    "Range",
    "Tape",
    "LoopBoundExceeded",
    "if_else",
    "for_loop",
    "for_loop_recording",
    "replay",
    "raise_if_overflowed",
    "reversed_range",
    "traced_range",
    "recording",
    "while_loop",
    "while_recording",
)
