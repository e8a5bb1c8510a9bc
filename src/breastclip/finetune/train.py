"""Fine-tune a CNN end to end on a split manifest; write the predictions table beside the heads'.

``finetune(manifest, config, out_dir)`` trains on the ``train`` rows (augmented), keeps the epoch with the lowest
validation loss, and predicts the ``val`` and ``test`` rows with it. Every epoch writes ``last.safetensors/.json``
(weights, optimizer, RNG, history), so an interrupted run started again with the same config resumes where it
stopped. Uses CUDA (+ AMP) when present and DistributedDataParallel when launched by ``torchrun`` (rank 0 writes).

Files in ``out_dir``: ``config.json``, ``last.*``, ``best.safetensors`` + ``best.json`` (architecture, classes,
preprocessing: everything :func:`load_finetuned` needs), ``history.csv``, ``predictions.csv``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from breastclip import RESEARCH_ONLY, __version__
from breastclip.data.manifest import Manifest
from breastclip.distributed import init_distributed
from breastclip.finetune import distributed as dist_utils
from breastclip.finetune.augment import AugmentConfig, augmented_classes, build_augment
from breastclip.finetune.checkpoint import load_checkpoint, read_meta, save_checkpoint
from breastclip.finetune.dataset import ImageRows, decode_rows
from breastclip.finetune.infer import FinetunedModel, logits_to_proba, predict_logits
from breastclip.finetune.models import build_model, get_arch
from breastclip.predictions import make_predictions

log = logging.getLogger(__name__)
_RESUMABLE_CHANGES = ("epochs", "patience", "num_workers", "device", "amp")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyperparameters of one fine-tuning run (defaults: the notebooks' Adam 1e-4, cross-entropy)."""

    arch: str = "resnet18"
    pretrained: bool = True
    image_size: int | None = None  # None: the architecture's native size
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    loss: str = "ce"  # "ce" (softmax) or "bce" (one sigmoid logit for two classes, one-vs-rest otherwise)
    class_weight: str | None = None  # None or "balanced" (inverse class frequency on the training rows)
    label_smoothing: float = 0.0
    augment: bool = True
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    patience: int | None = None  # stop after this many epochs without a lower validation loss
    seed: int = 0
    num_workers: int | None = None  # augmentation workers; None: 0 on CPU, up to 8 per process on CUDA
    device: str | None = None  # None: CUDA when available, else CPU
    amp: bool = True  # mixed precision on CUDA
    method: str | None = None  # name in the predictions table; default "finetune-<arch>"

    def __post_init__(self) -> None:
        get_arch(self.arch)
        if self.loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {self.loss!r}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {self.class_weight!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")

    @property
    def method_name(self) -> str:
        return self.method or f"finetune-{self.arch}"

    @property
    def input_size(self) -> int:
        return self.image_size or get_arch(self.arch).image_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneConfig:
        d = dict(d)
        if isinstance(d.get("augmentation"), dict):
            d["augmentation"] = AugmentConfig(**d["augmentation"])
        return cls(**d)


@dataclass
class FinetuneResult:
    predictions: pd.DataFrame  # val + test rows, the predictions-table contract
    history: pd.DataFrame  # epoch, train_loss, val_loss, seconds
    best_epoch: int
    checkpoint: Path  # best.safetensors (best.json beside it)
    out_dir: Path
    config: FinetuneConfig
    failures: list[tuple[str, str]] = field(default_factory=list)  # images that did not decode
    resumed_from: int | None = None  # last finished epoch found on disk, when resuming


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _fingerprint(df: pd.DataFrame) -> str:
    key = df[["id", "label", "split"]].astype(str).sort_values("id").to_csv(index=False)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _criterion(config: FinetuneConfig, train_y: np.ndarray, k: int, device: torch.device) -> nn.Module:
    counts = np.bincount(train_y, minlength=k).astype(float)
    weights = None
    if config.class_weight == "balanced":
        weights = torch.tensor(len(train_y) / (k * np.maximum(counts, 1)), dtype=torch.float32, device=device)
    if config.loss == "ce":
        return nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    pos_weight = None
    if weights is not None and k == 2:
        pos_weight = (weights[1] / weights[0]).reshape(1)
    elif weights is not None:
        pos_weight = weights
    return _BCE(k, config.label_smoothing, pos_weight)


class _BCE(nn.Module):
    """BCE on integer labels: one logit for two classes, one-vs-rest logits otherwise."""

    def __init__(self, k: int, smoothing: float, pos_weight: torch.Tensor | None) -> None:
        super().__init__()
        self.k, self.smoothing = k, smoothing
        self.loss = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = y.float().unsqueeze(1) if self.k == 2 else nn.functional.one_hot(y, self.k).float()
        if self.smoothing:
            target = target * (1 - self.smoothing) + 0.5 * self.smoothing
        return self.loss(logits.float(), target)


def _check_manifest(manifest: Manifest) -> pd.DataFrame:
    df = manifest.df
    missing = [c for c in ("id", "image", "label", "split") if c not in df.columns]
    if missing:
        raise ValueError(f"manifest '{manifest.name}' lacks columns {missing}")
    counts = df["split"].value_counts()
    for part in ("train", "val"):
        if counts.get(part, 0) == 0:
            raise ValueError(f"manifest '{manifest.name}' has no '{part}' rows (splits: {counts.to_dict()}); "
                             "split it first, e.g. breastclip.data.splits.assign_splits(manifest)")
    unknown = sorted(set(df["label"]) - set(manifest.classes))
    if unknown:
        raise ValueError(f"manifest '{manifest.name}' has labels {unknown} outside its classes {manifest.classes}")
    if len(manifest.classes) < 2:
        raise ValueError(f"need at least two classes, manifest '{manifest.name}' has {manifest.classes}")
    return df[df["split"].isin(["train", "val", "test"])].reset_index(drop=True)


def _prepare_out_dir(out_dir: Path, run_key: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """Return the last-epoch meta to resume from, or None; refuse to mix a different run into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = out_dir / "config.json"
    if cfg_path.is_file() and not overwrite:
        found = json.loads(cfg_path.read_text())
        if found.get("run_key") != run_key:
            raise FileExistsError(
                f"{out_dir} holds a fine-tuning run with a different config or data ({cfg_path}); "
                "choose another out_dir, or pass overwrite=True to replace it")
        if (out_dir / "last.json").is_file() and (out_dir / "last.safetensors").is_file():
            return read_meta(out_dir / "last")
    return None


def finetune(manifest: Manifest, config: FinetuneConfig | None = None, out_dir: str | Path = "finetune",
             *, overwrite: bool = False, progress: Progress | None = None) -> FinetuneResult:
    """Train ``config.arch`` on the manifest's train rows; best epoch by validation loss; predict val + test."""
    config = config or FinetuneConfig()
    out_dir = Path(out_dir)
    df = _check_manifest(manifest)
    classes = list(manifest.classes)
    k = len(classes)
    entry = get_arch(config.arch)
    size = config.input_size
    ctx = init_distributed(config.device or None)
    device = ctx.device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not ctx.is_main:
        progress = None  # one progress display, from rank 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    workers = config.num_workers
    if workers is None:
        workers = min(8, max(1, (os.cpu_count() or 1) // ctx.world_size)) if device.type == "cuda" else 0
    _seed_everything(config.seed)

    # what must match to resume (epochs / patience / device may change: a finished run can be trained longer)
    run_key = {"config": {key: v for key, v in config.to_dict().items() if key not in _RESUMABLE_CHANGES},
               "data": _fingerprint(df), "classes": classes}
    resume_meta = None
    if ctx.is_main:
        resume_meta = _prepare_out_dir(out_dir, run_key, overwrite)
    resume_meta = ctx.broadcast_object(resume_meta)

    # ---- data ----------------------------------------------------------------------------------------------
    paths = [manifest.resolve(p) for p in df["image"]]
    decoded = decode_rows(paths, size, progress=(lambda i, n: progress("decode", i, n)) if progress else None)
    if decoded.failures:
        log.warning("%d images failed to decode and are left out, e.g. %s", len(decoded.failures),
                    decoded.failures[:3])
    rows = df.iloc[decoded.rows].reset_index(drop=True)
    y_all = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=int)
    part = {s: np.flatnonzero(rows["split"].to_numpy() == s) for s in ("train", "val", "test")}
    if len(part["train"]) == 0 or len(part["val"]) == 0:
        raise ValueError(f"no decodable train or val images left ({len(decoded.failures)} failures, "
                         f"e.g. {decoded.failures[:3]})")
    train_y = y_all[part["train"]]
    aug = build_augment(config.augmentation) if config.augment else None
    aug_classes = augmented_classes(train_y, k, config.augmentation.minority_only) if aug else set()
    train_ds = ImageRows(decoded.images[part["train"]], train_y, augment=aug, augment_classes=aug_classes)
    sampler = dist_utils.train_sampler(ctx, train_ds, config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    n_local = len(sampler) if sampler is not None else len(train_ds)
    loader = DataLoader(train_ds, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=workers, persistent_workers=workers > 0, generator=generator,
                        drop_last=n_local % config.batch_size == 1 and n_local > 1,  # BatchNorm needs >1 row
                        pin_memory=device.type == "cuda")

    # ---- model -----------------------------------------------------------------------------------------------
    n_out = 1 if config.loss == "bce" and k == 2 else k
    core = build_model(config.arch, n_out, pretrained=config.pretrained and resume_meta is None).to(device)
    if device.type == "cuda":
        core = core.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(core.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    criterion = _criterion(config, train_y, k, device)
    history: list[dict[str, float]] = []
    best_val, best_epoch, start_epoch, bad_epochs = float("inf"), 0, 1, 0
    resumed_from = None
    if resume_meta is not None:
        load_checkpoint(out_dir / "last", core, optimizer)
        history = resume_meta["history"]
        best_val, best_epoch = resume_meta["best_val_loss"], resume_meta["best_epoch"]
        bad_epochs = resume_meta.get("bad_epochs", 0)
        start_epoch = resumed_from = resume_meta["epoch"]
        start_epoch += 1
        log.info("resuming %s from epoch %d", out_dir, resumed_from)
    model = dist_utils.wrap(ctx, core)
    amp_dtype = dist_utils.amp_dtype(device) if config.amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    val_x, val_y = decoded.images[part["val"]], torch.as_tensor(y_all[part["val"]])
    pre = FinetunedModel(core, config.arch, classes, size, entry.mean, entry.std, config.loss)

    finished = resume_meta is not None and (resume_meta.get("early_stopped", False)
                                            or resume_meta["epoch"] >= config.epochs)
    if ctx.is_main:
        (out_dir / "config.json").write_text(json.dumps(
            {"run_key": run_key, "config": config.to_dict(), "manifest": manifest.name, "breastclip": __version__, "torch": torch.__version__,
             "world_size": ctx.world_size, "research_only": RESEARCH_ONLY}, indent=2))

    for epoch in range(start_epoch, config.epochs + 1):
        if finished:
            break
        t0 = time.perf_counter()
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator.manual_seed(config.seed + epoch)  # shuffle order depends on the epoch only: exact resumes
        model.train()
        loss_sum, n_seen = 0.0, 0
        for step, (xb, yb) in enumerate(loader):
            xb = pre.normalize(xb.to(device, non_blocking=True))
            yb = yb.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss = criterion(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += float(loss.detach()) * len(yb)
            n_seen += len(yb)
            if progress:
                progress(f"epoch {epoch}/{config.epochs}", step + 1, len(loader))
        train_loss = dist_utils.all_reduce_mean(ctx, loss_sum, n_seen)
        core.eval()
        with torch.no_grad():
            logits = predict_logits(pre, val_x, config.batch_size * 2, amp_dtype)
            val_loss = float(criterion(logits.to(device), val_y.to(device)))
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "seconds": time.perf_counter() - t0})
        log.info("epoch %d train %.4f val %.4f", epoch, train_loss, val_loss)
        improved = val_loss < best_val
        if improved:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
        else:
            bad_epochs += 1
        stop = config.patience is not None and bad_epochs >= config.patience
        if ctx.is_main:
            meta = {"architecture": config.arch, "classes": classes, "image_size": size, "mean": list(entry.mean),
                    "std": list(entry.std), "loss": config.loss, "n_outputs": n_out, "epoch": epoch,
                    "val_loss": val_loss, "method": config.method_name, "research_only": RESEARCH_ONLY,
                    "breastclip": __version__}
            if improved:
                save_checkpoint(out_dir / "best", core, meta)
            save_checkpoint(out_dir / "last", core, {
                **meta, "history": history, "best_val_loss": best_val, "best_epoch": best_epoch,
                "bad_epochs": bad_epochs, "early_stopped": stop,
                "run_key": run_key}, optimizer)
            pd.DataFrame(history).to_csv(out_dir / "history.csv", index=False)
        ctx.barrier()
        if stop:
            log.info("early stop after epoch %d (best %d)", epoch, best_epoch)
            break

    # ---- predictions with the best epoch ---------------------------------------------------------------------
    load_checkpoint(out_dir / "best", core)
    core.eval()
    keep = np.concatenate([part["val"], part["test"]])
    with torch.no_grad():
        logits = predict_logits(pre, decoded.images[keep], config.batch_size * 2, amp_dtype)
    proba = logits_to_proba(logits, config.loss, k).numpy()
    sub = rows.iloc[keep]
    preds = make_predictions(ids=sub["id"].tolist(), y_true=sub["label"].tolist(), proba=proba, classes=classes,
                             method=config.method_name, split=sub["split"].tolist(),
                             patient_id=sub["patient_id"].tolist() if "patient_id" in sub else None)
    if ctx.is_main:
        preds.to_csv(out_dir / "predictions.csv", index=False)
        if decoded.failures:
            pd.DataFrame(decoded.failures, columns=["path", "error"]).to_csv(out_dir / "failures.csv", index=False)
    ctx.barrier()
    ctx.close()
    return FinetuneResult(preds, pd.DataFrame(history), best_epoch, out_dir / "best.safetensors", out_dir, config,
                          decoded.failures, resumed_from)
