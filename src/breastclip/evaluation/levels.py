"""Breast- and exam-level predictions from image-level ones (mammography: CC + MLO of a breast, four views of an exam).

Units:

- ``image``   every row as is;
- ``breast``  ``patient_id`` + ``laterality`` (all views of one breast of one woman, across exams);
- ``exam``    ``exam_id`` (``patient_id`` when the manifest has no ``exam_id``; a note says so).

**Label of a unit = the worst label of its images**, by a severity order of the classes (default: ``normal`` <
``benign`` < ``malignant`` where those names occur, else the class order of the predictions table): a breast with
one malignant view is a malignant breast. Rows without a label are not possible in a predictions table, so every
image counts.

**Aggregation** works on the cumulative probabilities ``q_i(c) = P(label_i >= c)`` of each image ``i`` (severity
order), which is what "the worst label" needs: the unit is at least ``c`` when any image is.

- ``mean``      ``q(c) = mean_i q_i(c)`` (the same as averaging the probability vectors);
- ``max``       ``q(c) = max_i q_i(c)``  (the most suspicious view decides);
- ``noisy_or``  ``q(c) = 1 - prod_i (1 - q_i(c))`` (views as independent detectors).

Each keeps ``q`` non-increasing in severity, so ``p(c) = q(c) - q(c + 1)`` is a proper distribution; for two
classes they reduce to mean / max / noisy-or of the positive-class probability. A learned aggregation is a head
trained on unit-level inputs (e.g. the attention-MIL head on per-view embeddings), not a rule here.

The unit table keeps ``patient_id``, so the bootstrap of :func:`~breastclip.evaluation.evaluate_predictions`
resamples patients (all their breasts / exams together). Plain pandas / numpy: no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from breastclip.predictions import PROB_PREFIX, classes_of, proba_of, validate_predictions

__all__ = ["AGGREGATES", "LEVELS", "aggregate_predictions", "level_units", "severity_order", "unit_manifest"]

LEVELS = ("image", "breast", "exam")
AGGREGATES = ("mean", "max", "noisy_or")
#: Known class names from least to most severe; classes not listed keep their table order, before these.
_SEVERITY_HINT = ("normal", "negative", "benign", "malignant", "cancer", "positive")


def severity_order(classes: Sequence[str], severity: Sequence[str] | None = None) -> list[str]:
    """Classes from least to most severe: ``severity`` when given (must hold every class), else the known names
    (normal < benign < malignant ...) after any unknown ones, keeping table order otherwise."""
    classes = [str(c) for c in classes]
    if severity:
        order = [str(c) for c in severity]
        missing = sorted(set(classes) - set(order))
        if missing:
            raise ValueError(f"evaluation severity order {order} lacks the classes {missing}; list every class "
                             "from least to most severe")
        return [c for c in order if c in classes]
    known = [c for c in classes if c.lower() in _SEVERITY_HINT]
    unknown = [c for c in classes if c.lower() not in _SEVERITY_HINT]
    return unknown + sorted(known, key=lambda c: _SEVERITY_HINT.index(c.lower()))


def level_units(meta: pd.DataFrame, level: str, notes: list[str] | None = None) -> pd.Series:
    """Unit key of every row of ``meta`` (columns ``patient_id`` and, by level, ``laterality`` / ``exam_id``)."""
    if level not in LEVELS:
        raise ValueError(f"evaluation level must be one of {LEVELS}, got {level!r}")
    pid = meta["patient_id"].astype(str)
    if level == "image":
        return meta["id"].astype(str)
    if level == "breast":
        if "laterality" not in meta.columns:
            raise ValueError("breast-level evaluation needs a 'laterality' column (L/R) in the manifest; this data "
                             "set has none (set evaluation.level = \"image\" or \"exam\")")
        lat = meta["laterality"].fillna("").astype(str).str.strip()
        blank = lat == ""
        if blank.any():
            ids = meta.loc[blank, "id"].astype(str).head(5).tolist()
            raise ValueError(f"breast-level evaluation: {int(blank.sum())} image(s) have no laterality, e.g. {ids}; "
                             "fill the 'laterality' column (L/R) or evaluate at image or exam level")
        return pid + "|" + lat
    if "exam_id" in meta.columns:
        ex = meta["exam_id"].fillna("").astype(str).str.strip()
        if (ex == "").any():
            if notes is not None:
                notes.append(f"exam level: {int((ex == '').sum())} image(s) without exam_id grouped by patient_id")
            ex = ex.where(ex != "", "patient:" + pid)
        return pid + "|" + ex
    if notes is not None:
        notes.append("exam level: the manifest has no exam_id column; each patient's images form one exam")
    return pid


def aggregate_predictions(pred: pd.DataFrame, manifest_df: pd.DataFrame, level: str = "breast",
                          how: str = "mean", *, severity: Sequence[str] | None = None,
                          notes: list[str] | None = None) -> pd.DataFrame:
    """Image-level predictions table -> one row per unit (breast or exam) per method and split.

    ``id`` becomes the unit key (``<patient_id>|<laterality>`` or ``<patient_id>|<exam_id>``), ``y_true`` the worst
    label of the unit's images, ``p_<class>`` the aggregated probabilities, ``y_pred`` their argmax; an ``n_images``
    column says how many images each unit pooled. Images of one unit in different splits raise (a leak).
    """
    validate_predictions(pred)
    if level == "image":
        return pred.copy()
    if how not in AGGREGATES:
        raise ValueError(f"evaluation aggregate must be one of {AGGREGATES}, got {how!r}")
    cols = ["id"] + [c for c in ("laterality", "exam_id") if c in manifest_df.columns]
    meta = manifest_df[cols].astype({"id": str}).drop_duplicates("id")
    missing = sorted(set(pred["id"].astype(str)) - set(meta["id"]))
    if missing:
        raise ValueError(f"{len(missing)} predicted id(s) are not in the manifest, e.g. {missing[:5]}")
    df = pred.assign(id=pred["id"].astype(str)).merge(meta, on="id", how="left", validate="many_to_one")
    df["unit"] = level_units(df, level, notes).to_numpy()
    splits = df.groupby(["method", "unit"])["split"].nunique()
    if (splits > 1).any():
        bad = splits[splits > 1].index.get_level_values("unit")[:5].tolist()
        raise ValueError(f"{level}-level evaluation: the images of {int((splits > 1).sum())} {level}(s) lie in more "
                         f"than one split, e.g. {bad}; split by patient (split.group_by_patient) so a {level} never "
                         "spans train/val/test")
    classes = classes_of(pred)
    order = severity_order(classes, severity)
    perm = [classes.index(c) for c in order]
    P = proba_of(df)[:, perm]
    Q = np.flip(np.cumsum(np.flip(P, axis=1), axis=1), axis=1)  # Q[:, j] = P(label >= order[j])
    Q = np.clip(Q, 0.0, 1.0)
    keys = df[["method", "split", "unit"]]
    codes, uniques = pd.MultiIndex.from_frame(keys).factorize()
    n_units = len(uniques)
    if how == "mean":
        sums = np.zeros((n_units, Q.shape[1]))
        np.add.at(sums, codes, Q)
        Qa = sums / np.bincount(codes, minlength=n_units)[:, None]
    elif how == "max":
        Qa = np.zeros((n_units, Q.shape[1]))
        np.maximum.at(Qa, codes, Q)
    else:  # noisy_or in log space: 1 - exp(sum log(1 - q))
        logs = np.zeros((n_units, Q.shape[1]))
        np.add.at(logs, codes, np.log1p(-np.minimum(Q, 1.0 - 1e-15)))
        Qa = 1.0 - np.exp(logs)
    Qa[:, 0] = 1.0
    Qa = np.minimum.accumulate(Qa, axis=1)  # guards rounding: q stays non-increasing
    Pa = Qa - np.concatenate([Qa[:, 1:], np.zeros((n_units, 1))], axis=1)
    Pa = Pa[:, np.argsort(perm)]  # back to the table's class order
    rank = {c: i for i, c in enumerate(order)}
    worst = df.assign(_rank=df["y_true"].astype(str).map(rank), _code=codes).groupby("_code")["_rank"].max()
    first = df.assign(_code=codes).groupby("_code").first()
    out = pd.DataFrame({
        "id": [u[2] for u in uniques],
        "patient_id": first["patient_id"].astype(str).to_numpy(),
        "split": [u[1] for u in uniques],
        "method": [u[0] for u in uniques],
        "y_true": [order[int(r)] for r in worst.sort_index().to_numpy()],
        "y_pred": [classes[int(i)] for i in Pa.argmax(axis=1)],
    })
    for j, c in enumerate(classes):
        out[PROB_PREFIX + c] = Pa[:, j]
    out["n_images"] = np.bincount(codes, minlength=n_units)
    out["level"] = level
    return out


def unit_manifest(manifest_df: pd.DataFrame, level: str, notes: list[str] | None = None) -> pd.DataFrame:
    """Unit-level metadata table (``id`` = unit key) for subgroups: the columns constant within every unit."""
    if level == "image":
        return manifest_df
    df = manifest_df.copy()
    df["unit"] = level_units(df, level, notes).to_numpy()
    g = df.groupby("unit", sort=False)
    keep = ["patient_id"] + [c for c in df.columns
                             if c not in ("id", "unit", "patient_id", "image") and g[c].nunique(dropna=False).max() <= 1]
    out = g[keep].first().reset_index().rename(columns={"unit": "id"})
    out["n_images"] = g.size().to_numpy()
    return out
