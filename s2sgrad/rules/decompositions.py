"""Rules for matrix functions and decompositions: slogdet, cholesky, eigh, qr, svd, lstsq,
pinv, matrix_power.

The decompositions return tuples (``outputs=N``): their forward rules return
the tuple of the outputs' tangents, their reverse rules receive the tuple of
the outputs' cotangents (zeros for outputs the program does not use). The
formulas are jax's, and so are their assumptions: ``eigh`` needs distinct
eigenvalues, ``svd`` distinct nonzero singular values and
``full_matrices=False`` (or a square matrix), ``qr`` the reduced mode of a
matrix with at least as many rows as columns, ``lstsq`` and ``pinv`` a
matrix of full rank. ``cholesky`` and ``eigh`` read one triangle of a
symmetric matrix; like jax, their rules treat the tangent as symmetric
(``(da + da.T) / 2``), so their gradients are symmetric.
"""

from __future__ import annotations

import numpy as np

from s2sgrad.rules.registry import defjvp, deflinear, defvjp, restrict, shape_only
from s2sgrad.runtime import matrix_power_adjoint, matrix_power_tangent, thin_svd_factor


@defjvp(np.linalg.slogdet, outputs=2)
def slogdet_jvp(ans, a, *, da):
    dlogdet = np.trace(np.linalg.solve(a, da), axis1=-2, axis2=-1)
    return np.zeros_like(ans[0]), dlogdet


@defvjp(np.linalg.slogdet, outputs=2)
def slogdet_vjp(g, ans, a):
    return np.expand_dims(g[1], (-2, -1)) * np.swapaxes(np.linalg.inv(a), -1, -2)


@defjvp(np.linalg.cholesky)
def cholesky_jvp(ans, a, upper=False, *, da):
    sym = (da + np.swapaxes(da, -1, -2)) / 2
    l_inv = np.linalg.inv(ans)
    x = l_inv @ sym @ np.swapaxes(l_inv, -1, -2)
    # The lower triangle of x with its diagonal halved.
    phi = np.tril(x, -1) + 0.5 * x * np.eye(np.shape(a)[-1])
    return ans @ phi


@defvjp(np.linalg.cholesky)
def cholesky_vjp(g, ans, a, upper=False):
    l_inv = np.linalg.inv(ans)
    p = np.swapaxes(ans, -1, -2) @ g
    phi = np.tril(p, -1) + 0.5 * p * np.eye(np.shape(a)[-1])
    s = np.swapaxes(l_inv, -1, -2) @ phi @ l_inv
    return (s + np.swapaxes(s, -1, -2)) / 2


@defjvp(np.linalg.eigh, outputs=2)
def eigh_jvp(ans, a, UPLO="L", *, da):
    w, v = ans[0], ans[1]
    sym = (da + np.swapaxes(da, -1, -2)) / 2
    vt_da_v = np.swapaxes(v, -1, -2) @ sym @ v
    eye = np.eye(np.shape(a)[-1])
    # f[i, j] = 1 / (w[j] - w[i]) off the diagonal, 0 on it.
    f = 1 / (eye + w[..., None, :] - w[..., :, None]) - eye
    return np.diagonal(vt_da_v, 0, -2, -1), v @ (f * vt_da_v)


@defvjp(np.linalg.eigh, outputs=2)
def eigh_vjp(g, ans, a, UPLO="L"):
    w, v = ans[0], ans[1]
    eye = np.eye(np.shape(a)[-1])
    f = 1 / (eye + w[..., None, :] - w[..., :, None]) - eye
    inner = eye * g[0][..., None, :] + f * (np.swapaxes(v, -1, -2) @ g[1])
    s = v @ inner @ np.swapaxes(v, -1, -2)
    return (s + np.swapaxes(s, -1, -2)) / 2


