"""The test-task generator over the whole admissible range (dynamics/models/li2024_cot/tasks.py):
targets met exactly (checked against path enumeration, an independent route), tau^f up to the
bound 1/2 without Condition 1 for M' = 2 and 3, the slides' example, the readings of tau^f and
rho^f, and one-line refusals on the command line (exit 2, naming the parameter, nothing written)."""
import itertools
import os

import numpy as np
import pytest

from dynamics.simulate import simulate_main
from dynamics.core.params import ParamError
from dynamics.models.li2024_cot import tasks, transitions as T


def enumerate_paths(A):
    """Every K-step path's probability from every start: (tau_viterbi, B, correct-path probs)."""
    K, Mt = A.shape[0], A.shape[1]
    best = np.zeros(Mt)
    B = np.zeros((Mt, Mt))
    for i in range(Mt):
        for path in itertools.product(range(Mt), repeat=K):
            prob, prev = 1.0, i
            for k, j in enumerate(path):
                prob *= A[k, prev, j]
                prev = j
            best[i] = max(best[i], prob)
            B[i, path[-1]] += prob
    return best.min(), B


@pytest.mark.parametrize("Mt,K", [(2, 2), (2, 3), (3, 2), (3, 3)])
def test_generator_reaches_tau_049_without_condition1(Mt, K):
    A = tasks.generate(Mt, K, 0.495, None, False, rng=np.random.default_rng(3))
    st = T.statistics(A)
    tau, B = enumerate_paths(A)
    assert st.tau >= 0.49 and abs(tau - 0.495) < 1e-12 and abs(st.tau - 0.495) < 1e-12
    assert not st.condition1 and st.rho_o < 0
    assert np.allclose(B, st.B, atol=1e-14)
    # steps differ from one another (relabelled per step, not one circulant matrix)
    assert any(not np.allclose(A[0], A[k]) for k in range(1, K))


def test_the_slides_example_is_a_named_task():
    st = T.statistics(tasks.named_task("slides"))
    assert np.allclose(st.B, [[0.56, 0.44], [0.64, 0.36]], atol=1e-15)
    assert abs(st.tau - 0.36) < 1e-15 and abs(st.tau_o - 0.56) < 1e-15 and not st.condition1
    assert list(st.failing) == [True, False]


@pytest.mark.parametrize("tau,rho,rho_def", [(0.45, 0.55, "margin"), (0.3, 0.6, "normalized"), (0.2, None, "margin")])
def test_trap_and_auto_meet_rho_under_either_reading(tau, rho, rho_def):
    A = tasks.generate(3, 3, tau, rho, False, rng=np.random.default_rng(0), rho_def=rho_def)
    st = T.statistics(A, rho_def=rho_def)
    assert abs(st.tau - tau) < 1e-9 and not st.condition1
    if rho is not None:
        assert abs(st.rho - rho) < 1e-9
    # the normalised reading divides each margin by its row's correct entry (< 1): never below the margin
    assert st.rho_normalized >= st.rho_margin - 1e-15


def test_tau_readings_differ_only_where_a_wrong_path_wins():
    st = T.statistics(tasks.named_task("slides"), tau_def="correct")
    assert abs(st.tau - 0.36) < 1e-15              # the correct path is the most probable one here
    A = np.array([[[0.5, 0.3, 0.2], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]] * 2)  # 0 -> 1 -> 1 beats 0 -> 0 -> 0
    st = T.statistics(A)
    assert abs(st.tau_correct - 0.25) < 1e-15 and abs(st.tau_viterbi - 0.3) < 1e-15
    assert list(T.statistics(A, correct_step="viterbi").paths[0]) == [0, 1, 1]


def test_condition1_at_a_tie_counts_as_failing_and_tau_reaches_one_half():
    a = 2 ** -0.5
    st = T.statistics(np.array([[[a, 1 - a], [0.1, 0.9]], [[a, 1 - a], [0.0, 1.0]]]))
    assert abs(st.B[0, 0] - 0.5) < 1e-15 and abs(st.rho_o) < 1e-12
    assert not st.condition1 and abs(st.tau - 0.5) < 1e-15


@pytest.mark.parametrize("kw,name", [
    (dict(M_test=2, K=2, tau=0.6, condition1=False), "tau_f"),       # above 1/2 without Condition 1
    (dict(M_test=3, K=3, tau=0.03, condition1=False), "tau_f"),      # below M'^-K
    (dict(M_test=3, K=1, tau=0.4, condition1=False), "condition1"),  # one step cannot fail
    (dict(M_test=3, K=3, tau=0.45, rho=0.9, condition1=False), "rho_f"),
    (dict(M_test=2, K=2, tau=0.45, rho=0.3, condition1=False), "rho_f"),
    (dict(M_test=2, K=2, tau=0.3, condition1=False), "tau_f"),       # beyond the trap family's reach
])
def test_impossible_requests_are_refused_naming_the_parameter(kw, name):
    with pytest.raises(ParamError) as e:
        tasks.generate(kw["M_test"], kw["K"], kw["tau"], kw.get("rho"), kw["condition1"])
    assert e.value.name == name and "\n" not in str(e.value)


@pytest.mark.parametrize("argv,needle", [
    (["--tau-f", "0.6", "--condition1", "false"], "tau_f must be < 1/2 without Condition 1"),
    (["--K", "2", "--M-test", "2", "--A-f", "0.6,0.3,0.4,0.6,0.4,0.6,0.8,0.2"], "A_f must be row-stochastic"),
    (["--task", "slides"], "task = slides needs K = 2 and M_test = 2"),
    (["--K", "2", "--M-test", "2", "--task", "slides", "--tau-f", "0.4"], "tau_f is not used"),
])
def test_bad_task_input_exits_2_with_one_line(argv, needle, tmp_path, capsys):
    out = tmp_path / "run"
    code = simulate_main(["--model", "li2024_cot", "--method", "mc", "--steps", "1", "--out", str(out)] + argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1
    assert not os.path.exists(out) or not os.listdir(out)
