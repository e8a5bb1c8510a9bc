"""Fine-tune a CNN baseline on real BUSI ultrasound (../shared/data/busi) and explain a few test images.

Prints per-epoch losses, test accuracy / balanced accuracy / macro one-vs-rest AUC, the ROAD faithfulness of the
Grad-CAM maps, and wall-clock times; the last line is ONE JSON object. CPU is fine for a small run
(``--image-size 128 --epochs 3``: about 4 min per epoch on 2 busy cores); a GPU takes seconds per epoch. Research use only, not for diagnosis.

    PYTHONPATH=src python benchmarks/finetune_busi.py --arch efficientnet-lite0 --epochs 3 --image-size 128
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from breastclip import RESEARCH_ONLY  # noqa: E402
from breastclip.data.sources import read_source  # noqa: E402
from breastclip.data.splits import assign_splits  # noqa: E402
from breastclip.explain import cam_model_for_finetuned, explain_images  # noqa: E402
from breastclip.finetune import FinetuneConfig, finetune, load_finetuned  # noqa: E402
from breastclip.predictions import classes_of, proba_of, y_true_index  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "busi" / "Dataset_BUSI_with_GT")
    ap.add_argument("--arch", default="efficientnet-lite0")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--explain", type=int, default=4, help="test images to explain")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="finetune_busi_"))

    manifest = assign_splits(read_source(args.data), seed=0)
    cfg = FinetuneConfig(arch=args.arch, epochs=args.epochs, image_size=args.image_size,
                         batch_size=args.batch_size, seed=0)
    t0 = time.perf_counter()
    res = finetune(manifest, cfg, out / "run")
    train_s = time.perf_counter() - t0
    for _, h in res.history.iterrows():
        print(f"epoch {int(h.epoch)}: train loss {h.train_loss:.4f}, val loss {h.val_loss:.4f} ({h.seconds:.1f} s)")
    test = res.predictions[res.predictions["split"] == "test"]
    y, p = y_true_index(test), proba_of(test)
    metrics = {"accuracy": accuracy_score(y, p.argmax(1)), "balanced_accuracy": balanced_accuracy_score(y, p.argmax(1)),
               "auc_macro_ovr": roc_auc_score(y, p, multi_class="ovr", average="macro"),
               "majority_baseline_accuracy": float(np.bincount(y).max() / len(y))}
    print(f"test ({len(test)} images, classes {classes_of(test)}): "
          + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))

    t1 = time.perf_counter()
    fm = load_finetuned(out / "run")
    rows = manifest.df.set_index("id").loc[test["id"].iloc[: args.explain]]
    ex = explain_images([manifest.resolve(p) for p in rows["image"]], cam_model_for_finetuned(fm), out / "explain",
                        fractions=(0.1, 0.3, 0.5, 0.7))  # each image's predicted class
    explain_s = time.perf_counter() - t1
    faith = ex.curves.summary()
    print(f"Grad-CAM on {len(ex.table)} test images (predicted class): ROAD deletion AUC "
          f"{faith['deletion_auc_gradcam']:.3f} vs random maps {faith['deletion_auc_random']:.3f}; "
          f"overlays in {out / 'explain'}")
    print(RESEARCH_ONLY)
    print(json.dumps({"benchmark": "finetune_busi", "arch": args.arch, "epochs": len(res.history),
                      "best_epoch": res.best_epoch, "image_size": args.image_size, "n_test": len(test),
                      **{k: round(float(v), 4) for k, v in metrics.items()},
                      "train_seconds": round(train_s, 1), "explain_seconds": round(explain_s, 1),
                      **{k: round(float(v), 4) for k, v in faith.items()}, "out": str(out)}))


if __name__ == "__main__":
    main()
