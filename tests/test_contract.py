"""The model contract (:mod:`dynamics.core.contract`), checked for every registered model.

Each model runs at a small configuration (:data:`SMALL`; a model missing there fails the test, so a
new model must add one line).  Gradients are checked along random directions by central
differences, with a step ``h = 1e-6`` and a relative tolerance of ``1e-5`` (truncation ``O(h^2)``
and rounding ``O(eps / h)`` are both far below it).  The H. Li et al. models use subgradients of
ReLU and hinge: at a random state a random direction with ``h = 1e-6`` crosses no kink except with
probability of order ``h``, so the seeds below (fixed) are away from the kinks.
"""
import copy

import numpy as np
import pytest

from dynamics import models
from dynamics.core import rundir
from dynamics.core.contract import ExactLoss, SampledLoss
from dynamics.simulate import simulate

SMALL = {
    "huang2024": dict(K=3, N=6),
    "yang2024": dict(N=4, K=8, d=6, m=3, H=5, tau=0.5),
    "li2024": dict(M1=3, M2=4, mlp_width=8, l_train=6, l_test=6),
    "li2024_cot": dict(M=3, K=2, l_train=4, l_test=4),
    "zhang2024": dict(d=3, N=5, kappa=3.0, rotate=True),
}
"""Small parameters of every registered model (all of its methods)."""
RUN = {"gd": dict(steps=6, snapshots=4), "flow": dict(steps=6, snapshots=4),
       "mc": dict(steps=6, snapshots=4, batch=8, n_eval=8, replicas=2)}
"""A few steps of each method."""
CASES = [(name, method) for name in models.names() for method in models.get(name).methods]


def create(name, method):
    assert name in SMALL, f"add a small configuration of {name} to tests/test_contract.py SMALL"
    return models.get(name).create(method, **SMALL[name])


def moving(m, method):
    """``{block: mask}`` of the entries that move (``movable`` is part of the exact contract only)."""
    return m.movable(method) if isinstance(m, ExactLoss) else {}


def state_of(m, method, seed=0):
    """The initial state moved by a small random perturbation of its moving entries (away from
    symmetric starting points such as Q = 0)."""
    rng = np.random.default_rng(seed)
    state = m.initial_state(method, np.random.default_rng(seed + 1))
    masks = moving(m, method)
    for b, blk in m.blocks(method).items():
        if blk.lr is not None:
            noise = 0.05 * rng.standard_normal(state[b].shape)
            if masks.get(b) is not None:
                noise = noise * masks[b]
            state[b] = state[b] + noise
    return state


def directions(m, method, state, seed):
    rng = np.random.default_rng(seed)
    masks = moving(m, method)
    out = {}
    for b, blk in m.blocks(method).items():
        v = rng.standard_normal(state[b].shape) if blk.lr is not None else np.zeros(state[b].shape)
        out[b] = v * masks[b] if masks.get(b) is not None else v
    return out


def check_directional(f, grads, state, v, h=1e-6, rtol=1e-5):
    plus = {b: a + h * v[b] for b, a in state.items()}
    minus = {b: a - h * v[b] for b, a in state.items()}
    fd = (f(plus) - f(minus)) / (2 * h)
    an = sum(float(np.sum(np.asarray(grads[b]) * v[b])) for b in grads)
    assert fd == pytest.approx(an, rel=rtol, abs=1e-9 * max(1.0, abs(an))), (fd, an)


@pytest.mark.parametrize("name", models.names())
def test_methods_match_the_opt_in_parts(name):
    """A model lists gd/flow exactly when it implements ExactLoss, and mc exactly when SampledLoss."""
    cls = models.get(name)
    assert ({"gd", "flow"} & set(cls.methods) != set()) == issubclass(cls, ExactLoss)
    assert ("mc" in cls.methods) == issubclass(cls, SampledLoss)