@defjvp(np.linalg.qr, outputs=2)
def qr_jvp(ans, a, mode="reduced", *, da):
    q, r = ans[0], ans[1]
    # da @ inv(r), by a solve with r transposed.
    da_rinv = np.swapaxes(np.linalg.solve(np.swapaxes(r, -1, -2), np.swapaxes(da, -1, -2)), -1, -2)
    c = np.swapaxes(q, -1, -2) @ da_rinv
    lower = np.tril(c, -1)
    omega = lower - np.swapaxes(lower, -1, -2)
    return q @ (omega - c) + da_rinv, (c - omega) @ r


@defvjp(np.linalg.qr, outputs=2)
def qr_vjp(g, ans, a, mode="reduced"):
    q, r = ans[0], ans[1]
    m = g[1] @ np.swapaxes(r, -1, -2) - np.swapaxes(q, -1, -2) @ g[0]
    n = m - np.tril(m - np.swapaxes(m, -1, -2), -1)
    x = g[0] + q @ n
    # x @ inv(r).T, by a solve with r.
    return np.swapaxes(np.linalg.solve(r, np.swapaxes(x, -1, -2)), -1, -2)


@defjvp(np.linalg.svd, outputs=3)
def svd_jvp(ans, a, full_matrices=True, compute_uv=True, hermitian=False, *, da):
    u, s, vt = thin_svd_factor(ans[0], a, full_matrices), ans[1], ans[2]
    v = np.swapaxes(vt, -1, -2)
    ut = np.swapaxes(u, -1, -2)
    dp = ut @ da @ v
    s_row = s[..., None, :]
    s_col = s[..., :, None]
    eye = np.eye(np.shape(s)[-1])
    # f[i, j] = 1 / (s[j]**2 - s[i]**2) off the diagonal, 0 on it.
    f = 1 / (eye + (s_row + s_col) * (s_row - s_col)) - eye
    dp_s = dp * s_row
    s_dp = s_col * dp
    du = u @ (f * (dp_s + np.swapaxes(dp_s, -1, -2)))
    dv = v @ (f * (s_dp + np.swapaxes(s_dp, -1, -2)))
    # Rectangular matrices: the parts of da outside the spans of u and v.
    da_v = da @ v
    du = du + (da_v - u @ (ut @ da_v)) / s_row
    dat_u = np.swapaxes(da, -1, -2) @ u
    dv = dv + (dat_u - v @ (vt @ dat_u)) / s_row
    return du, np.diagonal(dp, 0, -2, -1), np.swapaxes(dv, -1, -2)


@defvjp(np.linalg.svd, outputs=3)
def svd_vjp(g, ans, a, full_matrices=True, compute_uv=True, hermitian=False):
    u, s, vt = thin_svd_factor(ans[0], a, full_matrices), ans[1], ans[2]
    gu, gs, gv = g[0], g[1], np.swapaxes(g[2], -1, -2)
    v = np.swapaxes(vt, -1, -2)
    ut = np.swapaxes(u, -1, -2)
    s_row = s[..., None, :]
    s_col = s[..., :, None]
    eye = np.eye(np.shape(s)[-1])
    f = 1 / (eye + (s_row + s_col) * (s_row - s_col)) - eye
    j = f * (ut @ gu)
    k = f * (vt @ gv)
    p = eye * gs[..., None, :] + (j + np.swapaxes(j, -1, -2)) * s_row
    p = p + s_col * (k + np.swapaxes(k, -1, -2))
    core = u @ p @ vt
    gu_outside = (gu - u @ (ut @ gu)) / s_row
    gv_outside = (gv - v @ (vt @ gv)) / s_row
    return core + gu_outside @ vt + u @ np.swapaxes(gv_outside, -1, -2)


# The singular values alone (np.linalg.svdvals(a), which is svd(a, compute_uv=False)):
# ds = diag(u^T da v), as for svd's second output; distinct nonzero values assumed.
@defjvp(np.linalg.svdvals)
def svdvals_jvp(ans, x, *, dx):
    usv = np.linalg.svd(x, full_matrices=False)
    u = usv[0]
    vt = usv[2]
    return np.diagonal(np.swapaxes(u, -1, -2) @ dx @ np.swapaxes(vt, -1, -2), 0, -2, -1)


