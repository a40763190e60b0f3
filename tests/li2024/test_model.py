"""The Li2024 model through the contract: parameters and bad input, hooks, Monte Carlo training,
observables with standard errors, saved states, pruning."""
import numpy as np
import pytest

from dynamics.core.params import ParamError
from dynamics.core.trajectory import Recorder, Result, state_dataset, write_dataset
from dynamics.methods.montecarlo import run_mc
from dynamics.models import get
from dynamics.models.li2024.model import Li2024
from dynamics.models.li2024.pruning import check_rate, prune, pruned_count, pruning_errors
from dynamics.models.li2024.state import load_state


@pytest.mark.parametrize("given, name, words", [
    ({"M1": 1}, "M1", ">= 2"),
    ({"alpha": 0.0}, "alpha", "> 0"),
    ({"alpha": 1.2}, "alpha", "<= 1"),
    ({"alpha_test": 0.0}, "alpha_test", "> 0"),
    ({"alpha_test": 1.01}, "alpha_test", "<= 1"),
    ({"l_train": 0}, "l_train", ">= 1"),
    ({"l_test": 0}, "l_test", ">= 1"),
    ({"S1": float("inf")}, "S1", "finite"),
    ({"S1": float("nan")}, "S1", "finite"),
    ({"d_x": 20}, "d_x", "M1 + M2"),
    ({"mlp_width": 7}, "mlp_width", "even"),
    ({"M1": 2, "alpha": 0.8}, "alpha", "M1 >= 3"),
    ({"M1_test": 2, "alpha_test": 0.5}, "alpha_test", "M1_test >= 3"),
    ({"M1_test": 7}, "M1_test", "M1 = 6"),
    ({"M2_test": 30}, "M2_test", "M2 = 24"),
    ({"kappa_low": 0.5}, "kappa_low", "kappa_high"),
    ({"odr_construction": "uniform"}, "odr_construction", "sum_norm"),
])
def test_bad_input_is_one_line_naming_the_parameter(given, name, words):
    with pytest.raises(ParamError) as exc:
        Li2024.create(**given)
    msg = str(exc.value)
    assert exc.value.name == name and msg.startswith(name) and words in msg and "\n" not in msg


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), "x"])
def test_bad_pruning_rate(rate):
    with pytest.raises(ValueError, match=r"^prune_rate must be a number in \[0, 1\)"):
        check_rate(rate)


def test_registry_and_method_refusal():
    assert get("li2024") is Li2024
    with pytest.raises(ParamError, match="does not support method 'gd'"):
        Li2024.supports("gd")


def test_initial_state_follows_the_slides():
    model = Li2024.create(mlp_width=6, init_qkv=0.2, init_o=0.5)
    st = model.initial_state("mc", np.random.default_rng(0))
    d = 30 + 4
    for b in ("W_Q", "W_K", "W_V"):
        assert np.array_equal(st[b], 0.2 * np.eye(d))
    assert st["W_O"].shape == (6, d) and abs(st["W_O"].std() - 0.5) < 0.1  # 204 N(0, 0.25) entries
    assert np.array_equal(st["a"], np.array([1, 1, 1, -1, -1, -1]) / 6)
    assert model.blocks("mc")["a"].lr is None and "a" not in model.learning_rates("mc")
    assert "a" in Li2024.create(train_a=True).learning_rates("mc")


def test_batch_loss_grad_is_the_mean_of_single_prompt_gradients():
    model = Li2024.create(mlp_width=4, M1=3, M2=2, label_dim=1, train_a=True)
    rng = np.random.default_rng(1)
    st = model.initial_state("mc", rng)
    st["W_O"] *= 50  # leave the all-zero-margin regime
    batch = model.sample(rng, 5)
    loss, g = model.batch_loss_grad(st, batch)
    singles = [model.batch_loss_grad(st, tuple(a[i:i + 1] for a in batch)) for i in range(5)]
    assert loss == pytest.approx(np.mean([s[0] for s in singles]), rel=1e-13)
    for b in g:
        assert np.allclose(g[b], np.mean([s[1][b] for s in singles], axis=0), rtol=1e-12, atol=1e-15)
    assert "a" not in Li2024.create(mlp_width=4, M1=3, M2=2).batch_loss_grad(st, batch)[1]


