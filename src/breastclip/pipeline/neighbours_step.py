"""Retrieval evidence in a run: for the selected method's most confident test errors (the report's error
gallery), the ``report.neighbours`` most similar training images in the embedding space, into ``neighbours.csv``.

The CNN baseline has no frozen embedding: its errors are looked up in the run's first backbone's space (the
report says which space was used).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from breastclip.config import ExperimentConfig
from breastclip.data.manifest import Manifest
from breastclip.pipeline.results import atomic_write_csv
from breastclip.retrieval import make_reference, nearest

log = logging.getLogger("breastclip.run")
NEIGHBOURS_FILE = "neighbours.csv"
GALLERY_SIZE = 8  # the report's error gallery shows the 8 most confident errors


def run_neighbours(cfg: ExperimentConfig, out: Path, manifest: Manifest, ids: list[str], outcomes: list,
                   sets: dict, evaluations: dict, best: str | None) -> Path | None:
    """Write ``neighbours.csv`` (query_id, rank, id, label, similarity, backbone); None when nothing to look up."""
    k = int(cfg.report.neighbours)
    outcome = next((o for o in outcomes if o.label == best and o.predictions is not None), None)
    if k <= 0 or outcome is None or not sets:
        return None
    backbone = outcome.backbone if outcome.backbone in sets else next(iter(sets))
    ev = evaluations.get(outcome.label)
    errors = getattr(ev, "confident_errors", None)
    if errors is None or len(errors) == 0:
        return None
    emb = sets[backbone]
    have = set(emb.ids) & set(ids)
    queries = [str(i) for i in errors["id"].head(GALLERY_SIZE) if str(i) in have]
    df = manifest.df.set_index(manifest.df["id"].astype(str))
    train = [i for i in ids if i in have and df.at[i, "split"] == "train"]
    if not queries or not train:
        return None
    ref = make_reference(emb.rows(train), train, df.loc[train, "label"].astype(str).to_numpy())
    found = nearest(emb.rows(queries), ref, k)
    found.insert(0, "query_id", [queries[q] for q in found.pop("query")])
    found["backbone"] = backbone
    atomic_write_csv(out / NEIGHBOURS_FILE, found)
    log.info("retrieval evidence: %d nearest training images for %d errors of %s (%s)", k, len(queries),
             outcome.label, backbone)
    return out / NEIGHBOURS_FILE


def read_neighbours(out: Path) -> pd.DataFrame | None:
    path = out / NEIGHBOURS_FILE
    return pd.read_csv(path, dtype={"query_id": str, "id": str}) if path.is_file() else None
