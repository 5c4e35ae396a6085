"""Decoding an image as a viewer shows it: the one way pixels enter pairsmith.

Every image that enters the store (imports, image folders, MED sources, Gemini's edited images)
goes through ``decode_image``, so its stored bytes, its ``width`` / ``height`` and every box
measured on it share one frame, the one image viewers, ``datasets.Image`` and transformers'
``load_image`` show:

* **Upright.** An EXIF ``Orientation`` (JPEG, PNG ``eXIf``, TIFF, WebP) is applied with Pillow's
  ``ImageOps.exif_transpose``; the stored bytes carry no orientation tag. A phone JPEG with
  Orientation 6, 640x480 in the file, is stored 480x640.
* **8 bits per channel, scaled, never clipped.** 16-bit grey (``I;16``, and ``I`` whose values fit
  0..65535) is scaled by 255/65535 (65535 -> 255, 257 -> 1); other ``I`` and ``F`` images are
  scaled linearly from their darkest to their brightest pixel. (``convert("RGB")`` would clip a
  16-bit image to two grey levels.)
* **Alpha composited over white** (``BACKGROUND``, 255,255,255): RGBA, LA, PA and palette images
  with a transparent colour are drawn over a white page, as a browser draws them, so a change only
  in transparency is a change in the stored pixels.
* **One frame.** A file with several frames (animated GIF, APNG, animated WebP, multi-page TIFF) is
  a ``source_multiframe`` drop: which picture is meant cannot be guessed (a TIFF's first page may
  be a preview thumbnail). ``ImageLimits.frame`` (``--frame N`` / ``image_limits.frame``) picks
  frame N (0-based) of every such file; a file without that frame is ``source_no_such_frame``. A
  JPEG's MPO extra pictures (a phone's depth map or preview) are not frames a viewer shows: the
  main picture is used.

The stored bytes are the file's own when they already are such a picture (PNG or JPEG, 8-bit grey
or RGB, no alpha or an alpha channel that is opaque everywhere, e.g. CLEVR's renders, no
orientation to apply, one frame); otherwise the decoded picture encoded as
PNG (lossless), so a rotated phone JPEG is stored as PNG.

``ImageLimits.max_pixels`` is the pixel limit, for every format: Pillow's own decompression-bomb
limit (89,478,485 pixels by default) is set to it for the time of the decode, so a 95 MP scan loads
under ``max_pixels: 200000000`` and a 50 MP one is dropped under the 40 MP default, both with the
message ``W x H = N pixels > max_pixels M``.
"""

from __future__ import annotations

import io
import re
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageOps
from pydantic import BaseModel, ConfigDict, Field

from pairsmith.storage.verdict import KEEP, Verdict

