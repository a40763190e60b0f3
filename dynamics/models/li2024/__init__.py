"""H. Li et al. (ICML 2024): softmax attention plus a ReLU MLP classifying in context, out of
domain, and pruned (MODEL.md section 8; docs/models/li2024.md).

Modules:

- ``patterns``   orthonormal pattern sets, combinations with a coefficient sum, the alpha-fraction
                 rule, label embedding (shared with the chain-of-thought system; stable API)
- ``attention``  numba: one prompt's softmax read-out and its exact backward pass (shared)
- ``data``       tasks, the covering training set T_tr, ODR/ODI patterns, the prompt sampler
- ``kernels``    numba: the network's forward pass and exact hinge/ReLU/softmax subgradients
- ``params``     every parameter, declared once
- ``model``      ``Li2024``: the model contract (Monte Carlo only)
- ``evaluation`` held-out error, hinge loss, same-pattern attention, with standard errors
- ``analysis``   Propositions 1 and 2 on a state; ``pruning``: magnitude and random pruning of W_O
- ``state``      reading a run directory's ``state.nc``; ``analyze``: the analyses' command
- ``training``   replicas over seeds through ``simulate``, evaluation grids
- ``baselines``  scikit-learn learners fitted on each prompt's context (optional extra)
- ``figures``, ``reproduce``   the targets li-ood, li-alpha, li-mechanism, li-pruning, li-baselines
"""
