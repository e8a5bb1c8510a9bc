"""Every head on BreastMNIST (official splits) with efficientnet-lite0 features, model selection on train+val only,
beside the MedMNIST v2 baselines. Prints a table; the last line is one JSON object.

    python benchmarks/heads_breastmnist.py [--npz PATH] [--sizes 160,224] [--backbone efficientnet-lite0]
                                           [--cache-dir DIR] [--seed 0]

Features. Each 28x28 image is upscaled (bicubic) to the input size and run through the frozen backbone once; forward
hooks pool (mean and standard deviation over space) the output of the last block of every stage (blocks with
16 ... 320 channels) and the final 1280-d head (mean). Lower stages carry the speckle/texture cues ultrasound needs,
which the final ImageNet embedding mostly discards. The image and its horizontal mirror are averaged (test-time
augmentation, all splits alike). Each pooled block is z-scored with statistics of the rows a model is fitted on and
scaled by 1/sqrt(dim) so every block weighs the same. Features are cached per (npz content, backbone, size).

Protocol (the test split is never looked at until the very end):
1. Model selection by repeated stratified 5-fold cross-validation (2 repeats, 10 folds) over train+val (624 images):
   a grid of input sizes (160, 224, both concatenated) x layer sets (final embedding only; all stage blocks; blocks +
   final embedding) x classifiers (logistic regression C in {0.1, 1}; RBF SVM with gamma='scale', C in {3, 10, 30},
   Platt-scaled probabilities). The configuration with the highest mean CV AUC wins; the "CV top-3 ensemble" averages
   the probabilities of the three best configurations (its CV figure reuses the same folds, so it is slightly
   optimistic). The one with the higher CV AUC of the two is the headline method. ACC at argmax (threshold 0.5).
2. Refit the selected method(s) on all of train+val; score the test split once.
3. "Every head": the library's heads (linear probe, MLP, FC, similarity-guided, Tip-Adapter(-F)) on the CV-chosen
   feature set, trained on train and tuned on validation (their own protocol), scored on test.
Research use only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from breastclip import RESEARCH_ONLY  # noqa: E402

DEFAULT_NPZ = ROOT.parent / "shared" / "data" / "breastmnist" / "original" / "breastmnist.npz"
CLASSES = np.array(["malignant", "normal_or_benign"])  # BreastMNIST label 0 / 1
BASELINES = {"ResNet-18 (28) [MedMNIST v2]": (0.863, 0.901), "Google AutoML Vision [MedMNIST v2]": (0.861, 0.919)}
TARGET = {"acc": 0.88, "auc": 0.93}
LAYER_SETS = {"final": ["head"], "blocks": "blocks", "blocks+final": "blocks+head"}


# ---------------------------------------------------------------------------------------------------- features
def load_npz(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    d = np.load(path)
    return {s: (d[f"{s}_images"], d[f"{s}_labels"].ravel().astype(int)) for s in ("train", "val", "test")}


def stage_features(images: np.ndarray, backbone, size: int, mirror: bool, batch: int = 64) -> dict[str, np.ndarray]:
    """Pooled outputs of every stage's last block (mean+sd over space) and the final head (mean), per image."""
    import torch
    from PIL import Image

    net = backbone.image_model.net
    outc = [b._project_conv.out_channels for b in net._blocks]
    ends = [i for i in range(len(outc)) if i == len(outc) - 1 or outc[i + 1] != outc[i]]
    got: dict[str, list] = {}

    def hook(key: str, stats: bool):
        def h(_m, _i, o):
            o = o.float()
            pooled = torch.cat([o.mean((2, 3)), o.std((2, 3))], 1) if stats else o.clamp(0, 6).mean((2, 3))
            got.setdefault(key, []).append(pooled.cpu().numpy())
        return h

    handles = [net._blocks[i].register_forward_hook(hook(f"b{i:02d}", True)) for i in ends]
    handles.append(net._bn1.register_forward_hook(hook("head", False)))  # head = ReLU6(bn1(conv_head(x)))
    try:
        for i in range(0, len(images), batch):
            up = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC))
                           for im in images[i:i + batch]])
            x = torch.from_numpy(np.repeat(up[:, None], 3, axis=1))
            backbone.encode_tensor(torch.flip(x, dims=[3]) if mirror else x)
    finally:
        for h in handles:
            h.remove()
    return {k: np.concatenate(v) for k, v in got.items()}


