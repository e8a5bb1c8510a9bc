"""Checkpoints as safetensors + JSON (never pickle): model weights, optimizer state and RNG state for resuming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from breastclip.atomic import atomic_path, atomic_write_text

OPTIM_PREFIX = "optim."
RNG_KEY = "rng.torch"


def save_checkpoint(stem: Path, model: torch.nn.Module, meta: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write ``stem.safetensors`` (weights [+ optimizer + RNG]) and ``stem.json`` (meta); atomic per file."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = dict(meta)
    if optimizer is not None:
        sd = optimizer.state_dict()
        for idx, state in sd["state"].items():
            for key, value in state.items():
                t = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"{OPTIM_PREFIX}{idx}.{key}"] = t.detach().to("cpu").contiguous()
        meta["optimizer_param_groups"] = sd["param_groups"]
        tensors[RNG_KEY] = torch.get_rng_state()
    weights = stem.with_suffix(".safetensors")
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=2, default=str))
    return weights


def read_meta(stem: Path) -> dict[str, Any]:
    path = stem.with_suffix(".json")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read checkpoint metadata {path}: {exc}") from exc


def load_checkpoint(stem: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Load weights (and optimizer + RNG state when given and present) in place; return the JSON meta."""
    weights = stem.with_suffix(".safetensors")
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint weights {weights} not found")
    meta = read_meta(stem)
    tensors = load_file(str(weights))
    model_sd = {k: v for k, v in tensors.items() if not k.startswith(OPTIM_PREFIX) and k != RNG_KEY}
    model.load_state_dict(model_sd)
    if optimizer is not None and "optimizer_param_groups" in meta:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith(OPTIM_PREFIX):
                idx, key = k[len(OPTIM_PREFIX):].split(".", 1)
                state.setdefault(int(idx), {})[key] = v
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
        if RNG_KEY in tensors:
            torch.set_rng_state(tensors[RNG_KEY])
    return meta
