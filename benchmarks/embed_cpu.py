"""CPU embedding benchmark: breastclip vs a naive notebook loop on the same real BUSI images, ViT-B/32 compute.

Measures, in one run:
  1. naive loop: per image PIL open -> open_clip preprocess -> ``encode_image`` on a batch of one (torch.no_grad);
  2. breastclip ``embed_manifest`` fp32 (batched, decoding workers, inference_mode, channels-last), fresh cache;
  3. the cached rerun of 2 (cost: hashing the files);
  4. reduced precision paths (int8 dynamic quantisation of Linear layers, bf16 autocast), each counted only if the
     minimum cosine similarity to fp32 over the images is >= 0.99;
  5. peak RSS of a fresh process embedding N1 vs N2 images (distinct-byte copies of BUSI, so nothing is deduplicated).

ViT-B/32 pretrained weights cannot be downloaded here: the open_clip ViT-B-32 architecture with random weights (seed
0) is saved as safetensors and loaded through breastclip's ``local:`` path (the naive loop loads the same file), which
costs exactly the same compute. Prints ONE JSON object on its last line.

    PYTHONPATH=src python benchmarks/embed_cpu.py --n 500
    PYTHONPATH=src python benchmarks/embed_cpu.py --n 100 --rss-sizes 500,5000 --rss-backbone tiny-test
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _embed_common import (
    DEFAULT_DATA,
    REPO,
    busi_paths,
    distinct_copies,
    machine,
    manifest_of,
    vit_b32_checkpoint,
)


def naive_loop(paths: list[Path], ckpt: Path):
    """What a notebook does: one image at a time, PIL + the model's own preprocess, batch of one."""
    import numpy as np
    import open_clip
    import torch
    from PIL import Image

    t0 = time.perf_counter()
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(ckpt))
    model.eval()
    out = []
    with torch.no_grad():
        for p in paths:
            x = preprocess(Image.open(p).convert("RGB")).unsqueeze(0)
            f = model.encode_image(x)
            out.append((f / f.norm(dim=-1, keepdim=True)).numpy()[0])
    return np.stack(out), time.perf_counter() - t0


def min_cosine(a, b) -> float:
    import numpy as np

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def rss_child(n: int, backbone: str, workdir: Path, data: Path) -> None:
    """Embed n distinct-byte BUSI copies in this fresh process; print peak RSS (MB) of it and of its workers."""
    from breastclip.backbones import embed_manifest

    src = busi_paths(data, 10_000)
    paths = distinct_copies(src, n, workdir / "copies")
    m = manifest_of(paths, name=f"rss{n}")
    if backbone == "vit-b32":
        backbone = f"local:{vit_b32_checkpoint(workdir)}"
    import threading

    import psutil

    me, peak_workers, stop = psutil.Process(), [0], threading.Event()

    def sample() -> None:  # workers are forked: their own high-water marks include the parent's pages, so sample
        while not stop.wait(0.2):
            try:
                peak_workers[0] = max(peak_workers[0], sum(c.memory_info().rss for c in me.children(recursive=True)))
            except psutil.Error:
                pass

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        res = embed_manifest(m, backbone, cache_dir=cache, progress=False, num_workers=1)
        secs = time.perf_counter() - t
    stop.set()
    assert len(res.ids) == n and res.n_computed == n, (len(res.ids), res.n_computed)
    print(json.dumps({"n": n, "peak_rss_mb": round(vm_hwm_mb(), 1),
                      "peak_worker_rss_mb": round(peak_workers[0] / 2**20, 1), "seconds": round(secs, 2)}))