BACKGROUND = (255, 255, 255)
"""What transparent pixels are composited over: white, as browsers and image viewers draw them."""
MULTIFRAME = "source_multiframe"
NO_SUCH_FRAME = "source_no_such_frame"
ORIENTATION = 0x0112  # the EXIF Orientation tag
DEFAULT_MAX_PIXELS = 40_000_000
PNG_SIGNATURE, JPEG_SIGNATURE = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
# File signatures of the formats read: checked before Pillow, whose answer for a non-image depends
# on which plugins other libraries registered (ultralytics' HEIF hook raises its own errors).
SIGNATURES = (JPEG_SIGNATURE, PNG_SIGNATURE, b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
_SINGLE_PICTURE = {"MPO"}  # formats whose extra frames are not pictures a viewer shows


class ImageLimits(BaseModel):
    """What makes a source image too big, too small, or not worth decoding, and which frame of a
    multi-frame file is used. Set under ``image_limits:`` in a config file; ``--frame`` sets
    ``frame`` on the command line."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, le=1_000_000_000,
                            description="larger images (width x height, from the header) are dropped unread")
    max_bytes: int = Field(64 * 2**20, ge=1, description="larger files are dropped unread")
    min_side: int = Field(32, ge=1, le=100_000, description="images with a shorter side are dropped")
    frame: int | None = Field(None, ge=0, le=100_000, description="frame (0-based) of multi-frame files (animated "
                              "GIF/PNG/WebP, multi-page TIFF) to use; unset, such a file is dropped (source_multiframe)")


def limits_help(limits: ImageLimits | None = None) -> str:
    """The limits and their defaults in words, for ``--help``."""
    limits = limits or ImageLimits()
    return (f"image_limits: max_pixels {limits.max_pixels:,} ({limits.max_pixels / 1e6:g} MP), max_bytes "
            f"{limits.max_bytes:,} ({limits.max_bytes / 2**20:g} MiB), min_side {limits.min_side} px; "
            "transparent pixels are drawn over white")


@dataclass
class DecodedImage:
    """A picture as viewers show it (see the module docstring) and the bytes to store for it."""

    image: Image.Image  # upright, 8-bit, mode "L" or "RGB", no alpha
    data: bytes  # PNG or JPEG bytes of ``image`` exactly (decoding ``data`` gives ``image``'s pixels)
    stored_format: str  # "PNG" or "JPEG"
    format: str  # the file's format as Pillow names it (JPEG, PNG, GIF, TIFF, ...)
    frames: int = 1

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


# Pillow's decompression-bomb limit is a module global, read while a file is opened, seeked and
# loaded; it is set to the caller's max_pixels for exactly that time, one decode at a time.
_limit_lock = threading.Lock()
_BOMB_SIZE = re.compile(r"\((\d+) pixels\)")


def _too_large(err: Exception, max_pixels: int) -> str:
    found = _BOMB_SIZE.search(str(err))
    return f"{found.group(1)} pixels > max_pixels {max_pixels}" if found else f"more than max_pixels {max_pixels} pixels"


def decode_image(data: bytes, limits: ImageLimits | None = None) -> tuple[Verdict, str, DecodedImage | None]:
    """``data`` decoded as a viewer shows it, or why it cannot be: (verdict, detail, image or None).

    Checks, cheapest first: size in bytes (``source_empty_file``, ``source_too_large``), the file
    signature (``source_not_an_image``), the header's pixel count against ``max_pixels``
    (``source_too_large``, nothing decoded), frames (``source_multiframe``,
    ``source_no_such_frame``), the full decode (``source_truncated``, ``source_corrupt``), then the
    upright size against ``min_side`` (``source_too_small``). Never raises for bad bytes.
    """
    limits = limits or ImageLimits()
    if not data:
        return Verdict.drop("source_empty_file"), "0 bytes", None
    if len(data) > limits.max_bytes:
        return Verdict.drop("source_too_large"), f"{len(data)} bytes > max_bytes {limits.max_bytes}", None
    if not data.startswith(SIGNATURES) and not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return Verdict.drop("source_not_an_image"), "no image file signature (JPEG, PNG, GIF, WebP, BMP, TIFF)", None
    with _limit_lock, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limits.max_pixels
        try:
            verdict, detail, image = _open(data, limits)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    if image is None:
        return verdict, detail, None
    fmt, frames = image.format or "", getattr(image, "n_frames", 1)
    try:
        picture = viewer_image(image)
    except Exception as err:  # a mode no conversion exists for
        return Verdict.drop("source_corrupt"), f"{type(err).__name__}: {err}", None
    if min(picture.size) < limits.min_side:
        return (Verdict.drop("source_too_small"),
                f"{picture.width}x{picture.height}, shorter side < min_side {limits.min_side}", None)
    if _as_is(data, image):
        stored, stored_format = data, ("PNG" if data.startswith(PNG_SIGNATURE) else "JPEG")
    else:
        stored, stored_format = encode_png(picture), "PNG"
    return KEEP, "", DecodedImage(picture, stored, stored_format, fmt, frames)


def _open(data: bytes, limits: ImageLimits) -> tuple[Verdict, str, Image.Image | None]:
    """Open, pick the frame and load, under the caller's pixel limit."""
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return Verdict.drop("source_too_large"), _too_large(err, limits.max_pixels), None
    except Image.UnidentifiedImageError:
        return Verdict.drop("source_not_an_image"), "not a format Pillow can read", None
    except Exception as err:  # a header so broken the format's own parser fails
        return Verdict.drop("source_corrupt"), f"{type(err).__name__}: {err}", None
    width, height = image.size
    if width * height > limits.max_pixels:
        return (Verdict.drop("source_too_large"),
                f"{width}x{height} = {width * height} pixels > max_pixels {limits.max_pixels}", None)
    try:
        frames = getattr(image, "n_frames", 1) if image.format not in _SINGLE_PICTURE else 1
        if frames > 1:
            if limits.frame is None:
                return (Verdict.drop(MULTIFRAME), f"{image.format} with {frames} frames; pick one with --frame N "
                        "(image_limits.frame)", None)
            if limits.frame >= frames:
                return Verdict.drop(NO_SUCH_FRAME), f"frame {limits.frame} asked, the file has {frames} (0-{frames - 1})", None
            image.seek(limits.frame)
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return Verdict.drop("source_too_large"), _too_large(err, limits.max_pixels), None
    except OSError as err:
        reason = "source_truncated" if "truncated" in str(err).lower() else "source_corrupt"
        return Verdict.drop(reason), f"{type(err).__name__}: {err}", None
    except Exception as err:  # zlib/struct/syntax errors from a damaged stream
        return Verdict.drop("source_corrupt"), f"{type(err).__name__}: {err}", None
    return KEEP, "", image


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block: Pillow shows the pixels as stored
        return 1


def _as_is(data: bytes, image: Image.Image) -> bool:
    """Whether the file's own bytes already are what a viewer shows (see the module docstring)."""
    if image.format == "PNG" and data.startswith(PNG_SIGNATURE):
        plain = ((image.mode in ("L", "RGB") and "transparency" not in image.info)
                 or (image.mode in ("LA", "RGBA") and image.getchannel("A").getextrema() == (255, 255)))  # opaque
    elif image.format == "JPEG" and data.startswith(JPEG_SIGNATURE):
        plain = image.mode in ("L", "RGB")  # CMYK JPEGs are converted
    else:
        return False
    return plain and getattr(image, "n_frames", 1) == 1 and _orientation(image) in (0, 1)


def viewer_image(image: Image.Image) -> Image.Image:
    """``image`` as a viewer shows it: upright, 8-bit grey ("L") or "RGB", alpha over white.

    ``image`` must be loaded (or loadable); the result is a new image, the EXIF orientation applied.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return _scaled(image)
    if image.mode in ("L", "RGB"):
        return image
    if image.mode == "1":
        return image.convert("L")
    grey = image.mode in ("LA", "La")
    if image.mode == "P":
        transparent = image.has_transparency_data
        image = image.convert("RGBA" if transparent else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        page = Image.new("RGBA", image.size, BACKGROUND + (255,))
        page.alpha_composite(image)
        return page.convert("L" if grey else "RGB")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def _scaled(image: Image.Image) -> Image.Image:
    """A 16/32-bit grey or float image scaled to 8 bits: 0..65535 -> 0..255 when the values are
    16-bit ones (``I;16*`` always), otherwise darkest..brightest -> 0..255."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535):
        scaled = values * (255.0 / 65535.0)
    else:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def open_stored(data: bytes) -> Image.Image:
    """Stored image bytes as an RGB picture, through ``viewer_image`` (a no-op on what
    ``decode_image`` stored; older rows and other producers' bytes come out the same way).
    Raises Pillow's errors for bytes that are not an image."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return viewer_image(image).convert("RGB")


def same_pixels(first: Image.Image, second: Image.Image) -> bool:
    """Whether two decoded pictures show the same thing: same size and not one pixel different."""
    if first.size != second.size:
        return False
    if first.mode != second.mode:  # grey beside colour: compared as colour
        first, second = first.convert("RGB"), second.convert("RGB")
    return ImageChops.difference(first, second).getbbox() is None
