"""Out-of-distribution check for any backbone: distance of an embedding to a run's training embeddings
(k-nearest-neighbour cosine distance, or class-conditional Mahalanobis with a shrunk shared covariance, Lee et al.
2018), flagged above a threshold set as a quantile of held-out in-distribution scores."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.covariance import LedoitWolf
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted, validate_data

from breastclip.heads._base import l2_normalize

METHODS = ("knn", "mahalanobis")


class EmbeddingOOD(OutlierMixin, BaseEstimator):
    """Flags embeddings unlike the training data, without a text tower.

    ``ood_score(X)``: higher = more unusual (kNN: mean cosine distance to the ``n_neighbors`` nearest training
    embeddings; Mahalanobis: distance to the nearest class mean). ``threshold_`` is the ``quantile`` of the scores
    of in-distribution validation embeddings (``X_val`` in ``fit``, else ``validation_fraction`` of the training
    rows held out), so about ``1 - quantile`` of in-distribution images are flagged. ``predict`` follows
    scikit-learn's outlier convention (+1 inlier, -1 outlier); ``is_ood`` returns booleans.
    """

    head_name = "ood"

    def __init__(
        self,
        method: str = "knn",
        n_neighbors: int = 10,
        quantile: float = 0.95,
        validation_fraction: float = 0.2,
        random_state: int | None = None,
    ) -> None:
        self.method = method
        self.n_neighbors = n_neighbors
        self.quantile = quantile
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def fit(self, X, y=None, X_val=None):
        """Store the reference embeddings (per-class statistics when ``y`` is given) and set the threshold."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")
        X = np.asarray(validate_data(self, X, dtype=[np.float64, np.float32]), dtype=np.float64)
        labels = np.zeros(len(X), dtype=np.int64) if y is None else np.unique(np.asarray(y), return_inverse=True)[1]
        if len(labels) != len(X):
            raise ValueError(f"y has {len(labels)} rows but X has {len(X)}")
        if X_val is None:
            if len(X) < 4:
                raise ValueError(f"need at least 4 training embeddings to hold some out for the threshold, got n_samples={len(X)}")
            strat = labels if np.bincount(labels).min() >= 2 else None
            X, X_val, labels, _ = train_test_split(X, labels, test_size=self.validation_fraction,
                                                   random_state=self.random_state, stratify=strat)
        else:
            X_val = np.asarray(validate_data(self, X_val, reset=False, dtype=[np.float64, np.float32]), dtype=np.float64)
        self._fit_reference(X, labels)
        self.val_scores_ = self.ood_score(X_val)
        self.threshold_ = float(np.quantile(self.val_scores_, self.quantile))
        self.offset_ = -self.threshold_
        return self

    def _fit_reference(self, X: np.ndarray, labels: np.ndarray) -> None:
        if self.method == "knn":
            self.reference_ = l2_normalize(X)
            self.precision_ = np.zeros((0, 0))
            self.means_ = np.zeros((0, X.shape[1]))
        else:
            means = np.stack([X[labels == k].mean(axis=0) for k in np.unique(labels)])
            centred = X - means[np.searchsorted(np.unique(labels), labels)]
            self.means_ = means
            self.precision_ = LedoitWolf(assume_centered=True).fit(centred).precision_
            self.reference_ = np.zeros((0, X.shape[1]))

    def ood_score(self, X) -> np.ndarray:
        """Distance to the training data; compare with ``threshold_``."""
        check_is_fitted(self, "reference_")
        X = np.asarray(validate_data(self, X, reset=False, dtype=[np.float64, np.float32]), dtype=np.float64)
        if self.method == "knn":
            k = int(min(self.n_neighbors, len(self.reference_)))
            dist = 1.0 - l2_normalize(X) @ self.reference_.T
            return np.sort(np.partition(dist, k - 1, axis=1)[:, :k], axis=1).mean(axis=1)
        d = np.stack([np.einsum("ij,jk,ik->i", X - m, self.precision_, X - m) for m in self.means_], axis=1)
        return np.sqrt(np.maximum(d.min(axis=1), 0.0))

    def is_ood(self, X) -> np.ndarray:
        """True where an embedding lies beyond the threshold."""
        return self.ood_score(X) > self.threshold_

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn convention: higher = more normal."""
        return -self.ood_score(X)

    def decision_function(self, X) -> np.ndarray:
        """Positive for inliers, negative for outliers (``score_samples - offset_``)."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        return np.where(self.is_ood(X), -1, 1)

    def save(self, path, *, overwrite: bool = False):
        from breastclip.heads.io import save_head

        return save_head(self, path, overwrite=overwrite)

    def _export_state(self):
        return ({"reference": self.reference_, "means": self.means_, "precision": self.precision_,
                 "val_scores": self.val_scores_}, {"threshold": self.threshold_})

    def _import_state(self, arrays, state):
        self.reference_, self.means_ = arrays["reference"], arrays["means"]
        self.precision_, self.val_scores_ = arrays["precision"], arrays["val_scores"]
        self.threshold_ = float(state["threshold"])
        self.offset_ = -self.threshold_
