"""Shared helpers for the embedding benchmarks: BUSI file list, random ViT-B/32 checkpoint, distinct-byte copies."""

from __future__ import annotations

import json
import os
import platform
import struct
import subprocess
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("BREASTCLIP_SHARED_DATA", REPO.parent / "shared" / "data"))


def busi_paths(data: Path, n: int) -> list[Path]:
    folder = data / "busi" / "Dataset_BUSI_with_GT"
    paths = sorted(p for p in folder.rglob("*.png") if "_mask" not in p.name)
    if not paths:
        raise SystemExit(f"no BUSI PNGs under {folder} (set --data or BREASTCLIP_SHARED_DATA)")
    return paths[:n] if n <= len(paths) else paths


def manifest_of(paths: list[Path], name: str = "busi-bench"):
    from breastclip.data.manifest import Manifest

    rows = [{"id": f"{name}:{i}", "image": str(p), "label": p.parent.name} for i, p in enumerate(paths)]
    return Manifest.from_records(rows, "/", name=name, source="busi")


def vit_b32_checkpoint(workdir: Path) -> Path:
    """open_clip ViT-B-32 with random weights (seed 0) saved as safetensors + sidecar: same compute as OpenAI's."""
    path = workdir / "vit-b32-random-seed0.safetensors"
    if not path.is_file():
        import open_clip
        import torch
        from safetensors.torch import save_file

        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32")
        workdir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        path.with_suffix(".json").write_text(json.dumps({"architecture": "ViT-B-32"}))
    return path


def with_text_chunk(png: bytes, tag: str) -> bytes:
    """Same pixels, different bytes: insert a PNG tEXt chunk after IHDR (so the content hash differs)."""
    data = b"bench\x00" + tag.encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]


def distinct_copies(src: list[Path], n: int, folder: Path) -> list[Path]:
    """n PNG files with distinct bytes, cycling through ``src`` (created once, reused)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"copy_{i:05d}.png"
        if not p.is_file():
            p.write_bytes(with_text_chunk(src[i % len(src)].read_bytes(), str(i)))
        out.append(p)
    return out


def machine() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        pass
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = line.split(":", 1)[1].split()
                info["simd"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags]
    except (OSError, subprocess.SubprocessError):
        pass
    info["loadavg_1m"] = os.getloadavg()[0]
    return info


def flops_per_image(model) -> float:
    """Forward FLOPs of one image through a breastclip Backbone (torch.utils.flop_counter; multiply-add = 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(2, 3, model.entry.image_size, model.entry.image_size, dtype=torch.uint8)
    # the fused inference fast path of nn.MultiheadAttention hides its projections from the counter: turn it off
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as fc:
            model.encode_tensor(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return fc.get_total_flops() / 2
