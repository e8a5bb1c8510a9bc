"""The run's medical-image gate, saved for ``breastclip predict``.

Per backbone: an out-of-distribution check fitted on the run's training embeddings with its threshold set on the
validation embeddings (works for every backbone, text tower or not), and, for backbones with an aligned text tower,
the zero-shot medical vs non-medical filter. Written to ``gate/<backbone>/{ood,medical}/`` + ``gate/gate.json``.
"""

from __future__ import annotations

import logging

import numpy as np

from breastclip.data.images import pixel_size
from breastclip.heads import EmbeddingOOD, MedicalGate
from breastclip.pipeline.context import RunContext, RunData
from breastclip.pipeline.explain_step import save_class_means
from breastclip.pipeline.run_folder import RunFolder
from breastclip.retrieval import make_reference, save_reference

log = logging.getLogger("breastclip.run")


SIZE_SAMPLE = 200


def training_images(data: RunData) -> dict:
    """What `predict` tells a user whose image the gate rejects: the data set, its classes and the median pixel
    size of (up to 200 of) its training images, read from the file headers."""
    df = data.manifest.df
    train = df[df["split"] == "train"]
    sizes = [s for s in (pixel_size(data.manifest.resolve(p)) for p in train["image"].head(SIZE_SAMPLE)) if s]
    median = [int(np.median([s[0] for s in sizes])), int(np.median([s[1] for s in sizes]))] if sizes else None
    return {"dataset": data.manifest.name, "classes": list(data.manifest.classes), "n": int(len(train)),
            "median_size": median}


def fit_run_gate(ctx: RunContext, data: RunData) -> dict:
    cfg, manifest, ids, out = ctx.cfg, data.manifest, data.ids, ctx.folder
    sets = data.sets
    df = manifest.df.set_index("id").loc[ids]
    split = df["split"].to_numpy()
    summary: dict = {"backbones": {}, "training_images": training_images(data)}
    opts = dict(cfg.gate.options)
    for name, emb in sets.items():
        X = emb.rows(ids)
        tr, va = split == "train", split == "val"
        folder = out.gate_dir(name)
        ood = EmbeddingOOD(random_state=cfg.experiment.seed, **opts)
        ood.fit(X[tr], df["label"].to_numpy()[tr], X_val=X[va] if va.sum() >= 2 else None)
        ood.save(folder / "ood", overwrite=True)
        save_class_means(folder, X[tr], df["label"].to_numpy()[tr], list(manifest.classes))
        save_reference(make_reference(X[tr], df.index.to_numpy()[tr], df["label"].to_numpy()[tr]), folder)
        flagged_test = float(ood.is_ood(X[split == "test"]).mean()) if (split == "test").any() else None
        info = {"ood": {"path": str((folder / "ood").relative_to(out.path)), "method": ood.method,
                        "threshold": float(ood.threshold_), "quantile": ood.quantile,
                        "test_flagged_fraction": flagged_test}}
        if emb.text_aligned:
            try:
                gate = MedicalGate.from_backbone(emb.backbone, bank=cfg.gate.medical_prompts)
                gate.save(folder / "medical", overwrite=True)
                scores = gate.medical_score(X[split == "test"]) if (split == "test").any() else None
                info["medical"] = {"path": str((folder / "medical").relative_to(out.path)), "bank": cfg.gate.medical_prompts,
                                   "threshold": float(gate.threshold),
                                   "test_rejected_fraction": None if scores is None else
                                   float((scores < gate.threshold).mean())}
            except Exception as e:  # a gate is a safety net: say why it is missing
                info["medical"] = {"error": f"{type(e).__name__}: {e}"}
                log.warning("%s: zero-shot medical gate not available: %s", name, e)
        else:
            info["medical"] = {"error": f"{name} has no text tower aligned with its images: the OOD check is the gate"}
        summary["backbones"][name] = info
        log.info("%s: OOD gate threshold %.4f (%.0f%% of test images flagged)", name, ood.threshold_,
                 100 * (flagged_test or 0.0))
    out.write_json(f"{RunFolder.GATE}/{RunFolder.GATE_SUMMARY}", summary)
    return summary
