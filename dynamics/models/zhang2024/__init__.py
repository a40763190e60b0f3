"""Zhang, Frei, Bartlett (JMLR 2024): linear self-attention learning linear regression in context.

The package's worked example of a model (``docs/ARCHITECTURE.md``, "How to add a model"):
:mod:`.population` (the closed-form loss and its optimum), :mod:`.lsa` (the real network on sampled
prompts), :mod:`.model` (the contract), :mod:`.claims` (the ledger rows).
"""
