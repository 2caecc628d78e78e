"""Backends: the array libraries generated code targets. NumPy code is printed as is;
``jax`` lowers control flow first (``s2sgrad.backends.jax``)."""

BACKENDS = ("numpy", "jax")
