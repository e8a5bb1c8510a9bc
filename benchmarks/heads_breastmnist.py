"""Every head on BreastMNIST (official splits) with efficientnet-lite0 features, tuned on the validation split
only, beside the MedMNIST v2 baselines. Prints a table; the last line is one JSON object.

    python benchmarks/heads_breastmnist.py [--npz PATH] [--image-size 224] [--no-tta] [--cache-dir DIR]

Features: each 28x28 image is upscaled (bicubic) to the backbone's input size; embeddings of the image and its
horizontal mirror are averaged (test-time augmentation, all splits alike) and the mirrored training images are also
added as extra training rows (augmentation of the training split only). Trained heads get z-scored features (mean
and sd from training rows). Hyperparameters are the heads' defaults; the linear probe's C, best epochs, the
Tip-Adapter alpha/beta and the ensemble's members are chosen on the validation split. The test split is used
once, for the figures below. Research use only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from breastclip import RESEARCH_ONLY  # noqa: E402

DEFAULT_NPZ = ROOT.parent / "shared" / "data" / "breastmnist" / "original" / "breastmnist.npz"
CLASSES = np.array(["malignant", "normal_or_benign"])  # BreastMNIST label 0 / 1
BASELINES = {"ResNet-18 (28) [MedMNIST v2]": (0.863, 0.901), "Google AutoML Vision [MedMNIST v2]": (0.861, 0.919)}
TARGET = {"acc": 0.88, "auc": 0.93}


def load_npz(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    d = np.load(path)
    return {s: (d[f"{s}_images"], CLASSES[d[f"{s}_labels"].ravel()]) for s in ("train", "val", "test")}


def embed(images: np.ndarray, backbone, size: int, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(plain, mirrored) embeddings of grayscale uint8 images upscaled to ``size``."""
    import torch
    from PIL import Image

    out, out_flip = [], []
    for i in range(0, len(images), batch):
        up = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images[i:i + batch]])
        x = torch.from_numpy(np.repeat(up[:, None], 3, axis=1))
        out.append(backbone.encode_images(x))
        out_flip.append(backbone.encode_images(torch.flip(x, dims=[3])))
    return np.concatenate(out), np.concatenate(out_flip)


