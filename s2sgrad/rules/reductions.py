"""Rules for reductions: sum, mean, prod, max/min, ptp, the nan-reductions, average, var/std
and norm (cumulative sums are in scans.py).

Parameters mirror NumPy's signatures (``a, axis=None, dtype=None, out=None,
keepdims=False``) so that positional and keyword arguments bind as they do in
NumPy. A differentiated call may pass ``dtype`` only as a floating type and
``out`` only as None (``transforms.templates.check_argument_forms`` refuses the
rest at the call's line); derivatives follow the dtype of the tangent or
cotangent. ``initial=`` and ``where=`` are not parameters of these rules, so the
compiler rejects calls that pass them rather than differentiating them wrongly.

The reverse rules broadcast the cotangent back over the reduced axes with
``unreduce``.
"""

from __future__ import annotations

import numpy as np

from s2sgrad.rules.registry import defjvp, deflinear, defvjp, restrict, shape_only
from s2sgrad.runtime import (
    average_weights,
    grouped_layout,
    inverse_permutation,
    norm_direction,
    norm_power,
    prod_of_others,
    prod_of_others_tangent,
    rereduce,
    resolved_spread,
    tie_shares,
    unaverage_weights,
    unbroadcast,
    unreduce,
)

deflinear(np.sum, params="a, axis=None, dtype=None, out=None, keepdims=False")


@defvjp(np.sum)
def sum_vjp(g, ans, a, axis=None, dtype=None, out=None, keepdims=False):
    return unreduce(g, a, axis, keepdims)


deflinear(np.mean, params="a, axis=None, dtype=None, out=None, keepdims=False")


@defvjp(np.mean)
def mean_vjp(g, ans, a, axis=None, dtype=None, out=None, keepdims=False):
    n = np.size(a) / np.size(ans)  # how many elements each mean averages
    return unreduce(g / n, a, axis, keepdims)


@defjvp(np.prod)
def prod_jvp(ans, a, axis=None, dtype=None, out=None, keepdims=False, *, da):
    # prod_of_others, not ans / a: exact when a contains zeros, like jax.
    return np.sum(da * prod_of_others(a, axis), axis=axis, keepdims=keepdims)


@defvjp(np.prod)
def prod_vjp(g, ans, a, axis=None, dtype=None, out=None, keepdims=False):
    return unreduce(g, a, axis, keepdims) * prod_of_others(a, axis)


# The helper of prod's rules, for second derivatives: its Jacobian is symmetric (the
# product of the elements other than k and j), so one helper gives both directions.
@defjvp(prod_of_others)
def prod_of_others_jvp(ans, a, axis=None, *, da):
    return prod_of_others_tangent(a, da, axis)


@defvjp(prod_of_others)
def prod_of_others_vjp(g, ans, a, axis=None):
    return prod_of_others_tangent(a, g, axis)


# max and min send the derivative to the elements equal to the result; ties share it
# equally, as in jax. nanmax and nanmin too: a NaN never equals the result.
@defjvp(np.max, np.amax, np.min, np.amin, np.nanmax, np.nanmin)
def max_jvp(ans, a, axis=None, out=None, keepdims=False, *, da):
    return np.sum(da * tie_shares(a, ans, axis, keepdims), axis=axis, keepdims=keepdims)


@defvjp(np.max, np.amax, np.min, np.amin, np.nanmax, np.nanmin)
def max_vjp(g, ans, a, axis=None, out=None, keepdims=False):
    return unreduce(g, a, axis, keepdims) * tie_shares(a, ans, axis, keepdims)


# ptp = max - min: the derivative of max minus that of min.
@defjvp(np.ptp)
def ptp_jvp(ans, a, axis=None, out=None, keepdims=False, *, da):
    top = tie_shares(a, np.max(a, axis=axis, keepdims=keepdims), axis, keepdims)
    bottom = tie_shares(a, np.min(a, axis=axis, keepdims=keepdims), axis, keepdims)
    return np.sum(da * (top - bottom), axis=axis, keepdims=keepdims)


@defvjp(np.ptp)
def ptp_vjp(g, ans, a, axis=None, out=None, keepdims=False):
    top = tie_shares(a, np.max(a, axis=axis, keepdims=keepdims), axis, keepdims)
    bottom = tie_shares(a, np.min(a, axis=axis, keepdims=keepdims), axis, keepdims)
    return unreduce(g, a, axis, keepdims) * (top - bottom)


# The nan reductions skip NaN entries: those get no derivative.
@defjvp(np.nansum)
def nansum_jvp(ans, a, axis=None, dtype=None, out=None, keepdims=False, *, da):
    return np.sum(np.where(np.isnan(a), 0.0, da), axis=axis, keepdims=keepdims)


