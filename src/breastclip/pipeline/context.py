"""What every step of a run is handed: the config, the results folder, the console, and the run's record of notes,
skipped and failed methods (one place, instead of long parameter lists and out-parameter dicts)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console

from breastclip.config import ExperimentConfig
from breastclip.data.manifest import Manifest
from breastclip.evaluation import Evaluation
from breastclip.pipeline.embed_step import EmbeddingSet
from breastclip.pipeline.methods import MethodOutcome
from breastclip.pipeline.run_folder import RunFolder

log = logging.getLogger("breastclip.run")


@dataclass
class RunContext:
    """One run: what it was asked (``cfg``), where it writes (``folder``), and what it has to tell the reader."""

    cfg: ExperimentConfig
    folder: RunFolder
    console: Console
    progress: bool = True
    resume: bool = False
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def note(self, text: str) -> None:
        """A fact the summary, ``run_state.json`` and the report must carry."""
        self.notes.append(text)

    def skip(self, label: str, why: str) -> None:
        self.skipped[label] = why
        log.warning("skipping %s: %s", label, why)

    def fail(self, label: str, why: str) -> None:
        self.failed[label] = why
        log.error("%s failed: %s", label, why, exc_info=True)


@dataclass(frozen=True)
class RunData:
    """The split manifest and every backbone's embeddings; ``ids``: the images every backbone embedded."""

    manifest: Manifest
    sets: dict[str, EmbeddingSet]
    ids: list[str]


@dataclass(frozen=True)
class Evaluated:
    """The run's predictions table and what evaluation made of it (the input of the report)."""

    predictions: pd.DataFrame
    evaluations: dict[str, Evaluation]
    comparisons: pd.DataFrame | None
    outcomes: list[MethodOutcome]
    leaderboard: pd.DataFrame


@dataclass
class RunResult:
    """What a finished run produced (everything is also on disk in ``out_dir``)."""

    out_dir: Path
    leaderboard: pd.DataFrame
    best: str | None  # the selected method (validation or CV, never test); None: no method learned the task
    report_html: Path | None
    seconds: float
    resumed: bool = False
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    leak_audit: dict | None = None  # leak_audit.json of the run (ok, problems)