@pytest.mark.parametrize("name, method", CASES)
def test_state_matches_the_declared_blocks(name, method):
    m = create(name, method)
    blocks = m.blocks(method)
    state = m.initial_state(method, np.random.default_rng(0))
    assert list(state) == list(blocks)
    for b, blk in blocks.items():
        assert np.shape(state[b]) == tuple(blk.shape), b
        assert np.asarray(state[b]).dtype == np.float64, b


@pytest.mark.parametrize("name, method", CASES)
def test_observe_returns_exactly_the_declared_observables(name, method):
    m = create(name, method)
    declared = m.observables(method)
    labels = m.dim_labels()
    out = m.observe(m.initial_state(method, np.random.default_rng(0)), method, np.random.default_rng(1))
    assert {k for k in out if not k.endswith("_se")} == set(declared)
    for k, v in out.items():
        obs = declared[k[:-3] if k.endswith("_se") else k]
        assert np.ndim(v) == len(obs.dims), k
        for axis, dim in enumerate(obs.dims):
            if dim in labels:
                assert np.shape(v)[axis] == len(labels[dim]), (k, dim)


EXACT = [(n, me) for n, me in CASES if me == "gd"]
MC = [(n, me) for n, me in CASES if me == "mc"]


@pytest.mark.parametrize("name, method", EXACT)
def test_exact_gradient_matches_central_differences(name, method):
    m = create(name, method)
    state = state_of(m, method)
    ev = m.loss_grad(state)
    assert set(ev.grads) >= {b for b, blk in m.blocks(method).items() if blk.lr is not None}
    scale = m.gradient_scale()  # reduced coordinates: per-entry gradients times entries per coordinate
    grads = {b: g * scale[b] if b in scale else g for b, g in ev.grads.items()}
    for seed in (0, 1):
        check_directional(lambda s: m.loss_grad(s).loss, grads, state, directions(m, method, state, seed))


@pytest.mark.parametrize("name, method", MC)
def test_batch_gradient_matches_central_differences_of_the_batch_loss(name, method):
    m = create(name, method)
    state = state_of(m, method)
    batch = m.sample(np.random.default_rng(5), 16)
    _, grads = m.batch_loss_grad(state, batch)
    for seed in (0, 1):
        check_directional(lambda s: m.batch_loss_grad(s, batch)[0], grads, state, directions(m, method, state, seed))


def same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


RESUMABLE = [(n, me) for n, me in CASES if me in ("gd", "mc")]


@pytest.mark.parametrize("name, method", RESUMABLE)
@pytest.mark.parametrize("disk", [False, True], ids=["memory", "disk"])
def test_checkpoint_and_resume_round_trip_bit_for_bit(name, method, disk, tmp_path, request):
    """Resuming from the first checkpoint gives the uninterrupted run bit for bit, from the dict
    itself and after the run directory's ``checkpoint.npz`` (what ``--resume`` reads)."""
    kw = {**SMALL[name], **RUN[method], "checkpoint_every": 2}
    checkpoints = []
    full = simulate(name, method, on_checkpoint=lambda ck: checkpoints.append(copy.deepcopy(ck)), **kw)
    assert checkpoints
    ck = checkpoints[0]
    if disk:
        rundir.save_checkpoint(str(tmp_path), ck)
        ck = rundir.load_checkpoint(str(tmp_path))
    resumed = simulate(name, method, resume=ck, **kw)
    assert same(full.ds.data_vars, resumed.ds.data_vars)
    assert same(full.state, resumed.state)


@pytest.mark.parametrize("name, method", [(n, me) for n, me in CASES if me in ("gd", "mc")])
def test_one_sweep_point_equals_one_simulate_run(name, method):
    pytest.importorskip("distributed")
    from dynamics.sweep.runner import run_point

    kw = {**SMALL[name], **RUN[method]}
    res = simulate(name, method, **kw)
    names = [v for v in res.ds.data_vars if "t" in res.ds[v].dims]
    point = run_point(name, method, kw, {"final": names})
    assert point["ok"], point.get("error")
    for v in names:
        assert np.array_equal(point["data"][f"final_{v}"].values, res.ds[v].isel(t=-1).values, equal_nan=True), v
