"""Zero-shot over a whole manifest: embed (cached), classify with a prompt bank, optional medical gate and
prompt-robustness report. The library function behind ``breastclip zeroshot``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from breastclip.heads.gate import MedicalGate
from breastclip.heads.zeroshot import ZeroShotHead, _auc, prompt_robustness


class CachedTextEncoder:
    """Wraps ``encode_text`` so that each prompt is encoded once."""

    def __init__(self, encode_text) -> None:
        self._encode = encode_text
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            self._cache.update(zip(todo, np.asarray(self._encode(todo)), strict=True))
        return np.stack([self._cache[t] for t in texts])


@dataclass
class ZeroShotRun:
    """Predictions table (method ``zeroshot:<bank>``), per-image gate scores, robustness table and summary."""

    predictions: pd.DataFrame
    gate: pd.DataFrame | None = None
    robustness: pd.DataFrame | None = None
    summary: dict[str, float] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)


def run_zeroshot(
    manifest,
    backbone: str = "clip-vit-b32",
    bank: str | Path = "busi",
    *,
    split: str | None = None,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    num_workers: int | None = None,
    logit_scale: float = 100.0,
    gate: bool = True,
    gate_threshold: float = 0.5,
    robustness: bool = True,
    progress: bool = True,
) -> ZeroShotRun:
    """Zero-shot classify the images of ``manifest`` (all, or one ``split``) with the prompt bank ``bank``.

    The manifest's class names are matched to the bank's classes (case/separator-insensitive, with the bank's
    aliases). ``gate`` adds P(medical image) per image from the ``medical_vs_nonmedical`` bank. ``robustness``
    adds accuracy / AUC of every prompt variant (needs labels that match the bank).
    """
    from breastclip.backbones import Backbone, create_backbone, embed_manifest
    from breastclip.heads.zeroshot import UnalignedTextError
    from breastclip.predictions import make_predictions
    from breastclip.prompts import class_text_embeddings, load_bank, text_aligned

    if split is not None:
        manifest = manifest.split_part(split)
        if len(manifest) == 0:
            raise ValueError(f"manifest has no rows in split {split!r}")
    bb = backbone if isinstance(backbone, Backbone) else create_backbone(backbone, device=device)
    if not text_aligned(bb):
        raise UnalignedTextError(
            f"backbone {bb.name!r} has no text tower aligned with its images (unaligned), so zero-shot is "
            "impossible; use a CLIP-family backbone, or train a head (similarity-guided learns a projection)"
        )
    pb = (load_bank(bank) if isinstance(bank, (str, Path)) else bank).aligned_to(manifest.classes)
    encode = CachedTextEncoder(bb.encode_text)  # prompts are shared by the head, gate and robustness report
    head = ZeroShotHead(class_text_embeddings(encode, pb), classes=list(pb.classes), logit_scale=logit_scale)
    X, ids, failures = embed_manifest(manifest, bb, cache_dir=cache_dir, num_workers=num_workers, progress=progress)
    head.fit(X if len(X) else np.zeros((1, bb.embed_dim)))
    df = manifest.df.set_index("id").loc[ids]
    proba = head.predict_proba(X) if len(X) else np.zeros((0, len(pb.classes)))
    pred = make_predictions(ids=ids, y_true=df["label"].tolist(), proba=proba, classes=list(pb.classes),
                            method=f"zeroshot:{pb.name}", split=df["split"].tolist(),
                            patient_id=df["patient_id"].tolist())
    run = ZeroShotRun(predictions=pred, failures=list(failures))
    y = df["label"].astype(str).to_numpy()
    if len(X):
        y_idx = np.array([list(pb.classes).index(v) for v in y])
        run.summary = {"n_images": len(ids), "accuracy": float(np.mean(proba.argmax(1) == y_idx)),
                       "auc": _auc(y_idx, proba)}
    if gate and len(X):
        g = MedicalGate.from_backbone(encode, threshold=gate_threshold, logit_scale=logit_scale,
                                      aligned=True)
        res = g.check(X)
        run.gate = pd.DataFrame({"id": ids, "medical_score": res.scores, "is_medical": res.is_medical})
        run.summary["gate_rejected"] = res.n_rejected
    if robustness and len(X):
        run.robustness, rs = prompt_robustness(encode, pb, X, y, logit_scale=logit_scale)
        run.summary.update({f"prompts_{k}": v for k, v in rs.items()})
    return run
