"""Non-parametric heads on centred, L2-normalised features (the "CL2N" transform of SimpleShot, Wang et al. 2019):
k nearest neighbours with k tuned by internal cross-validation, and the nearest class mean (SimpleShot).

Both subtract the training mean and L2-normalise every row before measuring Euclidean distance; without centring,
non-negative CNN features all point the same way and their distances say little.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from breastclip.heads._base import BaseHead, l2_normalize, softmax

#: k values tried when ``k`` is None (the DINO / MedMNIST+ kNN protocols use k in 10..20; small sets need fewer).
DEFAULT_KS = (1, 3, 5, 7, 11, 15, 21, 31)


class _CL2N(BaseHead):
    """Centre by the training mean, then L2-normalise (shared by the two heads below)."""

    center: bool

    def _fit_transform(self, X: np.ndarray) -> np.ndarray:
        self.mean_ = X.mean(axis=0) if self.center else np.zeros(X.shape[1])
        return l2_normalize(X - self.mean_)

    def _transform(self, X) -> np.ndarray:
        return l2_normalize(self._check_predict_input(X) - self.mean_)


def _sq_dist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.maximum((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T, 0.0)


def _vote(neigh_labels: np.ndarray, neigh_dist: np.ndarray, n_classes: int, weights: str) -> np.ndarray:
    """Class frequencies among the neighbours (weighted by 1 / distance when ``weights='distance'``)."""
    w = 1.0 / np.maximum(np.sqrt(neigh_dist), 1e-6) if weights == "distance" else np.ones_like(neigh_dist)
    p = np.zeros((len(neigh_labels), n_classes))
    for k in range(n_classes):
        p[:, k] = (w * (neigh_labels == k)).sum(axis=1)
    return p / p.sum(axis=1, keepdims=True)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    if p.shape[1] == 2:
        return float(roc_auc_score(y, p[:, 1]))
    present = np.unique(y)
    if len(present) < p.shape[1]:  # a fold without some class: AUC over the classes it holds
        q = p[:, present]
        return float(roc_auc_score(np.searchsorted(present, y), q / q.sum(1, keepdims=True), multi_class="ovr"))
    return float(roc_auc_score(y, p, multi_class="ovr"))


class KNNHead(_CL2N):
    """k nearest neighbours (Euclidean on CL2N features, i.e. cosine after centring); probabilities are the
    (distance-weighted) class shares among the k neighbours.

    ``k=None`` tunes k over ``ks`` by ``cv``-fold stratified cross-validation on the training rows (ROC AUC, ties to
    the larger k); a fixed ``k`` skips the search (``evaluation.selection = "cv"`` may grid it instead). The fitted
    head keeps the centred training rows: the training set is the model.
    """

    head_name = "knn"
    #: Searched by ``evaluation.selection = "cv"`` when the config gives no ``params_grid`` (else k is tuned inside).
    default_grid: ClassVar[dict[str, tuple]] = {"k": (5, 11, 21)}

    def __init__(self, k: int | None = None, ks: tuple[int, ...] = DEFAULT_KS, weights: str = "distance",
                 center: bool = True, cv: int = 5, random_state: int | None = None) -> None:
        self.k = k
        self.ks = ks
        self.weights = weights
        self.center = center
        self.cv = cv
        self.random_state = random_state

    def _proba(self, Q: np.ndarray, R: np.ndarray, r_idx: np.ndarray, k: int) -> np.ndarray:
        d = _sq_dist(Q, R)
        k = min(k, len(R))
        nn = np.argpartition(d, k - 1, axis=1)[:, :k]
        return _vote(r_idx[nn], np.take_along_axis(d, nn, axis=1), len(self.classes_), self.weights)

    def _tune(self, Z: np.ndarray, y_idx: np.ndarray) -> tuple[int, list[dict[str, float]]]:
        n_folds = min(int(self.cv), int(np.bincount(y_idx).min()))
        cands = sorted({int(k) for k in self.ks if 1 <= int(k)})
        if n_folds < 2 or not cands:
            return max(1, min(cands or [1])), []
        seed = 0 if self.random_state is None else int(self.random_state)
        folds = list(StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(Z, y_idx))
        results = []
        for k in cands:
            scores = [_auc(y_idx[te], self._proba(Z[te], Z[tr], y_idx[tr], k)) for tr, te in folds]
            results.append({"k": float(k), "score": float(np.nanmean(scores)) if np.isfinite(scores).any() else -1.0})
        top = max(r["score"] for r in results)
        return int(max(r["k"] for r in results if r["score"] >= top - 1e-9)), results

    def fit(self, X, y, X_val=None, y_val=None):
        """Store the CL2N training rows; choose k by internal cross-validation when ``k`` is None."""
        if self.weights not in ("uniform", "distance"):
            raise ValueError(f"weights must be 'uniform' or 'distance', got {self.weights!r}")
        if self.k is not None and int(self.k) < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        X, y_idx = self._validate_train(X, y)
        Z = self._fit_transform(X)
        if self.k is None:
            self.k_, self.cv_results_ = self._tune(Z, y_idx)
        else:
            self.k_, self.cv_results_ = int(self.k), []
        self.train_ = Z
        self.train_labels_ = y_idx
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self._proba(self._transform(X), self.train_, self.train_labels_, self.k_)

    def _export_state(self):
        return ({"mean": self.mean_, "train": self.train_, "train_labels": self.train_labels_},
                {"k": self.k_, "cv_results": self.cv_results_})

    def _import_state(self, arrays, state):
        self.mean_, self.train_ = arrays["mean"], arrays["train"]
        self.train_labels_ = arrays["train_labels"].astype(np.int64)
        self.k_, self.cv_results_ = int(state["k"]), list(state["cv_results"])


class NearestClassMeanHead(_CL2N):
    """SimpleShot: nearest class mean of CL2N features. Probabilities are ``softmax(-scale * ||x - mu_k||^2)``;
    ``scale`` (a temperature) is fitted by maximum likelihood on the training rows when None."""

    head_name = "simpleshot"

    def __init__(self, scale: float | None = None, center: bool = True) -> None:
        self.scale = scale
        self.center = center

    def fit(self, X, y, X_val=None, y_val=None):
        """Class means of the CL2N training rows, and the softmax scale."""
        if self.scale is not None and not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale!r}")
        X, y_idx = self._validate_train(X, y)
        Z = self._fit_transform(X)
        self.centroids_ = np.vstack([Z[y_idx == k].mean(axis=0) for k in range(len(self.classes_))])
        if self.scale is None:
            d = _sq_dist(Z, self.centroids_)

            def nll(log_s: float) -> float:
                logits = -np.exp(log_s) * d
                logits -= logits.max(axis=1, keepdims=True)
                return float(-(logits[np.arange(len(y_idx)), y_idx] - np.log(np.exp(logits).sum(1))).mean())

            self.scale_ = float(np.exp(minimize_scalar(nll, bounds=(-5.0, 8.0), method="bounded").x))
        else:
            self.scale_ = float(self.scale)
        return self

    def class_distances(self, X) -> np.ndarray:
        """Squared distance of each CL2N row to each class mean, (n, K)."""
        return _sq_dist(self._transform(X), self.centroids_)

    def predict_proba(self, X) -> np.ndarray:
        d = self.class_distances(X)  # checks fitted first
        return softmax(-self.scale_ * d)

    def _export_state(self):
        return {"mean": self.mean_, "centroids": self.centroids_}, {"scale": self.scale_}

    def _import_state(self, arrays, state):
        self.mean_, self.centroids_ = arrays["mean"], arrays["centroids"]
        self.scale_ = float(state["scale"])
