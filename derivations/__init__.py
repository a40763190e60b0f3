"""Symbolic derivations (sympy) that generate the numba kernels of :mod:`dynamics`.

``python -m derivations.build`` rewrites ``dynamics/_kernels.py``; nothing in
``dynamics`` imports sympy at run time.
"""