def _train(steps=600, train_set=0, **kw):
    model = Li2024.create(**kw)
    model.n_eval = 200
    save = np.array([0, steps // 2, steps])
    rec = Recorder(model.observables("mc"), model.dim_labels(), save, replicas=2)
    final, _ = run_mc(model, steps=steps, save_at=save, recorder=rec, seed=3, replicas=2, batch=32,
                      train_set=train_set)
    return model, rec.dataset(), final


def test_training_learns_in_context_and_records_standard_errors():
    model, ds, final = _train()
    err, se = ds["error_id"].values, ds["error_id_se"].values
    # At t = 0 the output is ~0 and the error is about 1/2; after 600 SGD steps of 32 prompts the
    # unseen-task error is far below it (both estimated on 200 prompts, SE <= 0.036).
    assert np.all(np.abs(err[:, 0] - 0.5) < 0.15)
    assert np.all(err[:, -1] < 0.1)
    # the SE of a mean of 0/1 indicators with ddof = 1 is sqrt(p (1 - p) / (n - 1))
    assert np.allclose(se, np.sqrt(err * (1 - err) / 199), rtol=1e-12, atol=1e-15)
    assert np.all(ds["attn_same_id"].values[:, -1] > ds["attn_same_id"].values[:, 0] + 0.2)
    assert ds["neuron_norm"].dims == ("replica", "t", "neuron") and ds["qk_proj"].shape == (2, 3, 2, 3)
    assert final["W_O"].shape == (2, 40, 34)


def test_fixed_training_set_is_used():
    model, ds, final = _train(steps=100, train_set=64)
    model2, ds2, final2 = _train(steps=100, train_set=0)
    assert not np.allclose(final["W_O"], final2["W_O"])
    assert np.all(np.isfinite(ds["train_loss"].values[:, 1:]))


def test_saved_state_round_trip_and_refusals(tmp_path):
    model, ds, final = _train(steps=50)
    res = Result(ds=ds, state=final, model=model, method="mc")
    res.save(str(tmp_path))
    states = load_state(str(tmp_path), model)
    assert len(states) == 2 and np.array_equal(states[1]["W_O"], final["W_O"][1])
    other = tmp_path / "other"
    other.mkdir()
    write_dataset(str(other / "state.nc"), state_dataset({"coords": np.zeros((3, 4))}, attrs={"model": "huang2024"}))
    with pytest.raises(ValueError, match="saved by model 'huang2024'") as exc:
        load_state(str(other), model)
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="inconsistent dimensions"):
        load_state(str(tmp_path), Li2024.create(mlp_width=20))
    with pytest.raises(ValueError, match="state must be a state.nc file"):
        load_state(str(tmp_path / "missing"), model)


def test_pruning_removes_the_smallest_rows_and_random_rows():
    rng = np.random.default_rng(0)
    st = {"W_O": rng.standard_normal((10, 3)) * np.arange(1, 11)[:, None]}
    assert pruned_count(0.25, 10) == 3 and pruned_count(0.24, 10) == 2 and pruned_count(0.0, 10) == 0
    out = prune(st, 0.3, "magnitude")
    norms = np.linalg.norm(st["W_O"], axis=1)
    gone = np.flatnonzero(np.all(out["W_O"] == 0, axis=1))
    assert set(gone) == set(np.argsort(norms)[:3])
    assert np.array_equal(out["W_O"][norms.argsort()[3:]], st["W_O"][norms.argsort()[3:]])
    rnd = prune(st, 0.3, "random", np.random.default_rng(1))
    assert np.sum(np.all(rnd["W_O"] == 0, axis=1)) == 3
    assert np.array_equal(st["W_O"], rng.standard_normal((10, 3)) * 0 + st["W_O"])  # input untouched


def test_pruning_every_neuron_but_rate_below_one_and_zero_rate_are_exact():
    model, ds, final = _train(steps=100)
    st = {k: v[0] for k, v in final.items()}
    res = pruning_errors(model, st, [0.0, 0.975], np.random.default_rng(0), 300, "ood", draws=2)
    assert res[("magnitude", 0.0, "error")][2] == 0.0 and res[("random", 0.0, "hinge")][2] == 0.0
    # 39 of 40 neurons gone: F comes from one neuron, the hinge loss rises
    assert res[("magnitude", 0.975, "hinge")][0] > res[("magnitude", 0.0, "hinge")][0]
