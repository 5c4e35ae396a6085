"""Read a folder of source images (and optional captions) for flows that edit real photos.

Real folders hold broken files: zero-byte uploads, truncated downloads, files that are not images,
and "decompression bombs" whose header claims billions of pixels. Each file is checked cheapest
first (size on disk, header, then a full decode) and becomes either a ``SourceImage`` or a
``SourceDrop`` with a ``source_*`` reason, so one bad file is a reason row, never a crashed run.
The pixel limit is checked from the header before anything is decoded, so a bomb costs nothing.

Captions come from a JSONL file (``{"file": "a.jpg", "caption": "..."}`` per line; ``file_name`` or
``image`` also name the file) or a COCO captions file (``images`` + ``annotations``). A caption whose
image is missing from the folder is a ``source_missing`` drop. No file outside the folder is read:
a symlink pointing out, or a caption naming ``../x.jpg`` or an absolute path, is a
``path_outside_root`` drop and the file is never opened.

Every image is decoded as a viewer shows it (``pairsmith.storage.image_decode``: upright, 8-bit,
alpha over white, one frame; ``source_multiframe`` for an animated or multi-page file unless
``frame`` picks one), and ``width`` / ``height`` are the upright picture's. Stored images are PNG
or JPEG, whatever the source format: a PNG or JPEG that already is such a picture is stored as it
is, anything else (a rotated phone JPEG, 16-bit or transparent PNGs, WebP, BMP, TIFF, GIF) as the
decoded picture in PNG, losslessly, and the original format name is kept beside it, so every
export and trainer reads what was stored.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from pairsmith.storage.ids import stable_id
from pairsmith.storage.image_decode import (  # noqa: F401  (ImageLimits, SIGNATURES: imported from here too)
    JPEG_SIGNATURE, PNG_SIGNATURE, SIGNATURES, ImageLimits, decode_image, encode_png, viewer_image,
)
from pairsmith.storage.input_files import PATH_OUTSIDE_ROOT, PathOutsideRoot, inside_root, json_error, parse_json
from pairsmith.storage.input_files import read_text_file, text_lines
from pairsmith.storage.schemas import PairRow, utc_now
from pairsmith.storage.verdict import KEEP, StageStats, Verdict

STAGE = "source"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class ImageFolderConfig(ImageLimits):
    path: str = Field(description="folder of source images")
    captions_path: str | None = Field(None, description="captions: JSONL (file, caption) or COCO captions JSON")
    recursive: bool = Field(True, description="also read sub-folders")
    extensions: list[str] = Field(default_factory=lambda: list(IMAGE_EXTENSIONS), description="image file suffixes")
    require_caption: bool = Field(False, description="with captions_path: drop images that have no caption")


@dataclass
class SourceImage:
    image_id: str  # from the file's content: the same bytes give the same id wherever the folder lives
    path: str  # relative to the folder, with forward slashes
    width: int
    height: int
    format: str  # the file's format as Pillow names it (JPEG, PNG, WEBP, ...)
    data: bytes  # PNG or JPEG bytes (``stored_image``)
    stored_format: str = ""  # PNG or JPEG: the format of ``data``
    captions: list[str] = field(default_factory=list)

    @property
    def caption(self) -> str | None:
        return self.captions[0] if self.captions else None


@dataclass
class SourceDrop:
    path: str
    reason: str
    detail: str

    def pair_row(self, run_id: str, method: str, pair_id: str | None = None) -> PairRow:
        """The dropped pairs row a flow stores for this file (drop_stage ``source``)."""
        return PairRow(
            pair_id=pair_id or stable_id(method, STAGE, self.path), run_id=run_id, method=method, width=0, height=0,
            status="dropped", drop_stage=STAGE, drop_reason=self.reason,
            drop_detail=f"{self.path}: {self.detail}", created_at=utc_now(),
        )


@dataclass
class ImageFolderScan:
    images: list[SourceImage]
    drops: list[SourceDrop]
    stats: StageStats


def load_captions(path: str) -> dict[str, list[str]]:
    """Relative file name -> captions; a malformed file is one ValueError naming the file and the line
    or entry. A COCO ``images`` id listed twice for different files, or an annotation naming an id
    that ``images`` lacks, is an error: a caption must never land on the wrong photo or vanish."""
    text = read_text_file(path, "captions")
    if Path(path).suffix.lower() == ".jsonl":
        return _jsonl_captions(text, path)
    try:
        data = parse_json(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"captions {path!r} line {err.lineno}: {json_error(err)}") from None
    except ValueError as err:
        raise ValueError(f"captions {path!r}: {json_error(err)}") from None
    if not isinstance(data, dict) or not {"images", "annotations"} <= set(data):
        raise ValueError(f"captions {path!r}: expected COCO captions with 'images' and 'annotations' (or a .jsonl file)")
    return _coco_captions(data, path)


def _coco_captions(data: dict, path: str) -> dict[str, list[str]]:
    names: dict = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise ValueError(f"captions {path!r}: images[{i}] needs an 'id' and a 'file_name' string")
        seen = names.setdefault(img["id"], img["file_name"])
        if seen != img["file_name"]:
            raise ValueError(f"captions {path!r}: images[{i}] reuses id {img['id']!r} of {seen!r} for "
                             f"{img['file_name']!r}; give each photo its own id")
    out: dict[str, list[str]] = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise ValueError(f"captions {path!r}: annotations[{i}] needs an 'image_id' and a 'caption' string")
        if ann["image_id"] not in names:
            raise ValueError(f"captions {path!r}: annotations[{i}] names image_id {ann['image_id']!r}, "
                             "which no entry of 'images' has")
        out.setdefault(names[ann["image_id"]], []).append(ann["caption"].strip())
    return out


def _jsonl_captions(text: str, path: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n, line in enumerate(text_lines(text), 1):
        if not line.strip():
            continue
        try:
            entry = parse_json(line)
        except ValueError as err:
            raise ValueError(f"captions {path!r} line {n}: {json_error(err)}") from None
        name = next((entry.get(k) for k in ("file", "file_name", "image") if isinstance(entry, dict) and entry.get(k)), None)
        if name is None or not isinstance(entry.get("caption"), str):
            raise ValueError(f"captions {path!r} line {n}: needs 'file' (or 'image') and 'caption' strings")
        out.setdefault(str(name), []).append(entry["caption"].strip())
    return out


def check_image_file(file: Path, config: ImageLimits) -> tuple[Verdict, str, dict]:
    """Verdict, detail and (when kept) the image's facts, from the cheapest failing check."""
    size = file.stat().st_size
    if size == 0:
        return Verdict.drop("source_empty_file"), "0 bytes", {}
    if size > config.max_bytes:
        return Verdict.drop("source_too_large"), f"{size} bytes > max_bytes {config.max_bytes}", {}
    verdict, detail, facts = check_image_bytes(file.read_bytes(), config)
    if verdict.keep and not facts.get("format"):
        facts["format"] = file.suffix.lstrip(".").upper()
    return verdict, detail, facts


