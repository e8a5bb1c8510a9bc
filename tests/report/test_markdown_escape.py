"""Markdown outputs (MODEL_CARD.md, leaderboard.md) show raw HTML from users' data as text, never as markup."""

from __future__ import annotations

import pandas as pd

from breastclip.evaluation.leaderboard import leaderboard_for
from breastclip.pipeline.leaderboard import to_markdown
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
    import numpy as np

    from breastclip.evaluation import evaluate_predictions
    from breastclip.predictions import make_predictions

    y = np.array([0, 1] * 10)
    p = np.clip(0.5 + 0.3 * (2 * y - 1) + np.linspace(-0.1, 0.1, y.size), 0, 1)
    pred = make_predictions(ids=[f"i{k}" for k in range(y.size)], y_true=[["benign", "malignant"][v] for v in y],
                            proba=np.c_[1 - p, p], classes=["benign", "malignant"], method=f"lp {EVIL}",
                            split=["val"] * 10 + ["test"] * 10)
    ev = evaluate_predictions(pred, n_boot=0)  # the leaderboard takes the library's own Evaluation
    board = leaderboard_for({f"lp {EVIL}": ev}, pred, info={f"lp {EVIL}": {"backbone": "<b>x</b>|y"}})
    md = to_markdown(board)
    assert "<script>" not in md and "<b>" not in md
    assert "&lt;script&gt;" in md and "&lt;b&gt;x&lt;/b&gt;\\|y" in md
