"""Bad input across the four commands: each case exits with status 2 and exactly one line on
standard error that names the offending argument, with no traceback, within 10 s, and writes no
file.  One row per case; the fixtures (files, folders) are made by ``_setup`` beforehand.

The cases run in-process through each command's ``main(argv)`` (the same code path as
``python -m``), a few also as real processes (``test_real_processes``) to check the exit status and
the absence of tracebacks where Python itself prints them.
"""
import os
import subprocess
import sys
import time

import pytest

from dynamics.simulate import simulate_main
from dynamics.crosscheck import main as crosscheck_main
from dynamics.reproduce import main as reproduce_main
from dynamics.models.li2024.analyze import main as analyze_main
from dynamics.sweep import main as sweep_main

MAINS = {"simulate": simulate_main, "crosscheck": crosscheck_main, "sweep": sweep_main, "reproduce": reproduce_main,
         "analyze": analyze_main}
SPEC_OK = 'model = "huang2024"\n[fixed]\nsteps = 10\n[sweep]\nK = [3]\n[outputs]\nfinal = ["gap"]\n'


def spec(**tables):
    """A small valid spec with some tables replaced (TOML text)."""
    parts = {"head": 'model = "huang2024"', "fixed": "steps = 10", "derived": "", "sweep": "K = [3]",
             "outputs": 'final = ["gap"]'}
    parts.update(tables)
    text = parts["head"] + "\n"
    for t in ("fixed", "derived", "sweep", "outputs"):
        if parts[t]:
            text += f"[{t}]\n{parts[t]}\n"
    return text


