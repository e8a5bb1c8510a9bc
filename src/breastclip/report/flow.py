"""The participant flow (STARD 2015 item 19): images read from the source, excluded with reasons, analysed, and
partitioned into train / validation / test with images, patients and classes per part.

What was excluded before the manifest existed (a subset filter, files a reader skipped) comes from the run as a
``flow`` mapping (``{"source_images": int, "exclusions": [{"reason": str, "images": int}]}``, written by the
pipeline into ``flow.json``); images of the manifest that could not be decoded are listed by id
(``"excluded_ids": {reason: [id, ...]}``) and removed from the per-split counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from breastclip.report import figures as F
from breastclip.report.content import Section, Table
from breastclip.report.views import SPLIT_ORDER

SPLIT_NAMES = {"train": "Training", "val": "Validation", "test": "Test"}


@dataclass
class FlowView:
    """Counts of the flow diagram."""

    source_images: int
    exclusions: list[tuple[str, int]]  # (reason, images)
    parts: pd.DataFrame  # index split; columns images, patients, then one column per class
    classes: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def analysed(self) -> int:
        return int(self.parts["images"].sum())

    @property
    def patients(self) -> int:
        return int(self.parts["patients"].sum())


def flow_view(manifest_df: pd.DataFrame | None, predictions: pd.DataFrame, classes: Sequence[str],
              flow: Mapping | None = None) -> FlowView:
    """The flow from the manifest (every split) or, without one, from the predictions table (val and test only)."""
    flow = dict(flow or {})
    excluded_ids: dict[str, list[str]] = {str(k): [str(i) for i in v]
                                          for k, v in dict(flow.get("excluded_ids") or {}).items()}
    if manifest_df is not None and len(manifest_df):
        df = manifest_df[["id", "label", "split"] + (["patient_id"] if "patient_id" in manifest_df else [])].copy()
        df["id"] = df["id"].astype(str)
        predicted = set(predictions["id"].astype(str))
        in_eval = df["split"].astype(str).isin(set(predictions["split"].astype(str)))
        known = {i for ids in excluded_ids.values() for i in ids}
        unpredicted = df.loc[in_eval & ~df["id"].isin(predicted) & ~df["id"].isin(known), "id"].tolist()
        if unpredicted:
            excluded_ids["no prediction from any method (e.g. not decodable)"] = unpredicted
    else:
        df = predictions.drop_duplicates("id").rename(columns={"y_true": "label"})
        df = df[["id", "label", "split"] + (["patient_id"] if "patient_id" in df else [])].copy()
        df["id"] = df["id"].astype(str)
    gone = {i for ids in excluded_ids.values() for i in ids}
    kept = df[~df["id"].isin(gone)]
    exclusions = [(str(e["reason"]), int(e["images"])) for e in flow.get("exclusions") or []]
    exclusions += [(reason, len(ids)) for reason, ids in excluded_ids.items() if ids]
    source = int(flow.get("source_images") or 0)
    before = len(df) + sum(n for r, n in exclusions if r not in excluded_ids)
    source = max(source, before)
    split = kept["split"].fillna("").astype(str).replace("", "unsplit")
    pids = kept["patient_id"].astype(str) if "patient_id" in kept else kept["id"]
    counts = pd.crosstab(split, kept["label"].astype(str)).reindex(columns=list(classes), fill_value=0)
    order = [s for s in SPLIT_ORDER if s in counts.index] + [s for s in counts.index if s not in SPLIT_ORDER]
    parts = pd.DataFrame({"images": counts.sum(axis=1), "patients": pids.groupby(split).nunique()}).reindex(order)
    parts = pd.concat([parts, counts.reindex(order)], axis=1).fillna(0).astype(int)
    notes = [str(n) for n in flow.get("notes") or []]
    return FlowView(source_images=source, exclusions=exclusions, parts=parts, classes=list(classes), notes=notes)


def flow_table(fv: FlowView) -> pd.DataFrame:
    rows = [{"stage": "read from the source", "images": fv.source_images, "patients": "", "detail": ""}]
    rows += [{"stage": "excluded", "images": n, "patients": "", "detail": reason} for reason, n in fv.exclusions]
    rows.append({"stage": "analysed", "images": fv.analysed, "patients": fv.patients, "detail": ""})
    for split, r in fv.parts.iterrows():
        detail = ", ".join(f"{c} {int(r[c])}" for c in fv.classes)
        rows.append({"stage": SPLIT_NAMES.get(str(split), str(split)), "images": int(r["images"]),
                     "patients": int(r["patients"]), "detail": detail})
    return pd.DataFrame(rows)


def flow_section(fv: FlowView, fw, patient_ids_from_source: bool) -> Section:
    """Section ``flow``: the diagram and its table."""
    excluded = [f"{n} {reason}" for reason, n in fv.exclusions]
    who = "patients" if patient_ids_from_source else "groups (no patient ids: one per image)"
    parts = [(SPLIT_NAMES.get(str(s), str(s)),
              f"{int(r['images'])} images\n{int(r['patients'])} {who.split(' ')[0]}\n"
              + "\n".join(f"{c}: {int(r[c])}" for c in fv.classes)) for s, r in fv.parts.iterrows()]
    fig = F.participant_flow(f"Read from the source\n{fv.source_images} images", excluded,
                             f"Analysed\n{fv.analysed} images, {fv.patients} {who.split(' ')[0]}", parts)
    s = Section("Participant flow", anchor="flow")
    s.add(fw(fig, "participant_flow", "Participant flow",
             "Images read from the source, excluded with their reasons, and the images, "
             f"{who} and classes of each partition (STARD 2015 item 19)."))
    s.add(Table("flow-table", "Flow of images", flow_table(fv),
                caption="The same counts as the diagram. Exclusions after the split (undecodable images) are "
                        "removed from their partition's counts."))
    return s
