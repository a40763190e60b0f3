"""Monte Carlo training on sampled prompts, for any model with ``sample`` and ``batch_loss_grad``.

This is how the papers' experiments train: minibatch SGD (H. Li et al.; Huang's online check)
or Adam (Yang et al.: lr 1e-4, batch 256) on prompts drawn from the data model, either fresh at
every step (online) or from one fixed training set (``train_set = M``: the empirical risk,
Huang's full-batch protocol on M = 300 prompts, H. Li et al.'s ERM).

Randomness.  ``SeedSequence(seed)`` spawns one child per replica; each replica's child spawns
four independent streams: initial state, fixed training set, training batches, evaluation.
Evaluation prompts come from their own stream, so recording never changes a training run, and
a replica's numbers do not depend on how many replicas run.  All draws are sequential numpy
``Generator`` calls outside compiled kernels.

A batch is a tuple of arrays whose first axis is the prompt (so a fixed training set can be
subsampled generically).  Snapshots record :meth:`Model.observe` (with standard errors where the
model estimates) and ``train_loss``, the mean batch loss over the steps since the previous
snapshot.  Non-finite losses or states stop the run (:class:`SimulationDiverged`, records kept).
Checkpoints hold the current replica's state, optimizer and generator states, so a killed run
resumes to bit-identical numbers.
"""
from __future__ import annotations

import json
import time

import numpy as np

from dynamics.core.errors import SimulationDiverged
from dynamics.core.contract import SampledLoss
from dynamics.methods.base import TRAIN_LOSS, Method, Outcome
from dynamics.methods.gd import Adam, adam_params, plain_step
from dynamics.methods.params import PARAMS

STREAMS = ("init", "data", "train", "eval")


def replica_streams(seed, replicas: int) -> list:
    """``[{stream: Generator}]`` for each replica (module docstring).

    ``seed``: an int, a :class:`numpy.random.SeedSequence` or a :class:`numpy.random.Generator`
    (whose ``spawn`` gives the replicas' children).
    """
    out = []
    if isinstance(seed, np.random.Generator):
        for child in seed.spawn(int(replicas)):
            out.append(dict(zip(STREAMS, child.spawn(4))))
        return out
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    for child in root.spawn(int(replicas)):
        out.append({name: np.random.Generator(np.random.PCG64(s)) for name, s in zip(STREAMS, child.spawn(4))})
    return out


def take(batch: tuple, idx) -> tuple:
    """Prompts ``idx`` of a batch (every array indexed along its first axis)."""
    return tuple(a[idx] for a in batch)


def _finite(loss, grads, state) -> bool:
    """Every value finite: a NaN or inf anywhere makes the sum of an array non-finite, and a sum
    costs one pass without the temporary of ``isfinite`` (as much as a small model's gradient)."""
    return bool(np.isfinite(loss)) and all(np.isfinite(np.sum(g)) for g in grads.values()) and \
        all(np.isfinite(np.sum(a)) for a in state.values())