def check_image_bytes(data: bytes, config: ImageLimits) -> tuple[Verdict, str, dict]:
    """The same checks for an image already in memory (a stored pair's image, a download), through
    ``pairsmith.storage.image_decode.decode_image``: the kept image's facts are its upright
    ``width`` / ``height``, the file's ``format``, the bytes to store (``data``, PNG or JPEG, see
    ``image_decode``), their ``stored_format`` and the decoded ``image`` (RGB or L, 8-bit)."""
    verdict, detail, decoded = decode_image(data, config)
    if decoded is None:
        return verdict, detail, {}
    return KEEP, "", {"width": decoded.width, "height": decoded.height, "format": decoded.format,
                      "data": decoded.data, "stored_format": decoded.stored_format, "image": decoded.image}


def open_image_in(roots: list[Path], name: str, limits: ImageLimits) -> tuple[Verdict, str, dict]:
    """Find ``name`` under the first of ``roots`` that has it and check it (``check_image_file``).

    Drops, never raises: ``path_outside_root`` when no root holds it and the name leaves a root
    (through ``..``, as an absolute path or a symlink; the file is not opened), ``source_missing``
    when no root has it, ``source_unreadable`` for an ``OSError`` (a
    300-character name, no permission), else the image checks' own reasons.
    """
    outside = 0
    for root in roots:
        try:
            path = inside_root(root, name)
            if not path.is_file():
                continue
            return check_image_file(path, limits)
        except PathOutsideRoot:
            outside += 1
        except OSError as err:
            return Verdict.drop("source_unreadable"), f"{type(err).__name__}: {err.strerror or err}", {}
    if outside:  # it names a file outside some root, and no root holds it inside
        return Verdict.drop(PATH_OUTSIDE_ROOT), f"resolves outside {', '.join(repr(str(r)) for r in roots)}", {}
    return Verdict.drop("source_missing"), f"not found in {', '.join(repr(str(r)) for r in roots)}", {}


