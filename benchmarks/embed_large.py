"""Full-field mammograms end to end: breastclip's embedding path vs the naive notebook loop, and where the time goes.

Inputs (benchmarks/_large_inputs.py, made once in a temporary folder from the real NYU 16-bit PNGs of
../shared/data/mammography_samples, never committed): 3072x3994 16-bit greyscale PNG, uncompressed DICOM, RLE
Lossless DICOM and JPEG 2000 lossless DICOM (the last when Pillow has OpenJPEG), all MONOCHROME2 with a VOI window.

Paths, interleaved in ABBA rounds on the same files (benchmarks/_protocol.py: medians, spreads, load average, no
headline above the core count):
  naive       per file: PIL (PNG) or pydicom ``pixel_array`` + ``apply_voi_lut`` (DICOM), min-max to 8 bit,
              ``Image.fromarray(...).convert("RGB")``, open_clip's own ``preprocess``, ``encode_image`` on a batch
              of one, under ``torch.no_grad``;
  breastclip  ``embed_manifest`` into a fresh cache (hashing; decoding in a DataLoader worker at reduced
              resolution: JPEG 2000 resolution levels, uint16 area averaging before the 8-bit map; batches;
              inference_mode; the uint8 pixel cache filled for DICOM).
Both models are the open_clip ViT-B-32 architecture with the same random weights (seed 0; the pretrained weights
cannot be downloaded here, the compute is the same), built once outside the rounds.

Then, once each: where the time goes (decode / resize / model per image, each stage timed alone on every file,
medians) and a rerun after the embedding cache is deleted (a second backbone with the same input geometry): the
pixel cache skips decoding. Prints ONE JSON object on its last line, with ``speedup_e2e_vs_naive``.

    PYTHONPATH=src python benchmarks/embed_large.py --quick        # < 3 minutes on a quiet 2-core machine
    PYTHONPATH=src python benchmarks/embed_large.py --n-per-kind 8 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _embed_common import DEFAULT_DATA, flops_per_image, machine, vit_b32_checkpoint
from _large_inputs import j2k_available, make_inputs
from _protocol import Interleaved, fp32_peak_gflops, headline, load_1m, load_verdict


def _naive_pixels(path: Path) -> np.ndarray:
    """What a notebook does to get 8-bit pixels: PIL for PNG, pydicom + its VOI LUT for DICOM, then min-max."""
    if path.suffix == ".dcm":
        import pydicom
        from pydicom.pixels import apply_voi_lut

        ds = pydicom.dcmread(path)
        a = apply_voi_lut(ds.pixel_array, ds).astype(np.float32)
    else:
        from PIL import Image

        a = np.asarray(Image.open(path)).astype(np.float32)
    a = (a - a.min()) / max(float(a.max() - a.min()), 1e-6) * 255.0
    return a.astype(np.uint8)


def naive_one(path: Path, model, preprocess):
    import torch
    from PIL import Image

    x = preprocess(Image.fromarray(_naive_pixels(path)).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        f = model.encode_image(x)
    return (f / f.norm(dim=-1, keepdim=True)).numpy()[0]


def stage_times(files: list[Path], naive_model, naive_pre, bc_model) -> dict:
    """Per image, each stage timed alone (sequentially, one file at a time), medians over the files of a kind."""
    import torch
    from PIL import Image

    from breastclip.backbones.preprocess import resize_crop
    from breastclip.data.images import load_image_resized

    out: dict = {}
    for kind in sorted({f.name.split("_")[0] for f in files}):
        t: dict[str, list[float]] = {k: [] for k in ("naive_decode", "naive_preprocess", "naive_model",
                                                      "bc_decode_reduced", "bc_resize_crop", "bc_model_per_image")}
        xs = []
        for f in [f for f in files if f.name.split("_")[0] == kind]:
            s = time.perf_counter()
            px = _naive_pixels(f)
            t["naive_decode"].append(time.perf_counter() - s)
            s = time.perf_counter()
            x = naive_pre(Image.fromarray(px).convert("RGB")).unsqueeze(0)
            t["naive_preprocess"].append(time.perf_counter() - s)
            s = time.perf_counter()
            with torch.no_grad():
                naive_model.encode_image(x)
            t["naive_model"].append(time.perf_counter() - s)
            s = time.perf_counter()
            small = load_image_resized(f, bc_model.entry.image_size)
            t["bc_decode_reduced"].append(time.perf_counter() - s)
            s = time.perf_counter()
            xs.append(resize_crop(small, bc_model.entry))
            t["bc_resize_crop"].append(time.perf_counter() - s)
        batch = torch.from_numpy(np.stack(xs))
        s = time.perf_counter()
        bc_model.encode_tensor(batch)
        t["bc_model_per_image"].append((time.perf_counter() - s) / len(xs))
        out[kind] = {k: round(statistics.median(v) * 1000, 1) for k, v in t.items()}  # ms per image
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 files per kind, 2 rounds (under 3 minutes quietly)")
    ap.add_argument("--n-per-kind", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kinds", default="png16,dcm-raw,dcm-rle,dcm-j2k")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "breastclip-bench")
    ap.add_argument("--num-workers", type=int, default=None, help="breastclip decoding workers (default: automatic)")
    ap.add_argument("--batch-size", type=int, default=None)
    args = ap.parse_args()
    if args.quick:
        args.n_per_kind, args.rounds = 2, 2

    import open_clip

    from breastclip.backbones import create_backbone, embed_manifest
    from breastclip.data.manifest import Manifest

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    t_all = time.perf_counter()
    load_start = load_1m()
    kinds = [k for k in args.kinds.split(",") if k]
    if "dcm-j2k" in kinds and not j2k_available():
        kinds.remove("dcm-j2k")
        log("Pillow has no OpenJPEG: JPEG 2000 DICOM inputs skipped")
    figures: dict = {"benchmark": "embed_large", "machine": machine(), "protocol": "interleaved ABBA rounds",
                     "research_only": True}
    t = time.perf_counter()
    inputs = make_inputs(args.data, args.workdir / "large", args.n_per_kind, kinds)
    figures["inputs_seconds"] = round(time.perf_counter() - t, 1)
    files = [p for k in kinds for p in inputs[k]]
    figures["inputs"] = {"kinds": kinds, "per_kind": args.n_per_kind, "shape": "3994x3072 uint16",
                         "mb_per_file": {k: round(statistics.mean(p.stat().st_size for p in inputs[k]) / 1e6, 2)
                                         for k in kinds}}
    peak = fp32_peak_gflops()
    log(f"inputs ready ({len(files)} files); fp32 matmul peak {peak}")

    ckpt = vit_b32_checkpoint(args.workdir)
    n_model, _, n_pre = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(ckpt))
    n_model.eval()
    bc = create_backbone(f"local:{ckpt}", "cpu", precision="fp32")
    gflop = flops_per_image(bc) / 1e9
    m = Manifest.from_records([{"id": p.name, "image": str(p), "label": "x"} for p in files], "/", name="large",
                              source="bench")
    kw = dict(num_workers=args.num_workers, batch_size=args.batch_size, progress=False)
    outputs: dict = {}

    def naive() -> int:
        outputs["naive"] = np.stack([naive_one(p, n_model, n_pre) for p in files])
        return len(files)

    def breastclip() -> int:
        with tempfile.TemporaryDirectory() as cache:
            res = embed_manifest(m, bc, cache_dir=cache, **kw)
        assert res.n_computed == len(files) and not res.failures, res.failures[:2]
        outputs["breastclip"] = res.X
        return len(files)

    il = Interleaved({"naive": naive, "breastclip": breastclip}, rounds=args.rounds, log=log).run()
    summary = il.summary()
    for s in summary.values():
        s["fraction_of_fp32_peak"] = round(s["per_s"]["median"] * gflop / peak["best_gflops"], 4)
    ratio = il.ratio("breastclip", "naive")
    cos = (outputs["naive"] * outputs["breastclip"]).sum(1)
    figures.update({"paths": summary, "speedup_e2e_vs_naive": ratio["paired"]["median"],
                    "speedup_e2e_vs_naive_spread": ratio, "naive_img_s": summary["naive"]["per_s"]["median"],
                    "breastclip_img_s": summary["breastclip"]["per_s"]["median"],
                    "cosine_breastclip_vs_naive": {"min": round(float(cos.min()), 5),
                                                   "median": round(float(np.median(cos)), 5)},
                    "gflop_per_image": round(gflop, 3), "fp32_peak": peak})

    # where the time goes, stage by stage (sequential, one file at a time)
    figures["ms_per_image_by_stage"] = stage_times(files, n_model, n_pre, bc)

    # rerun with the pixel cache: the embedding cache is gone (or another backbone has the same geometry)
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        embed_manifest(m, bc, cache_dir=cache, pixel_cache="always", **kw)
        first = time.perf_counter() - t
        shutil.rmtree(Path(cache) / "embeddings")
        t = time.perf_counter()
        again = embed_manifest(m, bc, cache_dir=cache, pixel_cache="always", **kw)
        rerun = time.perf_counter() - t
    assert again.n_computed == len(files)
    figures["pixel_cache_rerun"] = {"first_img_s": round(len(files) / first, 3),
                                    "rerun_img_s": round(len(files) / rerun, 3),
                                    "speedup": round(first / rerun, 2)}

    verdict = load_verdict([load_start, *il.loads, load_1m()])
    figures["load"] = verdict
    sp = ratio["paired"]
    figures["headline"] = headline(
        verdict, f"full-field inputs end to end: breastclip {sp['median']:.2f}x the naive loop (paired median of "
                 f"{args.rounds} rounds, range {sp['min']:.2f}-{sp['max']:.2f}), ViT-B/32, {verdict['cores']} cores")
    log(figures["headline"] or f"NO HEADLINE: {verdict['refused_because']}")
    figures["targets"] = {"speedup_e2e_ge_3x": sp["median"] >= 3}
    figures["seconds_total"] = round(time.perf_counter() - t_all, 1)
    figures["note"] = "Research use only, not for diagnosis. Figures from a shared machine: read them with 'load'."
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
