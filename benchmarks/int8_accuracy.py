"""int8 on real weights: efficientnet-lite0 (ImageNet weights from the package index) in fp32, the library's
``precision="int8"`` (dynamic quantisation of Linear layers), and static int8 of the convolutions (FX graph mode,
x86 qconfig, calibrated on 64 unlabelled images of the same set): embedding cosine to fp32, downstream AUC with the
same head, and speed (interleaved rounds, benchmarks/_protocol.py).

Downstream: the same head for every precision, a standardised logistic regression (C=1), scored by 5-fold stratified
cross-validation with the same folds, on BreastMNIST train+val (624 images; the test split is not used) and on BUSI
(malignant vs the rest, 780 images). The AUC difference is taken per fold, so fold noise cancels.

    PYTHONPATH=src python benchmarks/int8_accuracy.py [--max-per-set 780] [--rounds 3]
Prints ONE JSON object on its last line. Research use only, not for diagnosis.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _embed_common import DEFAULT_DATA, machine
from _protocol import Interleaved, headline, load_1m, load_verdict


def datasets(data: Path, max_per_set: int) -> dict:
    import pandas as pd

    out = {}
    bm = pd.read_csv(data / "breastmnist" / "labels.csv")
    bm = bm[bm["split"].isin(["train", "val"])]
    out["breastmnist"] = ([str(data / "breastmnist" / p) for p in bm["path"]], (bm["label_id"] == 1).to_numpy())
    busi = pd.read_csv(data / "busi" / "labels.csv")
    out["busi"] = ([str(data / "busi" / p) for p in busi["path"]], (busi["label"] == "malignant").to_numpy())
    rng = np.random.default_rng(0)
    for k, (paths, y) in out.items():
        if len(paths) > max_per_set:  # a stratified subsample, fixed seed
            idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), round(max_per_set * np.mean(y == c)),
                                                     replace=False) for c in (False, True)]))
            out[k] = ([paths[i] for i in idx], y[idx])
    return out


def fx_static_int8(fp32, calib: np.ndarray):
    """A Backbone whose image tower is statically quantised (FX graph mode, x86), calibrated on ``calib``."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from breastclip.backbones.base import Backbone

    x = fp32.normalize(torch.from_numpy(calib))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(fp32.image_model), get_default_qconfig_mapping("x86"), (x[:2],))
        with torch.no_grad():
            for s in range(0, len(x), 16):
                prepared(x[s:s + 16])
        q = convert_fx(prepared)
    return Backbone(fp32.entry, image_model=q, image_forward=q, device=fp32.device,
                    fingerprint=fp32.fingerprint + "-fx-int8-static", precision="int8-static-fx")


def auc_cv(X: np.ndarray, y: np.ndarray, folds) -> list[float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = []
    for tr, te in folds:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
        clf.fit(X[tr], y[tr])
        out.append(float(roc_auc_score(y[te], clf.predict_proba(X[te])[:, 1])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--max-per-set", type=int, default=780)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds")
    ap.add_argument("--speed-images", type=int, default=64)
    ap.add_argument("--skip-static", action="store_true", help="fp32 and dynamic int8 only")
    args = ap.parse_args()

    import torch
    from sklearn.model_selection import StratifiedKFold

    from breastclip.backbones import create_backbone
    from breastclip.backbones.preprocess import load_for_model

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    load_start = load_1m()
    figures: dict = {"benchmark": "int8_accuracy", "machine": machine(), "backbone": "efficientnet-lite0",
                     "research_only": True}
    models = {"fp32": create_backbone("efficientnet-lite0", "cpu", precision="fp32"),
              "int8_dynamic": create_backbone("efficientnet-lite0", "cpu", precision="int8")}
    linear = sum(isinstance(m, torch.nn.Linear) for m in models["fp32"].image_model.modules())
    figures["linear_layers_in_image_tower"] = linear
    sets = datasets(args.data, args.max_per_set)
    pixels = {k: np.stack([load_for_model(p, models["fp32"].entry) for p in paths]) for k, (paths, _) in sets.items()}
    if not args.skip_static:
        calib = np.concatenate([px[:32] for px in pixels.values()])  # unlabelled, 32 per set
        t = time.perf_counter()
        models["int8_static_fx"] = fx_static_int8(models["fp32"], calib)
        figures["static_quantisation_seconds"] = round(time.perf_counter() - t, 1)

    per_set: dict = {}
    for name, (_, y) in sets.items():
        X = {}
        for prec, model in models.items():
            t = time.perf_counter()
            X[prec] = np.concatenate([model.encode_images(torch.from_numpy(pixels[name][s:s + 32]))
                                      for s in range(0, len(y), 32)])
            log(f"{name} {prec}: {len(y)} images in {time.perf_counter() - t:.1f} s")
        folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X["fp32"], y))
        aucs = {prec: auc_cv(X[prec], y, folds) for prec in models}
        res = {"n": int(len(y)), "positives": int(y.sum()), "auc_cv_mean": {p: round(float(np.mean(a)), 4)
                                                                          for p, a in aucs.items()}}
        for prec in models:
            if prec == "fp32":
                continue
            cos = (X[prec] * X["fp32"]).sum(1)
            diff = np.abs(np.array(aucs[prec]) - np.array(aucs["fp32"]))
            res[prec] = {"cosine_to_fp32": {"min": round(float(cos.min()), 6), "median": round(float(np.median(cos)), 6)},
                         "auc_diff_per_fold_abs": {"mean": round(float(diff.mean()), 4), "max": round(float(diff.max()), 4)}}
        per_set[name] = res
        log(f"{name}: {json.dumps(res)}")
    figures["sets"] = per_set

    xs = torch.from_numpy(pixels["busi"][:args.speed_images])

    def runner(model):
        def run() -> int:
            for s in range(0, len(xs), 32):
                model.encode_tensor(xs[s:s + 32])
            return len(xs)
        return run

    il = Interleaved({p: runner(m) for p, m in models.items()}, rounds=args.rounds, log=log).run()
    figures["speed"] = il.summary()
    figures["speed_ratio_vs_fp32"] = {p: il.ratio(p, "fp32") for p in models if p != "fp32"}
    worst = {p: max(per_set[s][p]["auc_diff_per_fold_abs"]["max"] for s in per_set) for p in models if p != "fp32"}
    figures["auc_diff_max_over_sets_and_folds"] = worst
    verdict = load_verdict([load_start, *il.loads, load_1m()])
    figures["load"] = verdict
    figures["headline"] = headline(verdict, "; ".join(
        f"{p}: {figures['speed_ratio_vs_fp32'][p]['paired']['median']:.2f}x fp32 speed, max AUC diff {worst[p]:.4f}"
        for p in worst))
    log(figures["headline"] or f"NO HEADLINE: {verdict['refused_because']}")
    figures["note"] = "Research use only, not for diagnosis."
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
