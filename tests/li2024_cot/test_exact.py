"""The exact population training loss of the chain-of-thought model (dynamics/models/li2024_cot/exact.py)
against independent routes: enumeration of every conditioning and count vector through the Monte
Carlo kernel (to 1e-12 relative), central finite differences, the Monte Carlo loss and batch gradient
of sampled training prompts (within stated standard errors); the cost bound; exact GD against SGD."""
import numpy as np
import pytest
from scipy import stats

from dynamics.simulate import simulate_main
from dynamics.models.li2024_cot import exact
from dynamics.models.li2024_cot.kernels import loss_grad_batch
from dynamics.models.li2024_cot.model import Li2024CoT
from tests.li2024_cot.oracle import brute_force


def perturbed(model, seed, scale=0.5):
    """The initial state plus a Gaussian perturbation of W_Q, W_K (a generic, unsymmetric point)."""
    rng = np.random.default_rng(seed)
    st = model.initial_state("mc", None)
    d = model.d
    st["W_Q"] = st["W_Q"] + scale * rng.standard_normal((d, d))
    st["W_K"] = st["W_K"] + scale * rng.standard_normal((d, d))
    return st


@pytest.mark.parametrize("M,K,l,task,basis", [(2, 2, 3, "permutation", "standard"), (2, 2, 6, "permutation", "random"),
                                              (3, 2, 5, "permutation", "standard"), (2, 3, 4, "random_map", "standard")])
def test_exact_loss_and_gradient_match_enumeration(M, K, l, task, basis):
    m = Li2024CoT.create("gd", M=M, K=K, l_train=l, M_test=2, train_task=task, pattern_basis=basis, alpha=0.7)
    st = perturbed(m, M * 100 + K * 10 + l)
    ev = m.loss_grad(st)
    L, gQ, gK = brute_force(m, st)
    assert abs(ev.loss - L) <= 1e-12 * L
    for g, b in ((ev.grads["W_Q"], gQ), (ev.grads["W_K"], gK)):
        assert np.max(np.abs(g - b)) <= 1e-12 * np.max(np.abs(b))


def test_exact_gradient_matches_central_differences():
    m = Li2024CoT.create("gd", M=3, K=2, l_train=7, M_test=3)
    st = perturbed(m, 7)
    ev = m.loss_grad(st)
    rng = np.random.default_rng(1)
    for block in ("W_Q", "W_K"):
        D = rng.standard_normal(st[block].shape)
        h = 1e-5
        plus, minus = dict(st), dict(st)
        plus[block], minus[block] = st[block] + h * D, st[block] - h * D
        fd = (m.loss_grad(plus).loss - m.loss_grad(minus).loss) / (2 * h)
        an = float(np.sum(ev.grads[block] * D))
        # central differences: O(h^2) truncation ~1e-10 and rounding ~1e-16 / h ~1e-11, relative
        assert abs(fd - an) <= 1e-7 * max(abs(an), 1e-3)


def mc_estimates(m, st, chunks, size, seed):
    """Per-chunk Monte Carlo loss and batch gradient on fresh training prompts."""
    rng = np.random.default_rng(seed)
    Ls, gQs, gKs = [], [], []
    for _ in range(chunks):
        P, n, target = m.sample(rng, size)
        gQ, gK, gV = np.empty_like(st["W_Q"]), np.empty_like(st["W_K"]), np.empty_like(st["W_V"])
        Ls.append(loss_grad_batch(st["W_Q"], st["W_K"], st["W_V"], P, np.ascontiguousarray(n, dtype=np.int64),
                                  target, gQ, gK, gV))
        gQs.append(gQ)
        gKs.append(gK)
    return np.array(Ls), np.array(gQs), np.array(gKs)


