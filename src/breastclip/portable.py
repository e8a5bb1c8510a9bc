"""Paths as shared reports show them: relative to the results folder, never a user's ``/home/<name>/...``.

Reports travel (report.html, MODEL_CARD.md, metrics.json, environment.json): a path inside or beside the results
folder is written relative to it (``../data/busi``), and a path elsewhere as its last component only (``busi``).
Machine-readable files that need absolute paths to work (config.resolved.toml, manifest.json) keep them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from breastclip.config import PATH_KEYS

__all__ = ["portable_path", "portable_config", "portable_args"]

#: A path is written relative to the results folder when both share at least this many leading folders
#: (``/home/alice`` or ``/tmp/project``): close enough that the relative path names no one's home folder.
_MIN_SHARED_PARTS = 2


def portable_path(path: str | os.PathLike[str], base: str | os.PathLike[str]) -> str:
    """``path`` relative to ``base`` when they share a project folder, else just its name; relative paths as given."""
    text = str(path)
    if not text or not os.path.isabs(text):
        return text
    p, b = Path(os.path.abspath(text)), Path(os.path.abspath(base))
    try:
        shared = len(Path(os.path.commonpath([p, b])).parts) - 1  # without the root
    except ValueError:  # different drives (Windows)
        shared = 0
    if p == b:
        return "."
    if shared >= _MIN_SHARED_PARTS or b in p.parents:
        return Path(os.path.relpath(p, b)).as_posix()
    return p.name or text


def portable_config(config: Mapping[str, Any], base: str | os.PathLike[str]) -> dict[str, Any]:
    """A copy of a config dict (``ExperimentConfig.to_dict()``) with its path keys made portable."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in config.items()}
    for key in PATH_KEYS:
        section, name = key.split(".", 1)
        if isinstance(out.get(section), dict) and out[section].get(name):
            out[section][name] = portable_path(out[section][name], base)
    return out


def portable_args(argv: Iterable[str], base: str | os.PathLike[str]) -> list[str]:
    """A command line with every absolute path made portable (``--set data.source=/x/y`` included)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and os.path.isabs(value):
            out.append(f"{key}={portable_path(value, base)}")
        else:
            out.append(portable_path(arg, base) if os.path.isabs(arg) else arg)
    return out
