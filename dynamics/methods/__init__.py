"""The methods, each model-agnostic and each in one module: exact gradient descent
(:mod:`~dynamics.methods.gd`), gradient flow (:mod:`~dynamics.methods.flow`) and Monte Carlo
training on sampled prompts (:mod:`~dynamics.methods.montecarlo`).  Their parameters are
declared once in :mod:`dynamics.methods.params`."""