# (command, arguments, the text the error line must contain); {tmp} is the case's folder.
CASES = [
    # simulate: values of declared parameters
    ("simulate", ["--K", "ten"], "K must be an integer >= 2, got 'ten'"),
    ("simulate", ["--K", "1"], "K must be an integer >= 2"),
    ("simulate", ["--K", "2.5"], "K must be an integer"),
    ("simulate", ["--N", "0"], "N must be an integer >= 1"),
    ("simulate", ["--preset", "nope"], "preset must be one of"),
    ("simulate", ["--p1", "1.5"], "p1 must be"),
    ("simulate", ["--p1", "0"], "p1 must be"),
    ("simulate", ["--preset", "general", "--p", "a,b"], "p must be a list of numbers"),
    ("simulate", ["--preset", "general", "--p", "0.5,0.6"], "p must be a probability vector summing to 1"),
    ("simulate", ["--p", "0.5,0.5"], "p is used only with preset = general"),
    ("simulate", ["--preset", "general", "--K", "5", "--p", "0.2,0.3,0.5"], "p must have K = 5 entries"),
    ("simulate", ["--preset", "balanced", "--p1", "0.3"], "p1 is used only with preset = imbalanced"),
    ("simulate", ["--sigma2", "-1"], "sigma2 must be a finite number >= 0"),
    ("simulate", ["--eta", "0"], "eta must be a finite number > 0"),
    ("simulate", ["--eta", "-1"], "eta must be"),
    ("simulate", ["--eta", "nan"], "eta must be"),
    ("simulate", ["--steps", "-3"], "steps must be an integer >= 0"),
    ("simulate", ["--steps", "1.5"], "steps must be an integer"),
    ("simulate", ["--snapshots", "0"], "snapshots must be an integer >= 1"),
    ("simulate", ["--eps", "0"], "eps must be a finite number > 0"),
    ("simulate", ["--eps", "-1"], "eps must be"),
    ("simulate", ["--patience", "0"], "patience must be an integer >= 1"),
    ("simulate", ["--patience", "-2"], "patience must be"),
    ("simulate", ["--checkpoint-every", "0"], "checkpoint_every must be an integer >= 1"),
    ("simulate", ["--checkpoint-every", "-5"], "checkpoint_every must be"),
    ("simulate", ["--h", "50"], "h must be a finite number > 0 and <= 0.5"),
    ("simulate", ["--h", "0"], "h must be"),
    ("simulate", ["--A0", "1e6"], "A0 must be a finite number >= -700 and <= 700"),
    ("simulate", ["--B0", "nan"], "B0 must be"),
    ("simulate", ["--seed", "-1"], "seed must be an integer >= 0"),
    ("simulate", ["--seed", "abc"], "seed must be an integer"),
    ("simulate", ["--levels", "0.1,-1"], "levels must be"),
    ("simulate", ["--attention-at", "-3"], "attention_at must be"),
    ("simulate", ["--figures", "maybe"], "figures must be true or false"),
    # simulate: methods and options that would not be used
    ("simulate", ["--method", "rk4"], "method"),
    ("simulate", ["--model", "nope"], "model"),
    ("simulate", ["--frobnicate"], "--frobnicate"),
    ("simulate", ["--method", "flow", "--checkpoint-every", "5"], "checkpoint_every is used only by method gd or mc"),
    ("simulate", ["--method", "gd", "--batch", "10"], "batch is used only by method mc"),
    ("simulate", ["--d", "20"], "d is used only by method mc"),
    ("simulate", ["--method", "mc", "--h", "0.1"], "h is used only by method gd or flow"),
    ("simulate", ["--method", "mc", "--d", "3"], "d must be >= K = 10"),
    ("simulate", ["--method", "mc", "--optimizer", "sgd2"], "optimizer must be one of plain, adam"),
    ("simulate", ["--method", "mc", "--replicas", "0"], "replicas must be an integer >= 1"),
    ("simulate", ["--method", "mc", "--n-eval", "1"], "n_eval must be an integer >= 2"),
    ("simulate", ["--method", "mc", "--adam-beta1", "1.5"], "adam_beta1 must be"),
    # simulate: output paths, configs, resume
    ("simulate", ["--out", "{tmp}/afile"], "is an existing file"),
    ("simulate", ["--out", "{tmp}/afile/sub"], "lies under"),
    ("simulate", ["--out", "{tmp}/foreign"], "is not empty; choose another folder or add --overwrite"),
    ("simulate", ["--config", "{tmp}/missing.toml"], "--config file not found"),
    ("simulate", ["--config", "{tmp}/foreign"], "--config {tmp}/foreign is a directory"),
    ("simulate", ["--config", "{tmp}/broken.toml"], "is not valid TOML"),
    ("simulate", ["--config", "{tmp}/unknown.toml"], "unknown parameter 'temperature' in config file"),
    ("simulate", ["--config", "{tmp}/out5.toml"], "out must be a path, got 5"),
    ("simulate", ["--config", "{tmp}/seedabc.toml"], "seed must be an integer >= 0, got 'abc'"),
    ("simulate", ["--config", "{tmp}/steps25.toml"], "steps must be an integer >= 0, got 2.5"),
    ("simulate", ["--config", "{tmp}/N105.toml"], "N must be an integer >= 1, got 10.5"),
    ("simulate", ["--config", "{tmp}/figures3.toml"], "figures must be true or false, got 3"),
    ("simulate", ["--resume", "{tmp}/nothing"], "--resume {tmp}/nothing is not a run directory"),
    ("simulate", ["--resume", "{tmp}/foreign"], "--resume: no config.json"),
    ("simulate", ["--resume", "{tmp}/truncated"], "checkpoint.npz is damaged"),
    ("simulate", ["--resume", "{tmp}/incomplete"], "checkpoint.npz is incomplete"),
    ("simulate", ["--resume", "{tmp}/pickled"], "checkpoint.npz is damaged"),
    ("simulate", ["--resume", "{tmp}/truncated", "--steps", "5"], "--resume continues the run"),
    # crosscheck
    ("crosscheck", ["--replicas", "1"], "replicas must be >= 2"),
    ("crosscheck", ["--false-alarm", "0"], "false_alarm must be a finite number > 0"),
    ("crosscheck", ["--false-alarm", "2"], "false_alarm must be"),
    ("crosscheck", ["--batch", "0"], "batch must be an integer >= 1"),
    ("crosscheck", ["--K", "ten"], "K must be an integer"),
    ("crosscheck", ["--h", "50"], "h must be"),
    ("crosscheck", ["--out", "{tmp}/afile"], "is an existing file"),
    ("crosscheck", ["--model", "nope"], "model"),
    ("crosscheck", ["--model", "li2024"], "the cross-check needs methods gd and mc; model li2024 supports mc"),
    ("crosscheck", ["--model", "li2024_cot", "--alpha", "7"], "alpha must be"),
    # sweep
    ("sweep", ["{tmp}/missing.toml"], "spec file not found"),
    ("sweep", ["{tmp}/foreign"], "is a directory"),
    ("sweep", ["{tmp}/broken.toml"], "is not valid TOML"),
    ("sweep", ["{tmp}/s_topkey.toml"], "unknown key 'colour'"),
    ("sweep", ["{tmp}/s_param.toml"], "unknown parameter 'bogus' in [sweep]"),
    ("sweep", ["{tmp}/s_empty.toml"], "empty grid"),
    ("sweep", ["{tmp}/s_tower.toml"], "[derived] N = '10**10**8' exceeds"),
    ("sweep", ["{tmp}/s_pow.toml"], "[derived] N = 'K**1000' exceeds"),
    ("sweep", ["{tmp}/s_name.toml"], "uses 'M', which is not a numeric parameter"),
    ("sweep", ["{tmp}/s_syntax.toml"], "[derived] N = 'K**' is not a formula"),
    ("sweep", ["{tmp}/s_call.toml"], "[derived] N = \"__import__('os')\" may use"),
    ("sweep", ["{tmp}/ok.toml", "--out", "{tmp}/notes.txt"], "is not a sweep dataset; it is never replaced"),
    ("sweep", ["{tmp}/ok.toml", "--out", "{tmp}/empty.nc"], "is not a sweep dataset"),
    ("sweep", ["{tmp}/ok.toml", "--workers", "-2"], "workers must be an integer >= 1"),
    ("sweep", ["{tmp}/ok.toml", "--workers", "0"], "workers must be"),
    ("sweep", ["{tmp}/ok.toml", "--retries", "-1"], "retries must be an integer >= 0"),
    ("sweep", ["{tmp}/s_output.toml"], "unknown output 'T_star'"),
    ("sweep", ["{tmp}/s_final.toml"], "final takes a list of observable names"),
    ("sweep", ["{tmp}/s_eta.toml"], "eta must be a finite number > 0"),
    ("sweep", ["{tmp}/s_steps.toml"], "steps must be an integer >= 0, got 'ten'"),
    ("sweep", ["{tmp}/s_N.toml"], "N must be an integer >= 1, got 10.5"),
    ("sweep", ["{tmp}/s_model.toml"], "unknown model 'nope'"),
    ("sweep", ["{tmp}/s_method.toml"], "does not support method 'rk4'"),
    ("sweep", ["{tmp}/s_mcfirst.toml"], "first_below needs an exact method"),
    ("sweep", ["{tmp}/ok.toml", "--out", "{tmp}/afile/x.nc"], "lies under"),
    # reproduce
    ("reproduce", ["nonsense"], "target must be one of"),
    ("reproduce", ["stagewise", "--workers", "-2"], "workers must be an integer >= 1"),
    ("reproduce", ["stagewise", "--workers", "abc"], "workers must be an integer"),
    ("reproduce", ["stagewise", "--out", "{tmp}/afile"], "is an existing file"),
    ("reproduce", ["all", "--model", "nope"], "--model"),
    ("reproduce", ["stagewise", "--model", "huang2024"], "--model selects the targets of all"),
]

