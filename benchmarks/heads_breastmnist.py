"""BreastMNIST benchmark: a thin runner of ``examples/breastmnist.toml`` (the library's own path, ``breastclip run
--offline``), printing our leaderboard beside the published rows; the last line is one JSON object.

    python benchmarks/heads_breastmnist.py [--npz PATH] [--output DIR] [--cache DIR]

Everything (feature view, heads, grids, CV selection on train+val, three seeds) is in the example config; this
script only runs it, reads the results folder's leaderboard (its selected row: the best ok method by mean CV AUC over
seeds, deployed as the master seed's fit; the test split chooses nothing) and that row's pooled test means over
seeds, and checks each seed's test predictions of the selected method with medmnist's own ``Evaluator`` (AUC, and
ACC at 0.5 on the label-1 "normal_or_benign" score) against the leaderboard, seed by seed, and the mean of the
Evaluator's per-seed figures against the pooled mean.
Research use only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from breastclip import RESEARCH_ONLY  # noqa: E402

CONFIG = ROOT / "examples" / "breastmnist.toml"
DEFAULT_NPZ = ROOT.parent / "shared" / "data" / "breastmnist" / "original" / "breastmnist.npz"
#: Published anchors (ACC, AUC): MedMNIST+ (Doerrich et al., mean of 3 seeds) and the MedMNIST v2 table.
PUBLISHED = {
    "AlexNet end-to-end, 128 px (best MedMNIST+ row)": (0.906, 0.940),
    "DINO ViT-B/16 linear probe, 224 px [MedMNIST+]": (0.887, 0.934),
    "DINO ViT-B/16 kNN (k=11), 224 px [MedMNIST+]": (0.872, None),
    "CLIP ViT-B/16 linear probe, 224 px [MedMNIST+]": (0.836, 0.865),
    "ResNet-18 (28) [MedMNIST v2]": (0.863, 0.901),
}
TARGET = {"auc": 0.94, "acc": 0.906}
LABEL1 = "normal_or_benign"  # BreastMNIST label 1: MedMNIST's AUC is of this class's score


def medmnist_check(npz: Path, pred: pd.DataFrame) -> dict[str, float]:
    """medmnist's Evaluator on one method's test rows, in the npz's test order."""
    from medmnist import Evaluator

    test = pred[pred["split"] == "test"].copy()
    test["index"] = test["id"].str.rsplit("/", n=1).str[-1].astype(int)
    test = test.sort_values("index")
    score = np.column_stack([test["p_malignant"].to_numpy(), test[f"p_{LABEL1}"].to_numpy()])
    ev = Evaluator("breastmnist", "test", root=str(npz.parent))
    if len(score) != len(ev.labels):
        raise ValueError(f"{len(score)} test predictions, medmnist's test split has {len(ev.labels)}")
    auc, acc = ev.evaluate(score)
    return {"auc": float(auc), "acc": float(acc)}


