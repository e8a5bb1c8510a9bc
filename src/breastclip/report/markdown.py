"""Escaping text for the Markdown outputs (MODEL_CARD.md, leaderboard.md), the one helper for both.

Class names, file names and metadata come from users' data: ``<script>`` in a class name must reach a Markdown
viewer (which renders raw HTML) as text. ``&``, ``<`` and ``>`` become entities, ``|`` cannot break a table row,
and a newline cannot start a new block.
"""

from __future__ import annotations

import html

__all__ = ["md_text", "md_cell"]


def md_text(text: object) -> str:
    """``text`` safe for a Markdown paragraph, heading or list item: raw HTML shown as text, one line."""
    return html.escape(str(text), quote=False).replace("\r", " ").replace("\n", " ")


def md_cell(text: object) -> str:
    """``text`` safe for a Markdown table cell (also escapes the column separator)."""
    return md_text(text).replace("|", "\\|")
