"""Bundle adjustment: the sum of squared reprojection errors of points seen by cameras.

The ADBench problem "BA" (Srajer, Schkufza, Fitzgibbon, "A benchmark of selected
algorithmic differentiation tools on some problems in computer vision and machine
learning", 2018, section 4.2; GradBench's ``ba`` eval keeps the same definition). Each
camera has 11 parameters: a Rodrigues rotation vector (3), its center (3), the focal
length (1), the principal point (2) and two radial distortion coefficients (2). An
observation ``o`` of point ``X[obs_pt[o]]`` by camera ``cams[obs_cam[o]]`` at the measured
2-D feature ``feats[o]`` has the weighted reprojection residual

    w[o] * (project(cams[obs_cam[o]], X[obs_pt[o]]) - feats[o])

with ``project`` = rotate ``X - center``, divide by depth, distort radially
(``p * (1 + k1 |p|^2 + k2 |p|^4)``), scale by the focal length, add the principal point;
and each weight has the residual ``1 - w[o]^2``. ADBench computes the (sparse) Jacobian
of all residuals; here the benchmark is the gradient, with respect to ``cams``, ``X`` and
``w``, of the scalar loss: the sum of the squares of every residual. The objective is
vectorized over observations (``cams[obs_cam]`` gathers, one row per observation).

ADBench's rotation takes a small-angle branch (``X + rot x X``) where the rotation
vector is exactly zero; ``rodrigues_rotate`` keeps it with ``np.where`` (the angle is
replaced by 1 in the unused branch, so its derivative stays finite).

The inputs are a synthetic scene (ADBench's generator replicates one camera, point and
feature): points in the cube [-1, 1]^3, cameras about 5 units in front of it looking at
it (rotations of about 0.1 rad, focal lengths 400-600, principal point near (320, 240),
small distortion), features the exact projections plus one pixel of noise, weights in
[0.8, 1.2]. Every point is observed at least once; cameras and points of the other
observations are drawn uniformly.

Sizes: "full" is ADBench's ba2 size, 21 cameras, 11315 points, 36455 observations;
"smoke" is 3 cameras, 8 points, 20 observations.
"""

from __future__ import annotations

import numpy as np

from benchmarks.problem import Case, Problem


def rodrigues_rotate(rot, X):
    """Rotate each row of X (m, 3) by the rotation vector in the same row of rot (m, 3)."""
    sqtheta = np.sum(rot**2, axis=1, keepdims=True)
    zero = sqtheta == 0.0
    theta = np.sqrt(np.where(zero, 1.0, sqtheta))
    axis = rot / theta
    costheta = np.cos(theta)
    sintheta = np.sin(theta)
    along_axis = np.sum(axis * X, axis=1, keepdims=True) * (1.0 - costheta)
    rotated = X * costheta + np.cross(axis, X) * sintheta + axis * along_axis
    return np.where(zero, X + np.cross(rot, X), rotated)


def radial_distort(radial, proj):
    """proj (m, 2) scaled by 1 + k1 r^2 + k2 r^4, with (k1, k2) the rows of radial (m, 2)."""
    rsq = np.sum(proj**2, axis=1, keepdims=True)
    return proj * (1.0 + radial[:, 0:1] * rsq + radial[:, 1:2] * rsq**2)


def project(cams, X):
    """Image coordinates (m, 2) of the points X (m, 3) seen by the cameras cams (m, 11)."""
    Xcam = rodrigues_rotate(cams[:, 0:3], X - cams[:, 3:6])
    distorted = radial_distort(cams[:, 9:11], Xcam[:, 0:2] / Xcam[:, 2:3])
    return distorted * cams[:, 6:7] + cams[:, 7:9]


def ba_objective(cams, X, w, obs_cam, obs_pt, feats):
    reprojection = w[:, None] * (project(cams[obs_cam], X[obs_pt]) - feats)
    weight = 1.0 - w**2
    return np.sum(reprojection**2) + np.sum(weight**2)


def inputs(n_cams: int, n_pts: int, n_obs: int, seed: int = 0) -> tuple:
    """Arguments of ``ba_objective`` for a synthetic scene of the given size."""
    rng = np.random.default_rng(seed)
    cams = np.empty((n_cams, 11))
    cams[:, 0:3] = 0.1 * rng.standard_normal((n_cams, 3))  # rotation vectors
    cams[:, 3:6] = rng.uniform(-1.0, 1.0, (n_cams, 3)) + [0.0, 0.0, -5.0]  # centers
    cams[:, 6] = rng.uniform(400.0, 600.0, n_cams)  # focal lengths
    cams[:, 7:9] = [320.0, 240.0] + 5.0 * rng.standard_normal((n_cams, 2))  # principal points
    cams[:, 9] = 0.01 * rng.standard_normal(n_cams)  # radial distortion k1
    cams[:, 10] = 0.001 * rng.standard_normal(n_cams)  # radial distortion k2
    X = rng.uniform(-1.0, 1.0, (n_pts, 3))
    w = rng.uniform(0.8, 1.2, n_obs)
    obs_pt = np.concatenate([np.arange(n_pts), rng.integers(0, n_pts, n_obs - n_pts)])
    obs_cam = rng.integers(0, n_cams, n_obs)
    feats = project(cams[obs_cam], X[obs_pt]) + rng.standard_normal((n_obs, 2))
    return (cams, X, w, obs_cam, obs_pt, feats)


def _cases(size: str) -> list[Case]:
    if size == "smoke":
        return [Case("3 cameras, 8 points, 20 observations", inputs(3, 8, 20))]
    return [Case("21 cameras, 11315 points, 36455 observations", inputs(21, 11315, 36455))]


PROBLEM = Problem(
    name="Bundle adjustment",
    objective=ba_objective,
    wrt=("cams", "X", "w"),
    cases=_cases,
)
