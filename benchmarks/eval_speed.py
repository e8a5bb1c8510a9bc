"""How long the evaluation layer takes on realistic table sizes (synthetic predictions; no model involved).

Prints one line per case and, last, ONE JSON object. Usage: ``python benchmarks/eval_speed.py [--n-boot 1000]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from breastclip.evaluation import compare_methods, evaluate_predictions
from breastclip.predictions import make_predictions


def table(classes: list[str], n_patients: int, per_patient: int, methods: int, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    k = len(classes)
    pid = np.repeat(np.arange(n_patients), per_patient)
    y = np.repeat(rng.integers(0, k, n_patients), per_patient)
    split = np.where(pid < n_patients // 5, "val", "test")
    ids = [f"i{i}" for i in range(pid.size)]
    frames = []
    for m in range(methods):
        logits = rng.normal(size=(pid.size, k)) + (1.0 + 0.3 * m) * np.eye(k)[y]
        proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        frames.append(make_predictions(ids=ids, y_true=[classes[v] for v in y], proba=proba, classes=classes,
                                       method=f"m{m}", split=split, patient_id=[f"p{v}" for v in pid]))
    manifest = pd.DataFrame({"id": ids, "view": rng.choice(["CC", "MLO"], pid.size),
                             "density": rng.choice(list("ABCD"), pid.size)})
    return pd.concat(frames, ignore_index=True), manifest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    cases = {
        "binary_1000img_500pat": (["benign", "malignant"], 625, 2),
        "busi_3class_156img": (["benign", "malignant", "normal"], 195, 1),
        "breakhis_8class_1600img": ([f"subtype{j}" for j in range(8)], 200, 10),
    }
    result = {"n_boot": args.n_boot}
    for name, (classes, n_pat, per) in cases.items():
        pred, manifest = table(classes, n_pat, per, methods=3)
        t0 = time.perf_counter()
        ev = evaluate_predictions(pred, manifest, method="m0", n_boot=args.n_boot)
        t_eval = time.perf_counter() - t0
        t0 = time.perf_counter()
        compare_methods(pred, n_boot=args.n_boot)
        t_cmp = time.perf_counter() - t0
        n_test = ev.n["test"]["images"]
        print(f"{name}: evaluate_predictions {t_eval:.2f} s ({n_test} test images, unit={ev.bootstrap['unit']}), "
              f"compare_methods (3 methods) {t_cmp:.2f} s")
        result[name] = {"evaluate_s": round(t_eval, 3), "compare_3_methods_s": round(t_cmp, 3),
                        "test_images": n_test}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
