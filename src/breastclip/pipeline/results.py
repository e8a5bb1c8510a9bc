"""The results folder: choosing it without overwriting anything, resuming an interrupted run, atomic writes.

Layout (self-describing names)::

    config.resolved.toml   environment.json   run_state.json   run.log
    manifest.csv (+ manifest.json)   leak_audit.json   embeddings.json
    methods/<method>/{model/, predictions.csv, history.json, method.json, operating_point.json}
    predictions.csv   leaderboard.csv   leaderboard.md   metrics.json
    gate/   figures/   report.docx   report.html   MODEL_CARD.md
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from breastclip.atomic import atomic_write_text
from breastclip.config import ExperimentConfig

STATE_FILE = "run_state.json"
CONFIG_FILE = "config.resolved.toml"


class ResultsFolderError(RuntimeError):
    """The results folder cannot be used as asked (it exists and the policy says refuse)."""


@dataclass(frozen=True)
class OutputDecision:
    path: Path
    resume: bool
    message: str


def default_output(cfg: ExperimentConfig, cwd: Path | None = None) -> Path:
    if cfg.experiment.output:
        return Path(cfg.experiment.output)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in cfg.experiment.name) or "experiment"
    return (cwd or Path.cwd()) / "results" / safe


def read_state(folder: Path) -> dict | None:
    p = folder / STATE_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def prepare_output(cfg: ExperimentConfig, cwd: Path | None = None) -> OutputDecision:
    """Pick the results folder; never overwrite a previous one silently.

    - missing or empty folder: use it;
    - an unfinished run of the identical config: resume in it (cached embeddings and finished methods reused);
    - anything else (a finished run, another config, a folder breastclip did not make): a new timestamped
      sibling folder, or an error when ``experiment.on_existing = "refuse"``.
    """
    target = default_output(cfg, cwd)
    policy = cfg.experiment.on_existing
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return OutputDecision(target, False, f"writing results to {target}")
    if not target.is_dir():
        raise ResultsFolderError(f"{target} exists and is not a folder")
    state = read_state(target)
    if state is not None and state.get("identity") == cfg.identity() and not state.get("complete") and policy == "auto":
        return OutputDecision(target, True, f"resuming the unfinished run in {target} (same config)")
    if state is None:
        why = "exists and was not made by breastclip"
    elif state.get("identity") != cfg.identity():
        why = "holds a run of a different config"
    elif state.get("complete"):
        why = "holds a finished run"
    else:
        why = "holds an unfinished run (on_existing = 'new')"
    if policy == "refuse":
        raise ResultsFolderError(f"{target} {why}; choose another experiment.output or remove it yourself")
    new = timestamped(target)
    return OutputDecision(new, False, f"{target} {why}; leaving it untouched and writing to {new}")


def timestamped(target: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    cand = target.with_name(f"{target.name}-{stamp}")
    i = 2
    while cand.exists():
        cand = target.with_name(f"{target.name}-{stamp}-{i}")
        i += 1
    return cand


def write_state(folder: Path, cfg: ExperimentConfig, **fields: Any) -> None:
    state = read_state(folder) or {}
    state.update({"identity": cfg.identity(), **fields})
    atomic_write_text(folder / STATE_FILE, json.dumps(state, indent=2, default=str))


def write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default))


def atomic_write_csv(path: Path, df) -> Path:
    return atomic_write_text(path, df.to_csv(index=False))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


def safe_name(label: str) -> str:
    """A folder name for a method label (``linear_probe@clip-vit-b32`` stays readable)."""
    return "".join(c if c.isalnum() or c in "-_.@+" else "_" for c in label)
