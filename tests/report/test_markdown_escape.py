"""Markdown outputs (MODEL_CARD.md, leaderboard.md) show raw HTML from users' data as text, never as markup."""

from __future__ import annotations

import pandas as pd

from breastclip.pipeline.leaderboard import build_leaderboard, to_markdown
from breastclip.report.content import Bullets, Heading, Note, Section, Table
from breastclip.report.markdown import md_cell, md_text
from breastclip.report.model_card import render_markdown

EVIL = '<script>alert("x")</script>'


def test_helpers_escape_html_pipes_and_newlines():
    assert md_text(EVIL) == '&lt;script&gt;alert("x")&lt;/script&gt;'
    assert md_text("a\nb & c") == "a b &amp; c"
    assert md_cell("a|b<i>") == "a\\|b&lt;i&gt;"


def test_model_card_markdown_escapes_class_names_file_names_and_metadata():
    section = Section("Data " + EVIL)
    section.add(Heading(f"class {EVIL}"),
                Table("counts", "counts", pd.DataFrame({"class": [EVIL], "file": ["<img src=x onerror=alert(1)>.png"]})),
                Bullets([f"metadata site = {EVIL}"]), Note(f"note {EVIL}"), f"paragraph {EVIL}")
    md = render_markdown(f"Model card {EVIL}", [section])
    assert "<script>" not in md and "<img" not in md
    assert md.count("&lt;script&gt;") == 7  # title, section, heading, cell, bullet, note, paragraph
    assert "research use only" in md.lower()


def test_leaderboard_markdown_escapes_method_and_backbone_names():
    ev = {"headline": {"roc_auc": {"estimate": 0.8, "ci_lo": 0.7, "ci_hi": 0.9}}, "n": {"test": {"images": 10}}}
    board = build_leaderboard({f"lp {EVIL}": ev}, None, info={f"lp {EVIL}": {"backbone": "<b>x</b>|y"}})
    md = to_markdown(board)
    assert "<script>" not in md and "<b>" not in md
    assert "&lt;script&gt;" in md and "&lt;b&gt;x&lt;/b&gt;\\|y" in md
