"""Retrieval evidence in a run: for the selected method's most confident test errors (the report's error
gallery), the ``report.neighbours`` most similar training images in the embedding space, into ``neighbours.csv``.

The CNN baseline has no frozen embedding: its errors are looked up in the run's first backbone's space (the
report says which space was used).
"""

from __future__ import annotations

import logging

import pandas as pd

from breastclip.pipeline.context import Evaluated, RunContext, RunData
from breastclip.pipeline.run_folder import RunFolder
from breastclip.retrieval import make_reference, nearest

log = logging.getLogger("breastclip.run")
GALLERY_SIZE = 8  # the report's error gallery shows the 8 most confident errors


def run_neighbours(ctx: RunContext, data: RunData, evaluated: Evaluated) -> bool:
    """Write ``neighbours.csv`` (query_id, rank, id, label, similarity, backbone); False when nothing to look up."""
    k = int(ctx.cfg.report.neighbours)
    best = evaluated.leaderboard.attrs.get("baseline")  # the selected method, else the first row (for inspection)
    outcome = next((o for o in evaluated.outcomes if o.label == best and o.predictions is not None), None)
    if k <= 0 or outcome is None or not data.sets:
        return False
    backbone = outcome.backbone if outcome.backbone in data.sets else next(iter(data.sets))
    ev = evaluated.evaluations.get(outcome.label)
    errors = ev.confident_errors if ev is not None else None
    if errors is None or len(errors) == 0:
        return False
    emb = data.sets[backbone]
    have = set(emb.ids) & set(data.ids)
    queries = [str(i) for i in errors["id"].head(GALLERY_SIZE) if str(i) in have]
    df = data.manifest.df.set_index(data.manifest.df["id"].astype(str))
    train = [i for i in data.ids if i in have and df.at[i, "split"] == "train"]
    if not queries or not train:
        return False
    ref = make_reference(emb.rows(train), train, df.loc[train, "label"].astype(str).to_numpy())
    found = nearest(emb.rows(queries), ref, k)
    found.insert(0, "query_id", [queries[q] for q in found.pop("query")])
    found["backbone"] = backbone
    ctx.folder.write_csv(RunFolder.NEIGHBOURS, found)
    log.info("retrieval evidence: %d nearest training images for %d errors of %s (%s)", k, len(queries),
             outcome.label, backbone)
    return True


def read_neighbours(folder: RunFolder) -> pd.DataFrame | None:
    path = folder / RunFolder.NEIGHBOURS
    return pd.read_csv(path, dtype={"query_id": str, "id": str}) if path.is_file() else None