def run_mc(model, *, steps, save_at, recorder, seed=0, replicas=1, batch=256, train_set=0, optimizer="plain",
           adam=(0.9, 0.999, 1e-8), checkpoint_every=None, on_checkpoint=None, resume=None, progress=None,
           trace=None):
    """Train ``replicas`` copies of ``model`` by Monte Carlo and record ``save_at``.

    Returns ``(final_state, extra)``: ``final_state[block]`` has a leading replica axis.
    ``trace``: an optional ``(replicas, steps)`` array that receives every step's batch loss.
    A ``FloatingPointError`` raised by the model's hooks (a non-finite value it detected) stops
    the run like a non-finite loss: :class:`SimulationDiverged` naming the step and replica.
    """
    t0 = time.perf_counter()
    save_at = np.asarray(save_at, dtype=np.int64)
    lrs = model.learning_rates("mc")
    streams = replica_streams(seed, replicas)
    finals: dict = {}
    r0 = 0
    if resume is not None:
        recorder.restore(resume["records"])
        r0 = int(resume["replica"])
        finals = {b: list(v) for b, v in resume["finals"].items()}
    for r in range(r0, int(replicas)):
        rng = streams[r]
        state = model.initial_state("mc", rng["init"])
        fixed = model.sample(rng["data"], int(train_set)) if train_set else None
        opt = Adam(lrs, *adam) if optimizer == "adam" else None
        step, pos, acc, nacc = 0, 0, 0.0, 0
        if resume is not None and r == r0 and "state" in resume:
            for b in state:
                state[b][...] = resume["state"][b]
            for name in ("train", "eval"):
                rng[name].bit_generator.state = json.loads(str(resume[f"rng_{name}"]))
            if opt is not None:
                opt.restore(resume["optimizer"])
            step, pos, acc, nacc = int(resume["step"]), int(resume["pos"]), float(resume["acc"]), int(resume["nacc"])
        def diverged(why):
            return SimulationDiverged(f"Monte Carlo training diverged at step {step} of replica {r}: {why}; "
                                      f"{model.divergence_hint('mc')}", (r, step, save_at[:pos].astype(float), {}))

        while True:
            try:
                if pos < save_at.size and save_at[pos] == step:
                    obs = model.observe(state, "mc", rng["eval"])
                    obs["train_loss"] = acc / nacc if nacc else np.nan
                    recorder.put(pos, obs, replica=r)
                    pos, acc, nacc = pos + 1, 0.0, 0
                if step >= steps:
                    break
                if fixed is None:
                    b = model.sample(rng["train"], int(batch))
                elif batch >= train_set:
                    b = fixed
                else:
                    b = take(fixed, rng["train"].choice(int(train_set), int(batch), replace=False))
                loss, grads = model.batch_loss_grad(state, b)
            except FloatingPointError as exc:
                raise diverged(str(exc)) from None
            if not _finite(loss, grads, state):
                raise diverged("non-finite loss, gradient or state")
            if trace is not None:
                trace[r, step] = loss
            acc, nacc = acc + float(loss), nacc + 1
            if opt is None:
                plain_step(state, grads, lrs)
            else:
                opt.step(state, grads)
            step += 1
            if progress is not None:
                progress.update(1)
            if checkpoint_every and step % checkpoint_every == 0 and step < steps and on_checkpoint is not None:
                ck = dict(records=dict(recorder.arrays), replica=r, state={k: a.copy() for k, a in state.items()},
                          step=step, pos=pos, acc=acc, nacc=nacc,
                          finals={k: np.array(v) for k, v in finals.items()},
                          rng_train=json.dumps(rng["train"].bit_generator.state),
                          rng_eval=json.dumps(rng["eval"].bit_generator.state))
                if opt is not None:
                    ck["optimizer"] = opt.snapshot()
                on_checkpoint(ck)
        for b_name, a in state.items():
            finals.setdefault(b_name, []).append(a.copy())
        if checkpoint_every and on_checkpoint is not None and r + 1 < replicas:
            on_checkpoint(dict(records=dict(recorder.arrays), replica=r + 1,
                               finals={k: np.array(v) for k, v in finals.items()}))
    final = {b: np.stack(v) for b, v in finals.items()}
    return final, {"wall_s": time.perf_counter() - t0}


class MonteCarlo(Method):
    """Monte Carlo SGD or Adam on sampled prompts (:func:`run_mc`), ``replicas`` independent runs."""

    name = "mc"
    params = PARAMS["mc"]
    requires = SampledLoss
    replicated = True
    extra_observables = {"train_loss": TRAIN_LOSS}
    checkpoint_keys = ("records", "replica", "finals")

    def run(self, model, state, *, save_at, recorder, progress=None, on_checkpoint=None, resume=None):
        c = model.config
        final, extra = run_mc(model, steps=int(c["steps"]), save_at=save_at, recorder=recorder, seed=c["seed"],
                              replicas=c["replicas"], batch=c["batch"], train_set=c["train_set"],
                              optimizer=c["optimizer"], adam=adam_params(c), checkpoint_every=c["checkpoint_every"],
                              on_checkpoint=on_checkpoint, resume=resume, progress=progress)
        return Outcome(final, save_at.astype(np.float64), "completed", "", extra)
