"""Leak-safe train/val/test splits and the audit that refuses a leaking split.

:func:`assign_splits` always runs on the manifest *before* any resampling or augmentation (oversampling a class
and then splitting copies the same image into train and test). Rules, in order:

1. ``keep_official`` and every row already has a split: kept. When the official split has only train and test
   (CBIS-DDSM), val is carved out of train, grouped by patient and stratified, with the val share
   ``f_val / (f_train + f_val)`` of the given fractions.
2. Patient ids from the source (``manifest.patient_ids_from_source``): patient-grouped, stratified assignment of
   whole patients to parts (:func:`grouped_stratified_assign`), so no patient is in two parts.
3. No patient ids (every image its own group): scikit-learn ``train_test_split(stratify=...)`` twice (test first,
   then val from the rest); classes too small to stratify fall back to rule 2's assigner.

Everything is deterministic given ``seed``. :func:`audit_leaks` then checks a split (patients in two parts,
byte-identical and near-duplicate images across parts, parts that lack a class, rows without a split).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .leaks import LeakAudit, LeakError, audit_leaks, duplicate_groups
from .manifest import SPLITS, Manifest

__all__ = [
    "DEFAULT_FRACTIONS",
    "LeakAudit",
    "LeakError",
    "SplitError",
    "assign_splits",
    "audit_leaks",
    "duplicate_groups",
    "grouped_stratified_assign",
    "split_summary",
]

DEFAULT_FRACTIONS = (0.64, 0.16, 0.20)


class SplitError(ValueError):
    """Fractions or an existing split that cannot be used."""


def assign_splits(
    manifest: Manifest,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    keep_official: bool = True,
    *,
    group_duplicates: bool = False,
    cache: str | os.PathLike | None = None,
    workers: int = 0,
) -> Manifest:
    """Return a new Manifest with ``split`` filled (train / val / test), leak-safe and stratified by label.

    ``group_duplicates`` also keeps byte-identical and near-duplicate images (perceptual hash, see
    :func:`duplicate_groups`) in one part, merged with their patients: needed for sources such as BUSI that hold
    several copies of one scan under different names. ``cache`` and ``workers`` are passed to the hashing.
    """
    fr = _check_fractions(fractions)
    df = manifest.df.copy()
    repeated = df["image"][df["image"].duplicated()].unique().tolist()
    if repeated:
        raise SplitError(
            f"manifest '{manifest.name}': {len(repeated)} image file(s) listed more than once, e.g. {repeated[:3]}; "
            "split before any oversampling or augmentation (a repeated row would land in several parts)")
    def groups_of(rows: np.ndarray) -> np.ndarray:
        if group_duplicates:  # hashing is costly: only when a split is actually computed
            return duplicate_groups(manifest, cache=cache, workers=workers)[rows]
        return df["patient_id"].astype(str).to_numpy()[rows]

    existing = df["split"].fillna("").astype(str)
    has_split = existing != ""
    notes = list(manifest.notes)
    if keep_official and has_split.any():
        if not has_split.all():
            raise SplitError(
                f"manifest '{manifest.name}': {int(has_split.sum())} rows have an official split and "
                f"{int((~has_split).sum())} have none; fill it in or pass keep_official=False to resplit everything")
        unknown = sorted(set(existing) - set(SPLITS))
        if unknown:
            raise SplitError(f"manifest '{manifest.name}': unknown split values {unknown} (allowed {list(SPLITS)})")
        parts = set(existing)
        missing = [p for p, f in zip(SPLITS[1:], fr[1:], strict=True) if p not in parts and f > 0]
        if not missing:
            notes.append("official split kept")
            return _with(manifest, df, notes)
        if "train" not in parts:
            raise SplitError(f"manifest '{manifest.name}': the official split has no train part (parts: "
                             f"{sorted(parts)}); pass keep_official=False to resplit everything")
        # carve the missing parts (CBIS-DDSM: val) out of train, grouped and stratified, with their relative shares
        train = np.flatnonzero(existing.to_numpy() == "train")
        wanted = ["train", *missing]
        sub = np.array([fr[SPLITS.index(p)] for p in wanted])
        sub = sub / sub.sum()
        assign = grouped_stratified_assign(df["label"].astype(str).to_numpy()[train], groups_of(train), sub,
                                           seed=seed)
        df.loc[df.index[train], "split"] = np.array(wanted)[assign]
        shares = ", ".join(f"{p} {f:.0%}" for p, f in zip(wanted, sub, strict=True))
        notes.append(f"official split kept; {' and '.join(missing)} carved out of train ({shares} of train, grouped "
                     f"by patient, stratified, seed {seed})")
        return _with(manifest, df, notes)

    labels = df["label"].astype(str).to_numpy()
    names = np.array(SPLITS)
    if group_duplicates:
        groups_all = groups_of(np.arange(len(df)))
        assign = grouped_stratified_assign(labels, groups_all, fr, seed=seed)
        n_groups = len(set(groups_all))
        how = (f"stratified, grouped by patient and duplicate image ({len(df) - n_groups} image(s) joined a "
               "duplicate's group)")
    elif manifest.patient_ids_from_source:
        assign = grouped_stratified_assign(labels, groups_of(np.arange(len(df))), fr, seed=seed)
        how = "patient-grouped stratified"
    else:
        assign = _stratified_assign(labels, fr, seed)
        how = "stratified (no patient ids: each image its own group)"
    df["split"] = names[assign]
    notes.append(f"split: {how}, fractions train/val/test {fr[0]:.2f}/{fr[1]:.2f}/{fr[2]:.2f}, seed {seed}")
    return _with(manifest, df, notes)


def grouped_stratified_assign(
    labels: Sequence | np.ndarray, groups: Sequence | np.ndarray, fractions: Sequence[float] | np.ndarray,
    seed: int = 0,
) -> np.ndarray:
    """Assign whole groups to parts (index into ``fractions``) so each part gets its share of every class.

    Why not ``StratifiedGroupKFold``: it only makes equal folds, not arbitrary fractions such as 64/16/20.
    The algorithm follows the same greedy idea: (1) for every class (rarest first) with at least as many groups
    as there are non-empty parts, one group is placed in each part still lacking that class (smallest groups
    first, so coverage costs little balance); (2) the remaining groups, larger first (shuffled by ``seed`` within
    a size band), each go to the part where they most reduce the squared relative deviation from the per-class
    targets ``fraction[p] * n_class``. Deterministic for a given seed.
    """
    label_arr = np.asarray(labels).astype(str)
    group_arr = np.asarray(groups).astype(str)
    fr = np.asarray(fractions, dtype=float)
    if len(label_arr) != len(group_arr):
        raise ValueError("labels and groups differ in length")
    if len(label_arr) == 0:
        return np.zeros(0, dtype=int)
    classes, y = np.unique(label_arr, return_inverse=True)
    gnames, g = np.unique(group_arr, return_inverse=True)
    counts = np.zeros((len(gnames), len(classes)), dtype=float)  # group x class
    np.add.at(counts, (g, y), 1)
    totals = counts.sum(0)
    parts = np.flatnonzero(fr > 0)
    target = fr[:, None] * totals[None, :]  # part x class
    current = np.zeros_like(target)
    where = np.full(len(gnames), -1, dtype=int)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(gnames))

    def put(gi: int, p: int | np.integer) -> None:
        where[gi] = p
        current[p] += counts[gi]

    # (1) coverage: every part gets each class where the class has enough groups
    sizes = counts.sum(1)
    for c in np.argsort(totals, kind="stable"):
        holders = [gi for gi in order if counts[gi, c] > 0]
        if len(holders) < len(parts):
            continue
        for p in sorted(parts, key=lambda p: -fr[p]):
            if current[p, c] > 0:
                continue
            free = [gi for gi in holders if where[gi] < 0]
            if not free:
                break
            # the smallest free group, preferring ones dominated by this class
            best = min(free, key=lambda gi: (sizes[gi], -counts[gi, c] / sizes[gi]))
            put(best, p)

    # (2) greedy balance; size bands keep big groups early while the seed still changes the order
    band = np.floor(np.log2(np.maximum(sizes, 1)))
    rest = [gi for gi in order if where[gi] < 0]
    rest.sort(key=lambda gi: -band[gi])  # stable: keeps the random order within a band
    scale = np.maximum(totals, 1.0)
    for gi in rest:
        best_p, best_cost = -1, math.inf
        for p in parts:
            before = ((current[p] - target[p]) / scale) ** 2
            after = ((current[p] + counts[gi] - target[p]) / scale) ** 2
            cost = float((after - before).sum())
            if cost < best_cost - 1e-12:
                best_p, best_cost = int(p), cost
        put(gi, best_p)
    return where[g]


def split_summary(manifest: Manifest) -> pd.DataFrame:
    """Images and patients per part and class (rows: parts; columns: class counts, n_images, n_patients)."""
    df = manifest.df
    table = pd.crosstab(df["split"], df["label"]).reindex(columns=manifest.classes, fill_value=0)
    table["n_images"] = df.groupby("split").size()
    table["n_patients"] = df.groupby("split")["patient_id"].nunique()
    order = [s for s in (*SPLITS, "") if s in table.index]
    return table.loc[order]


# ---- helpers ----------------------------------------------------------------------------------------------------
def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3:
        raise SplitError(f"fractions must be three numbers (train, val, test), got {fractions!r}")
    if any(f < 0 or not math.isfinite(f) for f in fr):
        raise SplitError(f"fractions must be finite and >= 0, got {fractions!r}")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise SplitError(f"fractions must sum to 1, got {fractions!r} (sum {sum(fr):g})")
    if fr[0] <= 0:
        raise SplitError(f"the train fraction must be > 0, got {fractions!r}")
    return fr


def _stratified_assign(labels: np.ndarray, fr: tuple[float, float, float], seed: int) -> np.ndarray:
    """Image-level stratified split with scikit-learn; tiny classes fall back to the greedy assigner."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    out = np.zeros(len(labels), dtype=int)
    try:
        rest = idx
        if fr[2] > 0:
            rest, test = train_test_split(idx, test_size=fr[2], stratify=labels, random_state=seed)
            out[test] = 2
        if fr[1] > 0:
            share = fr[1] / (fr[0] + fr[1])
            _, val = train_test_split(rest, test_size=share, stratify=labels[rest], random_state=seed + 1)
            out[val] = 1
        return out
    except ValueError:  # a class with too few members to stratify
        return grouped_stratified_assign(labels, idx.astype(str), fr, seed=seed)


def _with(manifest: Manifest, df: pd.DataFrame, notes: list[str]) -> Manifest:
    return Manifest(df=df.reset_index(drop=True), root=manifest.root, classes=list(manifest.classes),
                    name=manifest.name, patient_ids_from_source=manifest.patient_ids_from_source, notes=notes)
