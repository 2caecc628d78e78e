"""Backends: how generated IR maps to an array library (NumPy now; JAX later)."""
