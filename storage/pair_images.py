"""Pair images as files and pictures: formats, decoding, the side-by-side layout and its prompt, boxes.

Img-Diff shows a pair to single-image models as one picture: the two images side by side with a
20 px black bar between them. Exports, training data and the contact sheet draw the same layout and
say the same about it, so this lives in one place.

Stored image bytes keep the codec they arrived in (renders are PNG, photos JPEG, an imported WebP
stays WebP); ``image_extension`` names the real one, so a file written from them opens as what it is.
A picture drawn from photos (the side-by-side of two JPEGs) is encoded as JPEG again, renders as PNG.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from pairsmith.storage.image_decode import open_stored

BAR_PX = 20
IMAGE = "<image>"
SIDE_BY_SIDE_NOTE = (
    "The image shows two pictures side by side, separated by a black bar: the first image on the "
    "left and the second image on the right."
)
JPEG_QUALITY = 95
_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


def image_extension(data: bytes) -> str:
    """The file extension of encoded image bytes (png, jpg, webp, ...); ValueError if PIL cannot read them."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError ... by codec
        raise ValueError(f"image bytes are not an image PIL can read ({type(err).__name__})") from None
    return _EXTENSIONS.get(fmt or "", (fmt or "img").lower())


def open_image(data: bytes) -> Image.Image:
    """Stored image bytes as the RGB picture a viewer shows (``image_decode.open_stored``: upright,
    8-bit, alpha over white), never ``convert("RGB")`` alone, which clips 16-bit grey and drops alpha."""
    return open_stored(data)


def encode_like(image: Image.Image, sources: list[bytes]) -> tuple[bytes, str]:
    """``image`` encoded in its sources' codec family: JPEG if any source is a JPEG photo, else PNG."""
    buf = io.BytesIO()
    if any(image_extension(s) == "jpg" for s in sources):
        image.convert("RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
        return buf.getvalue(), "jpg"
    image.save(buf, "PNG")
    return buf.getvalue(), "png"


def side_by_side_text(text: str, boxes_asked: bool) -> str:
    """A two-image prompt for the side-by-side picture: one placeholder, and a note on the layout.

    The note says nothing about coordinates: a prompt that asks for boxes (``boxes_asked``) names its
    frame once, in its own words (``BoxFormat.clause``: the whole picture); text with another number of
    placeholders is returned unchanged.
    """
    if text.count(IMAGE) != 2:
        return text
    return IMAGE + "\n" + SIDE_BY_SIDE_NOTE + "\n" + text.replace(IMAGE + "\n", "").replace(IMAGE, "")


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