def features(npz: Path, image_size: int, cache_dir: Path) -> tuple[dict, np.ndarray, float]:
    """Embeddings per split (cached on disk by npz content and image size) and MiniLM class text embeddings."""
    from breastclip.backbones import create_backbone
    from breastclip.prompts import class_text_embeddings, load_bank

    data = load_npz(npz)
    key = hashlib.sha256(npz.read_bytes()).hexdigest()[:16]
    cache = cache_dir / f"breastmnist_{key}_lite0_{image_size}.npz"
    bb = create_backbone("efficientnet-lite0+minilm", device="cpu", image_size=image_size)
    text = class_text_embeddings(bb, load_bank("breastmnist"))
    t0 = time.perf_counter()
    if cache.is_file():
        z = np.load(cache)
        emb = {s: (z[f"{s}"], z[f"{s}_flip"]) for s in data}
    else:
        emb = {s: embed(data[s][0], bb, image_size) for s in data}
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **{s: e[0] for s, e in emb.items()}, **{f"{s}_flip": e[1] for s, e in emb.items()})
        os.replace(tmp, cache)
    seconds = time.perf_counter() - t0
    return {s: (emb[s], data[s][1]) for s in data}, text, seconds


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def evaluate(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    pos = 1  # column of "normal_or_benign", as in MedMNIST (label 1 scores)
    y = (y_true == CLASSES[pos]).astype(int)
    return {"acc": float(np.mean(CLASSES[proba.argmax(1)] == y_true)), "auc": float(roc_auc_score(y, proba[:, pos]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--npz", type=Path, default=DEFAULT_NPZ)
    ap.add_argument("--image-size", default="224",
                    help="Backbone input size; several sizes (e.g. 128,224) concatenate their embeddings.")
    ap.add_argument("--no-tta", action="store_true", help="Use plain embeddings only (no mirror averaging/augmentation).")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "breastclip_bench")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from breastclip.heads import HEADS

    sizes = [int(v) for v in str(args.image_size).split(",")]
    parts = [features(args.npz, size, args.cache_dir) for size in sizes]
    text, embed_s = parts[0][1], sum(p[2] for p in parts)
    emb = {s: ((np.hstack([l2(p[0][s][0][0]) for p in parts]), np.hstack([l2(p[0][s][0][1]) for p in parts])),
               parts[0][0][s][1]) for s in parts[0][0]}
    tta = not args.no_tta
    (tr, tr_f), y_tr = emb["train"]
    X = {s: (l2(emb[s][0][0] + emb[s][0][1]) if tta else emb[s][0][0]) for s in emb}
    y = {s: emb[s][1] for s in emb}
    X_train, y_train = X["train"], y["train"]
    if tta:  # mirrored training images as extra rows: training split only
        X_train = np.vstack([l2(tr), l2(tr_f)])
        y_train = np.concatenate([y_tr, y_tr])
    mu, sd = X_train.mean(0), X_train.std(0) + 1e-8
    Z = {s: (X[s] - mu) / sd for s in X}
    Z_train = (X_train - mu) / sd
    s = args.seed
    configs = {
        "linear_probe": (HEADS["linear_probe"](random_state=s), "z"),
        "mlp": (HEADS["mlp"](random_state=s), "z"),
        "mlp_smote": (HEADS["mlp"](smote=True, random_state=s), "z"),
        "fc": (HEADS["fc"](random_state=s), "z"),
        "similarity_guided": (HEADS["similarity_guided"](text, text_aligned=False, random_state=s), "z"),
        "tip_adapter": (HEADS["tip_adapter"](shots=16, center=True, random_state=s), "x"),
        "tip_adapter_f": (HEADS["tip_adapter_f"](shots=16, center=True, random_state=s), "x"),
    }
    results, val_auc, test_proba, fit_s = {}, {}, {}, {}
    for name, (head, kind) in configs.items():
        Xtr, Xv, Xt = (Z_train, Z["val"], Z["test"]) if kind == "z" else (X_train, X["val"], X["test"])
        t0 = time.perf_counter()
        head.fit(Xtr, y_train, Xv, y["val"])
        fit_s[name] = time.perf_counter() - t0
        val_auc[name] = evaluate(y["val"], head.predict_proba(Xv))["auc"]
        test_proba[name] = head.predict_proba(Xt)
        results[name] = evaluate(y["test"], test_proba[name])
        results[name]["val_auc"] = val_auc[name]
    # seed ensemble of the MLP head (5 seeds, probabilities averaged)
    t0 = time.perf_counter()
    seeds = [HEADS["mlp"](random_state=s + k).fit(Z_train, y_train, Z["val"], y["val"]) for k in range(5)]
    fit_s["mlp_5seeds"] = time.perf_counter() - t0
    val_auc["mlp_5seeds"] = evaluate(y["val"], np.mean([h.predict_proba(Z["val"]) for h in seeds], axis=0))["auc"]
    test_proba["mlp_5seeds"] = np.mean([h.predict_proba(Z["test"]) for h in seeds], axis=0)
    results["mlp_5seeds"] = {**evaluate(y["test"], test_proba["mlp_5seeds"]), "val_auc": val_auc["mlp_5seeds"]}
    # ensemble: mean probability of the 3 heads with the best validation AUC (chosen on validation only)
    members = sorted(val_auc, key=val_auc.get, reverse=True)[:3]
    results["ensemble_top3_val"] = evaluate(y["test"], np.mean([test_proba[m] for m in members], axis=0))
    results["zeroshot"] = {"acc": None, "auc": None,
                           "note": "not applicable: efficientnet-lite0 has no aligned text tower"}
    scored = {k: v for k, v in results.items() if v.get("auc") is not None}
    best_val = max(val_auc, key=val_auc.get)
    best_test = max(scored, key=lambda k: scored[k]["auc"])

    print(f"BreastMNIST test split (n={len(y['test'])}), efficientnet-lite0 features at {args.image_size}px, "
          f"mirror TTA {'on' if tta else 'off'}; embedding {embed_s:.0f}s")
    print(f"{'method':38s} {'ACC':>6s} {'AUC':>6s} {'valAUC':>7s} {'fit s':>6s}")
    for k, v in results.items():
        if v.get("auc") is None:
            print(f"{k:38s} {'n/a':>6s} {'n/a':>6s}   ({v['note']})")
            continue
        va = f"{v['val_auc']:.3f}" if "val_auc" in v else "  -  "
        print(f"{k:38s} {v['acc']:6.3f} {v['auc']:6.3f} {va:>7s} {fit_s.get(k, 0):6.1f}")
    for k, (acc, auc) in BASELINES.items():
        print(f"{k:38s} {acc:6.3f} {auc:6.3f}")
    print(f"ensemble members (top-3 validation AUC): {members}; best on validation: {best_val}")
    met = any(v["acc"] >= TARGET["acc"] and v["auc"] >= TARGET["auc"] for v in scored.values())
    print(f"target AUC >= {TARGET['auc']} and ACC >= {TARGET['acc']} met by some method: {met}. {RESEARCH_ONLY}")
    print(json.dumps({
        "benchmark": "heads_breastmnist", "backbone": "efficientnet-lite0", "image_size": sizes,
        "tta": tta, "seed": args.seed, "n_test": int(len(y["test"])), "results": results,
        "ensemble_members": members, "best_by_val_auc": best_val, "best_by_test_auc": best_test,
        "baselines": {k: {"acc": a, "auc": b} for k, (a, b) in BASELINES.items()}, "target": TARGET,
        "target_met": met, "embed_seconds": round(embed_s, 1),
        "fit_seconds": {k: round(v, 2) for k, v in fit_s.items()},
    }))


if __name__ == "__main__":
    main()
