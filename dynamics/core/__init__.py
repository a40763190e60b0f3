"""The generic core: model contract, parameters, validation, trajectories, run directories, I/O."""
