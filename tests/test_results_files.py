"""``results.nc`` and ``state.nc`` of every model read without a manual: every dimension named
(no ``coords_0``, ``theta_0`` or ``W_O_0``), every variable and coordinate with CF ``long_name``
and ``units``; :func:`dynamics.load_state` returns the state a run continues from."""
import re

import numpy as np
import pytest
import xarray as xr

from dynamics import load_state
from dynamics.simulate import simulate_main

TINY = {
    "huang2024": ["--method", "gd", "--K", "4", "--N", "8", "--steps", "20", "--snapshots", "5"],
    "yang2024": ["--method", "gd", "--N", "3", "--K", "6", "--d", "4", "--m", "3", "--H", "3", "--steps", "10",
                 "--snapshots", "4"],
    "li2024": ["--method", "mc", "--steps", "4", "--snapshots", "3", "--n-eval", "10", "--batch", "8",
               "--replicas", "2", "--mlp-width", "4", "--M2", "4"],
    "li2024_cot": ["--method", "mc", "--steps", "4", "--snapshots", "3", "--n-eval", "10", "--batch", "8",
                   "--replicas", "2"],
}
UNNAMED = re.compile(r"(_\d+$)|(^dim_\d+$)|(_dim\d+$)")


@pytest.mark.parametrize("model", sorted(TINY))
def test_every_dimension_named_and_every_variable_has_long_name_and_units(model, tmp_path, capsys):
    out = tmp_path / model
    assert simulate_main(["--model", model, *TINY[model], "--figures", "false", "--quiet", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    for name in ("results.nc", "state.nc"):
        with xr.open_dataset(out / name, engine="scipy") as ds:
            for dim in ds.dims:
                assert not UNNAMED.search(str(dim)), (name, dim)
            for v in list(ds.data_vars) + list(ds.coords):
                attrs = ds[v].attrs
                assert attrs.get("long_name") and attrs.get("units"), (name, v, attrs)
    state = load_state(str(out))
    with xr.open_dataset(out / "state.nc", engine="scipy") as ds:
        assert set(state) == set(ds.data_vars)
        for b, a in state.items():
            assert a.dtype == np.float64 and a.shape == ds[b].shape


def test_load_state_continues_an_exact_run(tmp_path, capsys):
    """20 steps, then 20 more from the saved state, equal 40 steps at once (Huang, exact GD)."""
    from dynamics.simulate import simulate

    args = dict(K=4, N=8, snapshots=3)
    whole = simulate("huang2024", "gd", steps=40, **args)
    half = tmp_path / "half"
    assert simulate_main(["--K", "4", "--N", "8", "--snapshots", "3", "--steps", "20", "--figures", "false",
                          "--quiet", "--out", str(half)]) == 0
    rest = simulate("huang2024", "gd", steps=20, init=load_state(str(half)), **args)
    np.testing.assert_allclose(rest.state["coords"], whole.state["coords"], rtol=1e-12, atol=1e-14)


def test_load_state_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="run_dir: .*state.nc does not exist"):
        load_state(str(tmp_path))
