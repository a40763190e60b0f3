"""The closed form of Zhang, Frei, Bartlett's population loss against independent routes: Monte
Carlo over sampled prompts (within 4 standard errors), central differences, and the flow's limit."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamics.core.stats import mean_se
from dynamics.models.zhang2024 import lsa
from dynamics.models.zhang2024.population import Problem, covariance, gamma_matrix


def problem(d=3, N=6, kappa=5.0, seed=0):
    return Problem(covariance(d, kappa, True, np.random.default_rng(seed)), N)


def test_covariance_has_the_declared_spectrum():
    Lam = covariance(4, 8.0, True, np.random.default_rng(1))
    assert np.allclose(Lam, Lam.T, atol=0)
    assert np.allclose(np.linalg.eigvalsh(Lam), np.sort(8.0 ** (-np.arange(4) / 3)), rtol=1e-12)
    assert np.array_equal(covariance(3, 1.0, False), np.eye(3))


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_matches_monte_carlo_within_its_standard_error(seed):
    """L(U, u) of the closed form against the mean squared error of the reduced prediction
    yhat = u h^T U x_q on 400k sampled prompts (Gaussian fourth moments: E h h^T = Lambda Gamma)."""
    rng = np.random.default_rng(seed)
    pr = problem(seed=seed)
    U, u = rng.standard_normal((3, 3)), 0.7
    X, y, xq, yq = lsa.sample(rng, 400_000, pr.N, np.linalg.cholesky(pr.Lam))
    h = np.einsum("bn,bnd->bd", y, X) / pr.N
    err = 0.5 * (u * np.einsum("bi,ij,bj->b", h, U, xq) - yq) ** 2
    mean, se = mean_se(err)
    assert abs(mean - pr.evaluate(U, u).loss) < 4 * se, (mean, se, pr.evaluate(U, u).loss)


def test_gradient_matches_central_differences():
    rng = np.random.default_rng(2)
    pr = problem()
    U, u = rng.standard_normal((3, 3)), -0.4
    ev = pr.evaluate(U, u)
    h = 1e-6
    fd = np.zeros_like(U)
    for idx in np.ndindex(U.shape):
        E = np.zeros_like(U)
        E[idx] = h
        fd[idx] = (pr.evaluate(U + E, u).loss - pr.evaluate(U - E, u).loss) / (2 * h)
    fd_u = (pr.evaluate(U, u + h).loss - pr.evaluate(U, u - h).loss) / (2 * h)
    assert np.allclose(ev.grad_U, fd, rtol=1e-7, atol=1e-8)
    assert ev.grad_u == pytest.approx(fd_u, rel=1e-7)


def test_optimum_and_gap():
    """At u U^T = Gamma^{-1}: loss L* = (tr Lambda - tr(Lambda^2 Gamma^{-1}))/2 (from the expanded
    quadratic, not from the gap), zero gradient; elsewhere the gap is the loss minus L*."""
    pr = problem()
    Lam, G = pr.Lam, gamma_matrix(pr.Lam, pr.N)
    U, u = pr.limit(0.3)
    ev = pr.evaluate(U, u)
    assert ev.gap == 0.0 or ev.gap < 1e-28
    assert np.abs(ev.grad_U).max() < 1e-13 and abs(ev.grad_u) < 1e-13
    assert u * u - np.sum(U * U) == pytest.approx(0.3, rel=1e-12)
    W = np.random.default_rng(3).standard_normal((3, 3))
    Gm = 0.5 * W.T
    expanded = 0.5 * (np.trace(Gm.T @ Lam @ Gm @ Lam @ G) - 2 * np.trace(Lam @ Gm @ Lam) + np.trace(Lam))
    assert pr.evaluate(W, 0.5).loss == pytest.approx(expanded, rel=1e-12)
    assert pr.L_star == pytest.approx(0.5 * (np.trace(Lam) - np.trace(Lam @ Lam @ np.linalg.inv(G))), rel=1e-12)


@settings(max_examples=25)
@given(d=st.integers(1, 5), N=st.integers(1, 40), kappa=st.floats(1.0, 50.0), u=st.floats(-2.0, 2.0),
       seed=st.integers(0, 2**16))
def test_gradient_and_gap_for_drawn_settings(d, N, kappa, u, seed):
    """For any d, N, kappa and state: the gap is >= 0, equals L - L*, and the gradient matches
    central differences along a random direction (relative 1e-6)."""
    rng = np.random.default_rng(seed)
    pr = Problem(covariance(d, kappa, d > 1 and kappa > 1, rng), N)
    U, V, v = rng.standard_normal((d, d)), rng.standard_normal((d, d)), rng.standard_normal()
    ev = pr.evaluate(U, u)
    assert ev.gap >= 0 and ev.loss == pytest.approx(pr.L_star + ev.gap, rel=1e-12)
    h = 1e-6
    fd = (pr.evaluate(U + h * V, u + h * v).loss - pr.evaluate(U - h * V, u - h * v).loss) / (2 * h)
    an = float(np.sum(ev.grad_U * V)) + ev.grad_u * v
    assert fd == pytest.approx(an, rel=1e-6, abs=1e-8 * (1 + abs(ev.loss)))