def stored_image(data: bytes) -> tuple[bytes, str]:
    """PNG and JPEG bytes as they are (``check_image_bytes`` already made them what a viewer shows);
    any other format Pillow reads decoded as a viewer shows it and encoded as PNG (lossless).
    Returns the bytes to store and their format, ``PNG`` or ``JPEG``."""
    if data.startswith(PNG_SIGNATURE):
        return data, "PNG"
    if data.startswith(JPEG_SIGNATURE):
        return data, "JPEG"
    return _as_png(data), "PNG"


def stored_pair(before: bytes, after: bytes) -> tuple[bytes, bytes, str]:
    """Both images of a pair in one stored format: JPEG if both are JPEG, else PNG (a JPEG beside a
    PNG or a WebP is decoded into PNG, so no pixel changes). Returns (before, after, format)."""
    (b, b_fmt), (a, a_fmt) = stored_image(before), stored_image(after)
    if b_fmt == a_fmt:
        return b, a, b_fmt
    return (b if b_fmt == "PNG" else _as_png(b)), (a if a_fmt == "PNG" else _as_png(a)), "PNG"


def _as_png(data: bytes) -> bytes:
    return encode_png(_viewer(data))


def _viewer(data: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return viewer_image(image)


def scan_image_folder(config: ImageFolderConfig) -> Iterator[SourceImage | SourceDrop]:
    """Every image file of the folder in path order, then the captions whose file is missing."""
    root = Path(config.path)
    if not root.is_dir():
        raise ValueError(f"source folder {config.path!r}: not a folder")
    captions = load_captions(config.captions_path) if config.captions_path else {}
    suffixes = {e.lower() for e in config.extensions}
    files = sorted(p for p in (root.rglob("*") if config.recursive else root.glob("*"))
                   if p.suffix.lower() in suffixes and (p.is_symlink() or p.is_file()))
    seen: set[str] = set()
    for file in files:
        rel = file.relative_to(root).as_posix()
        seen.add(rel)
        verdict, detail, facts = open_image_in([root], rel, config)
        if not verdict.keep:
            yield SourceDrop(rel, verdict.reason or "source_unreadable", detail)
            continue
        texts = captions.get(rel, [])
        if config.captions_path and config.require_caption and not texts:
            yield SourceDrop(rel, "source_no_caption", f"no caption in {config.captions_path}")
            continue
        digest = hashlib.sha256(facts["data"]).hexdigest()  # of the stored picture: a --frame choice counts
        yield SourceImage(image_id=stable_id(STAGE, digest), path=rel, captions=texts, data=facts["data"],
                          stored_format=facts["stored_format"], width=facts["width"], height=facts["height"],
                          format=facts["format"])
    for rel in sorted(set(captions) - seen):
        try:
            inside_root(root, rel)
            yield SourceDrop(rel, "source_missing", f"named in {config.captions_path} but not in {config.path}")
        except PathOutsideRoot as err:
            yield SourceDrop(rel, PATH_OUTSIDE_ROOT, f"named in {config.captions_path}: {err}")
        except OSError as err:
            yield SourceDrop(rel, "source_unreadable", f"{type(err).__name__}: {err.strerror or err}")


def read_image_folder(config: ImageFolderConfig) -> ImageFolderScan:
    """The whole folder: kept images, drops with reasons, and the ``source`` stage's counts."""
    stats = StageStats(STAGE)
    start = time.perf_counter()
    images, drops = [], []
    for item in scan_image_folder(config):
        if isinstance(item, SourceDrop):
            drops.append(item)
            stats.record(Verdict.drop(item.reason))
        else:
            images.append(item)
            stats.record(KEEP)
    stats.seconds = time.perf_counter() - start
    return ImageFolderScan(images, drops, stats)
