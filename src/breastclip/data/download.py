"""Download the public data sets the seed notebooks use into a local cache folder.

Kaggle-hosted copies go through ``kagglehub`` with the user's own Kaggle credentials (``~/.kaggle/kaggle.json`` or
``KAGGLE_USERNAME`` / ``KAGGLE_KEY``); BreastMNIST goes through the ``medmnist`` package's own URLs and checksums.
Without network access every call fails fast with a message saying what to download and where to put it.
Set ``BREASTCLIP_OFFLINE=1`` to declare the machine offline without probing the network.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from breastclip.user_cache import datasets_dir

#: Written into a download folder once the download finished (a partial download has none).
PROVENANCE = "BREASTCLIP_DOWNLOAD.json"


class DownloadError(RuntimeError):
    """A data set could not be fetched; the message says why and what to do instead."""


@dataclass(frozen=True)
class DatasetSource:
    """Where one public data set lives and which reader understands its layout."""

    name: str
    kind: str  # "kaggle" | "medmnist"
    slug: str  # Kaggle owner/dataset, or the MedMNIST flag
    title: str
    reader: str  # the breastclip reader format for `data inspect --format` / `data.format`
    subdir: str  # the folder inside the download to point `data.source` at ("" = the download itself)
    licence: str
    homepage: str
    notes: str = ""


DATASETS: dict[str, DatasetSource] = {d.name: d for d in (
    DatasetSource(
        "cbis-ddsm", "kaggle", "awsaf49/cbis-ddsm-breast-cancer-image-dataset",
        "CBIS-DDSM, JPEG copy (csv/ + jpeg/ folders; csv/dicom_info.csv maps series to JPEG files)",
        "cbis_ddsm", "", "CC BY 3.0 (TCIA CBIS-DDSM)",
        "https://www.kaggle.com/datasets/awsaf49/cbis-ddsm-breast-cancer-image-dataset",
        "about 6 GB"),
    DatasetSource(
        "breakhis", "kaggle", "ambarish/breakhis",
        "BreakHis v1 histopathology (BreaKHis_v1/histology_slides/breast/...)", "breakhis", "",
        "research use (P&D Lab, UFPR)", "https://www.kaggle.com/datasets/ambarish/breakhis", "about 4 GB"),
    DatasetSource(
        "busi", "kaggle", "aryashah2k/breast-ultrasound-images-dataset",
        "BUSI breast ultrasound, class folders with masks", "folders", "Dataset_BUSI_with_GT", "CC0 (Al-Dhabyani 2020)",
        "https://www.kaggle.com/datasets/aryashah2k/breast-ultrasound-images-dataset"),
    DatasetSource(
        "mediclip", "kaggle", "tiwariar273/mediclip-medical-image-classification-dataset",
        "MediCLIP medical vs non-medical images (the medical-image filter notebook)", "folders", "",
        "see the Kaggle page", "https://www.kaggle.com/datasets/tiwariar273/mediclip-medical-image-classification-dataset"),
    DatasetSource(
        "dbt", "kaggle", "",
        "Breast-Cancer-Screening-DBT 2D slices in class folders (benign / actionable / cancer / normal)", "folders", "",
        "CC BY 4.0 (TCIA Breast-Cancer-Screening-DBT)", "https://doi.org/10.7937/E4WT-CD02",
        "several community copies exist on Kaggle and none is canonical: pass the one your notebook used with "
        "--slug OWNER/DATASET"),
    DatasetSource(
        "breastmnist", "medmnist", "breastmnist", "BreastMNIST (MedMNIST v2), official train/val/test splits",
        "medmnist", "", "CC BY 4.0", "https://medmnist.com/"),
)}


def medmnist_root() -> Path:
    """Where medmnist keeps its ``.npz`` files: ``$MEDMNIST_ROOT`` or medmnist's own default (``~/.medmnist``)."""
    env = os.environ.get("MEDMNIST_ROOT")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".medmnist"


def medmnist_filename(flag: str, size: int | None = None) -> str:
    return f"{flag}.npz" if size in (None, 28) else f"{flag}_{size}.npz"


def find_medmnist(flag: str = "breastmnist", size: int | None = None, *extra_dirs: str | Path,
                  search_root: bool = True) -> Path | None:
    """A local copy of a MedMNIST file: in ``extra_dirs`` (files, or folders searched with their subfolders), then
    (``search_root``) the medmnist root."""
    name = medmnist_filename(flag, size)
    for d in (*extra_dirs, *((medmnist_root(),) if search_root else ())):
        p = Path(d).expanduser()
        if p.is_file() and p.suffix == ".npz":
            return p
        if (p / name).is_file():
            return p / name
        if p.is_dir():
            hits = sorted(p.rglob(name), key=lambda h: (len(h.parts), str(h)))  # the shallowest copy first
            if hits:
                return hits[0]
    return None


