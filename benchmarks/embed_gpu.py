"""GPU embedding benchmark (run it on a machine with an NVIDIA GPU): ViT-B/32 bf16 throughput.

Figures:
  1. ``cache_img_s``: images/s from the preprocessed uint8 cache (no decoding): uint8 batches in pinned host memory
     -> non-blocking H2D copy -> normalisation on the device -> bf16-autocast channels-last forward -> L2 norm ->
     D2H of the embeddings, exactly the path ``embed_manifest`` takes after its DataLoader. Target >= 25,000 on H100.
  2. ``e2e_img_s``: end to end from PNG/JPEG files with ``embed_manifest`` (hash, decode in workers, encode, commit
     to a fresh cache), on distinct-byte copies of real BUSI PNGs and JPEG re-encodings of them.
  3. ``tflops``: achieved TFLOP/s of (1) from the forward FLOPs counted by torch.utils.flop_counter, and the fraction
     of the 989 TFLOP/s dense bf16 peak of an H100 SXM.

Pretrained ViT-B/32 weights may be unreachable: the open_clip ViT-B-32 architecture with random weights (same
compute) is saved as safetensors and loaded through ``local:``. Prints ONE JSON object on its last line.

    PYTHONPATH=src python benchmarks/embed_gpu.py                       # defaults sized for an H100
    PYTHONPATH=src python benchmarks/embed_gpu.py --device cpu --precision fp32 --n-cache 64 --iters 2 --n-files 64
        (a smoke run of the same code on CPU; its numbers mean nothing)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _embed_common import (
    DEFAULT_DATA,
    busi_paths,
    distinct_copies,
    flops_per_image,
    machine,
    manifest_of,
    vit_b32_checkpoint,
)

H100_BF16_DENSE_TFLOPS = 989.0


def gpu_info(device) -> dict:
    import torch

    if device.type != "cuda":
        return {"gpu": None}
    p = torch.cuda.get_device_properties(device)
    return {"gpu": p.name, "gpu_mem_gb": round(p.total_memory / 2**30, 1), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}


def preprocessed_cache(backbone: str, paths: list[Path], n: int, workdir: Path, device: str):
    """Fill breastclip's uint8 pixel cache for the files (pixel_cache='always'), then read the resized copies back
    into one pinned (n, 3, 224, 224) uint8 tensor, cycling the files up to n images."""
    import numpy as np
    import torch

    from breastclip.backbones import embed_manifest, get_entry
    from breastclip.backbones.cache import PixelCache
    from breastclip.backbones.hashing import file_hash
    from breastclip.backbones.preprocess import spec_key

    cache_dir = workdir / "gpu-cache"
    embed_manifest(manifest_of(paths, "pixels"), backbone, cache_dir=cache_dir, device=device, pixel_cache="always",
                   progress=False)
    pix = PixelCache(cache_dir, spec_key(get_entry(backbone)))
    arrays = [pix.get(file_hash(p)) for p in paths]
    arrays = [a for a in arrays if a is not None]
    if not arrays:
        raise SystemExit("pixel cache is empty after embedding: cannot run the cache benchmark")
    stack = np.stack([arrays[i % len(arrays)] for i in range(n)])
    x = torch.from_numpy(stack)
    return x.pin_memory() if torch.cuda.is_available() else x


def cache_throughput(model, x_host, batch_size: int, iters: int) -> tuple[float, int]:
    """Images/s over ``iters`` passes through the pinned uint8 tensor; embeddings copied back like the real loop."""
    import torch

    dev = model.device
    cuda = dev.type == "cuda"
    n = len(x_host)
    host_out = torch.empty((batch_size, model.entry.embed_dim), pin_memory=cuda)
    # warm-up: kernel selection, autocast weight casts, allocator
    for s in range(0, min(n, 3 * batch_size), batch_size):
        model.encode_tensor(x_host[s:s + batch_size])
    if cuda:
        torch.cuda.synchronize(dev)
    done = 0
    t = time.perf_counter()
    for _ in range(iters):
        for s in range(0, n, batch_size):
            xb = x_host[s:s + batch_size]
            feats = model.encode_tensor(xb)  # H2D non_blocking from pinned memory, normalise on device, forward
            host_out[:len(xb)].copy_(feats, non_blocking=cuda)
            done += len(xb)
    if cuda:
        torch.cuda.synchronize(dev)
    return done / (time.perf_counter() - t), done


def jpeg_copies(src: list[Path], n: int, folder: Path) -> list[Path]:
    """n JPEG re-encodings cycling through ``src``; a distinct COM comment each, so no two share a content hash."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        q = folder / f"{i:05d}.jpg"
        if not q.is_file():
            Image.open(src[i % len(src)]).convert("RGB").save(q, quality=92, comment=f"copy {i}")
        out.append(q)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "breastclip-bench")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--n-cache", type=int, default=8192, help="images held in the pinned uint8 tensor")
    ap.add_argument("--iters", type=int, default=6, help="passes over them for the cache figure")
    ap.add_argument("--n-files", type=int, default=5000, help="PNG+JPEG files for the end-to-end figure")
    ap.add_argument("--num-workers", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile the image tower (reported separately)")
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS,
                    help="dense bf16 peak of the GPU used, for the fraction-of-peak figure (default: H100 SXM 989)")
    args = ap.parse_args()

    import torch

    from breastclip.backbones import create_backbone, embed_manifest

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs an NVIDIA GPU (use --device cpu only for a smoke run)")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    figures: dict = {"benchmark": "embed_gpu", "machine": {**machine(), **gpu_info(dev)}, "precision": args.precision,
                     "batch_size": args.batch_size}
    ckpt = vit_b32_checkpoint(args.workdir)
    backbone = f"local:{ckpt}"
    busi = busi_paths(args.data, 10_000)

    # 1. from the preprocessed uint8 cache
    x_host = preprocessed_cache(backbone, busi[:args.n_cache], args.n_cache, args.workdir, args.device)
    model = create_backbone(backbone, device=dev, precision=args.precision)
    img_s, n_done = cache_throughput(model, x_host, args.batch_size, args.iters)
    fl = flops_per_image(model)
    figures.update({"cache_img_s": round(img_s, 1), "cache_images": n_done, "gflops_per_image": round(fl / 1e9, 3),
                    "tflops": round(img_s * fl / 1e12, 1),
                    "peak_tflops_assumed": args.peak_tflops,
                    "fraction_of_peak": round(img_s * fl / 1e12 / args.peak_tflops, 4)})
    print(f"cache: {img_s:,.0f} img/s, {img_s * fl / 1e12:.1f} TFLOP/s", file=sys.stderr)
    if args.compile:
        try:
            model._image_forward = torch.compile(model._image_forward, mode="max-autotune-no-cudagraphs")
            c_img_s, _ = cache_throughput(model, x_host, args.batch_size, args.iters)
            figures.update({"cache_img_s_compiled": round(c_img_s, 1), "tflops_compiled": round(c_img_s * fl / 1e12, 1)})
            print(f"cache, torch.compile: {c_img_s:,.0f} img/s", file=sys.stderr)
        except Exception as e:  # report, do not hide
            figures["compile_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    del x_host

    # 2. end to end from files: half PNG (distinct-byte copies), half JPEG re-encodings
    n_png = args.n_files // 2
    pngs = distinct_copies(busi, n_png, args.workdir / "copies")
    jpgs = jpeg_copies(busi, args.n_files - n_png, args.workdir / "jpeg")
    m = manifest_of(pngs + jpgs, "e2e")
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        res = embed_manifest(m, model, cache_dir=cache, num_workers=args.num_workers, batch_size=args.batch_size,
                             progress=False, pixel_cache="never")
        secs = time.perf_counter() - t
    assert res.n_computed == len(m) and not res.failures, (res.n_computed, res.failures[:3])
    figures.update({"e2e_img_s": round(len(m) / secs, 1), "e2e_images": len(m), "e2e_seconds": round(secs, 2)})
    print(f"end to end: {len(m) / secs:,.0f} img/s over {len(m)} files", file=sys.stderr)
    figures["targets"] = {"cache_ge_25000_img_s_on_h100": img_s >= 25_000}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
