"""Pair images as files and pictures: file names, decoding, the side-by-side layout, boxes.

Img-Diff shows a pair to single-image models as one picture: the two images side by side with a
20 px black bar between them. Exports and the contact sheet draw the same layout, so this lives
in one place.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

BAR_PX = 20


def image_extension(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    raise ValueError("image bytes are neither PNG nor JPEG")


def open_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def side_by_side(before: Image.Image, after: Image.Image, bar_px: int = BAR_PX) -> Image.Image:
    """Before on the left, a black bar, after on the right; boxes on ``before`` keep their pixels."""
    height = max(before.height, after.height)
    sheet = Image.new("RGB", (before.width + bar_px + after.width, height), "black")
    sheet.paste(before, (0, 0))
    sheet.paste(after, (before.width + bar_px, 0))
    return sheet


def draw_boxes(image: Image.Image, boxes: list[list[float]], color: str = "red", width: int = 2) -> Image.Image:
    out = image.copy()
    draw = ImageDraw.Draw(out)
    for x1, y1, x2, y2 in boxes:
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=color, width=width)
    return out
