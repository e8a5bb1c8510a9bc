"""Native readers: each turns one source's own layout into a :class:`~breastclip.data.manifest.Manifest`.

``read_source(path)`` detects the layout (CBIS-DDSM CSVs, MedMNIST ``.npz``, BreakHis file names, a labels CSV, class
folders); ``read_source(path, format="breakhis", labels="subtype")`` names it and passes reader options through.
Each reader is a plain function in its own module; the registry below is data (name, detector, reader, help).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from breastclip.data.manifest import Manifest


class SourceError(ValueError):
    """A source that no reader can turn into a manifest; the message names the path and the problem."""


@dataclass(frozen=True)
class SourceFormat:
    """One registered layout: ``module.detect(path) -> bool`` and ``module.<reader>(path, **options)``."""

    name: str
    module: str
    reader: str
    description: str

    def _mod(self):
        return importlib.import_module(f"breastclip.data.sources.{self.module}")

    def detect(self, path: Path) -> bool:
        return bool(self._mod().detect(path))

    @property
    def read(self) -> Callable[..., Manifest]:
        return getattr(self._mod(), self.reader)


# Detection order matters: the most specific layouts first, the catch-all class folders last.
FORMATS: dict[str, SourceFormat] = {f.name: f for f in (
    SourceFormat("cbis_ddsm", "cbis_ddsm", "read_cbis_ddsm",
                 "CBIS-DDSM case-description CSVs (TCIA DICOM tree or Kaggle JPEG copy)"),
    SourceFormat("medmnist", "medmnist", "read_medmnist", "MedMNIST .npz (BreastMNIST and siblings), official splits"),
    SourceFormat("breakhis", "breakhis", "read_breakhis", "BreakHis histology files (SOB_<B|M>_<type>-<yr>-<slide>-<mag>-<seq>)"),
    SourceFormat("csv", "csv_table", "read_csv_table", "a CSV table of image paths and labels (labels.csv, manifest.csv)"),
    SourceFormat("folders", "folders", "read_folders", "class folders root/<class>/*.png|jpg|dcm (BUSI, ImageFolder trees)"),
)}


def list_formats() -> list[str]:
    """Names accepted by ``read_source(..., format=)``."""
    return list(FORMATS)


def _known() -> str:
    return "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())


def detect_format(path: str | Path) -> str:
    """Name of the first registered layout that recognises ``path``; :class:`SourceError` listing them otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SourceError(f"source {path} does not exist")
    for fmt in FORMATS.values():
        if fmt.detect(path):
            return fmt.name
    hint = ""
    if path.is_dir():
        from breastclip.data.sources._files import is_image_file

        flat = [f for f in path.iterdir() if f.is_file() and is_image_file(f)]
        if flat:
            hint = (f" It holds {len(flat)} image files but no class folders: put them in <class>/ folders, add a "
                    "labels.csv (image,label), or for DICOM files label them by a header field with format='folders', "
                    "label_from='dicom:Modality' (CLI: --format folders -O label_from=dicom:Modality).")
    raise SourceError(f"cannot tell the layout of {path}; pass format= (--format) with one of the known formats: "
                      f"{_known()}.{hint}")


def read_source(path: str | Path, format: str | None = None, **options) -> Manifest:
    """Read any supported source into a manifest (layout auto-detected unless ``format`` names it)."""
    path = Path(path).expanduser()
    if format is None:
        format = detect_format(path)
    fmt = FORMATS.get(format.lower().replace("-", "_"))
    if fmt is None:
        raise SourceError(f"unknown format '{format}'; known formats: {_known()}")
    if not path.exists() and fmt.name != "medmnist":  # medmnist may download a missing file
        raise SourceError(f"source {path} does not exist")
    return fmt.read(path, **options)


__all__ = ["FORMATS", "SourceError", "SourceFormat", "detect_format", "list_formats", "read_source"]