def vm_hwm_mb() -> float:
    """Peak RSS of this process image (VmHWM; getrusage's ru_maxrss would include the launching parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500, help="BUSI images for the speed comparison (default 500)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "breastclip-bench")
    ap.add_argument("--naive-passes", type=int, default=2, choices=(1, 2),
                    help="2: time the naive loop before AND after breastclip and keep the faster pass (the machine "
                         "is shared, so load drifts; the faster naive pass makes the speedup conservative)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--num-workers", type=int, default=None)
    ap.add_argument("--precisions", default="int8,bf16", help="reduced-precision paths to try ('' for none)")
    ap.add_argument("--rss-sizes", default="500,5000", help="two image counts for the peak-RSS check ('' to skip)")
    ap.add_argument("--rss-backbone", default="vit-b32", help="vit-b32 (default), efficientnet-lite0 or tiny-test")
    ap.add_argument("--child-rss", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_rss is not None:
        rss_child(args.child_rss, args.rss_backbone, args.workdir, args.data)
        return

    from breastclip.backbones import embed_manifest

    figures: dict = {"benchmark": "embed_cpu", "machine": machine(), "n_images": None}
    paths = busi_paths(args.data, args.n)
    figures["n_images"] = len(paths)
    ckpt = vit_b32_checkpoint(args.workdir)
    backbone = f"local:{ckpt}"
    m = manifest_of(paths)

    X_naive, t_naive = naive_loop(paths, ckpt)
    naive_passes = [t_naive]
    print(f"naive loop: {len(paths)} images in {t_naive:.1f} s ({len(paths) / t_naive:.2f} img/s)", file=sys.stderr)

    kw = dict(batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        res = embed_manifest(m, backbone, cache_dir=cache, precision="fp32", **kw)
        t_first = time.perf_counter() - t
        t = time.perf_counter()
        again = embed_manifest(m, backbone, cache_dir=cache, precision="fp32", **kw)
        t_rerun = time.perf_counter() - t
    assert again.n_computed == 0 and (again.X == res.X).all()
    if args.naive_passes == 2:
        _, t2 = naive_loop(paths, ckpt)
        naive_passes.append(t2)
        print(f"naive loop, pass 2: {t2:.1f} s ({len(paths) / t2:.2f} img/s)", file=sys.stderr)
        t_naive = min(naive_passes)
    figures["naive_seconds_per_pass"] = [round(t, 2) for t in naive_passes]
    figures["naive_seconds"] = round(t_naive, 2)
    figures["naive_img_s"] = round(len(paths) / t_naive, 2)
    figures.update({
        "breastclip_fp32_seconds": round(t_first, 2), "breastclip_fp32_img_s": round(len(paths) / t_first, 2),
        "speedup_fp32_vs_naive": round(t_naive / t_first, 2),
        "min_cosine_fp32_vs_naive": round(min_cosine(res.X, X_naive), 6),
        "cached_rerun_seconds": round(t_rerun, 3), "cached_rerun_speedup": round(t_first / t_rerun, 1),
    })
    print(f"breastclip fp32: {t_first:.1f} s ({len(paths) / t_first:.2f} img/s), x{t_naive / t_first:.2f} vs naive; "
          f"cached rerun {t_rerun:.2f} s (x{t_first / t_rerun:.0f})", file=sys.stderr)

    best = ("fp32", t_first)
    for prec in [p for p in args.precisions.split(",") if p]:
        with tempfile.TemporaryDirectory() as cache:
            t = time.perf_counter()
            r = embed_manifest(m, backbone, cache_dir=cache, precision=prec, **kw)
            secs = time.perf_counter() - t
        cos = min_cosine(r.X, res.X)
        counts = cos >= 0.99
        figures[f"breastclip_{prec}_img_s"] = round(len(paths) / secs, 2)
        figures[f"min_cosine_{prec}_vs_fp32"] = round(cos, 6)
        figures[f"{prec}_counts"] = counts
        print(f"breastclip {prec}: {secs:.1f} s ({len(paths) / secs:.2f} img/s), min cosine vs fp32 {cos:.5f}",
              file=sys.stderr)
        if counts and secs < best[1]:
            best = (prec, secs)
    figures["best_path"] = best[0]
    figures["speedup_best_vs_naive"] = round(t_naive / best[1], 2)

    sizes = [int(s) for s in args.rss_sizes.split(",") if s]
    if sizes:
        rss = {}
        for n in sizes:
            cmd = [sys.executable, __file__, "--child-rss", str(n), "--rss-backbone", args.rss_backbone,
                   "--workdir", str(args.workdir), "--data", str(args.data)]
            env = {**__import__("os").environ, "PYTHONPATH": str(REPO / "src")}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            rss[n] = json.loads(out.strip().splitlines()[-1])
            print(f"rss {n}: {rss[n]}", file=sys.stderr)
        lo, hi = rss[sizes[0]], rss[sizes[-1]]
        figures["rss_backbone"] = args.rss_backbone
        figures["rss"] = {str(k): v for k, v in rss.items()}
        figures["rss_ratio"] = round(hi["peak_rss_mb"] / lo["peak_rss_mb"], 3)
    figures["targets"] = {
        "speedup_ge_3x": figures["speedup_best_vs_naive"] >= 3,
        "cached_rerun_ge_50x": figures["cached_rerun_speedup"] >= 50,
        "rss_ratio_le_1.2": figures.get("rss_ratio", float("inf")) <= 1.2 if sizes else None,
    }
    figures["machine"]["loadavg_1m_end"] = __import__("os").getloadavg()[0]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