@defvjp(np.linalg.svdvals)
def svdvals_vjp(g, ans, x):
    usv = np.linalg.svd(x, full_matrices=False)
    return (usv[0] * g[..., None, :]) @ usv[2]


# svd's rules need all three outputs: compute_uv=False returns s alone (svdvals).
restrict(
    np.linalg.svd,
    compute_uv=(True,),
    hint="for the singular values alone call np.linalg.svdvals(a), which s2sgrad "
    "differentiates (or take np.linalg.svd(a, full_matrices=False)[1])",
)
# hermitian=True reads one triangle of a matrix assumed symmetric: another function.
restrict(
    np.linalg.svd,
    np.linalg.pinv,
    hermitian=(False,),
    hint="leave hermitian out (hermitian=False), or symmetrize the matrix yourself",
)
restrict(
    np.linalg.qr,
    mode=("reduced",),
    hint="call np.linalg.qr(a) (mode='reduced'), the only mode s2sgrad differentiates",
)
restrict(
    np.linalg.cholesky,
    upper=(False,),
    hint="take the lower factor l = np.linalg.cholesky(a) and transpose it: "
    "np.swapaxes(l, -1, -2)",
)


# Only the solution x of (x, residuals, rank, s) is differentiated; the others get zero
# tangents and their cotangents are ignored. a must have full rank.
@defjvp(np.linalg.lstsq, outputs=4)
def lstsq_jvp(ans, a, b, rcond=None, *, da, db):
    x = ans[0]
    p = np.linalg.pinv(a)
    r = b - a @ x
    at_da = np.transpose(da)
    dx = p @ (db - da @ x) + p @ (np.transpose(p) @ (at_da @ r))
    dx = dx + (np.eye(np.shape(a)[1]) - p @ a) @ (at_da @ (np.transpose(p) @ x))
    zeros = np.zeros(np.shape(ans[1]))
    return dx, zeros, np.zeros(np.shape(ans[2])), np.zeros(np.shape(ans[3]))


@defvjp(np.linalg.lstsq, outputs=4)
def lstsq_vjp(g, ans, a, b, rcond=None):
    x = ans[0]
    gx = g[0]
    p = np.linalg.pinv(a)
    pt = np.transpose(p)
    r = b - a @ x
    db = pt @ gx
    # The cotangent of a, from each term of the tangent above.
    first = -np.reshape(db, (np.shape(a)[0], -1)) @ np.transpose(
        np.reshape(x, (np.shape(a)[1], -1))
    )
    c2 = np.reshape(p @ (pt @ gx), (np.shape(a)[1], -1))
    second = np.reshape(r, (np.shape(a)[0], -1)) @ np.transpose(c2)
    c3 = np.reshape(gx - p @ (a @ gx), (np.shape(a)[1], -1))
    third = np.reshape(pt @ x, (np.shape(a)[0], -1)) @ np.transpose(c3)
    return first + second + third, db


@defjvp(np.linalg.pinv)
def pinv_jvp(ans, a, rcond=None, hermitian=False, *, da):
    p = ans
    pt = np.swapaxes(p, -1, -2)
    dat = np.swapaxes(da, -1, -2)
    eye_m = np.eye(np.shape(a)[-2])
    eye_n = np.eye(np.shape(a)[-1])
    return -p @ da @ p + p @ pt @ dat @ (eye_m - a @ p) + (eye_n - p @ a) @ dat @ pt @ p


@defvjp(np.linalg.pinv)
def pinv_vjp(g, ans, a, rcond=None, hermitian=False):
    p = ans
    pt = np.swapaxes(p, -1, -2)
    gt = np.swapaxes(g, -1, -2)
    eye_m = np.eye(np.shape(a)[-2])
    eye_n = np.eye(np.shape(a)[-1])
    return -pt @ g @ pt + (eye_m - a @ p) @ gt @ p @ pt + pt @ p @ gt @ (eye_n - p @ a)