@defvjp(np.nansum)
def nansum_vjp(g, ans, a, axis=None, dtype=None, out=None, keepdims=False):
    return np.where(np.isnan(a), 0.0, unreduce(g, a, axis, keepdims))


@defjvp(np.nanmean)
def nanmean_jvp(ans, a, axis=None, dtype=None, out=None, keepdims=False, *, da):
    present = np.logical_not(np.isnan(a))
    counts = np.sum(present, axis=axis, keepdims=True)
    return np.sum(np.where(present, da, 0.0) / counts, axis=axis, keepdims=keepdims)


@defvjp(np.nanmean)
def nanmean_vjp(g, ans, a, axis=None, dtype=None, out=None, keepdims=False):
    present = np.logical_not(np.isnan(a))
    counts = np.sum(present, axis=axis, keepdims=True)
    return np.where(present, unreduce(g, a, axis, keepdims) / counts, 0.0)


@defjvp(np.nanprod)
def nanprod_jvp(ans, a, axis=None, dtype=None, out=None, keepdims=False, *, da):
    missing = np.isnan(a)
    others = prod_of_others(np.where(missing, 1.0, a), axis)
    return np.sum(np.where(missing, 0.0, da) * others, axis=axis, keepdims=keepdims)


@defvjp(np.nanprod)
def nanprod_vjp(g, ans, a, axis=None, dtype=None, out=None, keepdims=False):
    missing = np.isnan(a)
    others = prod_of_others(np.where(missing, 1.0, a), axis)
    return np.where(missing, 0.0, unreduce(g, a, axis, keepdims) * others)


# nanvar and nanstd: var and std of the entries that are not NaN (n counts those).
@defjvp(np.nanvar)
def nanvar_jvp(ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, da):
    present = np.logical_not(np.isnan(a))
    n = np.sum(present, axis=axis, keepdims=True)
    centered = np.where(present, a - np.nanmean(a, axis=axis, keepdims=True), 0.0)
    return np.sum(centered * da * 2 / np.maximum(n - ddof, 0), axis=axis, keepdims=keepdims)


