"""The leak audit on real full-field mammograms: different women never flagged (plain or padded into large black
canvases, the way digitised film looks), their flipped / re-encoded copies still flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from breastclip.data.images import load_image
from breastclip.data.manifest import Manifest
from breastclip.data.splits import audit_leaks

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
PARTS = ("train", "val", "test")


def _women(shared_data) -> pd.DataFrame:
    """One full-field image per row, every exam a different woman (GMIC's raw copies of its crops left out)."""
    t = pd.read_csv(shared_data / "mammography_samples" / "labels.csv")
    t = t[(t["kind"] == "full_field") & ~t["path"].str.startswith("nyu_ffdm/gmic/images/")]
    return t.reset_index(drop=True)


def _manifest(rows: list[dict], root) -> Manifest:
    df = pd.DataFrame(rows)
    order = {pid: k for k, pid in enumerate(dict.fromkeys(df["patient_id"]))}  # one woman, one part
    df["split"] = [PARTS[order[p] % 3] for p in df["patient_id"]]
    m = Manifest.from_records(df, root, name="mammo", source="test")
    m.df["split"] = df["split"].to_numpy()
    return m


def _downsized(path, long_side: int = 1024) -> np.ndarray:
    im = Image.fromarray(load_image(path))
    im.thumbnail((long_side, long_side))
    return np.asarray(im)


@pytest.fixture(scope="module")
def padded(shared_data, tmp_path_factory):
    """Every mammogram padded into a black canvas 1.6-2.5x its size at a random offset, as PNG."""
    out = tmp_path_factory.mktemp("padded")
    rng = np.random.default_rng(0)
    rows = []
    for i, r in _women(shared_data).iterrows():
        img = _downsized(shared_data / "mammography_samples" / r["path"])
        h, w = img.shape[:2]
        fh, fw = rng.uniform(1.6, 2.5, size=2)
        canvas = np.zeros((int(h * fh), int(w * fw), 3), np.uint8)
        y, x = rng.integers(0, canvas.shape[0] - h), rng.integers(0, canvas.shape[1] - w)
        canvas[y:y + h, x:x + w] = img
        Image.fromarray(canvas).save(out / f"{i:02d}.png")
        rows.append({"image": f"{i:02d}.png", "label": "x", "patient_id": r["patient_id"], "src": r["path"]})
    return out, rows


def test_different_women_are_never_near_duplicates(shared_data):
    root = shared_data / "mammography_samples"
    t = _women(shared_data)
    rows = [{"image": p, "label": "x", "patient_id": pid} for p, pid in zip(t["path"], t["patient_id"], strict=True)]
    m = _manifest(rows, root)
    audit = audit_leaks(m, near_duplicates="refuse")
    assert audit.near_duplicates == [], audit.near_duplicates
    assert audit.ok, audit.problems
    assert not any("near-duplicate" in w for w in audit.warnings), audit.warnings  # not even within a part


def test_padded_canvases_pass_and_their_copies_are_flagged(shared_data, padded, tmp_path):
    folder, rows = padded
    m = _manifest(rows, folder)
    audit = audit_leaks(m)  # the default policy
    assert audit.near_duplicates == [], audit.near_duplicates
    assert audit.ok and not any("near-duplicate" in w for w in audit.warnings)
    # flipped and JPEG re-encoded copies of three padded mammograms, given to other women in other parts
    extra = []
    for k, (i, how) in enumerate(((0, "flip"), (5, "jpeg"), (9, "unpadded"))):
        src = rows[i]
        img = np.asarray(Image.open(folder / src["image"]))
        name = f"copy{k}.{'jpg' if how == 'jpeg' else 'png'}"
        if how == "flip":
            Image.fromarray(np.ascontiguousarray(img[:, ::-1])).save(folder / name)
        elif how == "jpeg":
            Image.fromarray(img).save(folder / name, quality=75)
        else:  # the original file, without the canvas, at another size
            Image.fromarray(_downsized(shared_data / "mammography_samples" / src["src"], 1400)).save(folder / name)
        extra.append({"image": name, "label": "x", "patient_id": f"other{k}", "of": src["image"]})
    leaky = _manifest(rows + extra, folder)
    n = len(rows)
    for k, e in enumerate(extra):  # each copy in a part its original is not in
        own = leaky.df.loc[leaky.df["image"] == e["of"], "split"].iloc[0]
        leaky.df.loc[n + k, "split"] = next(p for p in PARTS if p != own)
    found = audit_leaks(leaky)
    by_pair = {frozenset((d["a"], d["b"])) for d in found.near_duplicates}
    ids = dict(zip(leaky.df["image"], leaky.df["id"], strict=True))
    for e in extra:
        assert frozenset((ids[e["image"]], ids[e["of"]])) in by_pair, e
    assert len(found.near_duplicates) == len(extra)
    assert found.ok  # warned, with the option that makes it refuse
    assert any('split.options.near_duplicates = "refuse"' in w for w in found.warnings)
