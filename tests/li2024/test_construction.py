"""Declared constructions of issue 17: ODR patterns with the coefficient sum S1 and the norm set
separately, the balanced training task set, the label norm, and their refusals; evaluation of a
saved state at other test settings without retraining (the generic grid and the command line)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamics.simulate import simulate_main
from dynamics.core.params import ParamError
from dynamics.models.li2024 import analyze
from dynamics.models.li2024.data import all_tasks, balanced_count, balanced_tasks, role_counts
from dynamics.models.li2024.evaluation import evaluate, evaluate_states, rebuild
from dynamics.models.li2024.model import Li2024
from dynamics.models.shared import patterns
from dynamics.models.shared.evaluate import parse_values
from tests.li2024.test_frontend import run_dir  # noqa: F401 (the saved run the grid evaluation reads)


# ---------------------------------------------------------------- ODR constructions
@settings(deadline=None, max_examples=60)
@given(M1=st.integers(2, 9), data=st.data())
def test_sum_norm_construction_gives_the_sum_and_norm_exactly(M1, data):
    M1t = data.draw(st.integers(1, M1))
    g_min = M1 // M1t
    norm = data.draw(st.floats(0.05, 5.0))
    S1 = data.draw(st.floats(-1.0, 1.0)) * np.sqrt(g_min) * norm if g_min > 1 else norm
    c = patterns.sum_norm_coefficients(M1t, M1, S1, norm)
    assert np.allclose(c.sum(axis=1), S1, rtol=0, atol=1e-12 * (1 + abs(S1)))
    assert np.allclose(np.linalg.norm(c, axis=1), norm, rtol=1e-12)
    # disjoint supports: combinations of orthonormal patterns are mutually orthogonal
    supp = c != 0
    assert not np.any(supp.sum(axis=0) > 1)


def test_sum_norm_includes_zero_and_negative_sums_and_reaches_the_paper_values():
    for S1 in (-1.0, 0.0, 0.5, 0.9, 1.1, 1.3):
        m = Li2024.create(S1=S1)  # default: sum_norm, odr_norm = 1, pairs of IDR patterns
        c = m.data.odr @ m.data.mu.T
        assert np.allclose(c.sum(axis=1), S1, atol=1e-14) and np.allclose(np.linalg.norm(m.data.odr, axis=1), 1.0)
    # S1 = 0 at unit norm: (mu_1 - mu_2) / sqrt(2); default S1 = 1.4: coefficients (0.8, 0.6)
    c0 = Li2024.create(S1=0.0).data.odr_coeffs[0, :2]
    assert np.allclose(c0, [2 ** -0.5, -2 ** -0.5], atol=1e-15)
    assert np.allclose(Li2024.create().data.odr_coeffs[0, :2], [0.8, 0.6], atol=1e-14)


def test_tied_construction_keeps_the_previous_patterns():
    m = Li2024.create(odr_construction="tied", S1=-1.0)
    assert np.allclose(m.data.odr_coeffs[0, :2], [-0.5, -0.5])
    assert np.allclose(np.linalg.norm(m.data.odr, axis=1), 2 ** -0.5)  # |S1| / sqrt(2): the confound
    assert np.array_equal(patterns.coefficients(3, 6, 1.0, "disjoint")[1], [0, 0, 0.5, 0.5, 0, 0])


@pytest.mark.parametrize("coeffs, norm", [([1.0, -2.0], None), ([1.0, -2.0], 3.0), ([0.0, -1.0], 0.5),
                                          ([1.0, -1.0], 1.0)])
def test_vector_construction_is_normalised_or_left_as_it_is(coeffs, norm):
    kw = {} if norm is None else {"odr_norm": norm}
    m = Li2024.create(odr_construction="vector", odr_coeffs=coeffs, **kw)
    v = np.asarray(coeffs)
    want = v if norm is None else v * norm / np.linalg.norm(v)
    c = m.data.odr @ m.data.mu.T
    for j in range(3):
        assert np.allclose(c[j, 2 * j:2 * j + 2], want, atol=1e-14)
    assert np.allclose(c.sum(axis=1), want.sum(), atol=1e-14)


@pytest.mark.parametrize("given, name, words", [
    ({"odr_construction": "vector", "odr_coeffs": [1.0, 2.0, 3.0]}, "odr_coeffs", "2 entries"),
    ({"odr_construction": "vector", "odr_coeffs": [0.0, 0.0]}, "odr_coeffs", "all zero"),
    ({"odr_construction": "vector", "odr_coeffs": "1,nan"}, "odr_coeffs", "numbers"),
    ({"odr_construction": "vector", "odr_coeffs": "1,inf"}, "odr_coeffs", "numbers"),
    ({"odr_construction": "vector"}, "odr_coeffs", "must be given"),
    ({"odr_construction": "vector", "odr_coeffs": [1, 2], "S1": 1.0}, "S1", "not used"),
    ({"odr_coeffs": [1, 2]}, "odr_coeffs", "only by odr_construction = vector"),
    ({"odr_norm": 0.0}, "odr_norm", "> 0"),
    ({"odr_norm": -1.0}, "odr_norm", "> 0"),
    ({"odr_construction": "tied", "odr_norm": 1.0}, "odr_norm", "not used"),
    ({"S1": 1.5}, "S1", "sqrt(g) odr_norm = 1.41421"),
    ({"task_fraction": 0.45}, "task_fraction", "not a multiple of M1 = 6"),
    ({"q_norm": 0.0}, "q_norm", "> 0"),
])
def test_bad_constructions_are_one_line_naming_the_parameter(given, name, words):
    with pytest.raises(ParamError) as exc:
        Li2024.create(**given)
    msg = str(exc.value)
    assert exc.value.name == name and msg.startswith(name) and words in msg and "\n" not in msg


@pytest.mark.parametrize("argv, words", [
    (["--odr-construction", "vector", "--odr-coeffs", "1,2,3"], "odr_coeffs must have 2 entries"),
    (["--odr-construction", "vector", "--odr-coeffs", "0,0"], "odr_coeffs must not be all zero"),
    (["--odr-construction", "vector", "--odr-coeffs", "1,nan"], "odr_coeffs"),
    (["--odr-norm", "0"], "odr_norm must be"),
    (["--task-fraction", "0.45"], "task_fraction 0.45 gives |T_tr| = 14"),
])
def test_command_line_exits_2_in_one_line_and_writes_nothing(argv, words, tmp_path, capsys):
    out = tmp_path / "run"
    assert simulate_main(["--model", "li2024", "--method", "mc", "--steps", "2", "--out", str(out)] + argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not out.exists()


# ---------------------------------------------------------------- training tasks and labels
def test_default_training_set_is_balanced():
    for seed in range(20):
        m = Li2024.create(seed=seed)
        tr = m.data.train_tasks
        assert len(tr) == 18 and len({tuple(t) for t in tr.tolist()}) == 18
        assert np.all(role_counts(tr, 6) == 3)  # every pattern 3 times as a and 3 times as b
        assert len(tr) / 30 >= 5 ** -0.5 and (len(tr) - 6) / 30 < 5 ** -0.5  # smallest balanced size
        assert all(a != b for a, b in tr.tolist())


@settings(deadline=None, max_examples=50)
@given(M=st.integers(2, 10), seed=st.integers(0, 10_000), data=st.data())
def test_balanced_sets_of_every_size(M, seed, data):
    k = data.draw(st.integers(1, M - 1))
    tr = balanced_tasks(M, k, np.random.default_rng(seed))
    assert len({tuple(t) for t in tr.tolist()}) == k * M
    assert np.all(role_counts(tr, M) == k) and np.all(tr[:, 0] != tr[:, 1])
    assert balanced_count(M, k * M / (M * (M - 1))) == k
    if k == M - 1:
        assert np.array_equal(tr, all_tasks(M))


def test_random_cover_is_an_option_and_is_unbalanced_somewhere():
    counts = [role_counts(Li2024.create(task_set="cover", seed=s).data.train_tasks, 6) for s in range(10)]
    assert all(np.all(c >= 1) for c in counts)  # a cover
    assert any(c.max() - c.min() > 0 for c in counts)  # but not a balanced one


def test_q_norm_scales_the_label_embedding():
    m = Li2024.create(q_norm=0.25, label_dim=3)
    assert np.array_equal(m.data.q, [0.25, 0.0, 0.0])
    pr = m.data.sample(np.random.default_rng(0), 50, 10, 0.8, "train")
    assert np.allclose(np.abs(pr.P[:, :-1, m.data.d_x]), 0.25) and np.all(pr.P[:, -1, m.data.d_x:] == 0)


# ---------------------------------------------------------------- evaluation at other test settings
def _members(R=2):
    out = []
    for r in range(R):
        m = Li2024.create(method="mc", seed=r)
        out.append((m, m.initial_state("mc", np.random.default_rng(r))))
    return out


def test_grid_evaluation_equals_pointwise_evaluation_with_common_random_numbers():
    members = _members()
    grid = {"S1": [0.5, 1.3], "l_test": [3, 7]}
    ds = evaluate_states(members, grid, n=40, seed=5)
    assert ds["error_ood"].dims == ("replica", "S1", "l_test") and ds["error_ood"].shape == (2, 2, 2)
    for r, (m, state) in enumerate(members):
        for i, s in enumerate(grid["S1"]):
            for j, l in enumerate(grid["l_test"]):
                m2 = rebuild(m, {"S1": s, "l_test": l})
                rng = np.random.default_rng([5, r])
                want = evaluate(m2, state, rng, 40, "id")  # the point draws id first, then ood
                want_ood = evaluate(m2, state, rng, 40, "ood")
                assert ds["hinge_id"].values[r, i, j] == want["hinge"][0]
                assert ds["hinge_ood"].values[r, i, j] == want_ood["hinge"][0]
                assert ds["hinge_ood_se"].values[r, i, j] == want_ood["hinge"][1]
    # the training tasks do not move with the test settings
    assert np.array_equal(rebuild(members[0][0], {"S1": -1.0}).data.train_tasks, members[0][0].data.train_tasks)


def test_rebuild_refuses_training_parameters_and_bad_settings():
    m = _members(1)[0][0]
    with pytest.raises(ValueError, match="^alpha is not a test setting"):
        rebuild(m, {"alpha": 0.5})
    with pytest.raises(ParamError, match="^S1 must satisfy"):
        evaluate_states(_members(1), {"S1": [0.5, 2.0]}, n=10)
    with pytest.raises(ValueError, match="^--S1 must be a comma-separated list"):
        parse_values("--S1", "0.5,,1")
    with pytest.raises(ValueError, match="^--l-test values must be integers"):
        parse_values("--l-test", "5,2.5", int)


def test_analyze_evaluates_a_saved_run_on_a_grid(run_dir, tmp_path):  # noqa: F811
    import xarray as xr

    out = tmp_path / "ev"
    code = analyze.main([run_dir, "--out", str(out), "--n", "30", "--l-test", "5,10,20", "--S1", "0.5,1.3",
                         "--alpha-prime", "0.8,1"])
    assert code == 0
    with xr.open_dataset(out / "evaluation.nc", engine="scipy") as ds:
        assert ds["error_ood"].dims == ("replica", "l_test", "S1", "alpha_test")
        assert ds["error_ood"].shape == (2, 3, 2, 2) and np.all(np.isfinite(ds["error_ood"].values))
        assert list(ds["l_test"].values) == [5, 10, 20] and list(ds["alpha_test"].values) == [0.8, 1.0]
    assert (out / "evaluation.csv").read_text().startswith("replica,l_test,S1,alpha_test,error_id,error_id_stderr")


@pytest.mark.parametrize("argv, words", [
    (["--S1", "0.5,2"], "S1 must satisfy |S1| <= sqrt(g) odr_norm"),
    (["--alpha-prime", "0.8,1.5"], "alpha_test must be"),
    (["--l-test", "0,5"], "l_test must be an integer >= 1"),
    (["--l-test", "5,x"], "--l-test must be a comma-separated list of numbers"),
    (["--construction", "tied", "--odr-norm", "1"], "odr_norm is not used"),
    (["--S1", "0.5", "--rates", "0.1"], "--rates belongs to the pruning analyses"),
])
def test_analyze_grid_refuses_bad_settings_and_writes_nothing(run_dir, tmp_path, argv, words, capsys):  # noqa: F811
    out = tmp_path / "ev"
    assert analyze.main([run_dir, "--out", str(out)] + argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not out.exists()