NEEDS = "needs about"
"""The memory refusal (dynamics.core.memory): 'P = V needs about X of memory (...); the limit is ...'."""
SIZES = [
    # sizes that cannot fit, refused from the parameters before anything is allocated (issue 19)
    ("simulate", ["--model", "yang2024", "--H", "100000"], "H = 100000 " + NEEDS),
    ("simulate", ["--model", "yang2024", "--K", "10000000"], "K = 10000000 " + NEEDS),
    ("simulate", ["--model", "yang2024", "--method", "mc", "--batch", "1e10"], "batch = 10000000000 " + NEEDS),
    ("simulate", ["--model", "yang2024", "--method", "mc", "--n-eval", "1e10"], "n_eval = 10000000000 " + NEEDS),
    ("simulate", ["--model", "yang2024", "--method", "mc", "--replicas", "1e8"], NEEDS),
    ("simulate", ["--model", "yang2024", "--check", "--H", "1e6"], "H = 1000000 " + NEEDS),
    ("simulate", ["--model", "li2024", "--M2", "100000"], "M2 = 100000 " + NEEDS),
    ("simulate", ["--model", "li2024", "--check", "--M2", "100000"], "M2 = 100000 " + NEEDS),
    ("simulate", ["--model", "li2024", "--mlp-width", "1e9"], "mlp_width = 1000000000 " + NEEDS),
    ("simulate", ["--model", "li2024", "--batch", "1e9"], "batch = 1000000000 " + NEEDS),
    ("simulate", ["--model", "li2024", "--l-test", "1e9"], "l_test = 1000000000 " + NEEDS),
    ("simulate", ["--model", "li2024", "--n-eval", "1e9"], "n_eval = 1000000000 " + NEEDS),
    ("simulate", ["--model", "li2024", "--replicas", "1e9"], "replicas = 1000000000 " + NEEDS),
    ("simulate", ["--model", "li2024", "--snapshots", "1e11"], "snapshots = 100000000000 " + NEEDS),
    ("simulate", ["--model", "li2024", "--train-set", "1e9"], "train_set = 1000000000 " + NEEDS),
    ("simulate", ["--model", "li2024_cot", "--M", "100000"], "M = 100000 " + NEEDS),
    ("simulate", ["--model", "li2024_cot", "--K", "100000"], "K = 100000 " + NEEDS),
    ("simulate", ["--model", "li2024_cot", "--batch", "1e9"], "batch = 1000000000 " + NEEDS),
    ("simulate", ["--model", "li2024_cot", "--l-test", "1e9"], "l_test = 1000000000 " + NEEDS),
    ("simulate", ["--model", "li2024_cot", "--n-eval", "1e9"], "n_eval = 1000000000 " + NEEDS),
    ("simulate", ["--method", "mc", "--d", "1000000"], "d = 1000000 " + NEEDS),
    ("simulate", ["--method", "mc", "--batch", "1e11"], "batch = 100000000000 " + NEEDS),
    ("simulate", ["--method", "mc", "--n-eval", "1e10"], "n_eval = 10000000000 " + NEEDS),
    ("simulate", ["--method", "mc", "--snapshots", "1e9", "--replicas", "1000"], NEEDS),
    ("simulate", ["--model", "li2024", "--max-memory", "1M"], "the limit is 1 MiB (--max-memory)"),
    ("simulate", ["--max-memory", "abc"], "--max-memory must be a size"),
    ("simulate", ["--max-memory", "0"], "--max-memory must be a size"),
    ("simulate", ["--max-memory=-5G"], "--max-memory must be a size"),
    ("simulate", ["--config", "{tmp}/li_big.toml"], "M2 = 100000 " + NEEDS),
    ("simulate", ["--config", "{tmp}/yang_big.toml"], "H = 1000000 " + NEEDS),
    ("sweep", ["{tmp}/s_yang_big.toml"], "H = 100000 " + NEEDS),
    ("sweep", ["{tmp}/s_li_big.toml"], "n_eval = 10000000000 " + NEEDS),
    ("sweep", ["{tmp}/s_mc_big.toml"], "replicas = 1000000000 " + NEEDS),
    ("sweep", ["{tmp}/s_derived_big.toml"], NEEDS),
    ("crosscheck", ["--batch", "1e12"], "batch = 1000000000000 " + NEEDS),
    # integers beyond int64
    ("simulate", ["--K", "1e30"], "K must be an integer >= 2 that fits in 64 bits"),
    ("simulate", ["--seed", "99999999999999999999"], "seed must be an integer >= 0 that fits in 64 bits"),
    ("simulate", ["--model", "li2024", "--steps", "1e19"], "steps must be an integer >= 0 that fits in 64 bits"),
    ("simulate", ["--config", "{tmp}/steps_huge.toml"], "steps must be an integer >= 0 that fits in 64 bits"),
    ("crosscheck", ["--K", "1e30"], "fits in 64 bits"),
    ("sweep", ["{tmp}/s_int64.toml"], "fits in 64 bits"),
]
UNUSED = [
    # options that would not be used: refused for every model, method and optimizer, in each form
    ("simulate", ["--method", "mc", "--adam-beta1", "0.5"], "adam_beta1 is used only with optimizer = adam"),
    ("simulate", ["--method", "gd", "--adam-beta2", "0.9"], "adam_beta2 is used only with optimizer = adam"),
    ("simulate", ["--optimizer", "plain", "--adam-eps", "1e-6"], "adam_eps is used only with optimizer = adam"),
    ("simulate", ["--model", "yang2024", "--method", "mc", "--adam-eps", "1e-6"], "adam_eps is used only with"),
    ("simulate", ["--model", "yang2024", "--adam-beta1", "0.5"], "adam_beta1 is used only with optimizer = adam"),
    ("simulate", ["--model", "li2024", "--adam-beta1", "0.5"], "adam_beta1 is used only with optimizer = adam"),
    ("simulate", ["--model", "li2024_cot", "--adam-beta2", "0.5"], "adam_beta2 is used only with optimizer = adam"),
    ("simulate", ["--model", "yang2024", "--method", "flow", "--adam-beta1", "0.5"], "used only by method gd or mc"),
    ("simulate", ["--method", "flow", "--optimizer", "adam"], "optimizer is used only by method gd or mc"),
    ("simulate", ["--model", "yang2024", "--method", "gd", "--flow-rtol", "1e-6"], "used only by method flow"),
    ("simulate", ["--config", "{tmp}/adam.toml"], "adam_beta1 is used only with optimizer = adam"),
    ("simulate", ["--config", "{tmp}/li_adam.toml"], "adam_eps is used only with optimizer = adam"),
    ("sweep", ["{tmp}/s_adam.toml"], "adam_beta1 is used only with optimizer = adam"),
    ("sweep", ["{tmp}/s_yang_adam.toml"], "adam_eps is used only with optimizer = adam"),
    ("crosscheck", ["--adam-beta1", "0.5"], "adam_beta1 is used only with optimizer = adam"),
]
CAUSES = [
    # errors that name the cause
    ("sweep", ["{tmp}/s_li_obs.toml"], "'nonsense' is not an observable of li2024 with method mc"),
    ("sweep", ["{tmp}/s_obs.toml"], "'nope' is not an observable of huang2024 with method gd"),
    ("sweep", ["{tmp}/s_at_obs.toml"], "'nope' is not an observable of huang2024"),
    ("sweep", ["{tmp}/s_li_gd.toml"], "does not support method 'gd'"),
    ("sweep", ["{tmp}/ok.toml", "--workers", "1e19"], "workers must be an integer >= 1 and <="),
    ("sweep", ["{tmp}/ok.toml", "--workers", "100000"], "workers must be an integer >= 1 and <="),
    ("sweep", ["{tmp}/ok.toml", "--out", "/proc/sweep.nc"], "is not writable"),
    ("simulate", ["--model", "yang2024", "--data", "{tmp}/strings.npz"], "array V_all must hold real numbers, got text"),
    ("simulate", ["--model", "yang2024", "--data", "{tmp}/complex.npz"], "must hold real numbers, got complex"),
    ("simulate", ["--model", "yang2024", "--data", "{tmp}/missing.npz"], "data must be an existing .npz file"),
    ("simulate", ["--model", "yang2024", "--data", "{tmp}/broken.toml"], "data: cannot read"),
    ("simulate", ["--model", "yang2024", "--data", "{tmp}/nozhat.npz"], "missing Zhat"),
    ("simulate", ["--out", "/proc/icl-run"], "is not writable (/proc is on the kernel's proc filesystem)"),
    ("simulate", ["--out", "/proc/icl-run", "--check"], "is not writable"),
    ("simulate", ["--model", "li2024", "--out", "/sys/icl-run"], "is not writable"),
    ("crosscheck", ["--out", "/proc/icl-cc"], "is not writable"),
    ("reproduce", ["stagewise", "--out", "/proc/icl-rep"], "is not writable"),
    ("reproduce", ["stagewise", "--workers", "1e19"], "workers must be an integer >= 1 and <="),
    # rules and defaults that agree
    ("simulate", ["--model", "li2024_cot", "--S1", "0"], "S1 must be a finite nonzero number"),
    ("simulate", ["--model", "li2024_cot", "--condition1", "false", "--tau-f", "0.7"], "tau_f must be < 1/2"),
    ("simulate", ["--model", "li2024", "--d-x", "3"], "d_x must be >= M1 + M2"),
    ("simulate", ["--model", "li2024", "--mlp-width", "5"], "mlp_width must be even"),
    ("simulate", ["--model", "yang2024", "--N", "300"], "N must be <= K"),
    ("simulate", ["--model", "yang2024", "--H", "4", "--N", "3", "--K", "6", "--d", "4", "--m", "3", "--eta-Q", "1e3",
                  "--check-step", "true"], "eta_Q = 1000 is beyond the stability limit"),
    ("simulate", ["--model", "yang2024", "--method", "flow"], "the gradient flow integrates"),
    ("simulate", ["--config", "{tmp}/method5.toml"], "method must be a string"),
    ("simulate", ["--config", "{tmp}/model5.toml"], "model must be one of"),
]
RUNS = [
    # data safety and resume
    ("simulate", ["--steps", "100", "--out", "{tmp}/finished"], "already holds this run (status completed)"),
    ("simulate", ["--steps", "100", "--out", "{tmp}/incomplete"], "interrupted with a checkpoint; continue it with"),
    ("simulate", ["--resume", "{tmp}/truncated", "extra"], "takes no other options or arguments"),
    ("simulate", ["--resume", "{tmp}/nomethod"], "has no method"),
    ("simulate", ["--resume", "{tmp}/badgiven"], "has 'given' of type list"),
    ("simulate", ["--resume", "{tmp}/finished"], "has finished (status completed)"),
    ("simulate", ["--resume", "{tmp}/othermodel"], "it is another run's checkpoint"),
    ("simulate", ["--resume", "{tmp}/nonfinite"], "non-finite values in state block Q"),
    ("simulate", ["--resume", "{tmp}/unknownmodel"], "names no known model"),
    ("simulate", ["--resume", "{tmp}/badfigures"], "figures = 'yes'"),
    ("analyze", ["{tmp}/nothing"], "does not exist"),
    ("analyze", ["{tmp}/foreign"], "has no config.json"),
    ("analyze", ["{tmp}/truncated"], "run of model 'huang2024'"),
    ("analyze", ["{tmp}/lirun"], "state.nc"),
    ("analyze", ["{tmp}/lirun", "--rates", "2"], "rate"),
    ("analyze", ["{tmp}/lirun", "--draws", "0"], "draws must be an integer >= 1"),
    ("analyze", ["{tmp}/lirun", "--seed", "-1"], "seed must be an integer >= 0"),
    ("analyze", ["{tmp}/lirun", "--n", "abc"], "n must be an integer"),
    ("analyze", ["{tmp}/libadgiven"], "has 'given' of type list"),
    ("analyze", ["{tmp}/lirun", "--frobnicate"], "--frobnicate"),
]
CASES += SIZES + UNUSED + CAUSES + RUNS


