"""Evidence beside the numbers: Grad-CAM overlays of the selected method's true/false positives/negatives with
the faithfulness check explained (section ``gradcam``), and the most similar training images of each confident
error (section ``neighbours``). Both are figures saved at 300 dpi and embedded in the HTML and the Word file."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from breastclip.report import figures as F
from breastclip.report.content import Note, Section, Table, fmt
from breastclip.report.views import MethodView

THUMB = 192
ROAD_MEANING = ("Faithfulness (ROAD deletion, Rong et al. 2022): the pixels a map marks as most important are "
                "removed first (filled from their neighbours, not blacked out) and the model's score for the "
                "explained class is measured as more pixels go; the same is done with random maps. The gap is the "
                "area under the random curve minus the area under the Grad-CAM curve: above 0 the map found pixels "
                "the model relies on, at or below 0 it does no better than chance.")
MIN_FAITHFULNESS_IMAGES = 10


def _thumb(path: Path | str | None) -> np.ndarray | None:
    from breastclip.data.images import ImageDecodeError, load_image_resized

    if path is None:
        return None
    try:
        return load_image_resized(path, THUMB)
    except (ImageDecodeError, OSError, ValueError):
        return None


def faithfulness_verdict(f: Mapping | None) -> Note:
    """What the ROAD check says about the maps, in words; a warning when they should not be trusted."""
    if not f or f.get("faithfulness_gap") is None:
        return Note("No faithfulness check was run for these maps: they are illustrations, not evidence.", "warn")
    gap, n = float(f["faithfulness_gap"]), int(f.get("images", 0))
    numbers = (f"ROAD deletion on {n} image(s): area under the score curve {fmt(f.get('deletion_auc_gradcam'))} "
               f"removing Grad-CAM's pixels first vs {fmt(f.get('deletion_auc_random'))} removing random pixels; "
               f"gap {gap:+.3f}.")
    if not math.isfinite(gap) or gap <= 0:
        return Note(f"{numbers} The maps are no better than random at finding the pixels the model uses: these maps "
                    "should not be trusted as explanations of its decisions.", "warn")
    if n < MIN_FAITHFULNESS_IMAGES:
        return Note(f"{numbers} Positive, but on fewer than {MIN_FAITHFULNESS_IMAGES} images: weak evidence that "
                    "the maps point at what the model uses.", "info")
    return Note(f"{numbers} The maps find pixels the model relies on better than chance; that is not evidence "
                "that those pixels are the lesion.", "ok")


def gradcam_section(gradcam: Sequence[Mapping] | None, selected: MethodView, fw, requested: int = 0
                    ) -> Section | None:
    """Section ``gradcam``: one overlay grid per explained model, the cases, and the faithfulness verdict.

    ``gradcam`` items: ``{"model": str, "overlays": [{"path", "caption", "category", "id"}], "faithfulness":
    mapping or None, "error": str (when the maps failed)}``.
    """
    if not gradcam and not requested:
        return None
    s = Section("Grad-CAM: where the model looked", anchor="gradcam")
    s.add(f"Images of the test split chosen as true and false positives and negatives of the selected method "
          f"({selected.method}) at its frozen threshold, the most confident of each kind; each overlay gives the "
          "true class, the predicted probability and the threshold. " + ROAD_MEANING)
    if not gradcam:
        return s.add(Note("Grad-CAM was requested but no maps were made (see the run's notes).", "warn"))
    for i, item in enumerate(gradcam):
        model = str(item.get("model", "model"))
        if item.get("error"):
            s.add(Note(f"Grad-CAM for {model} failed: {item['error']}", "warn"))
            continue
        overlays = list(item.get("overlays") or [])
        images = [_thumb(o.get("path")) for o in overlays]
        if not overlays or all(im is None for im in images):
            s.add(Note(f"Grad-CAM for {model}: no overlay could be read.", "warn"))
            continue
        fig = F.error_gallery(images, [str(o.get("caption", "")) for o in overlays], ncols=min(4, len(overlays)),
                              title=f"Grad-CAM overlays: {model}")
        s.add(fw(fig, f"gradcam_{i}", f"Grad-CAM overlays ({model})",
                 "Red: regions that raised the score of the explained class most. TP/FP/FN/TN: true positive, false "
                 "positive, false negative, true negative at the frozen threshold t."))
        s.add(faithfulness_verdict(item.get("faithfulness")))
    return s


def neighbours_section(neighbours: pd.DataFrame | None, selected: MethodView,
                       image_of: Callable[[str], Path | None] | None, fw, requested: int = 0) -> Section | None:
    """Section ``neighbours``: each confident error of the selected method beside its most similar training
    images (label and cosine similarity), as a figure and a table."""
    if neighbours is None or neighbours.empty:
        if not requested:
            return None
        why = ("the report was not given the run's images" if image_of is None else
               "no confident errors, or no training embeddings to search")
        return Section("Retrieval evidence: most similar training images", anchor="neighbours").add(
            Note(f"No retrieval evidence: {why}.", "info"))
    s = Section("Retrieval evidence: most similar training images", anchor="neighbours")
    backbone = str(neighbours["backbone"].iloc[0]) if "backbone" in neighbours else "the run's backbone"
    s.add(f"For each of the most confident errors of {selected.method}, the training images closest to it in the "
          f"embedding space of {backbone} (cosine similarity of the frozen embeddings), with their labels. When "
          "the nearest training images carry the predicted rather than the true label, the error follows from "
          "look-alike training cases (or from label noise in them); the reader can judge which.")
    errors = selected.errors.set_index(selected.errors["id"].astype(str)) if selected.errors is not None else None
    rows, table = [], []
    for qid, g in neighbours.groupby("query_id", sort=False):
        g = g.sort_values("rank")
        if errors is not None and qid in errors.index:
            e = errors.loc[qid]
            head = f"error: true {e['y_true']}\npred {e['y_pred']} ({float(e['confidence']):.2f})"
        else:
            head = "query"
        row = [(_thumb(image_of(qid)) if image_of else None, head)]
        row += [(_thumb(image_of(str(r["id"]))) if image_of else None,
                 f"#{int(r['rank'])} {r['label']}\nsim {float(r['similarity']):.3f}") for _, r in g.iterrows()]
        rows.append(row)
        labels = list(g["label"].astype(str))
        true = str(errors.loc[qid, "y_true"]) if errors is not None and qid in errors.index else "-"
        pred = str(errors.loc[qid, "y_pred"]) if errors is not None and qid in errors.index else "-"
        table.append({"test image": qid, "true": true, "predicted": pred,
                      "neighbours' labels": ", ".join(labels),
                      "share with the predicted label": f"{sum(lab == pred for lab in labels)}/{len(labels)}",
                      "similarities": ", ".join(f"{x:.3f}" for x in g["similarity"])})
    if image_of is not None and any(im is not None for r in rows for im, _ in r):
        s.add(fw(F.retrieval_grid(rows, title=f"Confident errors of {selected.method} and their nearest training "
                                              "images"),
                 "neighbours", "Most similar training images of each confident error",
                 "First column (framed): the misclassified test image with its true and predicted class; then its "
                 "nearest training images with their label and cosine similarity."))
    s.add(Table("neighbours-table", "Nearest training images of each confident error", pd.DataFrame(table)))
    return s
