"""MedMNIST ``.npz`` files (BreastMNIST and its 2D siblings, any size 28/64/128/224), official splits kept.

The pixel arrays live inside the npz. On first read they are exported once to PNG files (``<split>/<index>.png``) in
a content-addressed cache folder ``<cache>/<stem>-<md5 prefix>/`` (``cache_dir=``, else ``medmnist/`` under the
user cache root, see breastclip.user_cache): never inside the data folder, which may be shared or read-only. The manifest
therefore stays a table of ordinary image files that every decoder, hash-based leak check and embedding cache handles
without special cases. A changed npz gets a new folder; an interrupted export resumes (a marker file is written last).

A missing npz is downloaded with the ``medmnist`` package's own URL and md5 (``medmnist.INFO``); offline, the error
names the file to place and where.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from breastclip.atomic import atomic_path, atomic_write_text
from breastclip.data.manifest import Manifest
from breastclip.data.sources._files import walk_files
from breastclip.user_cache import medmnist_dir

SPLIT_NAMES = ("train", "val", "test")
NAME_RE = re.compile(r"^(?P<flag>[a-z0-9]+mnist(?:3d)?)(?:_(?P<size>\d+))?$")
MARKER = "breastclip_export.json"


def _source_error(msg: str) -> Exception:
    from breastclip.data.sources import SourceError

    return SourceError(msg)


def _info() -> dict:
    from medmnist import INFO

    return INFO


def _parse_stem(stem: str) -> tuple[str, int] | None:
    m = NAME_RE.match(stem.lower())
    if m is None:
        return None
    return m["flag"], int(m["size"] or 28)


def _npz_in(path: Path) -> list[Path]:
    return [f for f in walk_files(path, max_depth=2) if f.suffix == ".npz" and _parse_stem(f.stem)]


def detect(path: Path) -> bool:
    """A MedMNIST-named ``.npz`` file, or a folder holding one (two levels deep at most)."""
    if path.is_file():
        return path.suffix == ".npz" and _parse_stem(path.stem) is not None
    return path.is_dir() and bool(_npz_in(path))


def npz_filename(flag: str, size: int = 28) -> str:
    """MedMNIST's own file name: ``breastmnist.npz`` (28 px) or ``breastmnist_224.npz``."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def download_npz(flag: str, size: int = 28, root: str | Path = ".") -> Path:
    """Download ``flag`` at ``size`` into ``root`` from MedMNIST's Zenodo URL, verifying the package's md5."""
    info = _info()
    if flag not in info:
        raise _source_error(f"unknown MedMNIST data set '{flag}'; known: {sorted(info)}")
    suffix = "" if size == 28 else f"_{size}"
    url, md5 = info[flag].get(f"url{suffix}"), info[flag].get(f"MD5{suffix}")
    if not url:
        raise _source_error(f"MedMNIST '{flag}' has no size {size} release")
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    target = root / npz_filename(flag, size)
    from torchvision.datasets.utils import download_url

    try:
        download_url(url=url, root=str(root), filename=target.name, md5=md5)
    except Exception as e:  # network down, proxy, md5 mismatch: say what to place where
        raise _source_error(
            f"could not download {target.name} ({type(e).__name__}: {e}). Download it from {url} "
            f"(md5 {md5}) and place it at {target}") from e
    if not target.is_file():
        raise _source_error(f"download of {url} did not produce {target}; place the file there by hand (md5 {md5})")
    return target


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _slug(label: str) -> str:
    """MedMNIST label name to a class name: ``'normal, benign'`` -> ``normal_or_benign``."""
    text = label.strip().lower().replace(", ", " or ")
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def _locate(path: Path, flag: str | None, size: int | None, download: bool) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = _npz_in(path)
        if flag is not None:
            found = [f for f in found if (p := _parse_stem(f.stem)) is not None and p[0] == flag
                     and (size is None or p[1] == size)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise _source_error(f"{path} holds several MedMNIST files {[f.name for f in found]}; pass flag= and size=")
        root = path
    elif path.suffix == ".npz":  # a file that does not exist yet: download it there
        parsed = _parse_stem(path.stem)
        if flag is None and parsed:
            flag, size = parsed[0], size or parsed[1]
        root = path.parent
    elif len(path.parts) == 1 and _parse_stem(path.name):  # a bare name such as "breastmnist" or "pathmnist_64"
        named = _parse_stem(path.name)
        assert named is not None  # the branch's condition
        flag, size = flag or named[0], size or named[1]
        root = Path(os.environ.get("MEDMNIST_ROOT", "~/.medmnist"))
    else:  # a folder that does not exist yet: download into it
        root = path
    if flag is None:
        raise _source_error(f"no MedMNIST .npz found at {path}; pass flag= (e.g. 'breastmnist') to download one")
    target = root.expanduser() / npz_filename(flag, size or 28)
    if target.is_file():
        return target
    if not download:
        raise _source_error(f"{target} is missing; download it from {_info().get(flag, {}).get('url', 'zenodo')} or "
                            "allow download=True")
    return download_npz(flag, size or 28, root)


def _export_dir(npz: Path, md5: str, folder: Path) -> Path:
    return Path(folder).expanduser() / f"{npz.stem}-{md5[:12]}"


def _complete(out: Path, md5: str) -> dict[str, int] | None:
    """Counts of a finished export of this npz (marker written last, every PNG present), else None."""
    marker = out / MARKER
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    counts = meta.get("counts", {})
    if meta.get("md5") != md5 or not counts:
        return None
    for split, n in counts.items():
        names = {f"{i:05d}.png" for i in range(n)}
        if not (out / split).is_dir() or not names <= set(os.listdir(out / split)):
            return None
    return {k: int(v) for k, v in counts.items()}


def _export(data, out: Path, md5: str) -> dict[str, int]:
    """Write every split's images as PNG; resumes (files already written from this same npz are kept)."""
    from PIL import Image

    done = _complete(out, md5)
    if done is not None:  # the usual case after the first read: no image array is even decompressed
        return done
    counts = {s: int(data[f"{s}_labels"].shape[0]) for s in SPLIT_NAMES if f"{s}_images" in data}
    progress = None
    if sum(counts.values()) > 2000:
        from rich.progress import Progress

        progress = Progress(transient=True)
        progress.start()
        task = progress.add_task(f"exporting {sum(counts.values())} images to {out}", total=sum(counts.values()))
    try:
        for split in counts:
            images = data[f"{split}_images"]
            counts[split] = len(images)
            (out / split).mkdir(parents=True, exist_ok=True)
            existing = set(os.listdir(out / split))
            for i, arr in enumerate(images):
                name = f"{i:05d}.png"
                if name not in existing:  # else written earlier from this same npz (the folder name holds its md5)
                    with atomic_path(out / split / name) as tmp:
                        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")
                if progress is not None:
                    progress.advance(task)
    finally:
        if progress is not None:
            progress.stop()
    atomic_write_text(out / MARKER, json.dumps({"md5": md5, "counts": counts}, indent=2))
    return counts


def read_medmnist(
    path: str | Path,
    *,
    flag: str | None = None,
    size: int | None = None,
    cache_dir: str | Path | None = None,
    cache_root: str | Path | None = None,
    download: bool = True,
    name: str | None = None,
    source: str = "medmnist",
) -> Manifest:
    """Read a MedMNIST npz (downloading it when absent and allowed) into a manifest of exported PNG files.

    The PNGs go to ``cache_dir`` when given, else to ``medmnist/`` under ``cache_root`` (an experiment's cache root,
    ``embed.cache_dir``), else under the user's cache root (:mod:`breastclip.user_cache`).

    ``split`` is the official split; labels are ``medmnist.INFO`` names made identifier-safe (``normal_or_benign``),
    with the official integer kept in ``label_id``.
    """
    npz = _locate(Path(path).expanduser(), flag, size, download)
    parsed = _parse_stem(npz.stem)
    flag = flag or (parsed[0] if parsed else None)
    info = _info().get(flag) if flag else None
    if info is not None and flag and ("multi-label" in info["task"] or flag.endswith("3d")):
        raise _source_error(f"{npz}: MedMNIST '{flag}' is {info['task']}{' 3D' if flag.endswith('3d') else ''}; "
                            "only single-label 2D sets are supported")
    try:
        data = np.load(npz, allow_pickle=False)
        keys = set(data.files)
    except Exception as e:
        raise _source_error(f"{npz} is not a readable .npz file ({e})") from e
    missing = [f"{s}_{k}" for s in SPLIT_NAMES for k in ("images", "labels")
               if f"{s}_images" in keys and f"{s}_{k}" not in keys]
    if not any(f"{s}_images" in keys for s in SPLIT_NAMES) or missing:
        raise _source_error(f"{npz} lacks MedMNIST arrays {missing or ['train_images', 'train_labels']}; keys: {sorted(keys)}")

    names = {int(k): _slug(v) for k, v in info["label"].items()} if info else None
    md5 = _md5(npz)
    out = _export_dir(npz, md5, Path(cache_dir) if cache_dir is not None else medmnist_dir(cache_root))
    counts = _export(data, out, md5)

    rows = []
    for split in counts:
        labels = np.asarray(data[f"{split}_labels"])
        if labels.ndim > 1 and labels.shape[1] != 1:
            raise _source_error(f"{npz}: {split}_labels has shape {labels.shape}; multi-label files are not supported")
        labels = labels.reshape(-1)
        if len(labels) != counts[split]:
            raise _source_error(f"{npz}: {split} has {counts[split]} images but {len(labels)} labels")
        for i, y in enumerate(labels.tolist()):
            if names is not None and int(y) not in names:
                raise _source_error(f"{npz}: label {y} in {split} is not in MedMNIST's {flag} labels {names}")
            rows.append({"id": f"{flag or npz.stem}:{split}/{i}", "image": f"{split}/{i:05d}.png",
                         "label": names[int(y)] if names else str(y), "split": split,
                         "label_id": int(y), "index_in_split": i})
    classes = [names[k] for k in sorted(names)] if names else sorted({str(r["label"]) for r in rows}, key=int)
    manifest = Manifest.from_records(rows, out, name=name or npz.stem, source=source, classes=classes)
    manifest.notes.append(f"official MedMNIST splits kept; PNG export of {npz} in {out}")
    if info is not None and md5 not in {info.get(k) for k in info if k.startswith("MD5")}:
        manifest.notes.append(f"{npz.name} md5 {md5} differs from the medmnist {_medmnist_version()} release "
                              "(an older MedMNIST version?)")
    return manifest


def _medmnist_version() -> str:
    try:
        import medmnist

        return medmnist.__version__
    except Exception:
        return "?"
