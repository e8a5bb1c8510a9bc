"""``breastclip run PATH`` on a data set without a config: a sensible default experiment, written out to edit.

PATH is anything the readers auto-detect (a class-folder tree, a CSV of images, a supported native layout such as
a MedMNIST ``.npz`` or the CBIS-DDSM tree). The experiment: the default backbone (``--offline`` swaps it for the
offline one), a patient-grouped stratified split with the official split kept, the image-only heads every
backbone supports (text heads need a prompt bank written for the data set's classes, so they are left for the
user to add), and the default report. The resolved config is saved in the results folder
(``config.resolved.toml``) so the run can be edited and repeated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from breastclip.config import DEFAULT_BACKBONE

#: Suffixes of single-file data sources ``run`` accepts in place of a config.
DATA_FILE_SUFFIXES = (".csv", ".tsv", ".npz")

#: The methods of a default experiment: heads that need only image embeddings.
DEFAULT_METHODS: tuple[dict[str, Any], ...] = (
    {"name": "linear_probe", "head": "linear_probe", "params": {"class_weight": "balanced"}},
    {"name": "mlp", "head": "mlp", "params": {"epochs": 30}},
    {"name": "fc", "head": "fc", "params": {"epochs": 35}},
)


def is_data_source(path: Path) -> bool:
    """Whether ``run`` was given data (a folder or a data file) rather than an experiment TOML."""
    return path.is_dir() or (path.is_file() and path.suffix.lower() in DATA_FILE_SUFFIXES)


def default_experiment(source: Path) -> dict:
    """The raw config of the default experiment on ``source`` (layout auto-detected by the readers)."""
    source = Path(source).expanduser().resolve()
    name = (source.stem if source.is_file() else source.name) or "experiment"
    return {
        "backbones": [DEFAULT_BACKBONE],
        "experiment": {"name": name, "seed": 0,
                       "description": f"default experiment on {name} (breastclip run PATH, no config file)"},
        "data": {"source": str(source), "format": ""},
        "methods": [dict(m, params=dict(m["params"])) for m in DEFAULT_METHODS],
    }
