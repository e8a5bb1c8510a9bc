"""Data step of a run: read the source in its native layout, optionally subset, split by patient, audit leaks."""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from breastclip.config import ConfigError, ExperimentConfig
from breastclip.data.leaks import NEAR_DUPLICATE_POLICIES, LeakAudit
from breastclip.data.manifest import Manifest
from breastclip.data.splits import assign_splits, audit_leaks
from breastclip.pipeline.options import check_options, split_options
from breastclip.user_cache import cache_root, leak_fingerprints_file

log = logging.getLogger("breastclip.run")
_COUNTED_SKIP = re.compile(r"^(\d+)\b.*\b(skipped|excluded|dropped|ignored)\b")


class LeakError(RuntimeError):
    """The split leaks (patient in two parts, duplicate images across parts, a part without a class)."""


def load_manifest(cfg: ExperimentConfig) -> Manifest:
    """The data set as a Manifest: the bundled synthetic generator or a native-layout reader."""
    source = Path(cfg.data.source)
    options = dict(cfg.data.options)
    if cfg.data.format == "synthetic":
        from breastclip.data.synthetic import make_synthetic

        options = check_options(make_synthetic, options, "data.options (synthetic)", fixed=("root",))
        return make_synthetic(source, **options).validate(check_files=False)
    from breastclip.data.sources import FORMATS, detect_format, read_source

    fmt = FORMATS.get(cfg.data.format.lower().replace("-", "_")) if cfg.data.format else None
    if fmt is not None:
        options = check_options(fmt.read, options, f"data.options ({fmt.name} reader)", fixed=("path",))
    if not source.exists():
        raise ConfigError(f"data.source {source} does not exist (download it with `breastclip data download`, "
                          f"or point data.source at your copy)")
    reader = fmt or FORMATS[detect_format(source)]
    if cfg.embed.cache_dir and "cache_root" in inspect.signature(reader.read).parameters:
        options.setdefault("cache_root", cache_root(cfg.embed.cache_dir))  # derived files under the run's root
    manifest = read_source(source, format=reader.name, **options)
    # the same validation `data inspect` and `data split` apply: paths leaving the data root are refused (or, with
    # data.allow_outside_root, reported); missing or undecodable files become per-image failures later
    return manifest.validate(check_files=False, allow_outside_root=cfg.data.allow_outside_root)


def reader_flow(manifest: Manifest) -> dict:
    """The start of the participant flow: images the reader returned plus those its notes say it skipped.

    Readers report skipped files in their notes ("12 files not named like BreakHis were skipped ..."); a note
    that opens with a count and says skipped / excluded / dropped becomes one exclusion with that reason.
    """
    exclusions: list[dict[str, Any]] = []
    for note in manifest.notes:
        m = _COUNTED_SKIP.match(str(note))
        if m:
            exclusions.append({"reason": f"by the reader: {note}", "images": int(m.group(1))})
    return {"source_images": len(manifest) + sum(e["images"] for e in exclusions), "exclusions": exclusions}


def subset_manifest(manifest: Manifest, n: int, seed: int) -> Manifest:
    """A deterministic stratified subset of about ``n`` images for tiny runs.

    Strata are the label (and the official split when the source has one); each stratum keeps at least
    ``min(size, 4)`` images so every split can still hold every class.
    """
    df = manifest.df
    if n <= 0 or n >= len(df):
        return manifest
    keys = ["label"] + (["split"] if (df["split"] != "").any() else [])
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    groups = sorted(df.groupby(keys if len(keys) > 1 else keys[0]).groups.items(), key=lambda kv: str(kv[0]))
    total = len(df)
    for _key, idx in groups:
        idx = sorted(idx, key=lambda i: str(df.at[i, "id"]))
        want = max(min(len(idx), 4), round(n * len(idx) / total))
        pick = rng.permutation(len(idx))[:want]
        chosen.extend(idx[i] for i in sorted(pick))
    mask = df.index.isin(chosen)
    out = manifest.subset(mask)
    out.notes = [*out.notes, f"subset: {int(mask.sum())} of {len(df)} images (stratified, seed {seed})"]
    return out


def split_and_audit(manifest: Manifest, cfg: ExperimentConfig,
                    contact_sheet: Path | None = None) -> tuple[Manifest, dict]:
    """Assign train/val/test (patient-grouped, stratified; official split kept) and audit for leaks.

    With ``contact_sheet`` (a PNG in the results folder), flagged image pairs are drawn there and the audit records
    the file's name only (the report embeds it; no local path is written)."""
    split_kw, audit_kw = split_options(dict(cfg.split.options), assign_splits, audit_leaks, where="split.options")
    policy = audit_kw.get("near_duplicates", "warn")
    if not isinstance(policy, bool) and policy not in NEAR_DUPLICATE_POLICIES:  # before any image is hashed
        raise ConfigError(f"split.options.near_duplicates must be one of {', '.join(NEAR_DUPLICATE_POLICIES)} "
                          f"(or true/false), got {policy!r}")
    if "cache" not in audit_kw:  # image fingerprints keyed by path, size and mtime: a rerun reads no pixels
        audit_kw["cache"] = leak_fingerprints_file(cfg.embed.cache_dir or None)
    manifest = assign_splits(manifest, fractions=tuple(cfg.split.fractions), seed=cfg.split_seed,
                             keep_official=cfg.split.keep_official, **split_kw)
    if contact_sheet is not None:
        audit_kw.setdefault("contact_sheet", contact_sheet)
    audit = audit_leaks(manifest, **audit_kw)
    report = audit_to_dict(audit)
    if report.get("contact_sheet"):
        report["contact_sheet"] = Path(report["contact_sheet"]).name
    report["counts"] = split_counts(manifest.df)
    return manifest, report


def audit_to_dict(audit: LeakAudit) -> dict:
    return audit.to_dict()


def split_counts(df: pd.DataFrame) -> dict:
    """Images per split and class, and patients per split."""
    out: dict = {}
    for part, sub in df.groupby("split"):
        out[str(part) or "unassigned"] = {"images": len(sub), "patients": int(sub["patient_id"].nunique()),
                                          "classes": {str(k): int(v) for k, v in sub["label"].value_counts().items()}}
    return out


def enforce_audit(report: dict, cfg: ExperimentConfig) -> None:
    if report.get("ok", True):
        return
    problems = report.get("problems", [])
    text = "\n- ".join(str(p) for p in problems) or "(no details)"
    if cfg.split.on_leak == "refuse":
        raise LeakError("the split failed the leak audit; each problem below says what fixes it (split.on_leak = "
                        f"\"warn\" runs anyway on a leaking split, and the report then says it leaks):\n- {text}")
    log.warning("leak audit failed; going on because split.on_leak = 'warn':\n- %s", text)
