"""The analytic Jacobian of the class-reduced gradient (dynamics.models.huang2024.jacobian)
against finite differences: of the 50-digit brute force (tight) and of the engine's own
gradient on class structures with multiplicities (loose)."""
import mpmath as mp
import numpy as np
import pytest

from dynamics.models.huang2024.classes import ClassStructure
from dynamics.models.huang2024.engine import reduced_grad_jacobian, reduced_loss_grad
from tests.huang2024 import mp_oracle


def _general_coords(theta):
    """Reduced coordinates of a K x K theta with every feature its own class (F = K)."""
    K = theta.shape[0]
    coords = np.zeros((K, K + 1))
    for f in range(K):
        coords[f, 0] = theta[f, f]
        for g in range(K):
            if g != f:
                coords[f, 1 + g] = theta[g, f]
    return coords


@pytest.mark.parametrize("seed", range(6))
def test_matches_central_differences_of_the_50_digit_bruteforce(seed):
    """Central differences with step 1e-20 at 60 digits: truncation and rounding ~1e-40, so the
    reference is exact for the purpose.  The engine's entry must be within 1e-12 of its scale
    (the sum of its parts' magnitudes, which the derivation makes ~1e-13 accurate); that scale
    is checked against an independent one, the derivatives of the gradient's positive and
    negative parts, so that it cannot be vacuously large."""
    rng = np.random.default_rng(seed)
    K, N, sigma2 = 2 + seed % 2, 2 + seed, (0.0, 0.5)[seed % 2]
    p = rng.dirichlet(np.ones(K))
    theta = rng.uniform(-8, 8, size=(K, K))
    R = reduced_grad_jacobian(_general_coords(theta), ClassStructure.general(p), N, sigma2)
    eps = mp.mpf(10) ** -20
    with mp.workdps(60):
        for f in range(K):
            half_p = mp.mpf(float(p[f])) / 2
            feature = [f] + list(range(K))  # coordinate index -> feature (index 1 + f is empty)
            for i in range(K + 1):
                if i == 1 + f:
                    continue
                cols = []
                for sign in (1, -1):
                    th = [mp.mpf(float(x)) for x in theta[:, f]]
                    th[feature[i]] += sign * eps
                    cols.append(mp_oracle.column(th, p, f, N, sigma2, dps=60))
                for j in range(K + 1):
                    if j == 1 + f:
                        continue
                    n = feature[j]
                    dpos = (cols[0]["grad_pos"][n] - cols[1]["grad_pos"][n]) / (2 * eps) * half_p
                    dneg = (cols[0]["grad_neg"][n] - cols[1]["grad_neg"][n]) / (2 * eps) * half_p
                    scale = R.scale[f, j, i]
                    assert abs(mp.mpf(float(R.jac[f, j, i])) - (dpos - dneg)) <= 1e-12 * scale + 1e-300, (f, j, i)
                    assert scale <= 100 * (abs(dpos) + abs(dneg)) + 1e-300, (f, j, i)


@pytest.mark.parametrize("structure, coords, N, sigma2", [
    (ClassStructure.imbalanced(10, 0.5), [[2.0, 0.1, -0.5], [1.5, 0.7, -0.3]], 50, 0.0),
    (ClassStructure.imbalanced(10**6, 0.5), [[6.0, 0.1, -0.5], [5.5, 0.7, -0.3]], 10**9, 0.4),
    (ClassStructure(np.array([1, 3, 2]), np.array([0.4, 0.1, 0.15]), ("a", "b", "c")),
     [[0.3, -1.2, 0.8, 0.1], [1.1, 0.4, -0.6, 2.0], [-0.7, 0.9, 0.2, 1.4]], 7, 0.3),
    (ClassStructure.balanced(5), [[3.0, -1.0]], 3, 0.0),
])
def test_matches_central_differences_with_multiplicities(structure, coords, N, sigma2):
    """Classes of several members (a coordinate moves them all) and empty classes, against central
    differences of reduced_loss_grad with step 1e-6: truncation ~1e-12 |g'''|, rounding
    ~1e-16 |g| / 1e-6 = 1e-10 |g|; tolerance 1e-6 of the entry's scale plus 1e-10."""
    coords = np.asarray(coords, dtype=float)
    R = reduced_grad_jacobian(coords, structure, N, sigma2)
    eps = 1e-6
    for f in range(structure.F):
        for i in range(structure.F + 1):
            cp, cm = coords.copy(), coords.copy()
            cp[f, i] += eps
            cm[f, i] -= eps
            fd = (reduced_loss_grad(cp, structure, N, sigma2).grad - reduced_loss_grad(cm, structure, N, sigma2).grad) / (2 * eps)
            assert np.all(np.abs(R.jac[f, :, i] - fd[f]) <= 1e-6 * R.scale[f, :, i] + 1e-10), (f, i)
            others = [g for g in range(structure.F) if g != f]
            assert np.all(fd[others] == 0)  # a column's gradient depends on that column only
    empty = structure.column_tables()[1] == 0
    assert np.all(R.jac[empty] == 0) and np.all(R.jac.transpose(0, 2, 1)[empty] == 0)


def test_bad_input_names_the_argument():
    s = ClassStructure.balanced(3)
    with pytest.raises(ValueError, match="structure must be"):
        reduced_grad_jacobian(np.zeros((1, 2)), "balanced", 10)
    with pytest.raises(ValueError, match=r"coords must have shape"):
        reduced_grad_jacobian(np.zeros((2, 2)), s, 10)
    with pytest.raises(ValueError, match="N must be an integer"):
        reduced_grad_jacobian(np.zeros((1, 2)), s, 0)
