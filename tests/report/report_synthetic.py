"""Synthetic predictions tables for the report tests: informative but imperfect probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd

from breastclip.predictions import make_predictions


def synthetic_predictions(classes=("benign", "malignant", "normal"), methods=("linear-probe", "zero-shot"),
                          n_val=60, n_test=90, seed=0, images_per_patient=1):
    """(predictions, manifest_df): val and test rows per method, a metadata column ``device`` with a small group."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    n = n_val + n_test
    y = np.arange(n) % k
    rng.shuffle(y)
    ids = [f"img{i:04d}" for i in range(n)]
    pids = [f"p{i // images_per_patient:04d}" for i in range(n)]
    split = np.array(["val"] * n_val + ["test"] * n_test)
    device = rng.choice(["A", "B"], size=n, p=[0.55, 0.45]).astype(object)
    device[rng.choice(n, size=6, replace=False)] = "C"  # a group below the minimum size
    manifest = pd.DataFrame({"id": ids, "image": [f"{i}.png" for i in ids], "label": [classes[j] for j in y],
                             "patient_id": pids, "split": split, "source": "synthetic", "device": device})
    train = pd.DataFrame({"id": [f"tr{i}" for i in range(120)], "image": [f"tr{i}.png" for i in range(120)],
                          "label": [classes[i % k] for i in range(120)], "patient_id": [f"t{i}" for i in range(120)],
                          "split": "train", "source": "synthetic", "device": "A"})
    manifest = pd.concat([train, manifest], ignore_index=True)
    tables = []
    for m, strength in zip(methods, np.linspace(2.5, 1.0, len(methods)), strict=False):
        logits = rng.normal(size=(n, k)) + strength * np.eye(k)[y]
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        tables.append(make_predictions(ids=ids, y_true=[classes[j] for j in y], proba=p, classes=list(classes),
                                       method=m, split=list(split), patient_id=pids))
    return pd.concat(tables, ignore_index=True), manifest