def _setup(tmp):
    """The files and folders the cases refer to; returns the set of paths that exist before."""
    (tmp / "afile").write_text("a file\n")
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / "notes.txt").write_text("someone's notes\n")
    (tmp / "broken.toml").write_text("K = [1,\n")
    for name, text in {"unknown.toml": "temperature = 3\n", "out5.toml": "out = 5\n", "seedabc.toml": 'seed = "abc"\n',
                       "steps25.toml": "steps = 2.5\n", "N105.toml": "N = 10.5\n", "figures3.toml": "figures = 3\n",
                       "ok.toml": SPEC_OK, "notes.txt": "not a sweep\n", "empty.nc": ""}.items():
        (tmp / name).write_text(text)
    specs = {"s_topkey": 'colour = "red"\n' + SPEC_OK, "s_param": spec(sweep="K = [3]\nbogus = [1, 2]"),
             "s_empty": spec(sweep="K = []"), "s_tower": spec(derived='N = "10**10**8"'),
             "s_pow": spec(derived='N = "K**1000"', sweep="K = [10]"), "s_name": spec(derived='N = "M**2"'),
             "s_syntax": spec(derived='N = "K**"'), "s_call": spec(derived="N = \"__import__('os')\""),
             "s_output": spec(outputs="T_star = true"), "s_final": spec(outputs='final = "gap"'),
             "s_eta": spec(sweep="eta = [1.0, -1.0]"), "s_steps": spec(fixed='steps = "ten"'),
             "s_N": spec(fixed="N = 10.5\nsteps = 10"), "s_model": spec(head='model = "nope"'),
             "s_method": spec(sweep='method = ["gd", "rk4"]'),
             "s_mcfirst": spec(fixed='method = "mc"\nsteps = 10', outputs="first_below = [0.1]")}
    for name, text in specs.items():
        (tmp / f"{name}.toml").write_text(text)
    cfg = '{"model": "huang2024", "method": "gd", "given": {"steps": 100}}'
    _setup_issue19(tmp)
    for name, body in {"truncated": b"PK\x03\x04 truncated", "incomplete": None, "pickled": b"\x80\x04\x95 pickle"}.items():
        d = tmp / name
        d.mkdir()
        (d / "config.json").write_text(cfg)
        if body is None:
            import numpy as np

            np.savez(d / "checkpoint.npz", step=np.array(5))
        else:
            (d / "checkpoint.npz").write_bytes(body)
    return {p: p.stat().st_mtime_ns for p in tmp.rglob("*")}


