"""Image Editing Request: photos, their Photoshop edits, and what was asked for.

Tan, Dernoncourt, Lin, Bui and Bansal, "Expressing Visual Relationships via Language", ACL 2019;
public repository airsplay/VisualRelationships. Its ``data/{train,valid,test}.json`` (README,
``src/data.py``) are JSON lists of ``{"img0": before file, "img1": after file, "sents": [requests],
"uid": id}``: one request per pair for training, three for valid and test; the image pairs are
published separately, as files named like ``img0`` / ``img1`` in one folder (``--images``).

Each object is one pair (origin ``image-edit-request:<file>#<uid>``), each of its requests one
``diff-caption`` sample, all kept, in the file's split (``valid`` is stored as ``val``). The
same image pair described in two objects (the published files have such) is two pairs, as in the
repository's loader.
"""

from __future__ import annotations

from typing import ClassVar

from pairsmith.tasks.imports.base import BAD_ENTRY, AnnotationListConfig, AnnotationListImporter, BadEntry, Entry
from pairsmith.tasks.imports.base import is_text, sentences


class ImageEditRequestConfig(AnnotationListConfig):
    importer: ClassVar[str] = "image-edit-request"


class ImageEditRequestImporter(AnnotationListImporter[ImageEditRequestConfig]):
    name = "image-edit-request"
    method = "image-edit-request"
    config_class = ImageEditRequestConfig
    published_splits = {"train": "train", "valid": "val", "test": "test"}
    entry_fields = "img0, img1, sents, uid"

    def entry(self, source: str, index: int, raw: dict, split: str) -> Entry | BadEntry:
        uid = raw.get("uid")
        origin = f"image-edit-request:{source}#{uid if isinstance(uid, str) and uid else index}"
        img0, img1, sents = raw.get("img0"), raw.get("img1"), raw.get("sents")
        if not (is_text(img0) and is_text(img1)):
            return BadEntry(index, source, BAD_ENTRY, f"item {index}: img0 and img1 must be file names", origin)
        if not sentences(sents):
            return BadEntry(index, source, BAD_ENTRY, f"item {index}: sents must be a list of strings with at least one "
                            "non-blank", origin)
        return Entry(index=index, key=(img0, img1, *sents), before=img0, after=img1, origin=origin,
                     captions=sentences(sents), split=split)
