"""Reading the CSV tables that reproduce targets write (shared by the Monte Carlo models' tests)."""
from __future__ import annotations

import csv

import numpy as np


def read(path):
    """``(header, rows)`` of a CSV file."""
    with open(path) as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def lookup(rows, *keys, value=-2, se=-1):
    """``(value, se)`` of the row whose leading cells equal ``keys``."""
    for r in rows:
        if all(str(k) == r[i] for i, k in enumerate(keys)):
            return float(r[value]), float(r[se])
    raise KeyError(keys)


def apart(hi, lo, k=5.0):
    """``hi`` exceeds ``lo`` by more than ``k`` standard errors of the difference."""
    return hi[0] - lo[0] > k * np.hypot(hi[1], lo[1])
