"""Fail fast and clearly when hub weights are not cached and the hub cannot be reached.

huggingface_hub retries an unreachable host with back-off for ~20 s per file; a model needs several files. When the
weights are not in the local cache we probe the endpoint once (3 s) and raise one :class:`BackboneUnavailable`
instead. ``HF_HUB_OFFLINE=1`` skips the probe and fails at once; ``HF_ENDPOINT`` (a mirror) is honoured.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from .registry import BackboneEntry, BackboneUnavailable

PROBE_TIMEOUT_S = 3.0


def _endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except Exception:
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _offline_flag() -> bool:
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except Exception:
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    u = urlparse(url)
    host, port = u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as e:
        return False, f"{host}:{port} unreachable ({e.strerror or e})"


def unavailable_message(entry: BackboneEntry, tried: str, error: str, fix: str | None = None) -> str:
    if entry.name.startswith("local:"):  # a file on this machine: the network cannot help
        path = entry.name[len("local:"):]
        return (f"backbone '{entry.name}': {path} could not be loaded ({error}); tried: {tried}. fix: point it at a "
                f"checkpoint of that architecture (.safetensors, or a PyTorch file holding tensors only: pickled "
                f"objects are refused), or correct the architecture (--architecture, or a .json beside the file). "
                f"Random weights are never substituted.")
    if fix is None:
        if entry.family == "hf_clip":
            fix = ("download it where there is internet (CLIPModel.from_pretrained(id).save_pretrained(folder), "
                   "plus the processor/tokenizer) and use backbone 'local:/path/to/folder'")
        else:
            arch = entry.architecture if not entry.architecture.startswith("hf-hub:") else "<open_clip architecture>"
            fix = ("download the checkpoint where there is internet and load it from a file: "
                   f"create_backbone('local:/path/to/weights.safetensors', architecture='{arch}') "
                   f"(`breastclip embed --backbone local:/path/to/weights.safetensors --architecture {arch}`)")
    return (f"backbone '{entry.name}' is unavailable: its weights are not in the local cache and could not be "
            f"fetched.\n  tried: {tried}\n  error: {error}\n  fix: connect once to the internet (the weights are then "
            f"cached under ~/.cache/huggingface), or {fix}. For `breastclip run`: pass --offline (the offline "
            f"efficientnet-lite0 backbone, no download), or name another backbone in the config "
            f"(backbones = [\"efficientnet-lite0\"], or --set 'backbones=[\"local:/path/to/checkpoint\"]'). "
            f"Random weights are never substituted.")


def require_hub(entry: BackboneEntry, tried: str, url: str | None = None) -> None:
    """Raise BackboneUnavailable now if the download in ``tried`` cannot succeed (offline flag or no route)."""
    if _offline_flag():
        raise BackboneUnavailable(unavailable_message(entry, tried, "HF_HUB_OFFLINE is set and nothing is cached"))
    ok, why = reachable(url or _endpoint())
    if not ok:
        raise BackboneUnavailable(unavailable_message(entry, tried, why))