@defjvp(np.linalg.matrix_power)
def matrix_power_jvp(ans, a, n, *, da):
    return matrix_power_tangent(a, n, da)


@defvjp(np.linalg.matrix_power)
def matrix_power_vjp(g, ans, a, n):
    return matrix_power_adjoint(g, a, n)


# svd's u, checked to be the thin factor (derivative code's own): the identity on u.
deflinear(thin_svd_factor, params="u, a, full_matrices=True")
shape_only(thin_svd_factor, "a")


@defvjp(thin_svd_factor)
def thin_svd_factor_vjp(g, ans, u, a, full_matrices=True):
    return g


# The derivative of matrix_power along t, L(a, t) = sum_k M^k dM M^(m-1-k), and its
# transpose (derivative code's own): L is linear in t; its derivative in a is read off
# the block matrix B = [[a, t], [0, a]], whose power's upper-right block is L(a, t), so
# that L's derivative in a along da is the upper-right block of L(B, [[da, 0], [0, da]]).
# The transpose matrix_power_adjoint(g, a, n) is L(a.T, g).
@defjvp(matrix_power_tangent)
def matrix_power_tangent_jvp(ans, a, n, t, *, da, dt):
    k = np.shape(a)[-1]
    zeros = np.zeros_like(a)
    block = np.concatenate([np.concatenate([a, t], -1), np.concatenate([zeros, a], -1)], -2)
    dblock = np.concatenate([np.concatenate([da, zeros], -1), np.concatenate([zeros, da], -1)], -2)
    return matrix_power_tangent(block, n, dblock)[..., :k, k:], matrix_power_tangent(a, n, dt)


@defvjp(matrix_power_tangent)
def matrix_power_tangent_vjp(g, ans, a, n, t):
    # <g, UR(L(B, diag(da, da)))> = <L*(B, [[0, g], [0, 0]]), diag(da, da)>
    k = np.shape(a)[-1]
    zeros = np.zeros_like(a)
    block = np.concatenate([np.concatenate([a, t], -1), np.concatenate([zeros, a], -1)], -2)
    gblock = np.concatenate(
        [np.concatenate([zeros, g], -1), np.concatenate([zeros, zeros], -1)], -2
    )
    c = matrix_power_adjoint(gblock, block, n)
    return c[..., :k, :k] + c[..., k:, k:], None, matrix_power_adjoint(g, a, n)


@defjvp(matrix_power_adjoint)
def matrix_power_adjoint_jvp(ans, part, a, n, *, dpart, da):
    k = np.shape(a)[-1]
    at = np.swapaxes(a, -1, -2)
    dat = np.swapaxes(da, -1, -2)
    zeros = np.zeros_like(at)
    block = np.concatenate([np.concatenate([at, part], -1), np.concatenate([zeros, at], -1)], -2)
    dblock = np.concatenate(
        [np.concatenate([dat, zeros], -1), np.concatenate([zeros, dat], -1)], -2
    )
    return matrix_power_adjoint(dpart, a, n), matrix_power_tangent(block, n, dblock)[..., :k, k:]


@defvjp(matrix_power_adjoint)
def matrix_power_adjoint_vjp(g, ans, part, a, n):
    k = np.shape(a)[-1]
    at = np.swapaxes(a, -1, -2)
    zeros = np.zeros_like(at)
    block = np.concatenate([np.concatenate([at, part], -1), np.concatenate([zeros, at], -1)], -2)
    gblock = np.concatenate(
        [np.concatenate([zeros, g], -1), np.concatenate([zeros, zeros], -1)], -2
    )
    c = matrix_power_adjoint(gblock, block, n)
    return matrix_power_tangent(a, n, g), np.swapaxes(c[..., :k, :k] + c[..., k:, k:], -1, -2)
