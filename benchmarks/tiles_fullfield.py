"""Tile view + attention-MIL vs the global 224-px embedding on synthetic full-field mammograms, and peak RSS of the
tile view on 4000x3000 frames. Research use only, not for diagnosis.

Accuracy (default): writes ``make_synthetic_fullfield`` (microcalcification clusters invisible at 224 px), splits
it by patient (train / val / test, stratified), embeds it with EfficientNet-Lite0 (real ImageNet weights) once
globally (whole frame -> 224 px) and once as tiles (224-px tiles at native resolution), and trains, with every
choice fixed before looking at test (C by the probe's own CV, MIL epochs by validation loss):

- ``global + linear probe``           the 224-px embedding of the whole frame
- ``tiles mean / max / top-k + probe`` pooled tile embeddings
- ``tiles + attention-MIL``            the gated attention-MIL head on the bags

then reports test ROC AUC (malignant vs normal) with 95 % patient-bootstrap intervals, per image and per breast
(max over CC + MLO). ``--rss``: embeds a few 4000x3000 16-bit PNGs with the tile view in a fresh process per
setting and reports each process's peak RSS, to show memory is bounded by a batch of tiles, not by the frame.

    PYTHONPATH=src python benchmarks/tiles_fullfield.py --patients 60 --workdir /tmp/tiles-bench
    PYTHONPATH=src python benchmarks/tiles_fullfield.py --rss --workdir /tmp/tiles-bench

The last printed line is one JSON object with every figure (and the 1-minute load average: the development machine
is shared, so timings vary run to run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from breastclip.backbones import embed_manifest, embed_tiles
from breastclip.backbones.tiles import TileSpec
from breastclip.data.splits import assign_splits
from breastclip.data.synthetic_fullfield import make_synthetic_fullfield
from breastclip.evaluation import evaluate_predictions
from breastclip.evaluation.levels import aggregate_predictions, unit_manifest
from breastclip.heads import AttentionMILHead, LinearProbe
from breastclip.predictions import make_predictions

BACKBONE = "efficientnet-lite0"


def _auc(pred, mdf, level: str, n_boot: int) -> dict:
    table = pred if level == "image" else aggregate_predictions(pred, mdf, level, "max")
    meta = mdf if level == "image" else unit_manifest(mdf, level)
    ev = evaluate_predictions(table, meta, positive_class="malignant", n_boot=n_boot, seed=0)
    h = ev.headline["roc_auc"]
    return {"auc": round(h["estimate"], 3), "ci": [round(h["ci_lo"], 3), round(h["ci_hi"], 3)],
            "n": ev.n["test"]}


def accuracy(args) -> dict:
    work = Path(args.workdir)
    t0 = time.perf_counter()
    m = make_synthetic_fullfield(work / "data", n_patients=args.patients, size=args.size, seed=args.seed)
    m = assign_splits(m, (0.5, 0.2, 0.3), seed=args.seed)
    t_data = time.perf_counter() - t0
    df = m.df
    cache = work / "cache"
    t0 = time.perf_counter()
    glob = embed_manifest(m, BACKBONE, cache_dir=cache, device=args.device, progress=False)
    t_global = time.perf_counter() - t0
    spec = TileSpec(size=224, overlap=0.25, scale=args.scale, max_tiles=args.max_tiles, min_tissue=0.25, pool="bag")
    t0 = time.perf_counter()
    tiles = embed_tiles(m, BACKBONE, spec, cache_dir=cache, device=args.device, progress=False)
    t_tiles = time.perf_counter() - t0
    assert glob.ids == tiles.ids == df["id"].tolist(), "every image must embed"
    split = df["split"].to_numpy()
    y = df["label"].to_numpy()
    parts = {s: split == s for s in ("train", "val", "test")}

    def fit_predict(name: str, X: np.ndarray, head) -> dict:
        tr, va, te = parts["train"], parts["val"], parts["test"]
        t = time.perf_counter()
        head.fit(X[tr], y[tr], X[va], y[va])
        fit_s = time.perf_counter() - t
        proba = head.predict_proba(X[te])
        pred = make_predictions(ids=df["id"][te], y_true=y[te], proba=proba, classes=list(head.classes_),
                                method=name, split="test", patient_id=df["patient_id"][te])
        return {"image": _auc(pred, df, "image", args.n_boot), "breast": _auc(pred, df, "breast", args.n_boot),
                "fit_s": round(fit_s, 1)}

    probe = lambda: LinearProbe(Cs=tuple(np.logspace(-3, 3, 13)), refine=0, random_state=0)  # noqa: E731
    results = {
        "global + linear probe": fit_predict("global", glob.X, probe()),
        "tiles mean + linear probe": fit_predict("tiles_mean", tiles.pooled("mean"), probe()),
        "tiles max + linear probe": fit_predict("tiles_max", tiles.pooled("max"), probe()),
        "tiles top-4 + linear probe": fit_predict("tiles_topk", tiles.pooled("topk", 4), probe()),
        "tiles + attention-MIL": fit_predict("tiles_mil", tiles.X, AttentionMILHead(
            tile_dim=glob.X.shape[1], epochs=60, patience=15, class_weight="balanced", random_state=0)),
    }
    n_tiles = [len(b) for b in tiles.bags]
    return {"benchmark": "tiles_fullfield", "backbone": BACKBONE, "device": args.device,
            "data": {"patients": args.patients, "images": len(df), "size": args.size, "seed": args.seed,
                     "split_images": {s: int(v.sum()) for s, v in parts.items()},
                     "malignant_images": int((y == "malignant").sum())},
            "tiles": {"spec": json.loads(spec.cache_key()), "per_image_median": float(np.median(n_tiles)),
                      "per_image_range": [int(min(n_tiles)), int(max(n_tiles))], "encoded": tiles.n_tiles},
            "seconds": {"data": round(t_data, 1), "embed_global": round(t_global, 1),
                        "embed_tiles": round(t_tiles, 1)},
            "results": results, "loadavg_1m": round(os.getloadavg()[0], 2)}


# ---- memory -------------------------------------------------------------------------------------------------
def _write_big(folder: Path, n: int) -> list[Path]:
    """4000x3000 16-bit greyscale PNGs: a textured breast on black (real mammograms are 12-16 bit at this size)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"big_{i}.png"
        if not p.is_file():
            rng = np.random.default_rng(i)
            yy, xx = np.mgrid[0:4000, 0:3000]
            inside = (xx / 2000.0) ** 2 + ((yy - 2000) / 1800.0) ** 2 <= 1
            img = np.where(inside, 20000 + rng.integers(0, 20000, (4000, 3000)), 0).astype(np.uint16)
            Image.fromarray(img).save(p)
        out.append(p)
    return out


