"""Shared scikit-learn plumbing for every head: label encoding, validation data, predict, save."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data


class BaseHead(ClassifierMixin, BaseEstimator):
    """Base of the classifier heads: ``X (n, d)`` in, ``predict_proba (n, n_classes)`` out.

    Subclasses implement ``fit``, ``predict_proba`` and the two state hooks used by :mod:`breastclip.heads.io`.
    """

    head_name: ClassVar[str] = ""

    # ---- validation helpers -------------------------------------------------------------------------------
    def _validate_train(self, X, y, *, min_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Validate ``X, y``; set ``classes_`` / ``n_features_in_``; return float X and integer labels."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < min_classes:
            n = len(self.classes_)
            raise ValueError(
                f"{type(self).__name__} needs at least {min_classes} classes; y holds {n} class"
                f"{'' if n == 1 else 'es'} ({self.classes_.tolist()})"
            )
        return np.asarray(X, dtype=np.float64), y_idx.astype(np.int64)

    def _validate_val(self, X_val, y_val) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Validation arrays, checked against the training classes and feature count; (None, None) when absent."""
        if X_val is None and y_val is None:
            return None, None
        if X_val is None or y_val is None:
            raise ValueError("give both X_val and y_val, or neither")
        X_val = validate_data(self, X_val, reset=False, dtype=[np.float64, np.float32])
        y_val = np.asarray(y_val)
        if len(y_val) != len(X_val):
            raise ValueError(f"X_val has {len(X_val)} rows but y_val has {len(y_val)}")
        return np.asarray(X_val, dtype=np.float64), self._encode(y_val, "y_val")

    def _encode(self, y, what: str = "y") -> np.ndarray:
        """Integer index of each label in ``classes_``; unknown labels raise, naming them."""
        y = np.asarray(y)
        lookup = {c: i for i, c in enumerate(self.classes_.tolist())}
        try:
            return np.array([lookup[v] for v in y.tolist()], dtype=np.int64)
        except KeyError:
            unknown = sorted({str(v) for v in y.tolist() if v not in lookup})
            raise ValueError(
                f"{what} holds labels {unknown} not seen in training (classes {self.classes_.tolist()})"
            ) from None

    def _check_predict_input(self, X) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return np.asarray(validate_data(self, X, reset=False, dtype=[np.float64, np.float32]), dtype=np.float64)

    # ---- prediction ---------------------------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Class label of highest probability."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    # ---- persistence --------------------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Save to a folder (``head.json`` + ``weights.safetensors``); no pickle. Load with ``load_head``."""
        from breastclip.heads.io import save_head

        return save_head(self, path, overwrite=overwrite)

    def _export_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Fitted arrays and JSON-able fitted attributes (besides ``classes_`` / ``n_features_in_``)."""
        raise NotImplementedError

    def _import_state(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        raise NotImplementedError


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def l2_normalize(X: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(X, axis=axis, keepdims=True)
    return X / np.maximum(norm, 1e-12)
