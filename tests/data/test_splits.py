"""Split guarantees (property-based) and the leak audit on files written in tmp_path."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from breastclip.data import leaks
from breastclip.data.breast import crop_breast
from breastclip.data.manifest import Manifest
from breastclip.data.splits import (
    LeakError,
    SplitError,
    assign_splits,
    audit_leaks,
    duplicate_groups,
    grouped_stratified_assign,
    split_summary,
)
from breastclip.data.synthetic import make_synthetic

FR = (0.64, 0.16, 0.20)
PARTS = ("train", "val", "test")


def table_manifest(patients: list[tuple[str, int]], *, pids=True, n_classes_hint=None) -> Manifest:
    """One row per image; patients given as (label, n_images). No files: splits never read pixels."""
    rows = []
    for p, (label, n) in enumerate(patients):
        for k in range(n):
            rows.append({"image": f"{label}/p{p}_{k}.png", "label": label, "patient_id": f"P{p}" if pids else None})
    df = pd.DataFrame(rows)
    if not pids:
        df = df.drop(columns="patient_id")
    return Manifest.from_records(df, "/nonexistent", name="t", source="t")


patients_strategy = st.lists(
    st.tuples(st.sampled_from(["benign", "malignant", "normal"]), st.integers(1, 4)), min_size=12, max_size=80)


def _part_of_patient(m: Manifest) -> pd.Series:
    return m.df.groupby("patient_id")["split"].nunique()


# ---- properties -------------------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients=patients_strategy, seed=st.integers(0, 10_000))
def test_no_patient_in_two_parts_and_every_class_where_possible(patients, seed):
    m = assign_splits(table_manifest(patients), seed=seed)
    assert set(m.df["split"]) <= set(PARTS) and (m.df["split"] != "").all()
    assert (_part_of_patient(m) == 1).all()
    n_patients = pd.Series([lab for lab, _ in patients]).value_counts()
    for label, count in n_patients.items():
        if count >= 3:  # one patient per part is possible: each part must get the class
            parts = set(m.df.loc[m.df["label"] == label, "split"])
            assert parts == set(PARTS), f"{label} ({count} patients) only in {parts}"
    assert len(m) == sum(n for _, n in patients)
    assert m.df["id"].tolist() == table_manifest(patients).df["id"].tolist()  # rows untouched, order kept


@settings(max_examples=30, deadline=None)
@given(n_per_class=st.tuples(st.integers(30, 120), st.integers(30, 120)), max_images=st.integers(1, 3),
       seed=st.integers(0, 10_000))
def test_grouped_per_class_fractions_within_tolerance(n_per_class, max_images, seed):
    rng = np.random.default_rng(seed)
    patients = [(lab, int(rng.integers(1, max_images + 1)))
                for lab, n in zip(("benign", "malignant"), n_per_class, strict=True) for _ in range(n)]
    m = assign_splits(table_manifest(patients), seed=seed)
    for label in ("benign", "malignant"):
        sub = m.df[m.df["label"] == label]
        for part, f in zip(PARTS, FR, strict=True):
            share = (sub["split"] == part).mean()
            # greedy assignment of whole patients: off by at most about one patient per part
            assert abs(share - f) <= 0.02 + max_images / len(sub), (label, part, share)


@settings(max_examples=30, deadline=None)
@given(counts=st.tuples(st.integers(5, 200), st.integers(5, 200), st.integers(5, 60)), seed=st.integers(0, 10_000))
def test_ungrouped_stratified_exact_within_rounding(counts, seed):
    patients = [(lab, 1) for lab, n in zip(("a", "b", "c"), counts, strict=True) for _ in range(n)]
    m = assign_splits(table_manifest(patients, pids=False), seed=seed)
    assert not m.patient_ids_from_source
    for label, n in zip(("a", "b", "c"), counts, strict=True):
        sub = m.df[m.df["label"] == label]
        for part, f in zip(PARTS, FR, strict=True):
            assert abs((sub["split"] == part).sum() - f * n) <= 2.0, (label, part)


@settings(max_examples=20, deadline=None)
@given(patients=patients_strategy, seed=st.integers(0, 10_000))
def test_same_seed_same_split(patients, seed):
    m = table_manifest(patients)
    a, b = assign_splits(m, seed=seed), assign_splits(m, seed=seed)
    assert a.df["split"].tolist() == b.df["split"].tolist()


@pytest.mark.parametrize("pids", [True, False])
def test_different_seeds_differ(pids):
    patients = [("benign" if i % 3 else "malignant", 1 + i % 3) for i in range(60)]
    m = table_manifest(patients, pids=pids)
    splits = {tuple(assign_splits(m, seed=s).df["split"]) for s in range(5)}
    assert len(splits) == 5


def test_input_manifest_not_modified():
    m = table_manifest([("a", 2)] * 10 + [("b", 2)] * 10)
    before = m.df.copy()
    out = assign_splits(m)
    pd.testing.assert_frame_equal(m.df, before)
    assert out is not m and any("patient-grouped" in n for n in out.notes)


def test_custom_fractions_and_empty_val():
    m = table_manifest([("a", 1)] * 50 + [("b", 1)] * 50)
    out = assign_splits(m, fractions=(0.8, 0.0, 0.2))
    assert set(out.df["split"]) == {"train", "test"}
    assert (out.df["split"] == "test").sum() == 20


@pytest.mark.parametrize("fractions,msg", [
    ((0.5, 0.5), "three numbers"),
    ((0.7, 0.2, 0.2), "sum to 1"),
    ((1.1, -0.1, 0.0), ">= 0"),
    ((0.0, 0.5, 0.5), "train fraction"),
])
def test_bad_fractions(fractions, msg):
    with pytest.raises(SplitError, match=msg):
        assign_splits(table_manifest([("a", 1)] * 10), fractions=fractions)


def test_oversampled_manifest_refused():
    m = table_manifest([("a", 1)] * 10 + [("b", 1)] * 3)
    oversampled = Manifest(pd.concat([m.df, m.df[m.df["label"] == "b"].assign(id=lambda d: d["id"] + "#2")],
                                     ignore_index=True), m.root, m.classes, m.name)
    with pytest.raises(SplitError, match="split before any oversampling"):
        assign_splits(oversampled)


def test_tiny_class_is_placed_and_audit_reports_missing_parts():
    m = assign_splits(table_manifest([("common", 1)] * 40 + [("rare", 1)]), seed=3)
    assert (m.df["split"] != "").all()
    audit = audit_leaks(m, near_duplicates=False)
    assert not audit.ok
    lacking = [p for p, classes in audit.missing_classes.items() if "rare" in classes]
    assert len(lacking) == 2


def test_grouped_assign_rejects_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        grouped_stratified_assign(["a", "b"], ["g"], FR)


# ---- official splits -----------------------------------------------------------------------------------------------
def _with_split(patients, splits) -> Manifest:
    m = table_manifest(patients)
    m.df["split"] = [splits[int(pid[1:])] for pid in m.df["patient_id"]]
    return m


def test_full_official_split_kept():
    patients = [("a", 2)] * 20 + [("b", 2)] * 20
    splits = ["train", "val", "test", "train"] * 10
    m = _with_split(patients, splits)
    out = assign_splits(m, seed=7)
    assert out.df["split"].tolist() == m.df["split"].tolist()
    assert "official split kept" in out.notes


def test_official_train_test_gets_val_carved_from_train_by_patient():
    patients = [("a", 3)] * 40 + [("b", 2)] * 40
    splits = ["test" if i % 5 == 0 else "train" for i in range(80)]
    m = _with_split(patients, splits)
    out = assign_splits(m, seed=1)
    was_test = m.df["split"] == "test"
    assert (out.df.loc[was_test, "split"] == "test").all()  # official test untouched
    assert set(out.df.loc[~was_test, "split"]) == {"train", "val"}
    assert (_part_of_patient(out) == 1).all()
    val_share = (out.df.loc[~was_test, "split"] == "val").mean()
    assert abs(val_share - 0.16 / 0.80) < 0.06
    assert any("carved out of train" in n for n in out.notes)


def test_official_split_with_train_only_gets_val_and_test():
    patients = [("a", 2)] * 30 + [("b", 1)] * 30
    m = _with_split(patients, ["train"] * 60)
    out = assign_splits(m, seed=0)
    assert set(out.df["split"]) == set(PARTS)
    assert (_part_of_patient(out) == 1).all()
    shares = out.df.groupby("split")["patient_id"].nunique() / 60
    assert abs(shares["train"] - 0.64) < 0.06 and abs(shares["test"] - 0.20) < 0.06
    assert any("val and test carved out of train" in n for n in out.notes)


def test_official_split_without_train_refused():
    m = _with_split([("a", 1)] * 6, ["test"] * 6)
    with pytest.raises(SplitError, match="no train part"):
        assign_splits(m)


def test_keep_official_false_resplits():
    patients = [("a", 1)] * 30 + [("b", 1)] * 30
    m = _with_split(patients, ["train", "val", "test"] * 20)
    out = assign_splits(m, keep_official=False, seed=5)
    assert set(out.df["split"]) == set(PARTS)
    assert out.df["split"].tolist() != m.df["split"].tolist()
    assert out.df["split"].tolist() == assign_splits(_with_split(patients, [""] * 60), seed=5).df["split"].tolist()


def test_partial_official_split_refused():
    m = _with_split([("a", 1)] * 10, ["train"] * 5 + [""] * 5)
    with pytest.raises(SplitError, match="5 rows have an official split and 5 have none"):
        assign_splits(m)


def test_unknown_official_split_value_refused():
    m = _with_split([("a", 1)] * 4, ["train", "dev", "test", "train"])
    with pytest.raises(SplitError, match="unknown split values"):
        assign_splits(m)


def test_split_summary_counts():
    m = assign_splits(table_manifest([("a", 2)] * 25 + [("b", 1)] * 25))
    table = split_summary(m)
    assert list(table.index) == list(PARTS)
    assert table["n_images"].sum() == 75 and table["n_patients"].sum() == 50
    assert table[["a", "b"]].sum().tolist() == [50, 25]


# ---- leak audit on real files --------------------------------------------------------------------------------------
@pytest.fixture()
def synth(tmp_path):
    return make_synthetic(tmp_path / "syn", n_patients=24, images_per_patient=2, size=64, seed=0)


def test_clean_split_passes(synth):
    m = assign_splits(synth, seed=0)
    audit = audit_leaks(m)
    assert audit.ok, audit.problems
    assert audit.near_duplicates == [] and audit.identical_images == []
    audit.raise_if_failed()
    assert "passed" in audit.summary()
    json.dumps(audit.to_dict())


def test_patient_leak_named(synth):
    m = assign_splits(synth, seed=0)
    pid = m.df.loc[m.df["split"] == "train", "patient_id"].iloc[0]
    row = m.df.index[(m.df["patient_id"] == pid)][0]
    m.df.loc[row, "split"] = "test"
    audit = audit_leaks(m, near_duplicates=False)
    assert not audit.ok
    assert audit.patients_in_several_parts == {pid: ["train", "test"]}
    with pytest.raises(LeakError, match=f"patient.*{pid} \\(train/test\\)"):
        audit.raise_if_failed()


def test_image_split_without_patient_ids_leaks_patients(synth):
    """The synthetic views of one patient look alike: an image-level split puts a patient in two parts."""
    m = assign_splits(synth, seed=0)
    naive = Manifest(m.df.copy(), m.root, m.classes, m.name, patient_ids_from_source=True)
    rng = np.random.default_rng(0)
    naive.df["split"] = rng.permutation(np.array(["train"] * 32 + ["val"] * 6 + ["test"] * 10))
    assert not audit_leaks(naive, near_duplicates=False).ok


def test_byte_identical_copy_across_parts(synth, tmp_path):
    m = assign_splits(synth, seed=0)
    src = m.df[m.df["split"] == "train"].iloc[0]
    shutil.copy(m.resolve(src["image"]), m.root / "copy.png")
    extra = {**src.to_dict(), "id": "copy", "image": "copy.png", "patient_id": "OTHER", "split": "test"}
    leaky = Manifest(pd.concat([m.df, pd.DataFrame([extra])], ignore_index=True), m.root, m.classes, m.name)
    for near in (True, False):  # size pre-filter path and full path
        audit = audit_leaks(leaky, near_duplicates=near)
        assert not audit.ok
        assert [(d["a"], d["b"]) for d in audit.identical_images] == [tuple(sorted((src["id"], "copy")))]
        assert any("byte-identical" in p for p in audit.problems)
        assert audit.near_duplicates == []  # the identical pair is not reported twice


def test_near_duplicate_reencoded_and_resized_copy(synth):
    m = assign_splits(synth, seed=0)
    src = m.df[m.df["split"] == "train"].iloc[1]
    im = Image.open(m.resolve(src["image"]))
    im.resize((80, 80), Image.Resampling.BICUBIC).convert("RGB").save(m.root / "near.jpg", quality=85)
    extra = {**src.to_dict(), "id": "near", "image": "near.jpg", "patient_id": "OTHER", "split": "val"}
    leaky = Manifest(pd.concat([m.df, pd.DataFrame([extra])], ignore_index=True), m.root, m.classes, m.name)
    audit = audit_leaks(leaky)  # default policy: near duplicates warn, with the option that changes it
    assert audit.ok and audit.identical_images == []
    pairs = [(d["a"], d["b"]) for d in audit.near_duplicates]
    assert tuple(sorted((src["id"], "near"))) in pairs
    assert all(d["distance"] <= audit.checked["max_distance"] for d in audit.near_duplicates)
    assert all(d["similarity"] >= audit.checked["min_similarity"] for d in audit.near_duplicates)
    warn = [w for w in audit.warnings if "near-duplicate image pair(s) across parts" in w]
    assert len(warn) == 1 and 'split.options.near_duplicates = "refuse"' in warn[0]
    refused = audit_leaks(leaky, near_duplicates="refuse")
    assert not refused.ok and any('split.options.near_duplicates = "warn"' in p for p in refused.problems)
    off = audit_leaks(leaky, near_duplicates="off")
    assert off.ok and off.near_duplicates == [] and off.checked["near_duplicates"] == "off"


def test_missing_class_and_unsplit_rows(synth):
    m = assign_splits(synth, seed=0)
    m.df.loc[(m.df["split"] == "val") & (m.df["label"] == "malignant"), "split"] = "train"
    m.df.loc[0, "split"] = ""
    audit = audit_leaks(m, near_duplicates=False)
    assert audit.missing_classes == {"val": ["malignant"]}
    assert audit.unsplit_rows == 1
    assert any("val has no malignant" in p for p in audit.problems)
    assert any("1 row(s) have no split" in p for p in audit.problems)


def test_unreadable_image_is_a_warning_not_a_crash(synth):
    m = assign_splits(synth, seed=0)
    m.resolve(m.df["image"].iloc[3]).write_bytes(b"")
    audit = audit_leaks(m)
    assert audit.ok
    assert len(audit.unreadable) == 1 and "zero-byte" in audit.unreadable[0].problem
    assert any("could not be read" in w for w in audit.warnings)


def test_hash_cache_avoids_decoding_again(synth, tmp_path, monkeypatch):
    m = assign_splits(synth, seed=0)
    cache = tmp_path / "hashes.json"
    first = audit_leaks(m, cache=cache)
    assert cache.is_file() and len(json.loads(cache.read_text())) == len(m)

    def boom(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(leaks, "_content_fingerprint", boom)
    second = audit_leaks(m, cache=cache)
    assert second.to_dict() == first.to_dict()


def test_phash_matches_imagehash_reference(synth):
    import imagehash

    path = synth.paths()[0]
    fps, _ = leaks.fingerprint_files([path])
    grey = np.asarray(Image.open(path).convert("RGB")).max(axis=2)  # small image: decoded at full size
    content = Image.fromarray(crop_breast(grey, margin=0.0).image)
    assert fps[0].phash == str(imagehash.phash(content))


def test_duplicate_groups_and_group_duplicates_split(synth):
    m = synth
    src = m.df.iloc[5]
    shutil.copy(m.resolve(src["image"]), m.root / "dup.png")
    extra = {**src.to_dict(), "id": "dup", "image": "dup.png", "patient_id": "STRANGER"}
    both = Manifest(pd.concat([m.df, pd.DataFrame([extra])], ignore_index=True), m.root, m.classes, m.name)
    groups = duplicate_groups(both)
    assert groups[5] == groups[-1]  # the copy joins the patient of its original
    same_patient = both.df.index[both.df["patient_id"] == src["patient_id"]]
    assert len({groups[i] for i in same_patient}) == 1
    for seed in range(4):
        out = assign_splits(both, seed=seed, group_duplicates=True)
        assert out.df.loc[5, "split"] == out.df.iloc[-1]["split"]
        assert audit_leaks(out).ok


# ---- real data -------------------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.slow
def test_busi_duplicates_found_and_grouped(shared_data, tmp_path):
    """BUSI holds copies of one scan under different names (one even as benign AND malignant): a naive split leaks
    them, the audit names them, and group_duplicates=True gives a split that passes."""
    root = shared_data / "busi" / "Dataset_BUSI_with_GT"
    files = sorted(p for p in root.glob("*/*.png") if "_mask" not in p.name)
    assert len(files) == 780
    m = Manifest.from_records([{"image": str(p.relative_to(root)), "label": p.parent.name} for p in files], root,
                              name="busi", source="busi")
    cache = tmp_path / "busi_hashes.json"
    naive = audit_leaks(assign_splits(m, seed=0), cache=cache, workers=2, near_duplicates="refuse")
    assert not naive.ok and len(naive.near_duplicates) >= 20
    assert any("benign (433).png" in w and "malignant (145).png" in w for w in naive.warnings)
    fixed = assign_splits(m, seed=0, group_duplicates=True, cache=cache)
    audit = audit_leaks(fixed, cache=cache)
    assert audit.ok, audit.problems
    shares = fixed.df["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.64) < 0.04 and abs(shares["test"] - 0.20) < 0.04


@pytest.mark.parametrize("op", [Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90])
def test_mirrored_or_rotated_copy_across_parts(synth, op):
    """Augmented copies shipped inside a data set (flipped, rotated) leak as much as plain copies."""
    m = assign_splits(synth, seed=0)
    src = m.df[m.df["split"] == "train"].iloc[2]
    Image.open(m.resolve(src["image"])).transpose(op).save(m.root / "aug.png")
    extra = {**src.to_dict(), "id": "aug", "image": "aug.png", "patient_id": "OTHER", "split": "test"}
    leaky = Manifest(pd.concat([m.df, pd.DataFrame([extra])], ignore_index=True), m.root, m.classes, m.name)
    audit = audit_leaks(leaky)
    pair = [d for d in audit.near_duplicates if "aug" in (d["a"], d["b"])]
    assert len(pair) == 1 and pair[0]["distance"] <= 2
    # the exact transform reported may differ from ``name`` when the lesion is nearly symmetric, never identity
    assert pair[0]["transform"] != "identity"
    assert f"{pair[0]['transform'].replace('_', ' ')} copy" in " ".join(audit.warnings)
    plain = audit_leaks(leaky, flips=False)
    assert not any("aug" in (d["a"], d["b"]) for d in plain.near_duplicates)
