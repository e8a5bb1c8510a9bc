"""Word report (python-docx) rendered from the same :class:`~breastclip.report.content.Document` as the HTML.

The first paragraph is the research-only statement; every page footer repeats it. Tables use the built-in
"Light Grid Accent 1" style with highlighted rows shaded; figures are the 300-dpi PNGs at 6 inches wide.
"""

from __future__ import annotations

from pathlib import Path

from docx import Document as new_docx
from docx.enum.section import WD_ORIENT, WD_SECTION
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Inches, Pt, RGBColor

from breastclip import __version__
from breastclip.atomic import atomic_path
from breastclip.report.content import Bullets, Document, FigureRef, Heading, Note, Table, cell_text

TABLE_STYLE = "Light Grid Accent 1"
FLAG_FILL = "FFF4E0"
WARN = RGBColor(0xD5, 0x5E, 0x00)
WIDE_TABLE = 8  # more columns than this do not fit a portrait page at 8 pt: the table gets a landscape page


def _shade(cell, fill: str) -> None:
    props = cell._tc.get_or_add_tcPr()
    shd = OxmlElement("w:shd")
    shd.set(qn("w:val"), "clear")
    shd.set(qn("w:color"), "auto")
    shd.set(qn("w:fill"), fill)
    props.append(shd)


def _orient(docx, landscape: bool) -> None:
    """Start a new page section in landscape (wide tables) or back in portrait, unless already so."""
    current = docx.sections[-1]
    if (current.orientation == WD_ORIENT.LANDSCAPE) == landscape:
        return
    section = docx.add_section(WD_SECTION.NEW_PAGE)
    width, height = section.page_width, section.page_height
    section.orientation = WD_ORIENT.LANDSCAPE if landscape else WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = height, width


def _add_table(docx, t: Table) -> None:
    wide = len(t.df.columns) > WIDE_TABLE
    if wide:
        _orient(docx, landscape=True)
    docx.add_heading(t.title, level=2)
    rows = cell_text(t.df)
    table = docx.add_table(rows=1 + len(rows), cols=len(t.df.columns))
    table.style = TABLE_STYLE
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for j, col in enumerate(t.df.columns):
        table.rows[0].cells[j].text = str(col)
    flagged = set(t.flag_rows)
    for i, row in enumerate(rows):
        cells = table.rows[i + 1].cells
        for j, value in enumerate(row):
            cells[j].text = value
            if i in flagged:
                _shade(cells[j], FLAG_FILL)
    for row in table.rows:
        for cell in row.cells:
            for p in cell.paragraphs:
                for run in p.runs:
                    run.font.size = Pt(8)
    caption = t.caption + (f" Highlighted rows: {t.flag_note}" if flagged and t.flag_note else "")
    if caption:
        docx.add_paragraph(caption, style="Caption")
    if wide:
        _orient(docx, landscape=False)


def _add_figure(docx, f: FigureRef, number: int) -> None:
    docx.add_picture(str(f.png), width=Inches(6.0))
    docx.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER
    docx.add_paragraph(f"Figure {number}. {f.title}. {f.caption}", style="Caption")


def render_docx(doc: Document):
    """A python-docx ``Document`` holding the report."""
    d = new_docx()
    for section in d.sections:
        section.left_margin = section.right_margin = Inches(0.8)
        section.top_margin = section.bottom_margin = Inches(0.7)
        footer = section.footer.paragraphs[0]
        footer.text = f"{doc.research_only} breastclip {__version__}."
        footer.alignment = WD_ALIGN_PARAGRAPH.CENTER
        for run in footer.runs:
            run.font.size = Pt(8)
    d.core_properties.title = doc.title
    d.core_properties.subject = doc.subtitle
    d.core_properties.comments = doc.research_only
    d.core_properties.author = "breastclip"

    first = d.add_paragraph()
    run = first.add_run(doc.research_only)
    run.bold = True
    run.font.color.rgb = WARN
    d.add_heading(doc.title, level=0)
    if doc.subtitle:
        d.add_paragraph(doc.subtitle)

    if doc.key_facts:
        d.add_heading("Key facts", level=1)
        table = d.add_table(rows=1 + len(doc.key_facts), cols=2)
        table.style = TABLE_STYLE
        table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Item", "Value"
        for i, (k, v) in enumerate(doc.key_facts, start=1):
            table.rows[i].cells[0].text, table.rows[i].cells[1].text = str(k), str(v)

    number = 0
    for s in doc.sections:
        d.add_heading(s.title, level=1)
        for b in s.blocks:
            if isinstance(b, Table):
                _add_table(d, b)
            elif isinstance(b, FigureRef):
                number += 1
                _add_figure(d, b, number)
            elif isinstance(b, Heading):
                d.add_heading(b.text, level=2)
            elif isinstance(b, Bullets):
                for item in b.items:
                    d.add_paragraph(item, style="List Bullet")
            elif isinstance(b, Note):
                p = d.add_paragraph()
                r = p.add_run(b.text)
                r.bold = b.level != "info"
                if b.level == "warn":
                    r.font.color.rgb = WARN
            else:
                d.add_paragraph(str(b))
    return d


def write_docx(doc: Document, path: str | Path) -> Path:
    """Write the Word report to ``path``."""
    word = render_docx(doc)
    with atomic_path(path) as tmp:
        word.save(str(tmp))
    return Path(path)
