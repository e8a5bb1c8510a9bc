"""Model card (Mitchell et al. 2019, adapted): data, splits, intended use, evaluation, limitations, environment.

:func:`model_card_section` builds it as a :class:`~breastclip.report.content.Section` (so the HTML and Word reports
embed the very same card) and :func:`render_markdown` writes it as ``MODEL_CARD.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from breastclip import RESEARCH_ONLY
from breastclip.report.content import Bullets, FigureRef, Heading, Note, Section, Table, cell_text
from breastclip.report.markdown import md_cell, md_text

INTENDED_USE = [
    "Research on image classification of breast lesions with frozen vision-language embeddings: comparing "
    "backbones, heads and operating points on retrospective, de-identified data.",
    "Reproducing and auditing published results; teaching.",
]
OUT_OF_SCOPE = [
    "Diagnosis, screening, triage or any decision about a patient's care.",
    "Use on images from another modality, device, site or population than the evaluation data without a new, "
    "independent validation.",
    "Use of the reported operating point as a clinical threshold.",
]


@dataclass
class ModelCard:
    """What the card says; every field is plain text or a table built by the bundle."""

    model: list[tuple[str, str]]
    data: list[tuple[str, str]]
    splits: pd.DataFrame | None = None
    leak_audit: str = "not run"
    evaluation: list[tuple[str, str]] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    environment: list[tuple[str, str]] = field(default_factory=list)
    intended_use: Sequence[str] = tuple(INTENDED_USE)
    out_of_scope: Sequence[str] = tuple(OUT_OF_SCOPE)


def _pairs(key: str, title: str, pairs: list[tuple[str, str]]) -> Table:
    return Table(key=key, title=title, df=pd.DataFrame(pairs, columns=["Item", "Value"]))


def model_card_section(card: ModelCard, *, title: str = "Model card") -> Section:
    """The card as a report section (research-only statement first)."""
    s = Section(title)
    s.add(Note(RESEARCH_ONLY, "warn"))
    s.add(_pairs("card-model", "Model details", card.model))
    s.add(Table("card-intended-use", "Intended use", pd.DataFrame(
        [("in scope", u) for u in card.intended_use] + [("out of scope", u) for u in card.out_of_scope],
        columns=["Scope", "Use"])))
    s.add(_pairs("card-data", "Data", card.data))
    if card.splits is not None:
        s.add(Table("card-splits", "Splits (images per class; patients)", card.splits))
    s.add(Heading("Leak audit"), f"Leak audit: {card.leak_audit}")
    if card.evaluation:
        s.add(_pairs("card-evaluation", "Evaluation on the held-out test split", card.evaluation))
    s.add(Heading("Limitations"))
    s.add(Bullets(list(card.limitations) or ["none recorded (this does not mean there are none)"]))
    if card.environment:
        s.add(_pairs("card-environment", "Environment", card.environment))
    return s


def _md_table(t: Table) -> str:
    head = "| " + " | ".join(md_cell(c) for c in t.df.columns) + " |"
    sep = "|" + "|".join("---" for _ in t.df.columns) + "|"
    rows = ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in cell_text(t.df)]
    out = [f"### {md_text(t.title)}", "", head, sep, *rows, ""]
    if t.caption:
        out += [f"*{md_text(t.caption)}*", ""]
    return "\n".join(out)


def render_markdown(title: str, sections: Sequence[Section], *, figures_prefix: str = "",
                    section_headings: bool = True) -> str:
    """Markdown for a title and sections; figures link to their PNG relative to the markdown file. The
    research-only statement opens the file once (a section's own copy of it is not repeated)."""
    lines = [f"# {md_text(title)}", "", f"> **{RESEARCH_ONLY}**", ""]
    for s in sections:
        if section_headings:
            lines += [f"## {md_text(s.title)}", ""]
        for b in s.blocks:
            if isinstance(b, Note) and b.text == RESEARCH_ONLY:
                continue
            if isinstance(b, Heading):
                lines += [f"### {md_text(b.text)}", ""]
            elif isinstance(b, Table):
                lines.append(_md_table(b))
            elif isinstance(b, Bullets):
                lines += [f"- {md_text(i)}" for i in b.items] + [""]
            elif isinstance(b, Note):
                lines += [f"> **{md_text(b.text)}**", ""]
            elif isinstance(b, FigureRef):
                lines += [f"![{md_text(b.title)}]({figures_prefix}{b.png.name})", "",
                          f"*{md_text(b.title)}. {md_text(b.caption)}*", ""]
            else:
                lines += [md_text(b), ""]
    return "\n".join(lines).rstrip() + "\n"
