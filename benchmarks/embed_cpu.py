"""CPU embedding benchmark: breastclip vs a naive notebook loop on the same real BUSI images, ViT-B/32 compute.

Protocol (benchmarks/_protocol.py): the compared paths run interleaved in repeated rounds (ABBA order), each round
on the same ``--n`` images; each path is summarised by its median img/s and spread over rounds, the speedup both
per round (paired, same load) and as the ratio of medians; the load average is read at the start, after every
round and at the end, and no headline is printed when it exceeded the core count. Throughput is also given as a
fraction of this machine's fp32 matmul peak, measured in the same run.

Paths (both models are built once, outside the timed rounds; build times reported separately):
  naive       per image PIL open -> open_clip preprocess -> ``encode_image`` on a batch of one (torch.no_grad);
  fp32        breastclip ``embed_manifest`` into a fresh cache (hashing, decoding worker, batches, inference_mode,
              channels-last);
  int8/bf16   the same with ``precision="int8"`` / ``"bf16"`` (``--precisions``), counted only if the minimum cosine
              to fp32 is >= 0.99.
Then, once: the cached rerun of fp32, and (``--rss-sizes``) the peak RSS of a fresh process embedding N1 vs N2 images.

ViT-B/32 pretrained weights cannot be downloaded here: the open_clip ViT-B-32 architecture with random weights (seed
0) is saved as safetensors and loaded through breastclip's ``local:`` path (the naive loop loads the same file), which
costs exactly the same compute. Prints ONE JSON object on its last line.

    PYTHONPATH=src python benchmarks/embed_cpu.py --n 100 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
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
    flops_per_image,
    machine,
    manifest_of,
    vit_b32_checkpoint,
)
from _protocol import Interleaved, fp32_peak_gflops, headline, load_1m, load_verdict


def naive_model(ckpt: Path):
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(ckpt))
    return model.eval(), preprocess


def naive_loop(paths: list[Path], model, preprocess):
    """What a notebook does: one image at a time, PIL + the model's own preprocess, batch of one."""
    import numpy as np
    import torch
    from PIL import Image

    out = []
    with torch.no_grad():
        for p in paths:
            x = preprocess(Image.open(p).convert("RGB")).unsqueeze(0)
            f = model.encode_image(x)
            out.append((f / f.norm(dim=-1, keepdim=True)).numpy()[0])
    return np.stack(out)


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
    ap.add_argument("--n", type=int, default=100, help="BUSI images per path per round (default 100)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "breastclip-bench")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--num-workers", type=int, default=None)
    ap.add_argument("--precisions", default="int8", help="reduced-precision paths to interleave too ('' for none)")
    ap.add_argument("--rss-sizes", default="", help="two image counts for the peak-RSS check, e.g. 500,5000")
    ap.add_argument("--rss-backbone", default="vit-b32", help="vit-b32 (default), efficientnet-lite0 or tiny-test")
    ap.add_argument("--child-rss", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_rss is not None:
        rss_child(args.child_rss, args.rss_backbone, args.workdir, args.data)
        return

    from breastclip.backbones import create_backbone, embed_manifest

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    figures: dict = {"benchmark": "embed_cpu", "machine": machine(), "protocol": "interleaved ABBA rounds"}
    load_start = load_1m()
    paths = busi_paths(args.data, args.n)
    m = manifest_of(paths)
    figures.update({"n_images_per_round": len(paths), "rounds": args.rounds})
    peak = fp32_peak_gflops()
    log(f"fp32 matmul peak: {peak}")
    ckpt = vit_b32_checkpoint(args.workdir)
    backbone = f"local:{ckpt}"

    t = time.perf_counter()
    n_model, n_pre = naive_model(ckpt)
    t_build_naive = time.perf_counter() - t
    models = {}
    t_build = {}
    for prec in ["fp32"] + [p for p in args.precisions.split(",") if p]:
        t = time.perf_counter()
        models[prec] = create_backbone(backbone, "cpu", precision=prec)
        t_build[prec] = round(time.perf_counter() - t, 2)
    figures["build_seconds"] = {"naive": round(t_build_naive, 2), **t_build}
    gflop = flops_per_image(models["fp32"]) / 1e9
    figures["gflop_per_image"] = round(gflop, 3)

    kw = dict(batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
    outputs: dict = {}

    def naive() -> int:
        outputs["naive"] = naive_loop(paths, n_model, n_pre)
        return len(paths)

    def library(prec: str):
        def run() -> int:
            with tempfile.TemporaryDirectory() as cache:
                res = embed_manifest(m, models[prec], cache_dir=cache, **kw)
            assert res.n_computed == len(paths) and not res.failures, (res.n_computed, res.failures[:2])
            outputs[prec] = res.X
            return len(paths)
        return run

    runs = {"naive": naive, **{f"breastclip_{p}": library(p) for p in models}}
    il = Interleaved(runs, rounds=args.rounds, log=log).run()
    summary = il.summary()
    for s in summary.values():
        s["fraction_of_fp32_peak"] = round(s["per_s"]["median"] * gflop / peak["best_gflops"], 3)
    figures["paths"] = summary
    figures["speedup_fp32_vs_naive"] = il.ratio("breastclip_fp32", "naive")
    figures["min_cosine_fp32_vs_naive"] = round(min_cosine(outputs["fp32"], outputs["naive"]), 6)
    best = "breastclip_fp32"
    for prec in models:
        if prec == "fp32":
            continue
        cos = min_cosine(outputs[prec], outputs["fp32"])
        figures[f"min_cosine_{prec}_vs_fp32"] = round(cos, 6)
        figures[f"speedup_{prec}_vs_naive"] = il.ratio(f"breastclip_{prec}", "naive")
        figures[f"{prec}_counts"] = cos >= 0.99
        if cos >= 0.99 and il.ratio(f"breastclip_{prec}", best)["of_medians"] > 1:
            best = f"breastclip_{prec}"
    figures["best_path"] = best
    figures["fp32_peak"] = peak

    # cached rerun (once; the model is already built, so this is hashing + index read)
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        res = embed_manifest(m, models["fp32"], cache_dir=cache, **kw)
        t_first = time.perf_counter() - t
        t = time.perf_counter()
        again = embed_manifest(m, models["fp32"], cache_dir=cache, **kw)
        t_rerun = time.perf_counter() - t
    assert again.n_computed == 0 and (again.X == res.X).all()
    figures.update({"cached_rerun_seconds": round(t_rerun, 3), "cached_rerun_speedup": round(t_first / t_rerun, 1)})

    sizes = [int(s) for s in args.rss_sizes.split(",") if s]
    if sizes:
        rss = {}
        for n in sizes:
            cmd = [sys.executable, __file__, "--child-rss", str(n), "--rss-backbone", args.rss_backbone,
                   "--workdir", str(args.workdir), "--data", str(args.data)]
            env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            rss[n] = json.loads(out.strip().splitlines()[-1])
            log(f"rss {n}: {rss[n]}")
        lo, hi = rss[sizes[0]], rss[sizes[-1]]
        figures["rss_backbone"] = args.rss_backbone
        figures["rss"] = {str(k): v for k, v in rss.items()}
        figures["rss_ratio"] = round(hi["peak_rss_mb"] / lo["peak_rss_mb"], 3)

    verdict = load_verdict([load_start, *il.loads, load_1m()])
    figures["load"] = verdict
    sp = figures["speedup_fp32_vs_naive"]["paired"]
    figures["headline"] = headline(
        verdict, f"breastclip fp32 is {sp['median']:.2f}x the naive loop (paired median over {args.rounds} rounds, "
                 f"range {sp['min']:.2f}-{sp['max']:.2f}), ViT-B/32 on {verdict['cores']} cores")
    if figures["headline"] is None:
        log(f"NO HEADLINE: {verdict['refused_because']}")
    else:
        log(figures["headline"])
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
