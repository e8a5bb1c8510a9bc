"""The most confident errors, listed with their metadata: where a model is wrong and sure of itself.

An error is an image whose predicted class (argmax, the predictions-table ``y_pred``) differs from ``y_true``.
Errors are ranked by the probability given to the predicted class (``confidence``), highest first. With a positive
class, each error is also typed: ``FN`` (a positive image called something else), ``FP`` (a non-positive image
called positive) or ``confusion`` (between two non-positive classes).

:func:`confident_errors` returns::

    rank, id, patient_id, y_true, y_pred, confidence, p_true, error_type, [image], <metadata columns...>
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from breastclip.evaluation.subgroups import NOT_METADATA
from breastclip.predictions import PROB_PREFIX, classes_of, proba_of

COLUMNS = ["rank", "id", "patient_id", "y_true", "y_pred", "confidence", "p_true", "error_type"]


def confident_errors(table: pd.DataFrame, *, k: int = 20, positive_class: str | None = None,
                     metadata_columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``k`` most confident errors of a predictions table (already joined with metadata when wanted)."""
    classes = classes_of(table)
    proba = proba_of(table)
    pred_idx = proba.argmax(axis=1)
    lookup = {c: i for i, c in enumerate(classes)}
    true_idx = table["y_true"].astype(str).map(lookup).to_numpy(dtype=int)
    wrong = np.nonzero(pred_idx != true_idx)[0]
    rows = np.arange(len(table))
    confidence = proba[rows, pred_idx]
    p_true = proba[rows, true_idx]
    # most confident first; ties broken by the lower probability of the true class, then by id for determinism
    ids = table["id"].astype(str).to_numpy()
    order = wrong[np.lexsort((ids[wrong], p_true[wrong], -confidence[wrong]))][: max(int(k), 0)]
    y_true = np.asarray(classes, dtype=object)[true_idx[order]]
    y_pred = np.asarray(classes, dtype=object)[pred_idx[order]]
    if positive_class is None:
        kind = np.full(order.size, "error", dtype=object)
    else:
        kind = np.where(y_true == positive_class, "FN", np.where(y_pred == positive_class, "FP", "confusion"))
    out = pd.DataFrame({"rank": np.arange(1, order.size + 1), "id": ids[order],
                        "patient_id": table["patient_id"].astype(str).to_numpy()[order] if "patient_id" in table
                        else ids[order],
                        "y_true": y_true, "y_pred": y_pred, "confidence": confidence[order],
                        "p_true": p_true[order], "error_type": kind})
    if metadata_columns is None:  # the image path helps a reader look at the error; then every metadata column
        metadata_columns = [c for c in table.columns if c == "image" or
                            (c not in NOT_METADATA and not str(c).startswith(PROB_PREFIX))]
    for col in metadata_columns:
        out[col] = table[col].to_numpy()[order]
    return out
