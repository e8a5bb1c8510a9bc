"""Decode and leak-audit throughput: full decode vs the resized fast path, hashing with and without the cache.

Usage: PYTHONPATH=src python benchmarks/bench_images.py [--busi ../shared/data/busi/Dataset_BUSI_with_GT]
Prints one line per figure; the last line is one JSON object. Files are generated in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _mammo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth 12-bit breast-like image in a 16-bit container (a large, realistic decode workload)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    breast = np.clip(1 - ((xx / w) ** 2 + ((yy - h / 2) / (h / 2)) ** 2), 0, 1)
    noise = rng.standard_normal((h // 16, w // 16)).astype(np.float32)
    tex = np.asarray(Image.fromarray(noise).resize((w, h), Image.Resampling.BICUBIC))
    return np.clip((breast * 3000 + tex * 200 * breast), 0, 4095).astype(np.uint16)


def _time(fn, repeat: int) -> float:
    """Best of ``repeat`` runs after a warm-up, in ms (the minimum is robust to other load on shared machines)."""
    fn()  # warm-up (imports, caches)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000


def main() -> None:
    from breastclip.data.images import load_image, load_image_resized
    from breastclip.data.splits import assign_splits, audit_leaks
    from breastclip.data.synthetic import make_synthetic

    ap = argparse.ArgumentParser()
    ap.add_argument("--busi", type=Path, default=None)
    ap.add_argument("--size", type=int, default=448)
    args = ap.parse_args()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        m16 = _mammo_like(3328, 2560)
        Image.fromarray(m16).save(tmp / "mammo16.png")
        rgb8 = (m16 >> 4).astype(np.uint8)
        Image.fromarray(rgb8).convert("RGB").save(tmp / "mammo.jpg", quality=92)
        _write_dicom(tmp / "mammo.dcm", m16)
        for name in ("mammo.jpg", "mammo16.png", "mammo.dcm"):
            full = _time(lambda n=name: load_image(tmp / n), 3)
            fast = _time(lambda n=name: load_image_resized(tmp / n, args.size), 3)
            key = name.replace(".", "_")
            out[f"{key}_full_ms"], out[f"{key}_resized{args.size}_ms"] = round(full, 1), round(fast, 1)
            print(f"{name} 2560x3328: full decode {full:.1f} ms, resized to {args.size} {fast:.1f} ms "
                  f"({full / fast:.1f}x)")

        syn = make_synthetic(tmp / "syn", n_patients=200, images_per_patient=2, size=128, seed=0)
        split = assign_splits(syn)
        t = time.perf_counter()
        audit = audit_leaks(split, cache=tmp / "h.json")
        cold = time.perf_counter() - t
        t = time.perf_counter()
        audit_leaks(split, cache=tmp / "h.json")
        warm = time.perf_counter() - t
        out["audit_synthetic_400_cold_img_per_s"] = round(len(split) / cold, 1)
        out["audit_synthetic_400_cached_img_per_s"] = round(len(split) / warm, 1)
        print(f"leak audit, 400 synthetic 128px PNGs: {len(split) / cold:.0f} img/s cold, {len(split) / warm:.0f} "
              f"img/s with the hash cache (ok={audit.ok})")

    if args.busi is not None and args.busi.is_dir():
        from breastclip.data.manifest import Manifest

        files = sorted(p for p in args.busi.glob("*/*.png") if "_mask" not in p.name)
        m = Manifest.from_records([{"image": str(p.relative_to(args.busi)), "label": p.parent.name} for p in files],
                                  args.busi, name="busi", source="busi")
        t = time.perf_counter()
        audit = audit_leaks(assign_splits(m), workers=2)
        dt = time.perf_counter() - t
        out["audit_busi_img_per_s"] = round(len(m) / dt, 1)
        out["busi_near_duplicate_pairs_across_parts_naive_split"] = len(audit.near_duplicates)
        print(f"leak audit on BUSI ({len(m)} images, 2 threads): {len(m) / dt:.0f} img/s; naive split leaks "
              f"{len(audit.near_duplicates)} near-duplicate pairs and {len(audit.identical_images)} identical pairs")
    print(json.dumps(out))


def _write_dicom(path: Path, arr: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = arr.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


if __name__ == "__main__":
    main()
