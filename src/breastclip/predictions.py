"""The predictions table: the contract between models (heads, fine-tuned CNNs) and evaluation / report.

One row per image per method::

    id, patient_id, split, method, y_true, y_pred, p_<class 0>, p_<class 1>, ...

``y_true`` and ``y_pred`` hold class *names*; ``p_<class>`` columns hold probabilities in ``classes`` order and sum
to one. Metadata for subgroup analysis is joined from the manifest on ``id``. Plain pandas/numpy: no torch here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

PROB_PREFIX = "p_"
BASE_COLUMNS = ("id", "patient_id", "split", "method", "y_true", "y_pred")


def make_predictions(
    *,
    ids: Sequence[str],
    y_true: Sequence[str],
    proba: np.ndarray,
    classes: Sequence[str],
    method: str,
    split: Sequence[str] | str,
    patient_id: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Assemble a predictions table from aligned arrays."""
    proba = np.asarray(proba, dtype=float)
    n = len(ids)
    if proba.shape != (n, len(classes)):
        raise ValueError(f"proba has shape {proba.shape}, expected ({n}, {len(classes)}) for classes {list(classes)}")
    df = pd.DataFrame({
        "id": list(map(str, ids)),
        "patient_id": list(map(str, patient_id)) if patient_id is not None else list(map(str, ids)),
        "split": [split] * n if isinstance(split, str) else list(split),
        "method": method,
        "y_true": list(map(str, y_true)),
        "y_pred": [classes[i] for i in proba.argmax(axis=1)] if n else [],
    })
    for j, c in enumerate(classes):
        df[PROB_PREFIX + str(c)] = proba[:, j]
    return df


def classes_of(pred: pd.DataFrame) -> list[str]:
    """Class names in column order."""
    return [c[len(PROB_PREFIX):] for c in pred.columns if c.startswith(PROB_PREFIX)]


def proba_of(pred: pd.DataFrame) -> np.ndarray:
    """(n, n_classes) probabilities in :func:`classes_of` order."""
    return pred[[PROB_PREFIX + c for c in classes_of(pred)]].to_numpy(dtype=float)


def y_true_index(pred: pd.DataFrame) -> np.ndarray:
    """Integer true labels (index into :func:`classes_of`)."""
    lookup = {c: i for i, c in enumerate(classes_of(pred))}
    unknown = sorted(set(pred["y_true"]) - set(lookup))
    if unknown:
        raise ValueError(f"y_true holds labels {unknown} with no probability column")
    return pred["y_true"].map(lookup).to_numpy(dtype=int)


def validate_predictions(pred: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in BASE_COLUMNS if c not in pred.columns]
    if missing:
        raise ValueError(f"predictions table lacks columns {missing}")
    if not classes_of(pred):
        raise ValueError(f"predictions table has no '{PROB_PREFIX}<class>' probability columns")
    sums = proba_of(pred).sum(axis=1)
    if len(sums) and not np.allclose(sums, 1.0, atol=1e-4):
        raise ValueError(f"probabilities do not sum to 1 (range {sums.min():.4f}..{sums.max():.4f})")
    y_true_index(pred)
    return pred
