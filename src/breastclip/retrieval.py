"""Retrieval evidence: the training images most similar to a query image in the run's embedding space.

Image-search systems for breast imaging show a clinician the most similar cases with known labels beside a
prediction. Here that is the cosine similarity of frozen-backbone embeddings (the ones the run took from its
embedding cache) to the training split's embeddings, saved with the run as ``gate/<backbone>/train_embeddings.npz``
(ids, labels and L2-normalised rows, no pickle) so ``predict --neighbours k`` works without the cache.
Plain numpy: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REFERENCE_FILE = "train_embeddings.npz"


@dataclass(frozen=True)
class Reference:
    """Training embeddings with their ids and labels (rows L2-normalised)."""

    ids: np.ndarray
    labels: np.ndarray
    X: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.labels) == len(self.X)):
            raise ValueError(f"reference has {len(self.ids)} ids, {len(self.labels)} labels and {len(self.X)} rows")


def _normalise(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def make_reference(X: np.ndarray, ids, labels) -> Reference:
    return Reference(np.asarray(ids, dtype=str), np.asarray(labels, dtype=str), _normalise(X))


def save_reference(ref: Reference, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REFERENCE_FILE
    np.savez(path, ids=ref.ids, labels=ref.labels, X=ref.X)
    return path


def load_reference(folder: str | Path) -> Reference:
    path = Path(folder) / REFERENCE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} is missing in {Path(folder).name}: the run saved no training "
                                "embeddings for retrieval (runs before breastclip added them); re-run it")
    with np.load(path, allow_pickle=False) as z:
        return Reference(z["ids"].astype(str), z["labels"].astype(str), z["X"].astype(np.float32))


def nearest(query: np.ndarray, ref: Reference, k: int) -> pd.DataFrame:
    """The ``k`` most similar reference rows for each query row (cosine similarity, ties by id).

    One row per (query, rank): ``query`` (row index), ``rank`` (1 = most similar), ``id``, ``label``,
    ``similarity``.
    """
    q = _normalise(np.atleast_2d(query))
    k = int(min(k, len(ref.ids)))
    if k <= 0 or len(q) == 0:
        return pd.DataFrame(columns=["query", "rank", "id", "label", "similarity"])
    sim = q @ ref.X.T
    rows = []
    for i, s in enumerate(sim):
        order = np.lexsort((ref.ids, -s))[:k]
        rows += [{"query": i, "rank": r + 1, "id": str(ref.ids[j]), "label": str(ref.labels[j]),
                  "similarity": float(s[j])} for r, j in enumerate(order)]
    return pd.DataFrame(rows)
