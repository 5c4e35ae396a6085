"""The source captions of the Img-Diff flows: the file shipped with pairsmith, or your own.

Img-Diff rewrote MSCOCO captions. pairsmith ships a small caption file with the package
(``imgdiff_captions.jsonl``: everyday scenes whose nouns the lexicon knows), so a run needs no
download to start; ``captions_path`` points at your own: an MSCOCO captions file
(``captions_train2017.json``'s layout, ``{"annotations": [{"image_id", "id", "caption"}, ...]}``,
read in (image_id, id) order, every caption of an image), JSONL with a ``caption`` field per line,
or plain text, one caption per line. Standard library only: configs check the file on load.
"""

from __future__ import annotations

from pathlib import Path

from pairsmith.storage.input_files import json_error, parse_json, read_text_file, text_lines

BUNDLED_CAPTIONS = Path(__file__).with_name("captions.jsonl")


def load_captions(path: str | None = None) -> list[str]:
    """The source captions of a run; a ValueError naming the file and line for anything unusable."""
    file = Path(path) if path else BUNDLED_CAPTIONS
    text = read_text_file(file, "captions file")  # missing, unreadable, not UTF-8: one line naming file and line
    coco = _coco_captions(file, text)
    if coco is not None:
        return coco
    captions = []
    as_jsonl = file.suffix.lower() in {".jsonl", ".json"}
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        caption = line.strip()
        if as_jsonl:
            try:
                record = parse_json(line)
            except ValueError as err:
                raise ValueError(f"captions file {str(file)!r} line {number}: {json_error(err)}") from None
            caption = record.get("caption") if isinstance(record, dict) else None
            if not isinstance(caption, str) or not caption.strip():
                raise ValueError(f"captions file {str(file)!r} line {number}: needs a non-empty \"caption\" string")
        captions.append(caption.strip())
    if not captions:
        raise ValueError(f"captions file {str(file)!r} holds no captions")
    return captions


def _coco_captions(file: Path, text: str) -> list[str] | None:
    """The captions of an MSCOCO captions file, or None if ``text`` is not one (JSONL, plain text)."""
    if file.suffix.lower() != ".json" or not text.lstrip().startswith("{"):
        return None
    try:
        data = parse_json(text)
    except ValueError:
        return None  # not one JSON document: JSONL, read line by line
    if not isinstance(data, dict) or "annotations" not in data:
        return None
    annotations = data["annotations"]
    if not isinstance(annotations, list):
        raise ValueError(f"captions file {str(file)!r}: \"annotations\" must be a list (MSCOCO captions layout)")
    rows = []
    for k, a in enumerate(annotations):
        caption = a.get("caption") if isinstance(a, dict) else None
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"captions file {str(file)!r} annotations[{k}]: needs a non-empty \"caption\" string")
        rows.append((str(a.get("image_id", "")), str(a.get("id", k)), k, caption.strip()))
    if not rows:
        raise ValueError(f"captions file {str(file)!r} holds no captions")
    return [caption for *_, caption in sorted(rows, key=lambda r: (r[0].zfill(20), r[1].zfill(20), r[2]))]