def cached_features(npz: Path, data: dict, backbone_name: str, size: int, cache_dir: Path) -> tuple[dict, float]:
    """{split: {layer: (N, d) mirror-averaged pooled features}}, cached on disk; and the seconds spent embedding."""
    key = hashlib.sha256(npz.read_bytes()).hexdigest()[:16]
    cache = cache_dir / f"breastmnist_{key}_{backbone_name}_{size}_stages.npz"
    t0 = time.perf_counter()
    if not cache.is_file():
        from breastclip.backbones import create_backbone

        bb = create_backbone(backbone_name, device="cpu", image_size=size)
        arrays = {}
        for split, (images, _) in data.items():
            plain, flip = (stage_features(images, bb, size, m) for m in (False, True))
            arrays.update({f"{split}/{k}": (plain[k] + flip[k]) / 2 for k in plain})
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, cache)
    z = np.load(cache)
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in z.files:
        split, layer = name.split("/")
        out.setdefault(split, {})[layer] = z[name]
    return out, time.perf_counter() - t0


def layer_keys(available: list[str], spec) -> list[str]:
    blocks = sorted(k for k in available if k.startswith("b"))
    return {"blocks": blocks, "blocks+head": blocks + ["head"]}.get(spec, spec) if isinstance(spec, str) else spec


def assemble(feats: dict[int, dict], sizes: tuple[int, ...], spec, split_rows: dict[str, list[str]]):
    """Block-wise z-scored (statistics of the fit rows), 1/sqrt(dim)-weighted concatenation per named row group."""
    out = {g: [] for g in split_rows}
    for size in sizes:
        per_split = feats[size]
        for layer in layer_keys(list(per_split["train"]), spec):
            fit = np.vstack([per_split[s][layer] for s in split_rows["fit"]])
            mu, sd, w = fit.mean(0), fit.std(0) + 1e-6, np.sqrt(fit.shape[1])
            for g, splits in split_rows.items():
                out[g].append((np.vstack([per_split[s][layer] for s in splits]) - mu) / sd / w)
    return {g: np.hstack(v) for g, v in out.items()}


