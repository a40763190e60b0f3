"""The result of a Huang, Cheng, Liang run, with accessors named after the paper's symbols.

:class:`HuangResult` is a :class:`dynamics.core.trajectory.Result` whose ``ds`` holds the
observables of :meth:`.model.Huang2024.observables` (``A``, ``B``, ``L_k``, ``gap``,
``attn_own``, ``attn``, ``L``) over ``t`` and the feature classes; the accessors below give
them per *feature* (0-based index ``k`` is the paper's ``v_{k+1}``), never as K x K arrays.
"""
from __future__ import annotations

import numpy as np

from dynamics.core.trajectory import Result


class HuangResult(Result):
    """Accessors ``A(k)``, ``B(k, n)``, ``L_k(k)``, ``attention(k, n)``, ``attention_map(i)``,
    ``first_time_below(eps)``, and the arrays ``coords``, ``L_f``, ``attn``, ``L``, ``L_star``."""

    @property
    def structure(self):
        return self.model.structure

    def _v(self, name):
        return np.asarray(self.ds[name].values, dtype=np.float64)

    @property
    def coords(self) -> np.ndarray:
        """``(T, F, F + 1)``: ``[A_k, B_{k,n} per key class]`` (NaN for empty classes)."""
        return np.concatenate([self._v("A")[..., None], self._v("B")], axis=-1)

    @property
    def L_f(self) -> np.ndarray:
        """``(T, F)``: the per-feature prediction error ``L_k`` of a query of each class."""
        return self._v("L_k")

    @property
    def attn(self) -> np.ndarray:
        """``(T, F, F + 1)``: ``[E[Attn_k], E[Attn_n] per key class]`` (exact methods)."""
        return np.concatenate([self._v("attn_own")[..., None], self._v("attn")], axis=-1)

    @property
    def L(self) -> np.ndarray:
        """``(T,)``: the population loss ``L = sum_k p_k L_k``."""
        return self._v("L")

    @property
    def L_star(self) -> np.ndarray:
        """``(F,)``: the optimum ``L_k^*`` of each query class (NaN with label noise)."""
        return self.model.L_star

    def state_at(self, i: int) -> np.ndarray:
        """The reduced coordinates at snapshot ``i`` (empty classes at their initial value)."""
        c = self.coords[i]
        init = self.model.initial_state("gd")["coords"]
        return np.where(np.isnan(c), init, c)

    def feature_class(self, k: int) -> int:
        """Class index of feature ``k`` (0-based feature index; the paper's ``v_{k+1}``)."""
        K = self.structure.K
        if not (0 <= int(k) < K):
            raise ValueError(f"feature index must be in [0, K) = [0, {K}), got {k!r}")
        return int(np.searchsorted(np.cumsum(self.structure.sizes), int(k), side="right"))

    def A(self, k: int) -> np.ndarray:
        """``A_k = theta[k, k]`` over the snapshots."""
        return self._v("A")[..., self.feature_class(k)]

    def B(self, k: int, n: int) -> np.ndarray:
        """``B_{k,n} = theta[n, k]`` (``n != k``) over the snapshots."""
        if int(k) == int(n):
            raise ValueError("B(k, n) needs n != k; use A(k) for theta[k, k]")
        return self._v("B")[..., self.feature_class(k), self.feature_class(n)]

    def L_k(self, k: int) -> np.ndarray:
        """Per-feature prediction error ``L_k`` over the snapshots."""
        return self.L_f[..., self.feature_class(k)]

    def attention(self, k: int, n: int) -> np.ndarray:
        """``E[Attn_n | x_q = v_k]`` over the snapshots (``n = k``: the paper's ``Attn_k``)."""
        f = self.feature_class(k)
        if int(k) == int(n):
            return self._v("attn_own")[..., f]
        return self._v("attn")[..., f, self.feature_class(n)]

    def attention_map(self, i: int, features=None) -> np.ndarray:
        """The expected attention map at snapshot ``i``: rows query ``k``, columns key ``n``.

        ``features`` (default: the first ``min(K, 12)``) selects which features to show;
        never K x K for large K.
        """
        feats = list(range(min(self.structure.K, 12)) if features is None else features)
        own = [self.feature_class(k) for k in feats]
        a_own, a = self._v("attn_own")[i], self._v("attn")[i]
        out = np.empty((len(feats), len(feats)))
        for x, k in enumerate(feats):
            for y, n in enumerate(feats):
                out[x, y] = a_own[own[x]] if k == n else a[own[x], own[y]]
        return out

    def first_time_below(self, eps: float) -> np.ndarray:
        """For each query class, the first iteration with ``L_k - L_k^* <= eps`` (NaN if none).

        Exact (the first GD step, or the flow's root on its dense output) when ``eps`` is one of
        the run's ``levels``; otherwise resolved to the snapshots.
        """
        first, levels = self.extra.get("first_below"), self.extra.get("levels")
        if first is not None and levels is not None:
            hit = np.flatnonzero(np.isclose(levels, eps, rtol=1e-12, atol=0))
            if hit.size:
                return np.asarray(first[:, hit[0]], dtype=np.float64)
        gap = self._v("gap")
        out = np.full(gap.shape[-1], np.nan)
        for f in range(gap.shape[-1]):
            hit = np.flatnonzero(gap[:, f] <= eps)
            if hit.size:
                out[f] = self.t[hit[0]]
        return out
