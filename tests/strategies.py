"""Hypothesis strategies for the paper's inputs: probability vectors, theta, class structures."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


@st.composite
def prob_vectors(draw, K):
    """A point of the open simplex (every entry >= ~1e-3), summing to 1 to rounding."""
    raw = draw(hnp.arrays(np.float64, K, elements=st.floats(1e-3, 1.0)))
    p = raw / raw.sum()
    p[-1] = 1.0 - p[:-1].sum()
    return p


@st.composite
def problems(draw, max_K=5, max_N=12, bound=30.0, noise=True):
    """``(theta, p, N, sigma2)`` with K <= max_K, N <= max_N, theta in [-bound, bound]."""
    K = draw(st.integers(2, max_K))
    N = draw(st.integers(1, max_N))
    p = draw(prob_vectors(K))
    theta = draw(hnp.arrays(np.float64, (K, K), elements=st.floats(-bound, bound)))
    sigma2 = draw(st.floats(0.0, 1.0)) if noise else 0.0
    return theta, p, N, sigma2
