"""Shared pytest setup: the jax oracle computes in float64, like the NumPy code under test."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")
