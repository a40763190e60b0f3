"""Huang's compiled GD loop implements the one definition of the GD loop's semantics
(:func:`dynamics.methods.gd.advance_python`) step for step: the same states, first crossings,
rises and statuses, segment after segment, including the eps rule and divergence."""
import numpy as np
import pytest

from dynamics.methods.gd import NONFINITE, OK, RISING, STOPPED, Monitor, advance_python
from dynamics.models.huang2024.model import Huang2024

LEVELS = [1e-1, 1e-2, 1e-3, 1e-4]


def _pair(eta, eps=None, patience=50, **kw):
    m = Huang2024.create(method="gd", K=6, N=20, preset="imbalanced", p1=0.5, eta=eta, **kw)
    return m, m.initial_state("gd", None), m.initial_state("gd", None), Monitor(eps, patience, LEVELS), \
        Monitor(eps, patience, LEVELS)


@pytest.mark.parametrize("eta,eps,expect", [(1.0, None, OK), (1.0, 1e-3, STOPPED)])
def test_compiled_loop_equals_the_generic_loop_segment_by_segment(eta, eps, expect):
    m, fast, slow, mf, ms = _pair(eta, eps)
    lrs = m.learning_rates("gd")
    step, statuses = 0, []
    for stop in (1, 7, 50, 300, 3000):
        sf, tf = m.advance(fast, lrs, step, stop, mf)
        ss, ts = advance_python(m, slow, lrs, step, stop, ms)
        assert (sf, tf) == (ss, ts)
        # The same arithmetic in a different order of summation over classes: rounding only.
        np.testing.assert_allclose(fast["coords"], slow["coords"], rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(mf.first, ms.first)
        assert mf.rising == ms.rising and mf.L_prev == pytest.approx(ms.L_prev, rel=1e-13)
        statuses.append(sf)
        step = tf
        if sf != OK:
            break
    assert statuses[-1] == expect
    assert np.isfinite(mf.first).any()


def test_both_loops_call_a_huge_step_divergent_at_the_same_step():
    m, fast, slow, mf, ms = _pair(1e12, patience=3)
    lrs = m.learning_rates("gd")
    sf, tf = m.advance(fast, lrs, 0, 100, mf)
    ss, ts = advance_python(m, slow, lrs, 0, 100, ms)
    assert sf in (NONFINITE, RISING) and (sf, tf) == (ss, ts) and tf < 100