def is_offline(host: str, port: int = 443, timeout: float = 4.0) -> bool:
    """True when ``BREASTCLIP_OFFLINE`` is set or ``host`` cannot be reached within ``timeout`` seconds."""
    if os.environ.get("BREASTCLIP_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return True
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return False
    except OSError:
        return True


def download_dataset(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    slug: str | None = None,
    force: bool = False,
    size: int | None = None,
) -> Path:
    """Fetch one data set into ``cache_dir/<name>`` and return the folder to give ``data inspect`` / ``data.source``.

    ``name`` is a key of :data:`DATASETS` or any Kaggle ``owner/dataset`` slug. ``size`` picks a MedMNIST
    resolution (28, 64, 128, 224).
    """
    src = _source_for(name, slug)
    target = Path(cache_dir).expanduser() if cache_dir else datasets_dir()
    target = target / src.name.replace("/", "__")
    if src.kind == "medmnist":
        path = _download_medmnist(src, target, size=size, force=force)
    else:
        path = _download_kaggle(src, target, force=force)
    _write_provenance(target, src, size=size)
    return path


def _source_for(name: str, slug: str | None) -> DatasetSource:
    if name in DATASETS:
        src = DATASETS[name]
        if slug:
            src = DatasetSource(**{**asdict(src), "slug": slug})
        if src.kind == "kaggle" and not src.slug:
            raise DownloadError(f"'{name}': {src.notes}")
        return src
    if "/" in name and name.count("/") == 1:  # any Kaggle dataset slug
        return DatasetSource(name, "kaggle", slug or name, name, "", "", "see the Kaggle page",
                             f"https://www.kaggle.com/datasets/{name}")
    raise DownloadError(f"unknown data set '{name}'; known: {', '.join(DATASETS)} (or a Kaggle slug OWNER/DATASET)")


def _download_kaggle(src: DatasetSource, target: Path, *, force: bool) -> Path:
    try:
        import kagglehub
    except ImportError as e:
        raise DownloadError("kagglehub is not installed: pip install 'breastclip[download]'") from e
    if (target / PROVENANCE).is_file() and not force:  # a finished earlier download
        return target / src.subdir if src.subdir else target
    if is_offline("www.kaggle.com"):
        raise DownloadError(
            f"no network: cannot download '{src.slug}' from Kaggle. On a connected machine run "
            f"`breastclip data download {src.name}` (or download {src.homepage}) and copy the files to {target}, "
            f"or set data.source to your own copy.")
    target.mkdir(parents=True, exist_ok=True)
    try:
        kagglehub.dataset_download(src.slug, output_dir=str(target), force_download=force)
    except Exception as e:  # kagglehub raises several exception types (HTTP, auth, disk)
        hint = ""
        text = str(e).lower()
        if "401" in text or "403" in text or "credential" in text or "unauthor" in text:
            hint = (" Kaggle refused the request: create an API token at https://www.kaggle.com/settings and put it "
                    "in ~/.kaggle/kaggle.json (or set KAGGLE_USERNAME and KAGGLE_KEY), and accept the data set's "
                    "terms on its Kaggle page.")
        raise DownloadError(f"downloading '{src.slug}' from Kaggle failed: {e}.{hint}") from e
    return target / src.subdir if src.subdir else target


def _download_medmnist(src: DatasetSource, target: Path, *, size: int | None, force: bool) -> Path:
    name = medmnist_filename(src.slug, size)
    if (target / name).is_file() and not force:
        return target / name
    local = find_medmnist(src.slug, size)
    if local is not None and not force:  # already in the medmnist root: copy, do not download again
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, target / name)
        return target / name
    try:
        import medmnist
    except ImportError as e:  # pragma: no cover - medmnist is a dependency
        raise DownloadError("medmnist is not installed: pip install medmnist") from e
    info = medmnist.INFO.get(src.slug)
    if info is None:
        raise DownloadError(f"'{src.slug}' is not a MedMNIST data set; known: {', '.join(medmnist.INFO)}")
    if is_offline("zenodo.org"):
        url = info["url"] if size in (None, 28) else info.get(f"url_{size}", info["url"])
        raise DownloadError(
            f"no network: cannot download {name} from {url.split('?')[0]}. Download it on a connected machine and "
            f"place it in {medmnist_root()} (or set MEDMNIST_ROOT), or pass its path with --data.")
    target.mkdir(parents=True, exist_ok=True)
    cls = getattr(medmnist, info["python_class"])
    try:
        cls(split="train", download=True, root=str(target), size=size)
    except Exception as e:  # network, checksum
        raise DownloadError(f"downloading {name} through medmnist failed: {e}") from e
    return target / name


def _write_provenance(target: Path, src: DatasetSource, *, size: int | None) -> None:
    if not target.is_dir():
        return
    info = {**asdict(src), "size": size, "downloaded_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (target / PROVENANCE).write_text(json.dumps(info, indent=2))
