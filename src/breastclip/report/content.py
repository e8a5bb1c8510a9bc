"""The document model shared by the renderers: a report is an ordered list of sections of blocks.

The bundle decides *what* to say (from evaluations, manifest, run info); :mod:`.html` and :mod:`.docx` decide only
*how* to render it, so the Word and HTML reports always hold the same tables, figures and wording.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from breastclip import RESEARCH_ONLY
from breastclip.evaluation.leaderboard import threshold_text


@dataclass
class Table:
    """A titled table; ``flag_rows`` are row positions to highlight (best method, small subgroup, ...)."""

    key: str
    title: str
    df: pd.DataFrame
    caption: str = ""
    flag_rows: Sequence[int] = ()
    flag_note: str = ""


@dataclass
class FigureRef:
    """A figure saved by :func:`breastclip.report.figures.save_figure`."""

    key: str
    title: str
    caption: str
    png: Path
    jpg: Path


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Heading:
    """A sub-heading inside a section."""

    text: str


@dataclass
class Note:
    """A highlighted paragraph (warning or key finding)."""

    text: str
    level: str = "info"  # info | warn | ok


Block = str | Heading | Bullets | Note | Table | FigureRef


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    anchor: str = ""

    def __post_init__(self) -> None:
        if not self.anchor:
            self.anchor = slug(self.title)

    def add(self, *blocks: Block | None) -> Section:
        self.blocks.extend(b for b in blocks if b is not None)
        return self


@dataclass
class Document:
    """The whole report: a title, the first-screen key facts, and sections."""

    title: str
    subtitle: str = ""
    key_facts: list[tuple[str, str]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    research_only: str = RESEARCH_ONLY

    def tables(self) -> list[Table]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]

    def figures(self) -> list[FigureRef]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, FigureRef)]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def fmt(value, digits: int = 3) -> str:
    """Human formatting for table cells: integers plain, floats to ``digits`` places, NaN as an en dash."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "-"
        if float(value).is_integer() and abs(value) >= 10:
            return str(int(value))
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(estimate: float | None, lo: float | None, hi: float | None, digits: int = 3) -> str:
    """``0.912 (0.871-0.948)``; the interval is left out when it is undefined."""
    if estimate is None or (isinstance(estimate, float) and math.isnan(estimate)):
        return "-"
    text = f"{estimate:.{digits}f}"
    if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi)):
        text += f" ({ci_text(lo, hi, digits)})"
    return text


def ci_text(lo: float, hi: float, digits: int = 3) -> str:
    """``0.871-0.948``, or ``-0.147 to -0.054`` when a bound is negative (a dash would read as a minus sign)."""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "-"
    sep = " to " if min(lo, hi) < 0 else "-"
    return f"{lo:.{digits}f}{sep}{hi:.{digits}f}"


def fmt_threshold(t: float | None) -> str:
    """A threshold with enough digits to tell it from 0 and 1: ``0.412``, ``0.99987`` (not ``1.000``); "-" when
    there is none (:func:`breastclip.evaluation.leaderboard.threshold_text`, the one formatter of thresholds)."""
    return threshold_text(t, missing="-")


def fmt_p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def cell_text(df: pd.DataFrame) -> list[list[str]]:
    """The table body as formatted strings (the same text in HTML and Word)."""
    return [[fmt(v) for v in row] for row in df.itertuples(index=False, name=None)]
