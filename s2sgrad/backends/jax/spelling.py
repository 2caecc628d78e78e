"""How JAX-backend code writes NumPy's names: ``np.sin`` -> ``jnp.sin``,
``scipy.special.expit`` -> ``jax.scipy.special.expit``.

Rules are written once, in NumPy's names; the JAX backend respells them while
printing, and refuses a name JAX does not have (``NoJaxEquivalentError``, which
``codegen`` places at the user's line).
"""

from __future__ import annotations

from typing import Any

from s2sgrad.codegen import NoJaxEquivalentError, Spelling


def spelling(numpy_spelling: Spelling, backend: Any) -> Spelling:
    """``numpy_spelling`` in JAX's namespaces."""
    text = numpy_spelling.text
    if text.startswith("np."):
        return _jax_numpy_spelling(text)
    if text.startswith("scipy.special."):
        import jax.scipy.special

        name = text.rsplit(".", 1)[1]
        if not hasattr(jax.scipy.special, name):
            raise NoJaxEquivalentError(
                f"scipy.special.{name} has no jax.scipy.special equivalent",
                hint="use backend='numpy' for this function, or register a rule for a "
                "function of your own that wraps a JAX implementation",
            )
        return Spelling(f"jax.scipy.special.{name}", module_import="jax.scipy.special")
    return numpy_spelling


def _jax_numpy_spelling(text: str) -> Spelling:
    import jax.numpy as jnp

    namespace: Any = jnp
    *path, name = text.split(".")[1:]
    for part in path:
        namespace = getattr(namespace, part, None)
    if namespace is None or not hasattr(namespace, name):
        raise NoJaxEquivalentError(
            f"{text} has no jax.numpy equivalent, so the JAX backend cannot lower it",
            hint="use backend='numpy' for this function, or rewrite it with functions that "
            "jax.numpy provides",
        )
    return Spelling("jnp." + text[3:])