# ------------------------------------------------------------------------------------------------ selection
def classifier(kind: str, C: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    if kind == "svm":  # Platt-scaled probabilities (sklearn >= 1.9 deprecates the flag; same method until 1.11)
        return SVC(C=C, kernel="rbf", gamma="scale", probability=True, random_state=seed)
    return LogisticRegression(C=C, max_iter=5000)


def _fit_predict(kind: str, C: float, seed: int, X_fit, y_fit, X_eval) -> np.ndarray:
    with warnings.catch_warnings():  # runs in joblib workers, which do not inherit the main process's filters
        warnings.filterwarnings("ignore", message="The `probability` parameter was deprecated", category=FutureWarning)
        return classifier(kind, C, seed).fit(X_fit, y_fit).predict_proba(X_eval)[:, 1]


def cv_select(feats: dict, size_sets: list[tuple[int, ...]], y_tv: np.ndarray, seed: int, n_jobs: int = 2):
    """Out-of-fold probabilities and mean CV AUC/ACC of every grid configuration on train+val (folds in parallel)."""
    from joblib import Parallel, delayed
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import RepeatedStratifiedKFold

    folds = list(RepeatedStratifiedKFold(n_splits=5, n_repeats=2, random_state=seed).split(y_tv, y_tv))
    models = [("logreg", 0.1), ("logreg", 1.0), ("svm", 3.0), ("svm", 10.0), ("svm", 30.0)]
    table = {}
    for sizes in size_sets:
        for set_name, spec in LAYER_SETS.items():
            # z-scoring inside each fold would be purer; statistics are label-free, so fit them on train+val once
            X = assemble(feats, sizes, spec, {"fit": ["train", "val"]})["fit"]
            for kind, C in models:
                oof = np.zeros((2, len(y_tv)))
                aucs, accs = [], []
                probas = Parallel(n_jobs=n_jobs)(
                    delayed(_fit_predict)(kind, C, seed, X[tr], y_tv[tr], X[te]) for tr, te in folds)
                for k, ((_, te), p) in enumerate(zip(folds, probas, strict=True)):
                    oof[k // 5, te] = p
                    aucs.append(roc_auc_score(y_tv[te], p))
                    accs.append(float(np.mean((p > 0.5) == y_tv[te])))
                name = f"{'+'.join(map(str, sizes))}px {set_name} {kind} C={C:g}"
                table[name] = {"sizes": sizes, "layers": set_name, "kind": kind, "C": C, "oof": oof,
                               "cv_auc": float(np.mean(aucs)), "cv_acc": float(np.mean(accs))}
    return table, folds


def cv_of_mean(table: dict, names: list[str], y_tv: np.ndarray, folds) -> tuple[float, float]:
    from sklearn.metrics import roc_auc_score

    oof = np.mean([table[n]["oof"] for n in names], axis=0)
    aucs = [roc_auc_score(y_tv[te], oof[k // 5, te]) for k, (_, te) in enumerate(folds)]
    accs = [np.mean((oof[k // 5, te] > 0.5) == y_tv[te]) for k, (_, te) in enumerate(folds)]
    return float(np.mean(aucs)), float(np.mean(accs))


def evaluate(y_true: np.ndarray, p_pos: np.ndarray) -> dict[str, float]:
    """ACC at 0.5 and AUC of the label-1 ("normal_or_benign") score, MedMNIST's convention."""
    from sklearn.metrics import roc_auc_score

    return {"acc": float(np.mean((p_pos > 0.5) == y_true)), "auc": float(roc_auc_score(y_true, p_pos))}


# --------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--npz", type=Path, default=DEFAULT_NPZ)
    ap.add_argument("--sizes", default="160,224", help="Input sizes searched (alone and concatenated).")
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "breastclip_bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-library-heads", action="store_true")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", message="The `probability` parameter was deprecated", category=FutureWarning)

    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    data = load_npz(args.npz)
    sizes = [int(v) for v in args.sizes.split(",")]
    feats, embed_s = {}, 0.0
    for size in sizes:
        feats[size], sec = cached_features(args.npz, data, args.backbone, size, args.cache_dir)
        embed_s += sec
    y = {s: data[s][1] for s in data}
    y_tv = np.concatenate([y["train"], y["val"]])
    size_sets = [(s,) for s in sizes] + ([tuple(sizes)] if len(sizes) > 1 else [])

    # 1. model selection on train+val by repeated stratified k-fold
    t0 = time.perf_counter()
    table, folds = cv_select(feats, size_sets, y_tv, args.seed)
    ranked = sorted(table, key=lambda n: table[n]["cv_auc"], reverse=True)
    top3 = ranked[:3]
    ens_auc, ens_acc = cv_of_mean(table, top3, y_tv, folds)
    headline = "cv_top3_ensemble" if ens_auc > table[ranked[0]]["cv_auc"] else "cv_best_single"
    cv_s = time.perf_counter() - t0

    # 2. refit on train+val, score test once
    def refit_test(name: str) -> np.ndarray:
        c = table[name]
        X = assemble(feats, c["sizes"], LAYER_SETS[c["layers"]], {"fit": ["train", "val"], "test": ["test"]})
        return classifier(c["kind"], c["C"], args.seed).fit(X["fit"], y_tv).predict_proba(X["test"])[:, 1]

    p_test = {n: refit_test(n) for n in top3}
    baseline_cfg = max((n for n in table if table[n]["layers"] == "final"), key=lambda n: table[n]["cv_auc"])
    p_base = refit_test(baseline_cfg)
    results = {
        "cv_best_single": {**evaluate(y["test"], p_test[ranked[0]]), "cv_auc": table[ranked[0]]["cv_auc"],
                           "cv_acc": table[ranked[0]]["cv_acc"], "config": ranked[0]},
        "cv_top3_ensemble": {**evaluate(y["test"], np.mean([p_test[n] for n in top3], axis=0)),
                             "cv_auc": ens_auc, "cv_acc": ens_acc, "config": top3},
        "cv_best_final_embedding_only": {**evaluate(y["test"], p_base), "cv_auc": table[baseline_cfg]["cv_auc"],
                                         "cv_acc": table[baseline_cfg]["cv_acc"], "config": baseline_cfg},
    }

    # 3. the library's heads on the chosen feature set, train -> validation-tuned -> test
    fit_s = {}
    if not args.skip_library_heads:
        from breastclip.backbones import create_backbone
        from breastclip.heads import HEADS
        from breastclip.prompts import class_text_embeddings, load_bank

        c = table[ranked[0]]
        Z = assemble(feats, c["sizes"], LAYER_SETS[c["layers"]],
                     {"fit": ["train"], "train": ["train"], "val": ["val"], "test": ["test"]})
        text = class_text_embeddings(create_backbone("efficientnet-lite0+minilm", device="cpu"), load_bank("breastmnist"))
        lab = {s: CLASSES[y[s]] for s in y}
        s = args.seed
        heads = {
            "linear_probe": HEADS["linear_probe"](random_state=s),
            "mlp": HEADS["mlp"](random_state=s),
            "mlp_smote": HEADS["mlp"](smote=True, random_state=s),
            "fc": HEADS["fc"](random_state=s),
            "similarity_guided": HEADS["similarity_guided"](text, text_aligned=False, random_state=s),
            "tip_adapter": HEADS["tip_adapter"](shots=16, center=True, random_state=s),
            "tip_adapter_f": HEADS["tip_adapter_f"](shots=16, center=True, random_state=s),
        }
        for name, head in heads.items():
            t1 = time.perf_counter()
            head.fit(Z["train"], lab["train"], Z["val"], lab["val"])
            fit_s[name] = time.perf_counter() - t1
            col = list(head.classes_).index(CLASSES[1])
            results[name] = {**evaluate(y["test"], head.predict_proba(Z["test"])[:, col]),
                             "val_auc": evaluate(y["val"], head.predict_proba(Z["val"])[:, col])["auc"]}
    results["zeroshot"] = {"acc": None, "auc": None, "note": f"not applicable: {args.backbone} has no aligned text tower"}

    print(f"BreastMNIST test split (n={len(y['test'])}), {args.backbone} multi-stage features, sizes {sizes}, "
          f"mirror TTA; embedding {embed_s:.0f}s, CV grid {cv_s:.0f}s ({len(table)} configs x 10 folds)")
    print("CV (5-fold x 2 on train+val) top 5:")
    for n in ranked[:5]:
        print(f"  {n:42s} cv AUC {table[n]['cv_auc']:.3f}  cv ACC {table[n]['cv_acc']:.3f}")
    print(f"{'method':38s} {'ACC':>6s} {'AUC':>6s} {'sel.AUC':>8s}")
    for k, v in results.items():
        if v.get("auc") is None:
            print(f"{k:38s} {'n/a':>6s} {'n/a':>6s}   ({v['note']})")
            continue
        sel = v.get("cv_auc", v.get("val_auc"))
        print(f"{k:38s} {v['acc']:6.3f} {v['auc']:6.3f} {sel:8.3f}")
    for k, (acc, auc) in BASELINES.items():
        print(f"{k:38s} {acc:6.3f} {auc:6.3f}")
    best = results[headline]
    met = best["acc"] >= TARGET["acc"] and best["auc"] >= TARGET["auc"]
    print(f"headline (chosen by CV AUC before scoring test): {headline} = ACC {best['acc']:.3f} AUC {best['auc']:.3f}; "
          f"target AUC >= {TARGET['auc']} and ACC >= {TARGET['acc']} met: {met}. {RESEARCH_ONLY}")
    print(json.dumps({
        "benchmark": "heads_breastmnist", "backbone": args.backbone, "sizes": sizes, "seed": args.seed,
        "n_test": int(len(y["test"])), "headline": headline, "results": results,
        "cv_top5": [{"config": n, "cv_auc": round(table[n]["cv_auc"], 4)} for n in ranked[:5]],
        "baselines": {k: {"acc": a, "auc": b} for k, (a, b) in BASELINES.items()}, "target": TARGET,
        "target_met": met, "embed_seconds": round(embed_s, 1), "cv_seconds": round(cv_s, 1),
        "fit_seconds": {k: round(v, 2) for k, v in fit_s.items()},
    }))


if __name__ == "__main__":
    main()
