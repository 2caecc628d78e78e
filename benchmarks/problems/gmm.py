"""Gaussian mixture model fitting: the log posterior of a GMM with a Wishart prior.

The ADBench problem "GMM" (Srajer, Schkufza, Fitzgibbon, "A benchmark of selected
algorithmic differentiation tools on some problems in computer vision and machine
learning", 2018, section 4.1) as corrected by GradBench's ``gmm`` eval
(github.com/gradbench/gradbench, evals/gmm), which fixes three errors of the paper and of
ADBench's implementations: a sign error on the prior, transposed precision matrices, and a
Wishart prior on the covariances instead of the precisions.

For data ``x`` (n, d) and K components with weights ``softmax(alphas)``, means ``means``
(K, d) and precision matrices ``P_k = Q_k^T Q_k``, where ``Q_k`` is lower triangular with
diagonal ``exp(icf[k, :d])`` and strictly-lower entries ``icf[k, d:]`` (column by column,
ADBench's order), the objective is

    log p(x | alphas, means, Q) + sum_k log Wishart(P_k | n = d + m + 1, V = I / gamma^2)

    = sum_i log sum_k softmax(alphas)_k N(x_i | means_k, P_k^-1)
      + sum_k [ m sum(icf[k, :d]) - gamma^2 / 2 ||Q_k||_F^2 ]
      + K [ n d log(gamma / sqrt 2) - log Gamma_d(n / 2) ]     (n = d + m + 1 here)

It is differentiated with respect to ``alphas``, ``means`` and ``icf``. The inputs are
drawn as GradBench draws them (x standard normal, means uniform on [0, 1), log-diagonals
and lower entries standard normal, alphas standard normal).

Sizes: "full" is d = 10, K = 25, n = 1000 (one of ADBench's and GradBench's sizes, with
GradBench's default prior gamma = 1, m = 0); "smoke" is d = 3, K = 4, n = 10 with
gamma = 1.5, m = 2, so that every term of the prior counts.
"""

from __future__ import annotations

import numpy as np
from scipy.special import multigammaln

from benchmarks.problem import Case, Problem


def lower_triangle(icf, d):
    """The strictly lower triangular parts L_k (K, d, d) of the Q_k: icf[k, d:] holds
    L_k[i, j] for i > j column by column (j = 0: rows 1..d-1, then j = 1, ...)."""
    i = np.arange(d)[:, None]
    j = np.arange(d)[None, :]
    column = d + j * (d - 1) - j * (j - 1) // 2 + (i - j - 1)
    below = i > j
    return icf[:, np.where(below, column, 0)] * below


def logsumexp(a, axis):
    """log(sum(exp(a), axis)), computed without overflow."""
    top = np.max(a, axis=axis, keepdims=True)
    return np.log(np.sum(np.exp(a - top), axis=axis)) + np.squeeze(top, axis=axis)


def log_wishart_prior(icf, d, wishart_gamma, wishart_m):
    """sum_k log Wishart(Q_k^T Q_k | d + m + 1 degrees of freedom, scale I / gamma^2)."""
    k = icf.shape[0]
    dof = d + wishart_m + 1
    log_diagonals = icf[:, :d]
    frobenius = np.sum(np.exp(2.0 * log_diagonals)) + np.sum(icf[:, d:] ** 2)
    constant = dof * d * np.log(wishart_gamma / np.sqrt(2.0)) - multigammaln(0.5 * dof, d)
    return wishart_m * np.sum(log_diagonals) - 0.5 * wishart_gamma**2 * frobenius + k * constant


def gmm_objective(alphas, means, icf, x, wishart_gamma, wishart_m):
    n, d = x.shape
    log_diagonals = icf[:, :d]  # (K, d)
    lower = lower_triangle(icf, d)  # (K, d, d)
    centered = x[:, None, :] - means[None, :, :]  # (n, K, d)
    # Q_k (x_i - mu_k) = diag(exp(q_k)) (x_i - mu_k) + L_k (x_i - mu_k)
    mahalanobis = np.exp(log_diagonals) * centered + np.einsum("kab,nkb->nka", lower, centered)
    # log(weight_k) + log N(x_i | mu_k, P_k^-1), without the weights' normalisation and 2 pi
    inner = alphas + np.sum(log_diagonals, axis=1) - 0.5 * np.sum(mahalanobis**2, axis=2)
    log_likelihood = (
        np.sum(logsumexp(inner, axis=1))
        - n * logsumexp(alphas, axis=0)
        - 0.5 * n * d * np.log(2.0 * np.pi)
    )
    return log_likelihood + log_wishart_prior(icf, d, wishart_gamma, wishart_m)


def inputs(d: int, k: int, n: int, gamma: float, m: int, seed: int = 0) -> tuple:
    """Arguments of ``gmm_objective``, drawn as GradBench's gmm eval draws them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    means = rng.uniform(size=(k, d))
    log_diagonals = rng.normal(size=(k, d))
    lower = rng.normal(size=(k, d * (d - 1) // 2))
    alphas = rng.normal(size=k)
    icf = np.concatenate([log_diagonals, lower], axis=1)
    return (alphas, means, icf, x, gamma, m)


def _cases(size: str) -> list[Case]:
    if size == "smoke":
        return [Case("d=3 K=4 n=10", inputs(3, 4, 10, gamma=1.5, m=2))]
    return [Case("d=10 K=25 n=1000", inputs(10, 25, 1000, gamma=1.0, m=0))]


PROBLEM = Problem(
    name="GMM",
    objective=gmm_objective,
    wrt=("alphas", "means", "icf"),
    cases=_cases,
    static=("wishart_m",),
)
