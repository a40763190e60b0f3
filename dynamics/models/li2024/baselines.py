"""Classical learners fitted on each prompt's own context examples (the slides' backup Figures
27-28: "Comparing ICL on a one-layer Transformer with other machine learning algorithms";
logistic regression, linear and Gaussian-kernel SVM, 1-NN and 3-NN).

scikit-learn is an optional extra: :func:`available` says whether it is installed.  Each learner
is fitted on the ``l`` pairs ``(x_i, f(x_i))`` of one prompt (the feature part of the columns
and the label signs) and predicts the query's label; scikit-learn's defaults are used
(``LogisticRegression(C=1)``, ``SVC(C=1)`` with ``gamma="scale"`` for the Gaussian kernel).
Where a learner cannot be fitted the prediction is defined as follows (documented choices):
a context whose labels are all equal predicts that label (logistic regression and SVMs need two
classes), and k-NN uses ``k = min(3, l)``.
"""
from __future__ import annotations

import warnings

import numpy as np

METHODS = ("logistic", "svm_linear", "svm_rbf", "1nn", "3nn")
"""The baselines, in the order of the tables."""


def available() -> bool:
    """True if scikit-learn can be imported."""
    import importlib.util

    return importlib.util.find_spec("sklearn") is not None


def _learner(name: str, l: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    if name == "logistic":
        return LogisticRegression()
    if name == "svm_linear":
        return SVC(kernel="linear")
    if name == "svm_rbf":
        return SVC(kernel="rbf", gamma="scale")
    if name in ("1nn", "3nn"):
        return KNeighborsClassifier(n_neighbors=min(int(name[0]), l))
    raise ValueError(f"baseline must be one of {', '.join(METHODS)}, got {name!r}")


def predict(name: str, X, y, xq) -> float:
    """The label ``+-1`` that learner ``name`` fitted on ``(X, y)`` predicts for ``xq``."""
    y = np.asarray(y)
    if name not in ("1nn", "3nn") and np.all(y == y[0]):
        return float(y[0])
    model = _learner(name, len(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
        return float(model.predict(xq[None, :])[0])


def errors(prompts, data, methods=METHODS) -> dict:
    """Per-prompt error indicators ``{method: (B,) array}`` of the baselines on a batch of prompts
    (:class:`~dynamics.models.li2024.data.Prompts` of ``data``, a
    :class:`~dynamics.models.li2024.data.DataModel`; labels are the signs of ``y_i^T q``)."""
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    P, z, d_x = prompts.P, prompts.z, data.d_x
    X, lab, xq = P[:, :-1, :d_x], np.sign(P[:, :-1, d_x:] @ data.q), P[:, -1, :d_x]
    # One thread: fits on 20 points gain nothing from BLAS/OpenMP threads, and on shared cores
    # their start-up dominates (k-NN: ~80 ms a call with threads, ~1 ms without).
    with threadpool_limits(limits=1):
        return {name: np.array([predict(name, X[b], lab[b], xq[b]) != z[b] for b in range(P.shape[0])],
                               dtype=np.float64) for name in methods}
