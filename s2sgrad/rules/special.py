"""Rules for ``scipy.special``: logsumexp, softmax, log_softmax and elementwise special functions.

Templates call ``scipy.special`` functions where the derivative is another
special function (``gammaln``: ``digamma``; ``digamma``: ``polygamma(1, x)``);
generated code spells them ``scipy.special.<name>`` and imports
``scipy.special``. The reductions follow the NumPy conventions of
``reductions.py``: ``axis`` None, an int or a tuple, and ``keepdims``.

``logsumexp``'s ``b=`` weights are differentiable; ``return_sign=`` is not a
parameter of its rules, so the compiler rejects calls that pass it. ``xlogy``
differentiates as jax does: ``log(y)`` for ``x`` and ``x / y`` for ``y``, even
where ``x == 0``.
"""

from __future__ import annotations

import numpy as np
import scipy.special

from s2sgrad.rules.registry import defjvp, defvjp
from s2sgrad.runtime import broadcast_like, logsumexp_shares, rereduce, unbroadcast, unreduce

# --------------------------------------------------------------------------- reductions


# logsumexp(a, b) = log(sum(b * exp(a))): d/da = b * exp(a - ans), d/db = exp(a - ans).
@defjvp(scipy.special.logsumexp)
def logsumexp_jvp(ans, a, axis=None, b=None, keepdims=False, *, da, db):
    shares = logsumexp_shares(a, ans, axis, keepdims)
    weighted = logsumexp_shares(a, ans, axis, keepdims, b)
    return (
        np.sum(da * weighted, axis=axis, keepdims=keepdims),
        np.sum(db * shares, axis=axis, keepdims=keepdims),
    )


@defvjp(scipy.special.logsumexp)
def logsumexp_vjp(g, ans, a, axis=None, b=None, keepdims=False):
    shares = logsumexp_shares(a, ans, axis, keepdims)
    weighted = logsumexp_shares(a, ans, axis, keepdims, b)
    spread = unreduce(g, weighted, axis, keepdims)
    return unbroadcast(spread * weighted, a), None, unbroadcast(spread * shares, b)


# The helper of those rules (derivative code's own): b * exp(a - lse), its own derivative
# in a, -itself in lse (spread over the reduced axes), exp(a - lse) in b.
@defjvp(logsumexp_shares)
def logsumexp_shares_jvp(ans, a, lse, axis=None, keepdims=False, b=None, *, da, dlse, db):
    return (
        da * ans,
        -ans * unreduce(dlse, ans, axis, keepdims),
        db * logsumexp_shares(a, lse, axis, keepdims),
    )


@defvjp(logsumexp_shares)
def logsumexp_shares_vjp(g, ans, a, lse, axis=None, keepdims=False, b=None):
    return (
        unbroadcast(g * ans, a),
        rereduce(-g * ans, lse, axis, keepdims),
        None,
        None,
        unbroadcast(g * logsumexp_shares(a, lse, axis, keepdims), b),
    )


@defjvp(scipy.special.softmax)
def softmax_jvp(ans, x, axis=None, *, dx):
    return ans * (dx - np.sum(ans * dx, axis=axis, keepdims=True))


@defvjp(scipy.special.softmax)
def softmax_vjp(g, ans, x, axis=None):
    return ans * (g - np.sum(ans * g, axis=axis, keepdims=True))


@defjvp(scipy.special.log_softmax)
def log_softmax_jvp(ans, x, axis=None, *, dx):
    return dx - np.sum(np.exp(ans) * dx, axis=axis, keepdims=True)


@defvjp(scipy.special.log_softmax)
def log_softmax_vjp(g, ans, x, axis=None):
    return g - np.exp(ans) * np.sum(g, axis=axis, keepdims=True)


# --------------------------------------------------------------------------- elementwise


@defjvp(scipy.special.expit)
def expit_jvp(ans, x, *, dx):
    return dx * ans * (1 - ans)


@defvjp(scipy.special.expit)
def expit_vjp(g, ans, x):
    return g * ans * (1 - ans)


@defjvp(scipy.special.logit)
def logit_jvp(ans, x, *, dx):
    return dx / (x * (1 - x))


@defvjp(scipy.special.logit)
def logit_vjp(g, ans, x):
    return g / (x * (1 - x))


@defjvp(scipy.special.erf)
def erf_jvp(ans, x, *, dx):
    return dx * (2 / np.sqrt(np.pi)) * np.exp(-(x**2))


@defvjp(scipy.special.erf)
def erf_vjp(g, ans, x):
    return g * (2 / np.sqrt(np.pi)) * np.exp(-(x**2))


@defjvp(scipy.special.erfc)
def erfc_jvp(ans, x, *, dx):
    return -dx * (2 / np.sqrt(np.pi)) * np.exp(-(x**2))


@defvjp(scipy.special.erfc)
def erfc_vjp(g, ans, x):
    return -g * (2 / np.sqrt(np.pi)) * np.exp(-(x**2))


@defjvp(scipy.special.gammaln)
def gammaln_jvp(ans, x, *, dx):
    return dx * scipy.special.digamma(x)


@defvjp(scipy.special.gammaln)
def gammaln_vjp(g, ans, x):
    return g * scipy.special.digamma(x)


@defjvp(scipy.special.digamma)
def digamma_jvp(ans, x, *, dx):
    return dx * scipy.special.polygamma(1, x)


@defvjp(scipy.special.digamma)
def digamma_vjp(g, ans, x):
    return g * scipy.special.polygamma(1, x)


@defjvp(scipy.special.xlogy)
def xlogy_jvp(ans, x, y, *, dx, dy):
    return broadcast_like(dx * np.log(y), ans), broadcast_like(dy * x / y, ans)


@defvjp(scipy.special.xlogy)
def xlogy_vjp(g, ans, x, y):
    return unbroadcast(g * np.log(y), x), unbroadcast(g * x / y, y)
