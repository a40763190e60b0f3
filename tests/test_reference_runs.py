"""Every model's results are unchanged by a move of the code: small runs of each model and method
against the files recorded before the move (``tests/reference/record.py`` says how they were made).

A move changes no arithmetic, so the trajectories agree to rounding: relative 1e-12 (with an
absolute floor of 1e-14 for entries that are zero up to rounding) covers a different summation
order in a threaded BLAS and nothing else.  A commit that changes results on purpose re-records
the file it changes and says why.
"""
import numpy as np
import pytest
import xarray as xr

from tests.reference.record import RUNS, path, run


@pytest.mark.parametrize("model,method", list(RUNS), ids=[f"{a}-{b}" for a, b in RUNS])
def test_run_matches_the_recorded_file(model, method):
    with xr.open_dataset(path(model, method)) as ref:
        ref = ref.load()
    ds = run(model, method)
    assert sorted(ds.data_vars) == sorted(ref.data_vars)
    np.testing.assert_array_equal(ds["t"].values, ref["t"].values)
    for name in ref.data_vars:
        np.testing.assert_allclose(ds[name].values, ref[name].values, rtol=1e-12, atol=1e-14, err_msg=name)