def _setup_issue19(tmp):
    """Fixtures of the issue-19 rows: configs, specs, data files and run directories."""
    import json

    import numpy as np

    from dynamics.core import rundir

    texts = {"li_big.toml": 'model = "li2024"\nM2 = 100000\n', "yang_big.toml": 'model = "yang2024"\nH = 1e6\n',
             "steps_huge.toml": "steps = 1e30\n", "adam.toml": 'method = "mc"\nadam_beta1 = 0.5\n',
             "li_adam.toml": 'model = "li2024"\nadam_eps = 1e-6\n', "method5.toml": "method = 5\n",
             "model5.toml": "model = 5\n"}
    li = 'model = "li2024"\n[fixed]\nsteps = 2\n[sweep]\n'
    specs = {"s_yang_big": 'model = "yang2024"\n[fixed]\nsteps = 2\n[sweep]\nH = [100000]\n[outputs]\nfinal = ["L"]\n',
             "s_li_big": li + "n_eval = [1e10]\n[outputs]\nreferences = true\n",
             "s_mc_big": spec(fixed='method = "mc"\nsteps = 10', sweep="replicas = [1e9]", outputs="references = true"),
             "s_derived_big": spec(fixed='method = "mc"\nsteps = 10', derived='batch = "K**12"', sweep="K = [20]",
                                   outputs="references = true"),
             "s_int64": spec(fixed="steps = 1e30"),
             "s_adam": spec(fixed='method = "mc"\nsteps = 10', sweep="adam_beta1 = [0.5]", outputs="references = true"),
             "s_yang_adam": 'model = "yang2024"\n[fixed]\nsteps = 2\noptimizer = "plain"\n[sweep]\nadam_eps = [1e-6, 1e-7]'
                            '\n[outputs]\nreferences = true\n',
             "s_li_obs": li + 'seed = [0]\n[outputs]\nfinal = ["nonsense"]\n',
             "s_obs": spec(outputs='final = ["nope"]'),
             "s_at_obs": spec(outputs='at = {t = [5], observables = ["nope"]}'),
             "s_li_gd": li.replace("steps = 2", 'steps = 2\nmethod = "gd"') + "seed = [0]\n[outputs]\nreferences = true\n"}
    for name, text in texts.items():
        (tmp / name).write_text(text)
    for name, text in specs.items():
        (tmp / f"{name}.toml").write_text(text)
    np.savez(tmp / "strings.npz", V_all=np.array([["a", "b"], ["c", "d"]]), Zhat=np.ones((2, 2)))
    np.savez(tmp / "complex.npz", V_all=np.eye(3) + 1j, Zhat=np.ones((2, 3)))
    np.savez(tmp / "nozhat.npz", V_all=np.eye(3))
    configs = {"nomethod": {"model": "huang2024", "given": {}}, "badgiven": {"model": "huang2024", "method": "gd",
               "given": [1, 2]}, "unknownmodel": {"model": "nope", "method": "gd", "given": {}},
               "badfigures": {"model": "huang2024", "method": "gd", "given": {}, "figures": "yes"},
               "finished": {"model": "huang2024", "method": "gd", "given": {"steps": 100}},
               "othermodel": {"model": "li2024", "method": "mc", "given": {"steps": 20, "checkpoint_every": 5}},
               "nonfinite": {"model": "huang2024", "method": "mc", "given": {"steps": 20, "checkpoint_every": 5}},
               "lirun": {"model": "li2024", "method": "mc", "given": {}},
               "libadgiven": {"model": "li2024", "method": "mc", "given": [1]}}
    for name, cfg in configs.items():
        (tmp / name).mkdir()
        (tmp / name / "config.json").write_text(json.dumps(cfg))
    (tmp / "finished" / "results.nc").write_bytes(b"")
    (tmp / "finished" / "manifest.json").write_text('{"status": "completed"}')
    ck = dict(records={"A": np.zeros((3, 2))}, replica=0, finals={}, step=5, pos=1, acc=0.0, nacc=0,
              state={"Q": np.zeros((10, 10))})
    rundir.save_checkpoint(str(tmp / "othermodel"), ck)
    rundir.save_checkpoint(str(tmp / "nonfinite"), dict(ck, state={"Q": np.full((10, 10), np.nan)}))


