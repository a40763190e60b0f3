"""The gradient flow of Huang's reduced dynamics: the exact Jacobian the implicit integrators use,
and the integrators against each other."""
import numpy as np
import pytest

from dynamics.simulate import build, simulate


def test_hessian_matches_central_differences_of_the_exact_gradient():
    m = build("huang2024", "flow", K=10, N=100)
    c = np.array([[2.0, 0.0, -0.5], [1.5, 0.7, -0.3]])
    H = m.direction_jacobian({"coords": c})
    d = 1e-5
    fd = np.zeros_like(H)
    for i in range(c.size):
        cp, cm = c.ravel().copy(), c.ravel().copy()
        cp[i] += d
        cm[i] -= d
        g = lambda x: m.loss_grad({"coords": x.reshape(c.shape)}).grads["coords"].ravel()  # noqa: E731
        fd[:, i] = (g(cp) - g(cm)) / (2 * d)
    moving = m.movable("flow")["coords"].ravel()
    # central differences: O(d^2 |g'''|) ~ 1e-10 truncation plus 1e-16 / d rounding, on entries ~1e-3
    np.testing.assert_allclose(H[np.ix_(moving, moving)], fd[np.ix_(moving, moving)], rtol=0, atol=1e-9)
    assert np.abs(H).max() > 1e-3  # not a comparison of zeros


@pytest.mark.parametrize("integrator", ["BDF", "Radau"])
def test_integrators_agree_on_the_convergence_times(integrator):
    """LSODA (finite differences, nonstiff at first) and an implicit method with the exact Jacobian
    give the same T(eps) to ~1e-5 relative at rtol 1e-8 (local errors accumulate over the run)."""
    kw = dict(K=20, N=100, steps=10**7, snapshots=40, levels=[1e-2, 1e-4, 1e-6])
    a = simulate("huang2024", "flow", **kw)
    b = simulate("huang2024", "flow", flow_integrator=integrator, **kw)
    fa, fb = a.extra["first_below"], b.extra["first_below"]
    assert np.all(np.isfinite(fa)) and np.array_equal(np.isnan(fa), np.isnan(fb))
    np.testing.assert_allclose(fb, fa, rtol=1e-5)
    assert b.extra["jacobian_evaluations"] > 0  # the implicit method did use the Jacobian
