"""Every registered model's declared parameters, through every front end: the command line, a
TOML config and a sweep spec accept each default and refuse a bad value with exit status 2 and
one line naming the parameter (issue: one parameter system)."""
import json

import pytest

from dynamics import models
from dynamics.simulate import simulate_main
from dynamics.core.params import Param, ParamError
from dynamics.sweep import main as sweep_main

RUN = ("seed",)


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _bad(p: Param):
    """A value breaking the declared rule, found from the declaration's kind and bounds (text)."""
    if p.choices:
        return "not-a-choice"
    return {"int": "1.5", "float": "abc", "bool": "maybe", "floats": "x,y", "ints": "1.5", "path": "",
            "str": None}[p.kind]


def _cases():
    for name in models.names():
        cls = models.get(name)
        for p in cls.params:
            method = next(m for m in cls.methods if not p.methods or m in p.methods)
            yield pytest.param(name, p, method, id=f"{name}-{p.name}")


CASES = list(_cases())


def _small(model, p, method):
    """Parameters that make an exact method affordable where the model's defaults are beyond its
    cost bound (li2024_cot: ``crosscheck_defaults``, a small instance), for ``gd``/``flow`` only."""
    if method not in ("gd", "flow"):
        return {}
    extra = models.get(model).crosscheck_defaults({p.name: p.default})
    return {k: v for k, v in extra.items() if k in ("M", "K", "M_test") and k != p.name}


@pytest.mark.parametrize("model, p, method", CASES)
def test_command_line(model, p, method, tmp_path, capsys):
    base = ["--model", model, "--method", method, "--out", str(tmp_path / "run"), "--check"]
    for k, v in _small(model, p, method).items():
        base += [models.get(model).params[k].flag(), _text(v)]
    if p.default is not None:
        assert simulate_main(base + [p.flag(), _text(p.default)]) == 0, capsys.readouterr().err
        capsys.readouterr()
    bad = _bad(p)
    if bad is None:
        return
    assert simulate_main(base + [p.flag(), bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and p.name in err[0] and "Traceback" not in err[0], err


@pytest.mark.parametrize("model, p, method", CASES)
def test_toml_config(model, p, method, tmp_path, capsys):
    def run(value):
        cfg = tmp_path / "c.toml"
        small = "".join(f"{k} = {json.dumps(v)}\n" for k, v in _small(model, p, method).items())
        cfg.write_text(f'model = "{model}"\nmethod = "{method}"\n{small}{p.name} = {json.dumps(value)}\n')
        return simulate_main(["--config", str(cfg), "--out", str(tmp_path / "run"), "--check"])

    if p.default is not None:
        assert run(p.default) == 0, capsys.readouterr().err
        capsys.readouterr()
    bad = _bad(p) if p.kind not in ("str", "path") else 5  # a number where text is due
    assert run(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and p.name in err[0], err


@pytest.mark.parametrize("model, p, method", CASES)
def test_sweep_spec(model, p, method, tmp_path, capsys):
    cls = models.get(model)
    if p.name == "levels" and "gd" not in cls.methods:
        pytest.skip("no exact method")

    def run(value):
        spec = tmp_path / "s.toml"
        small = "".join(f"{k} = {json.dumps(v)}\n" for k, v in _small(model, p, method).items())
        spec.write_text(f'model = "{model}"\n[fixed]\nmethod = "{method}"\n{small}[sweep]\n{p.name} = '
                        f'[{json.dumps(value)}]\n[outputs]\nreferences = true\n')
        return sweep_main([str(spec), "--check", "--quiet"])

    if p.default is not None:
        assert run(p.default) == 0, capsys.readouterr().err
        capsys.readouterr()
    bad = _bad(p) if p.kind not in ("str", "path") else 5
    assert run(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and p.name in err[0], err


def test_one_coercion_rule():
    """The same text and the same native value give the same result, whatever the front end."""
    steps = Param("steps", "int", 10, "", low=0)
    assert steps.coerce("20") == steps.coerce(20) == steps.coerce(20.0) == steps.coerce("2e1") == 20
    for bad in ("2.5", 2.5, True, "ten", float("inf")):
        with pytest.raises(ParamError, match="steps must be an integer >= 0"):
            steps.coerce(bad)
    flag = Param("figures", "bool", True, "")
    assert flag.coerce("false") is False and flag.coerce(True) is True
    with pytest.raises(ParamError, match="figures must be true or false, got 3"):
        flag.coerce(3)
