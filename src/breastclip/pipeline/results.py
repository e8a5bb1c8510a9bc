"""JSON and CSV files of the results folder, written atomically through :mod:`breastclip.atomic` (the folder's
layout and claim: :mod:`.run_folder`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from breastclip.atomic import atomic_write_text

__all__ = ["atomic_write_csv", "atomic_write_text", "write_json"]


def write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default))


def atomic_write_csv(path: Path, df: pd.DataFrame) -> Path:
    return atomic_write_text(path, df.to_csv(index=False))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)
