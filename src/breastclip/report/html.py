"""One self-contained HTML report: inline CSS, figures as base64 data URIs, no script, no external URL.

The research-only banner opens the page; the first screen holds the key facts; then a table of contents and the
sections. The file opens offline in any browser and prints cleanly (figures never split across pages).
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

from breastclip import __version__
from breastclip.atomic import atomic_write_text
from breastclip.report.content import Bullets, Document, FigureRef, Heading, Note, Section, Table, cell_text

CSS = """
:root { --ink:#1d2430; --muted:#5b6573; --line:#d8dde3; --accent:#0072B2; --warn:#D55E00; --ok:#009E73;
        --flag:#fff4e0; --zebra:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--ink); background:#fff; }
.banner { background:var(--warn); color:#fff; font-weight:600; padding:8px 24px; letter-spacing:.01em; }
header, main, footer, .summary, nav { max-width: 1120px; margin: 0 auto; padding: 0 24px; }
header h1 { margin: 18px 0 2px; font-size: 26px; }
header .sub { margin: 0 0 12px; color: var(--muted); }
.facts { display:grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap:10px; margin: 8px 0 16px; }
.fact { border:1px solid var(--line); border-left:4px solid var(--accent); border-radius:6px; padding:8px 12px; }
.fact .k { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
.fact .v { font-size:15px; font-weight:600; overflow-wrap:anywhere; }
.fact.warn { border-left-color: var(--warn); background:#fdf0e8; }
nav { border-top:1px solid var(--line); border-bottom:1px solid var(--line); padding-top:8px; padding-bottom:8px; }
nav ol { margin:0; padding-left: 20px; columns: 3 220px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; }
section { margin: 28px 0; }
h2 { font-size: 21px; border-bottom: 2px solid var(--accent); padding-bottom: 3px; margin-bottom: 10px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
.note { border-radius:6px; padding:8px 12px; margin:10px 0; background:#eef5fb; border-left:4px solid var(--accent); }
.note.warn { background:#fdf0e8; border-left-color: var(--warn); }
.note.ok { background:#e9f6f1; border-left-color: var(--ok); }
.tablewrap { overflow-x:auto; margin: 4px 0 4px; }
table { border-collapse: collapse; font-size: 13.5px; min-width: 40%; }
th, td { border-bottom:1px solid var(--line); padding: 4px 8px; text-align:left; vertical-align: top;
         overflow-wrap:break-word; }
th { background:#eef1f4; font-weight:600; }
td.num { text-align:right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: var(--zebra); }
tbody tr.flag td { background: var(--flag); }
.caption { color: var(--muted); font-size: 13px; margin: 2px 0 12px; }
figure { margin: 14px 0 20px; break-inside: avoid; page-break-inside: avoid; }
figure img { display:block; max-width: 100%; height:auto; border:1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; max-width: 780px; }
footer { color: var(--muted); font-size: 12.5px; border-top:1px solid var(--line); padding-top:8px;
         padding-bottom: 24px; margin-top: 32px; }
@media print { .banner { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
               nav { display:none; } section { break-before: auto; } body { font-size: 11pt; } }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def data_uri(path: Path) -> str:
    """The file as a ``data:`` URI (PNG or JPEG), so the report needs no file beside it."""
    mime = "image/jpeg" if path.suffix.lower() in {".jpg", ".jpeg"} else "image/png"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _is_num(text: str) -> bool:
    t = text.replace("(", "").replace(")", "").replace("-", " ").replace("%", "").replace(",", "").split()
    return bool(t) and all(_float(x) for x in t)


def _float(x: str) -> bool:
    try:
        float(x)
        return True
    except ValueError:
        return False


def render_table(t: Table) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in t.df.columns)
    flagged = set(t.flag_rows)
    rows = []
    for i, row in enumerate(cell_text(t.df)):
        cells = "".join(f'<td class="num">{_e(v)}</td>' if _is_num(v) else f"<td>{_e(v)}</td>" for v in row)
        rows.append(f'<tr class="flag">{cells}</tr>' if i in flagged else f"<tr>{cells}</tr>")
    caption = t.caption + (f" Highlighted rows: {t.flag_note}" if flagged and t.flag_note else "")
    return (f'<h3 id="{_e(t.key)}">{_e(t.title)}</h3>\n<div class="tablewrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>\n"
            + (f'<p class="caption">{_e(caption)}</p>\n' if caption else ""))


def _display_width(png: Path, dpi: int = 300, css_per_inch: int = 112) -> int:
    """On-screen width: the figure's printed size at a comfortable reading scale (a 6-inch figure ~ 670 px)."""
    from PIL import Image

    with Image.open(png) as im:
        return min(int(im.size[0] / dpi * css_per_inch), 900)


def render_figure(f: FigureRef, number: int) -> str:
    return (f'<figure id="{_e(f.key)}"><img src="{data_uri(f.png)}" alt="{_e(f.title)}" '
            f'width="{_display_width(f.png)}">'
            f"<figcaption><b>Figure {number}.</b> {_e(f.title)}. {_e(f.caption)}</figcaption></figure>\n")


def render_section(s: Section, counter: list[int]) -> str:
    parts = [f'<section id="{_e(s.anchor)}"><h2>{_e(s.title)}</h2>']
    for b in s.blocks:
        if isinstance(b, Table):
            parts.append(render_table(b))
        elif isinstance(b, FigureRef):
            counter[0] += 1
            parts.append(render_figure(b, counter[0]))
        elif isinstance(b, Heading):
            parts.append(f"<h3>{_e(b.text)}</h3>")
        elif isinstance(b, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Note):
            parts.append(f'<div class="note {_e(b.level)}">{_e(b.text)}</div>')
        else:
            parts.append(f"<p>{_e(b)}</p>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(doc: Document) -> str:
    """The complete HTML page as a string."""
    counter = [0]
    facts = "".join(f'<div class="fact{" warn" if str(v).startswith("FAILED") else ""}"><div class="k">{_e(k)}</div>'
                    f'<div class="v">{_e(v)}</div></div>' for k, v in doc.key_facts)
    toc = "".join(f'<li><a href="#{_e(s.anchor)}">{_e(s.title)}</a></li>' for s in doc.sections)
    body = "\n".join(render_section(s, counter) for s in doc.sections)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="breastclip {_e(__version__)}">
<meta name="description" content="{_e(doc.research_only)}">
<link rel="icon" href="data:,">
<title>{_e(doc.title)} - research use only</title>
<style>{CSS}</style>
</head>
<body>
<div class="banner" role="note">{_e(doc.research_only)}</div>
<header><h1>{_e(doc.title)}</h1><p class="sub">{_e(doc.subtitle)}</p></header>
<div class="summary"><div class="facts">{facts}</div></div>
<nav aria-label="Contents"><ol>{toc}</ol></nav>
<main>
{body}
</main>
<footer>{_e(doc.research_only)} Generated by breastclip {_e(__version__)} on {stamp}. All figures are embedded in
this file; the same figures at 300 dpi (PNG and JPG) lie in the figures/ folder beside it.</footer>
</body>
</html>
"""


def write_html(doc: Document, path: str | Path) -> Path:
    """Write the self-contained report to ``path``."""
    return atomic_write_text(path, render_html(doc))