def medmnist_checks(npz: Path, out: Path, board: pd.DataFrame, method: str) -> list[dict]:
    """medmnist's Evaluator on each seed's test predictions of ``method``, beside that seed row's leaderboard
    figures (their mean must equal the leaderboard's pooled mean)."""
    checks = []
    for _, row in board[board["base_method"] == method].sort_values("seed").iterrows():
        label = str(row["method"])
        pred = pd.read_csv(out / "methods" / label / "predictions.csv", dtype={"id": str})
        mm = medmnist_check(npz, pred)
        checks.append({"seed": int(row["seed"]), "medmnist_auc": mm["auc"], "medmnist_acc": mm["acc"],
                       "leaderboard_auc": float(row["test_roc_auc"]),
                       "leaderboard_acc": float(row["test_accuracy@argmax"])})
    return checks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--npz", type=Path, default=DEFAULT_NPZ)
    ap.add_argument("--output", type=Path, default=ROOT / "results" / "breastmnist-benchmark")
    ap.add_argument("--cache", type=Path, default=None, help="cache root (default: BREASTCLIP_CACHE or ~/.cache)")
    ap.add_argument("--from-results", type=Path, default=None,
                    help="read a finished results folder of the example instead of running it again")
    args = ap.parse_args()
    from rich.console import Console

    from breastclip.config import load_config
    from breastclip.pipeline import run_experiment

    overrides = [f"data.source={args.npz.resolve()}", f"experiment.output={args.output.resolve()}",
                 "experiment.on_existing=new"]
    if args.cache:
        overrides.append(f"embed.cache_dir={args.cache.resolve()}")
    cfg = load_config(CONFIG, offline=True, overrides=overrides)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    if args.from_results is None:
        out = run_experiment(cfg, progress=False, console=Console(quiet=True)).out_dir
    else:
        out = args.from_results
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    seeds = pd.read_csv(out / "seeds.csv")
    board = pd.read_csv(out / "leaderboard.csv")
    chosen = board[board["selected"].astype(str).str.lower() == "true"]
    if chosen.empty:
        raise SystemExit(f"no method is selected in {out / 'leaderboard.csv'} (every method is flagged; see status)")
    sel = chosen.iloc[0]  # the run's selection: best ok method by mean CV over seeds, never test
    selected, deployed = str(sel["base_method"]), str(sel["method"])
    pooled = {"auc": float(sel["test_roc_auc_seeds_mean"]), "acc": float(sel["test_accuracy@argmax_seeds_mean"]),
              "auc_sd": float(sel["test_roc_auc_seeds_sd"]), "acc_sd": float(sel["test_accuracy@argmax_seeds_sd"])}
    checks = medmnist_checks(args.npz, out, board, selected)
    agree = (all(abs(c["medmnist_auc"] - c["leaderboard_auc"]) < 1e-6 and
                 abs(c["medmnist_acc"] - c["leaderboard_acc"]) < 1e-6 for c in checks)
             and abs(np.mean([c["medmnist_auc"] for c in checks]) - pooled["auc"]) < 1e-6
             and abs(np.mean([c["medmnist_acc"] for c in checks]) - pooled["acc"]) < 1e-6)

    print(f"BreastMNIST official test split (n=156), {cfg.backbones[0]}, selection {cfg.evaluation.selection} "
          f"({cfg.evaluation.cv_splits}-fold x {cfg.evaluation.cv_repeats} on train+val), seeds "
          f"{list(cfg.experiment.seeds)}; run {wall:.0f} s, load average {load0[0]:.1f} -> {load1[0]:.1f} "
          f"(shared 2-core machine)")
    print(f"{'method (mean +- sd over seeds)':44s} {'CV AUC':>15s} {'test ACC':>15s} {'test AUC':>15s}")
    for _, r in seeds.iterrows():
        mark = "*" if r["method"] == selected else " "
        print(f"{mark}{r['method']:43s} {r['selection_value_mean']:.3f} +- {r['selection_value_sd']:.3f} "
              f"{r['accuracy_mean']:.3f} +- {r['accuracy_sd']:.3f} {r['roc_auc_mean']:.3f} +- {r['roc_auc_sd']:.3f}")
    for name, (acc, auc) in PUBLISHED.items():
        print(f" {name:43s} {'':>15s} {acc:15.3f} {auc if auc is not None else float('nan'):15.3f}")
    met = pooled["auc"] >= TARGET["auc"] and pooled["acc"] >= TARGET["acc"]
    print(f"selected by mean CV AUC over seeds: {selected} (deployed model {deployed}, the master seed's fit): test "
          f"ACC {pooled['acc']:.3f} +- {pooled['acc_sd']:.3f}, AUC {pooled['auc']:.3f} +- {pooled['auc_sd']:.3f} "
          f"(leaderboard's pooled columns); target AUC >= {TARGET['auc']} and ACC >= {TARGET['acc']} met: {met}; "
          f"medmnist Evaluator agrees (per seed, and its mean with the pooled mean): {agree}. {RESEARCH_ONLY}")
    print(json.dumps({
        "benchmark": "heads_breastmnist", "config": "examples/breastmnist.toml", "backbone": cfg.backbones[0],
        "selected": selected, "deployed": deployed, "selected_test_mean_over_seeds": pooled,
        "seeds": list(cfg.experiment.seeds), "target": TARGET, "target_met": bool(met),
        "table": seeds.to_dict(orient="records"), "medmnist_check": checks, "medmnist_agrees": agree,
        "published": {k: {"acc": a, "auc": b} for k, (a, b) in PUBLISHED.items()},
        "wall_seconds": round(wall, 1), "load_average_before_after": [round(load0[0], 2), round(load1[0], 2)],
    }, default=float))


if __name__ == "__main__":
    main()
