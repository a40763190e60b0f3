"""Machinery that several models share: softmax-attention kernels (forward and backward), orthonormal
pattern construction, trained replicas and their statistics, error-bar figures.  A model imports
these; no model imports another model."""