@defvjp(np.nanvar)
def nanvar_vjp(g, ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    present = np.logical_not(np.isnan(a))
    n = np.sum(present, axis=axis, keepdims=True)
    centered = np.where(present, a - np.nanmean(a, axis=axis, keepdims=True), 0.0)
    return unreduce(g, a, axis, keepdims) * centered * 2 / np.maximum(n - ddof, 0)


# Where nanstd is 0 (one entry that is not NaN, or all equal) or rounding noise, its
# derivative is 0, as for std (see there). NaN entries get 0.
@defjvp(np.nanstd)
def nanstd_jvp(ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, da):
    present = np.logical_not(np.isnan(a))
    n = np.sum(present, axis=axis, keepdims=True)
    centered = np.where(present, a - np.nanmean(a, axis=axis, keepdims=True), 0.0)
    spread = unreduce(resolved_spread(ans, a, axis, keepdims), a, axis, keepdims)
    share = np.where(present, centered * da / (np.maximum(n - ddof, 0) * spread), 0.0)
    return np.sum(share, axis=axis, keepdims=keepdims)


@defvjp(np.nanstd)
def nanstd_vjp(g, ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    present = np.logical_not(np.isnan(a))
    n = np.sum(present, axis=axis, keepdims=True)
    centered = np.where(present, a - np.nanmean(a, axis=axis, keepdims=True), 0.0)
    spread = unreduce(resolved_spread(ans, a, axis, keepdims), a, axis, keepdims)
    scale = unreduce(g, a, axis, keepdims) / (np.maximum(n - ddof, 0) * spread)
    return np.where(present, scale * centered, 0.0)


# average = sum(w * a) / sum(w): d/da = w / sum(w), d/dw = (a - average) / sum(w). numpy's
# keyword-only `keepdims` is accepted by keyword; `returned=True` raises in average_weights.
@defjvp(np.average)
def average_jvp(ans, a, axis=None, weights=None, returned=False, keepdims=False, *, da, dweights):
    w = average_weights(a, axis, weights, returned)
    total = np.sum(w, axis=axis, keepdims=True)
    centered = a - unreduce(ans, a, axis, keepdims)
    return (
        np.sum(da * w / total, axis=axis, keepdims=keepdims),
        np.sum(average_weights(a, axis, dweights) * centered / total, axis=axis, keepdims=keepdims),
    )


@defvjp(np.average)
def average_vjp(g, ans, a, axis=None, weights=None, returned=False, keepdims=False):
    w = average_weights(a, axis, weights, returned)
    spread = unreduce(g, a, axis, keepdims) / np.sum(w, axis=axis, keepdims=True)
    centered = a - unreduce(ans, a, axis, keepdims)
    return spread * w, None, unaverage_weights(spread * centered, weights, a, axis)


restrict(
    np.average,
    returned=(False,),
    hint="differentiate np.average(a, axis, weights) and compute the sum of the weights "
    "separately",
)


# var = sum((a - mean)**2) / (n - ddof); the mean's own derivative cancels, as sum(a - mean) = 0.
@defjvp(np.var)
def var_jvp(ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, da):
    centered = a - np.mean(a, axis=axis, keepdims=True)
    n = np.size(a) / np.size(ans)
    return np.sum(centered * da, axis=axis, keepdims=keepdims) * 2 / np.maximum(n - ddof, 0)


@defvjp(np.var)
def var_vjp(g, ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    centered = a - np.mean(a, axis=axis, keepdims=True)
    n = np.size(a) / np.size(ans)
    return unreduce(g * 2 / np.maximum(n - ddof, 0), a, axis, keepdims) * centered


# Where std is 0 (all entries equal; always over one element: a length-1 axis, a 0-d
# array) centered / ans is 0 / 0; where entries equal by construction give a std of
# rounding noise it is noise over noise (runtime.resolved_spread). Over one element std
# is constant, derivative 0; over equal entries it has none (jax gives nan), and the
# rule gives 0 there too: the derivative along every direction that keeps them equal,
# and the right answer for a constant that reaches std with a zero tangent (an inactive
# branch's value). The denominator is made infinite there. With n - ddof <= 0 NumPy
# divides by zero (the value is nan or inf), and so does the rule.
@defjvp(np.std)
def std_jvp(ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, da):
    centered = a - np.mean(a, axis=axis, keepdims=True)
    n = np.size(a) / np.size(ans)
    denominator = np.maximum(n - ddof, 0) * resolved_spread(ans, a, axis, keepdims)
    return np.sum(centered * da, axis=axis, keepdims=keepdims) / denominator


@defvjp(np.std)
def std_vjp(g, ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    centered = a - np.mean(a, axis=axis, keepdims=True)
    n = np.size(a) / np.size(ans)
    denominator = np.maximum(n - ddof, 0) * resolved_spread(ans, a, axis, keepdims)
    return unreduce(g / denominator, a, axis, keepdims) * centered


@defjvp(np.linalg.norm)
def norm_jvp(ans, x, ord=None, axis=None, keepdims=False, *, dx):
    return np.sum(dx * norm_direction(x, ans, ord, axis, keepdims), axis=axis, keepdims=keepdims)


@defvjp(np.linalg.norm)
def norm_vjp(g, ans, x, ord=None, axis=None, keepdims=False):
    return unreduce(g, x, axis, keepdims) * norm_direction(x, ans, ord, axis, keepdims)


# --------------------------------------------------------------------------- derivative code's own

# unreduce spreads a reduction's cotangent back over the reduced axes, and rereduce sums
# it again: each is the other's transpose, so derivative code differentiates again.
deflinear(unreduce, params="g, x, axis=None, keepdims=False")
shape_only(unreduce, "x")


@defvjp(unreduce)
def unreduce_vjp(g, ans, part, x, axis=None, keepdims=False):
    return rereduce(g, part, axis, keepdims)


deflinear(rereduce, params="c, g, axis=None, keepdims=False")
shape_only(rereduce, "g")


@defvjp(rereduce)
def rereduce_vjp(g, ans, c, part, axis=None, keepdims=False):
    return unreduce(g, c, axis, keepdims)


# --------------------------------------------------------------------------- derivative code's own


# np.average's weights spread to the shape of a (linear in the weights; a gives the
# shape), and its transpose, the sum back to the weights' shape.
@defjvp(average_weights)
def average_weights_jvp(ans, a, axis=None, weights=None, returned=False, *, dweights):
    return average_weights(a, axis, dweights, returned)


shape_only(average_weights, "a")


@defvjp(average_weights)
def average_weights_vjp(g, ans, a, axis=None, weights=None, returned=False):
    return None, None, unaverage_weights(g, weights, a, axis), None


deflinear(unaverage_weights, params="ct, weights, a, axis=None")
shape_only(unaverage_weights, "weights", "a")


@defvjp(unaverage_weights)
def unaverage_weights_vjp(g, ans, ct, weights, a, axis=None):
    return average_weights(a, axis, g)


# The derivative of prod_of_others along t: linear in t, with a symmetric Jacobian (the
# product of the elements other than k and j). Its derivative in a is the third
# derivative of prod, the product of the elements other than j, k and l, symmetric in
# all three: element k of it along (t, d) sums t_j d_l over the pairs j != l of the other
# elements, the tangent of prod_of_others along d of the group with a_k set to 1 (and
# t_k, d_k to 0), dotted with t. Each group is laid along a last axis (grouped_layout),
# and a new axis holds one such copy of the group per element k.
@defjvp(prod_of_others_tangent)
def prod_of_others_tangent_jvp(ans, a, t, axis=None, *, da, dt):
    perm, moved, flat = grouped_layout(np.shape(a), axis)
    last = np.reshape(np.transpose(a, perm), flat)
    t_last = np.reshape(np.transpose(np.broadcast_to(t, np.shape(a)), perm), flat)
    d_last = np.reshape(np.transpose(da, perm), flat)
    eye = np.eye(np.shape(last)[-1], dtype=bool)
    others = prod_of_others_tangent(
        np.where(eye, 1.0, last[..., None, :]), np.where(eye, 0.0, d_last[..., None, :]), -1
    )
    curved = np.sum(np.where(eye, 0.0, t_last[..., None, :]) * others, axis=-1)
    back = np.transpose(np.reshape(curved, moved), inverse_permutation(perm))
    return back, prod_of_others_tangent(a, dt, axis)


@defvjp(prod_of_others_tangent)
def prod_of_others_tangent_vjp(g, ans, a, t, axis=None):
    perm, moved, flat = grouped_layout(np.shape(a), axis)
    last = np.reshape(np.transpose(a, perm), flat)
    t_last = np.reshape(np.transpose(np.broadcast_to(t, np.shape(a)), perm), flat)
    g_last = np.reshape(np.transpose(g, perm), flat)
    eye = np.eye(np.shape(last)[-1], dtype=bool)
    others = prod_of_others_tangent(
        np.where(eye, 1.0, last[..., None, :]), np.where(eye, 0.0, t_last[..., None, :]), -1
    )
    curved = np.sum(np.where(eye, 0.0, g_last[..., None, :]) * others, axis=-1)
    back = np.transpose(np.reshape(curved, moved), inverse_permutation(perm))
    return back, unbroadcast(prod_of_others_tangent(a, g, axis), t)


# std's spread with rounding noise made infinite: the identity on the spread where it is
# kept, a constant (inf, derivative 0) where it is replaced. `a` only sets the threshold
# of that choice (piecewise constant in a): no derivative flows to it.
@defjvp(resolved_spread)
def resolved_spread_jvp(ans, spread, a, axis=None, keepdims=False, *, dspread):
    return np.where(ans == spread, dspread, 0.0)


shape_only(resolved_spread, "a")


@defvjp(resolved_spread)
def resolved_spread_vjp(g, ans, spread, a, axis=None, keepdims=False):
    return np.where(ans == spread, g, 0.0)


# The derivative of the norm by x (derivative code's own): sign(x) |x|**(p-1) / norm**(p-1)
# for the p-norms (x / norm for the 2-norm and Frobenius norm), so its derivative is
# (p-1) |x|**(p-2) dx / norm**(p-1) - (p-1) direction / norm * dnorm. The norms whose
# direction is piecewise constant have p = 1 here, a derivative of 0 (norm_power; the
# bases are set to 1 there, so no 0 / 0 arises). Matrix 2-norms and the nuclear norm
# raise in norm_power.
@defjvp(norm_direction)
def norm_direction_jvp(ans, x, norm, ord=None, axis=None, keepdims=False, *, dx, dnorm):
    p = norm_power(np.ndim(x), ord, axis)
    flat = p == 1
    size = np.where(flat, 1.0, np.abs(x))
    spread = np.where(flat, 1.0, unreduce(norm, x, axis, keepdims))
    return (
        (p - 1) * size ** (p - 2) * dx / spread ** (p - 1),
        -(p - 1) * ans / spread * unreduce(dnorm, x, axis, keepdims),
    )


@defvjp(norm_direction)
def norm_direction_vjp(g, ans, x, norm, ord=None, axis=None, keepdims=False):
    p = norm_power(np.ndim(x), ord, axis)
    flat = p == 1
    size = np.where(flat, 1.0, np.abs(x))
    spread = np.where(flat, 1.0, unreduce(norm, x, axis, keepdims))
    return (
        (p - 1) * size ** (p - 2) * g / spread ** (p - 1),
        rereduce(-(p - 1) * ans / spread * g, norm, axis, keepdims),
    )
