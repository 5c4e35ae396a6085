"""A contact sheet of what a region proposer found, for ``proposer_recall.py --sheet``.

Each cell is before | black bar | after (the after image as delivered, resized to the before
image's size): the proposed boxes in red on the before image with their confidence, the ground
truth (hand marks or exact render boxes) in green, and a caption line with the pair's verdict:
``local`` and its boxes, or ``WHOLE IMAGE CHANGED`` with the reason and score when the proposer
judged the edit global (such pairs get no boxes).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from pairsmith.storage.pair_images import side_by_side

COLUMNS = 2
MARGIN = 12
CELL_SIDE = 360  # longer side of each half of a cell, pixels
CAPTION_PX = 44


@dataclass
class SheetPair:
    """One pair to draw; boxes in before-image pixels."""

    title: str
    before: Image.Image
    after: Image.Image
    proposals: list[list[float]] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    truths: list[list[float]] = field(default_factory=list)
    extent: str | None = None
    extent_reason: str | None = None
    extent_score: float | None = None


def _caption(pair: SheetPair) -> str:
    if pair.extent == "global":
        return f"{pair.title}: WHOLE IMAGE CHANGED ({pair.extent_reason}, score {pair.extent_score:.2f}), no boxes"
    if pair.extent is None:
        return f"{pair.title}: not aligned, no boxes"
    confidences = ", ".join(f"{c:.2f}" for c in pair.confidences) or "-"
    n = len(pair.proposals)
    return f"{pair.title}: local, {n} box{'' if n == 1 else 'es'} (confidence {confidences})"


def _cell(pair: SheetPair, font) -> Image.Image:
    scale = CELL_SIDE / max(pair.before.size)
    size = (max(1, round(pair.before.width * scale)), max(1, round(pair.before.height * scale)))
    before, after = pair.before.resize(size, Image.BILINEAR), pair.after.resize(size, Image.BILINEAR)
    draw = ImageDraw.Draw(before)
    for (x1, y1, x2, y2), confidence in zip(pair.proposals, pair.confidences or [None] * len(pair.proposals)):
        box = [x1 * scale, y1 * scale, x2 * scale - 1, y2 * scale - 1]
        draw.rectangle(box, outline=(255, 0, 0), width=3)
        if confidence is not None:
            draw.text((box[0] + 3, box[1] + 2), f"{confidence:.2f}", fill=(255, 0, 0), font=font,
                      stroke_width=2, stroke_fill=(255, 255, 255))
    for x1, y1, x2, y2 in pair.truths:  # on top, thinner: both stay visible where they coincide
        draw.rectangle([x1 * scale, y1 * scale, x2 * scale - 1, y2 * scale - 1], outline=(0, 220, 0), width=1)
    if pair.extent == "global":  # a thin frame says: the whole picture is the change
        ImageDraw.Draw(before).rectangle([0, 0, size[0] - 1, size[1] - 1], outline=(255, 140, 0), width=6)
    both = side_by_side(before, after)
    cell = Image.new("RGB", (both.width, both.height + CAPTION_PX), "white")
    cell.paste(both, (0, 0))
    lines = textwrap.wrap(_caption(pair), max(30, both.width // 8))[:2]
    for k, line in enumerate(lines):
        ImageDraw.Draw(cell).text((4, both.height + 4 + 19 * k), line, fill="black", font=font)
    return cell


def draw_sheet(pairs: Sequence[SheetPair], out: Path, legend: str) -> None:
    """Write the cells two per row, with a legend line on top, to ``out`` (PNG or JPEG by suffix)."""
    if not pairs:
        raise ValueError("no pairs to draw")
    font = ImageFont.load_default(size=15)
    cells = [_cell(p, font) for p in pairs]
    cell_w, cell_h = max(c.width for c in cells), max(c.height for c in cells)
    rows = (len(cells) + COLUMNS - 1) // COLUMNS
    top = 30
    sheet = Image.new("RGB", (COLUMNS * (cell_w + MARGIN) + MARGIN, top + rows * (cell_h + MARGIN) + MARGIN), "white")
    ImageDraw.Draw(sheet).text((MARGIN, 8), legend, fill="black", font=font)
    for i, cell in enumerate(cells):
        r, c = divmod(i, COLUMNS)
        sheet.paste(cell, (MARGIN + c * (cell_w + MARGIN), top + r * (cell_h + MARGIN)))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=72) if out.suffix.lower() in (".jpg", ".jpeg") else sheet.save(out)
