"""Contact sheet of the image pairs a leak audit flagged: the evidence a reader checks by eye.

Two pairs per row: the two images of a pair side by side (whole, letterboxed), their ids and parts, and what matched (hash
distance, detail similarity, the flip or rotation, or "byte-identical"). Written as PNG with Pillow only, so the data
layer needs no plotting library; the report embeds the file.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from breastclip.atomic import atomic_write_bytes

from .images import ImageDecodeError, load_image_resized

__all__ = ["write_contact_sheet"]

_CELL = 220  # thumbnail box, px
_TEXT = 34  # caption band under each row, px
_MAX_PAIRS = 10  # two pairs per row: the sheet still fits one report page


def _thumb(path: str) -> Image.Image:
    box = Image.new("RGB", (_CELL, _CELL), (40, 40, 40))
    try:
        im = Image.fromarray(load_image_resized(path, _CELL))
    except ImageDecodeError:
        ImageDraw.Draw(box).text((8, _CELL // 2), "unreadable", fill=(255, 80, 80))
        return box
    im.thumbnail((_CELL, _CELL))
    box.paste(im, ((_CELL - im.width) // 2, (_CELL - im.height) // 2))
    return box


def _caption(pair: Mapping) -> str:
    if "sha256" in pair:
        how = "byte-identical"
    else:
        how = f"hash distance {pair.get('distance')}"
        if pair.get("similarity") is not None:
            how += f", detail similarity {pair['similarity']:.2f}"
        if pair.get("transform", "identity") != "identity":
            how += f", {str(pair['transform']).replace('_', ' ')}"
    return f"{pair['a']} ({pair['parts'][0]})  ~  {pair['b']} ({pair['parts'][1]}):  {how}"


def write_contact_sheet(pairs: Sequence[Mapping], paths: Mapping[str, str], out: Path,
                        max_pairs: int = _MAX_PAIRS) -> Path:
    """Draw up to ``max_pairs`` flagged pairs (dicts with ``a``, ``b``, ``parts`` and the match details) from
    ``paths`` (id -> image file) into the PNG ``out``; returns ``out``."""
    shown = list(pairs)[:max_pairs]
    pair_w = 2 * _CELL + 10
    width = 2 * pair_w + 40
    rows = max(1, (len(shown) + 1) // 2)
    sheet = Image.new("RGB", (width, rows * (_CELL + _TEXT) + 30), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    more = f" (first {len(shown)} of {len(pairs)})" if len(pairs) > len(shown) else ""
    draw.text((10, 8), f"Image pairs flagged by the leak audit{more}. Research use only.", fill=(0, 0, 0))
    for n, pair in enumerate(shown):
        x = 10 + (n % 2) * (pair_w + 20)
        y = 30 + (n // 2) * (_CELL + _TEXT)
        sheet.paste(_thumb(paths[str(pair["a"])]), (x, y))
        sheet.paste(_thumb(paths[str(pair["b"])]), (x + _CELL + 10, y))
        text = _caption(pair)
        draw.text((x, y + _CELL + 4), text[:75], fill=(0, 0, 0))
        if len(text) > 75:
            draw.text((x, y + _CELL + 17), text[75:150], fill=(0, 0, 0))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", dpi=(150, 150))
    atomic_write_bytes(out, buf.getvalue())
    return out
