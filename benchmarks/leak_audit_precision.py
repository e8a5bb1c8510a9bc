"""Precision and recall of the leak audit's near-duplicate detector on a constructed benchmark of real images.

Originals: every real mammogram in ../shared/data/mammography_samples (CBIS-DDSM DICOM crops, NYU 16-bit PNGs,
Mayo JPEGs), the BreakHis samples and the medical/non-medical set (X-ray, CT, MR, ultrasound, photos). Copies,
written as files: JPEG re-encode (quality 70), resize to 50 %, left-right flip, rotation by 90 degrees, and, for
the full-field mammograms, the image padded into a black canvas 1.6-2.5x its size at a random offset (the way
digitised film sets look), also re-encoded as JPEG. Ground truth: an original and its copies (and copies among
themselves) are duplicates; NYU GMIC's cropped images and its downsampled originals are the same scans, so they are
duplicates too, and so are the medical/non-medical set's histology images, which are BreakHis files; every other
pair (other women, other views of one exam) is not.

Detectors compared on the same files: the audit's current detector (content crop + pHash + detail verification,
``breastclip.data.leaks``) and the previous one (whole-image 8x8 pHash at distance <= 8 with flips), re-implemented
here. BUSI: of the 216 image pairs the previous detector found among BUSI's 780 images (copies of one scan under
other names, spot-checked by eye), how many the current detector still finds.

Prints one JSON object on its last line. Research use only.

    PYTHONPATH=src python benchmarks/leak_audit_precision.py [--data ../shared/data] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from breastclip.data import leaks
from breastclip.data.images import load_image, load_image_resized

TRANSFORMS = ("jpeg", "resize", "flip", "rot90")
OLD_THUMB = 64


def _save(arr: np.ndarray, path: Path, jpeg: bool = False) -> None:
    im = Image.fromarray(arr)
    if jpeg:
        im.convert("RGB").save(path, quality=70)
    else:
        im.save(path)


def build(data: Path, work: Path, seed: int) -> tuple[list[Path], list[str], list[str]]:
    """Files, their group ids (same group = duplicates) and their kinds (original or the copy's transform)."""
    rng = np.random.default_rng(seed)
    mammo = pd.read_csv(data / "mammography_samples" / "labels.csv")
    originals: list[tuple[Path, str, bool]] = []  # (path, group, full-field mammogram)
    for _, r in mammo.iterrows():
        group = f"mammo:{r['path']}"
        if "gmic/" in r["path"]:  # cropped_images and images hold the same four scans
            group = f"gmic:{Path(r['path']).stem}"
        originals.append((data / "mammography_samples" / r["path"], group, r["kind"].startswith("full_field")))
    for p in sorted((data / "breakhis_samples").rglob("*.png")):
        originals.append((p, f"breakhis:{p.name}", False))
    mvn = data / "medical_vs_nonmedical"
    for p in sorted(mvn.rglob("*")):
        if p.suffix.lower() in (".png", ".jpg", ".jpeg") and "original_dicom" not in p.parts:
            # the set's histology images are BreakHis files (histo_<BreakHis name>): the same images, duplicates
            group = f"breakhis:{p.name[6:]}" if p.name.startswith("histo_SOB_") else f"mvn:{p.relative_to(mvn)}"
            originals.append((p, group, False))
    files, groups, kinds = [], [], []
    for i, (path, group, full) in enumerate(originals):
        files.append(path)
        groups.append(group)
        kinds.append("original")
        img = load_image(path)
        if max(img.shape[:2]) > 2048:  # keep the benchmark's files moderate: copies from a 2048-px version
            im = Image.fromarray(img)
            im.thumbnail((2048, 2048))
            img = np.asarray(im)
        stem = work / f"{i:03d}"
        variants = {
            "jpeg": (img, True),
            "resize": (np.asarray(Image.fromarray(img).resize((img.shape[1] // 2, img.shape[0] // 2),
                                                              Image.Resampling.BICUBIC)), False),
            "flip": (np.ascontiguousarray(img[:, ::-1]), False),
            "rot90": (np.ascontiguousarray(np.rot90(img)), False),
        }
        if full:
            h, w = img.shape[:2]
            fh, fw = rng.uniform(1.6, 2.5, size=2)
            canvas = np.zeros((int(h * fh), int(w * fw), 3), np.uint8)
            y, x = rng.integers(0, canvas.shape[0] - h), rng.integers(0, canvas.shape[1] - w)
            canvas[y:y + h, x:x + w] = img
            variants["pad"] = (canvas, False)
            variants["pad_jpeg"] = (canvas, True)
        for name, (arr, jpeg) in variants.items():
            out = stem.with_name(f"{stem.name}_{name}.{'jpg' if jpeg else 'png'}")
            _save(arr, out, jpeg)
            files.append(out)
            groups.append(group)
            kinds.append(name)
    return files, groups, kinds


def old_pairs(files: list[Path]) -> set[tuple[int, int]]:
    """The previous detector: whole-image 8x8 pHash (and its 7 flips/rotations), distance <= 8."""
    ops = [getattr(Image.Transpose, t.upper()) for t in leaks.TRANSFORMS]
    hashes = []
    for p in files:
        im = Image.fromarray(load_image_resized(p, OLD_THUMB)).convert("L")
        hashes.append([imagehash.phash(x) for x in [im, *(im.transpose(op) for op in ops)]])
    out = set()
    for i, j in itertools.combinations(range(len(files)), 2):
        if min(hashes[i][0] - h for h in hashes[j]) <= leaks.DEFAULT_MAX_DISTANCE:
            out.add((i, j))
    return out


def new_pairs(files: list[Path], workers: int) -> set[tuple[int, int]]:
    fps, failures = leaks.fingerprint_files(files, hash_size=8, sha_all=True, workers=workers)
    if failures:
        raise SystemExit(f"unreadable benchmark files: {failures}")
    ids = np.array([f"{i:05d}" for i in range(len(files))])
    near = leaks._near_pairs(fps, ids, np.full(len(files), ""), leaks.DEFAULT_MAX_DISTANCE, 8)
    pairs = {(int(p["a"]), int(p["b"])) for p in near}
    by_sha: dict[str, list[int]] = {}
    for i, fp in enumerate(fps):
        by_sha.setdefault(fp.sha256 or f"none{i}", []).append(i)
    for idx in by_sha.values():
        pairs.update(itertools.combinations(sorted(idx), 2))
    return pairs


def score(pred: set[tuple[int, int]], groups: list[str], kinds: list[str]) -> dict:
    truth = {(i, j) for i, j in itertools.combinations(range(len(groups)), 2) if groups[i] == groups[j]}
    tp = len(pred & truth)
    out = {"pairs_true": len(truth), "flagged": len(pred), "true_positives": tp, "false_positives": len(pred - truth),
           "precision": round(tp / len(pred), 4) if pred else None, "recall": round(tp / len(truth), 4)}
    per = {}
    for k in ("original", *TRANSFORMS, "pad", "pad_jpeg"):
        rel = {(i, j) for i, j in truth if {kinds[i], kinds[j]} == {"original", k} or (k == "original" and
                                                                                     kinds[i] == kinds[j] == k)}
        if rel:
            per[k] = {"pairs": len(rel), "found": len(rel & pred)}
    out["recall_by_copy"] = per
    fp_examples = sorted(pred - truth)[:8]
    out["false_positive_examples"] = [(groups[i], kinds[i], groups[j], kinds[j]) for i, j in fp_examples]
    return out


def busi(data: Path, workers: int) -> dict:
    root = data / "busi" / "Dataset_BUSI_with_GT"
    files = sorted(p for p in root.glob("*/*.png") if "_mask" not in p.name)
    old = old_pairs(files)
    new = new_pairs(files, workers)
    return {"images": len(files), "pairs_previous_detector": len(old), "still_found": len(old & new),
            "pairs_current_detector": len(new), "new_only": len(new - old)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        files, groups, kinds = build(args.data, Path(tmp), args.seed)
        current = score(new_pairs(files, args.workers), groups, kinds)
        previous = score(old_pairs(files), groups, kinds)
    result = {
        "benchmark": "leak_audit_precision", "seed": args.seed, "files": len(files),
        "originals": kinds.count("original"), "current_detector": current, "previous_detector": previous,
        "busi": busi(args.data, args.workers), "seconds": round(time.perf_counter() - t0, 1),
        "load_average_start": [round(x, 2) for x in load], "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "note": "research use only; accuracy figures, not timings (the machine was shared)",
    }
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