@pytest.mark.parametrize("command, args, needle", CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_bad_input_exits_2_with_one_line(command, args, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _setup(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if command in ("simulate", "crosscheck") and "--out" not in args and "--resume" not in args:
        argv += ["--out", str(tmp_path / "run")]
    t0 = time.perf_counter()
    code = MAINS[command](argv)
    wall = time.perf_counter() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0]
    assert needle.replace("{tmp}", str(tmp_path)) in err[0], err[0]
    assert wall < 10, wall
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert after == before, sorted(set(map(str, after)) ^ set(map(str, before)))  # nothing written


@pytest.mark.parametrize("args, needle", [
    (["-m", "dynamics.simulate", "--K", "ten"], "K must be an integer >= 2"),
    (["-m", "dynamics.sweep", "missing.toml"], "spec file not found"),
    (["-m", "dynamics.crosscheck", "--false-alarm", "0"], "false_alarm must be"),
    (["-m", "dynamics.reproduce", "nonsense"], "target must be one of"),
])
def test_real_processes(args, needle, tmp_path):
    r = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not any(tmp_path.iterdir())


def test_closed_pipe_is_silent(tmp_path):
    """``... | head -1`` closes the pipe: no BrokenPipeError traceback."""
    cmd = f"{sys.executable} -m dynamics.simulate --K 4 --N 8 --steps 50 --figures false --out run | head -1"
    r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
    assert os.path.exists(tmp_path / "run" / "results.nc")


_CHILD = r"""
import contextlib, io, json, os, resource, sys, tempfile, time
resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))
sys.path.insert(0, ROOT)
from tests.test_bad_input import MAINS, SIZES
out = []
for command, args, needle in SIZES:
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        from pathlib import Path
        from tests.test_bad_input import _setup
        _setup(Path(tmp))
        argv = [a.replace("{tmp}", tmp) for a in args]
        if command in ("simulate", "crosscheck") and "--out" not in args:
            argv += ["--out", os.path.join(tmp, "run")]
        err = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = MAINS[command](argv)
        out.append([command, args, code, err.getvalue().strip().splitlines(), time.perf_counter() - t0,
                    os.path.exists(os.path.join(tmp, "run"))])
        os.chdir("/")
print(json.dumps(out))
"""


@pytest.mark.slow
def test_sizes_are_refused_under_a_memory_cap(tmp_path):
    """The size rows again in one child process whose address space is capped at 4 GiB: an attempted
    allocation would fail the row (MemoryError, not the one-line refusal) instead of the machine."""
    import json

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = _CHILD.replace("CAP", str(4 * 2**30)).replace("ROOT", repr(root))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=root, ICL_DYNAMICS_MAX_MEMORY="2G"))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(rows) == len(SIZES)
    for (command, args, code_, err, wall, wrote), (_, _, needle) in zip(rows, SIZES):
        assert code_ == 2 and len(err) == 1 and wall < 10 and not wrote, (command, args, code_, err, wall)
        assert needle.replace("{tmp}", "") in err[0] or "{tmp}" in needle, (args, err)
