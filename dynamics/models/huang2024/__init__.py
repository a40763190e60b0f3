"""Huang, Cheng, Liang, *In-Context Convergence of Transformers* (ICML 2024)."""