def _rss_child(args) -> None:
    """Run in a fresh process: embed the big images, print the process's peak RSS (MB)."""
    from breastclip.data.manifest import Manifest

    paths = sorted(Path(args.workdir, "big").glob("big_*.png"))[:args.rss_images]
    m = Manifest.from_records([{"image": str(p), "label": "x"} for p in paths], args.workdir, name="big",
                              source="big")
    t = time.perf_counter()
    if args.rss_mode == "global":
        r = embed_manifest(m, BACKBONE, cache_dir=Path(args.workdir) / "rss-cache" / str(time.time_ns()),
                           device="cpu", progress=False, num_workers=args.rss_workers, pixel_cache="never")
    else:
        spec = TileSpec(size=224, overlap=0.25, scale=1.0, max_tiles=args.max_tiles, pool="mean")
        r = embed_tiles(m, BACKBONE, spec, cache_dir=Path(args.workdir) / "rss-cache" / str(time.time_ns()),
                        device="cpu", progress=False, num_workers=args.rss_workers)
    assert not r.failures, r.failures
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"peak_rss_mb": round(self_kb / 1024, 1), "peak_rss_workers_mb": round(kids_kb / 1024, 1),
                      "seconds": round(time.perf_counter() - t, 1), "images": len(paths)}))


def memory(args) -> dict:
    _write_big(Path(args.workdir) / "big", max(args.rss_sizes))
    rows = []
    for mode in ("global", "tiles"):
        for n in args.rss_sizes:
            cmd = [sys.executable, __file__, "--rss-child", "--rss-mode", mode, "--rss-images", str(n),
                   "--workdir", args.workdir, "--max-tiles", str(args.max_tiles), "--rss-workers",
                   str(args.rss_workers)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, check=True).stdout
            rows.append({"mode": mode, **json.loads(out.strip().splitlines()[-1])})
            print(rows[-1], flush=True)
    return {"benchmark": "tiles_fullfield_rss", "frame": "4000x3000 16-bit PNG", "max_tiles": args.max_tiles,
            "workers": args.rss_workers, "runs": rows, "loadavg_1m": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/tmp/breastclip-tiles-bench")
    ap.add_argument("--patients", type=int, default=60)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--max-tiles", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rss", action="store_true", help="peak-RSS figures on 4000x3000 frames instead")
    ap.add_argument("--rss-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[2, 8])
    ap.add_argument("--rss-workers", type=int, default=1)
    ap.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rss-mode", default="tiles", help=argparse.SUPPRESS)
    ap.add_argument("--rss-images", type=int, default=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        _rss_child(args)
        return
    figures = memory(args) if args.rss else accuracy(args)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