@pytest.mark.parametrize("M,K", [(3, 3)])
def test_exact_loss_and_gradient_match_monte_carlo(M, K):
    """At a neighbour of the default size (M = 3 of 6, K = 3, l = 10; 1,944 conditionings) the
    exact loss is within 4 SE of the mean of 40 x 1000 sampled prompts, and every gradient entry
    within the Bonferroni t threshold (family-wise 1e-3) of the mean of the 40 batch gradients."""
    m = Li2024CoT.create("gd", M=M, K=K, M_test=3)
    st = perturbed(m, 11, scale=0.3)
    ev = m.loss_grad(st)
    Ls, gQs, gKs = mc_estimates(m, st, 40, 1000, 5)
    se = Ls.std(ddof=1) / np.sqrt(Ls.size)
    assert abs(Ls.mean() - ev.loss) <= 4 * se
    G = np.concatenate([gQs.reshape(40, -1), gKs.reshape(40, -1)], axis=1)
    ex = np.concatenate([ev.grads["W_Q"].ravel(), ev.grads["W_K"].ravel()])
    gse = G.std(axis=0, ddof=1) / np.sqrt(40)
    live = gse > 0
    assert np.all(np.abs(ex[~live]) <= 1e-14)     # entries no prompt moves are exactly 0 in both
    z = (G.mean(axis=0)[live] - ex[live]) / gse[live]
    thr = stats.t.ppf(1 - 1e-3 / (2 * live.sum()), 39)
    assert np.max(np.abs(z)) <= thr


def test_the_cost_bound_and_unsupported_options_are_refused_in_one_line(tmp_path, capsys):
    for argv, needle in ((["--M", "4", "--K", "3"], "165,888 conditionings"),
                         (["--M", "3", "--K", "2", "--noise-train", "0.1"], "noise_train = 0"),
                         (["--M", "3", "--K", "2", "--train-value", "true"], "train_value = false")):
        out = tmp_path / "run"
        code = simulate_main(["--model", "li2024_cot", "--method", "gd", "--steps", "1", "--out", str(out)] + argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and needle in err and len(err.splitlines()) == 1 and not out.exists()
    assert exact.n_conditionings(3, 3) == 1944 and exact.n_conditionings(2, 2) == 16


@pytest.mark.slow
def test_exact_gd_against_sgd_in_the_crosscheck():
    """``crosscheck('li2024_cot')`` (M = 3, K = 2, eta = 0.5, 300 steps, 8 replicas of batch 2000)
    passes; with SGD at a different step (eta 1.5 for the replicas only) it fails."""
    from dynamics.crosscheck import crosscheck

    cc = crosscheck("li2024_cot", steps=100, snapshots=6, replicas=6, batch=1000, n_eval=2000)
    assert cc.passed
    bad = crosscheck("li2024_cot", steps=100, snapshots=6, replicas=6, batch=1000, n_eval=2000,
                     mc_overrides={"eta": 1.5})
    assert not bad.passed


@pytest.mark.parametrize("M,K,basis,task", [(3, 2, "random", "permutation"), (2, 3, "standard", "random_map")])
def test_orbit_reduction_equals_the_full_sum_along_exact_gd(M, K, basis, task):
    """From the relabelling-invariant initial state the z_0 = 0 sum with the symmetrised gradient
    equals the full sum (to 1e-13), and GD keeps the state invariant; a perturbed state takes the
    full sum."""
    m = Li2024CoT.create("gd", M=M, K=K, M_test=2, pattern_basis=basis, train_task=task)
    full = exact.PopulationLoss(m.data.mu, m.data.pe, 10, 0.8, task, orbit=False)
    red = exact.PopulationLoss(m.data.mu, m.data.pe, 10, 0.8, task)
    st = m.initial_state("gd", None)
    for _ in range(5):
        a, b = full.loss_grad(st["W_Q"], st["W_K"]), red.loss_grad(st["W_Q"], st["W_K"])
        assert red.last_reduced and abs(a[0] - b[0]) <= 1e-13 * a[0]
        for x, y in zip(a[1:], b[1:]):
            assert np.max(np.abs(x - y)) <= 1e-13 * np.max(np.abs(x))
        st["W_Q"], st["W_K"] = st["W_Q"] - b[1], st["W_K"] - b[2]
    other = perturbed(m, 3)
    red.loss_grad(other["W_Q"], other["W_K"])
    assert not red.last_reduced
