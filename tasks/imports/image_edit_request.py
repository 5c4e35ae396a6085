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

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from pairsmith.storage.input_files import read_json_file
from pairsmith.tasks.imports.base import BAD_ENTRY, BadEntry, Entry, ImportConfig, Importer, split_from_name

PUBLISHED_SPLITS = {"train": "train", "valid": "val", "test": "test"}


class ImageEditRequestConfig(ImportConfig):
    importer: ClassVar[str] = "image-edit-request"

    annotations: str = Field(description="train.json, valid.json or test.json of the repository's data/")
    images_dir: str = Field(description="folder with the img0 / img1 files", json_schema_extra={"option": "images"})
    split: Literal["train", "val", "test"] | None = Field(None, description="split of every entry (default: from "
                                                           "the file name)")


class ImageEditRequestImporter(Importer[ImageEditRequestConfig]):
    name = "image-edit-request"
    method = "image-edit-request"
    config_class = ImageEditRequestConfig
    folder_options = ("images_dir",)

    def input_files(self, config: ImageEditRequestConfig) -> list[Path]:
        return [Path(config.annotations)]

    def image_roots(self, config: ImageEditRequestConfig) -> list[Path]:
        return [Path(config.images_dir)]

    def read(self, config: ImageEditRequestConfig) -> list[Entry | BadEntry]:
        path = Path(config.annotations)
        data = read_json_file(path, "--annotations")
        if not isinstance(data, list):
            raise ValueError(f"--annotations {str(path)!r}: expected a JSON list of {{img0, img1, sents, uid}}, "
                             f"got {type(data).__name__}")
        split = split_from_name(path, PUBLISHED_SPLITS, config.split, "--split")
        return [_entry(path.name, i, raw, split) for i, raw in enumerate(data)]


def _entry(source: str, index: int, raw: object, split: str) -> Entry | BadEntry:
    uid = raw.get("uid") if isinstance(raw, dict) else None
    origin = f"image-edit-request:{source}#{uid if isinstance(uid, str) and uid else index}"
    if not isinstance(raw, dict):
        return BadEntry(index, source, BAD_ENTRY, f"item {index} is {type(raw).__name__}, not an object", origin)
    img0, img1, sents = raw.get("img0"), raw.get("img1"), raw.get("sents")
    if not (isinstance(img0, str) and img0 and isinstance(img1, str) and img1):
        return BadEntry(index, source, BAD_ENTRY, f"item {index}: img0 and img1 must be file names", origin)
    if not (isinstance(sents, list) and sents and all(isinstance(s, str) for s in sents)):
        return BadEntry(index, source, BAD_ENTRY, f"item {index}: sents must be a non-empty list of strings", origin)
    return Entry(index=index, key=(img0, img1, *sents), before=img0, after=img1, origin=origin,
                 captions=tuple(sents), split=split)
