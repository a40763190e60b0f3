"""H. Li et al. (ICLR 2025): chain of thought against in-context learning in a trained one-layer
attention-only transformer (MODEL.md section 9; docs/models/li2024_cot.md).

Modules: :mod:`.params` (declared parameters), :mod:`.transitions` (test transition matrices,
their exact statistics ``B^f, tau^f, tau_o^f, rho^f, rho_o^f``, Condition 1, and a generator),
:mod:`.data` (patterns, chains, prompt columns), :mod:`.kernels` (numba forward and exact
gradients), :mod:`.decoding` (greedy CoT, ICL, attention masses), :mod:`.model` (the contract),
:mod:`.training` (replicas through ``simulate``), :mod:`.figures`, :mod:`.reproduce`.  The
orthonormal patterns, the alpha-fraction rule and the one-prompt attention kernels are shared
with the ICML 2024 system (:mod:`dynamics.models.shared.patterns`, :mod:`.attention`).
"""
