"""Spot-the-Diff: pairs of street-scene video frames with human difference sentences.

Jhamtani and Berg-Kirkpatrick, "Learning to Describe Differences Between Pairs of Similar Images",
EMNLP 2018; public repository harsh19/spot-the-diff. Its annotations
(``data/annotations/{train,val,test}.json``) are a JSON list of ``{"img_id": "256", "sentences":
[...]}``, one object per annotator's description, and its images (``resized_images/``, published
separately) are ``<img_id>.png`` (before) and ``<img_id>_2.png`` (after), 224 x 224. The
repository's own loader (``code/nn_baseline``) and airsplay/VisualRelationships'
``dataset/process_dataset_spotdiff.py`` take each annotation object as one item, so an image pair
described by several annotators is several items: each object here is one pair, and each of its
sentences one ``diff-caption`` sample, all kept, verbatim. The split is the file's
(train / val / test) unless ``--split`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from pairsmith.storage.input_files import read_json_file
from pairsmith.tasks.imports.base import BAD_ENTRY, BadEntry, Entry, ImportConfig, Importer, split_from_name

PUBLISHED_SPLITS = {"train": "train", "val": "val", "test": "test"}


class SpotTheDiffConfig(ImportConfig):
    importer: ClassVar[str] = "spot-the-diff"

    annotations: str = Field(description="train.json, val.json or test.json of data/annotations/")
    images_dir: str = Field(description="folder with <img_id>.png and <img_id>_2.png", json_schema_extra={"option": "images"})
    split: Literal["train", "val", "test"] | None = Field(None, description="split of every entry (default: from "
                                                           "the file name)")


class SpotTheDiffImporter(Importer[SpotTheDiffConfig]):
    name = "spot-the-diff"
    method = "spot-the-diff"
    config_class = SpotTheDiffConfig
    folder_options = ("images_dir",)

    def input_files(self, config: SpotTheDiffConfig) -> list[Path]:
        return [Path(config.annotations)]

    def image_roots(self, config: SpotTheDiffConfig) -> list[Path]:
        return [Path(config.images_dir)]

    def read(self, config: SpotTheDiffConfig) -> list[Entry | BadEntry]:
        path = Path(config.annotations)
        data = read_json_file(path, "--annotations")
        if not isinstance(data, list):
            raise ValueError(f"--annotations {str(path)!r}: expected a JSON list of {{img_id, sentences}}, "
                             f"got {type(data).__name__}")
        split = split_from_name(path, PUBLISHED_SPLITS, config.split, "--split")
        return [_entry(path.name, i, raw, split) for i, raw in enumerate(data)]


def _entry(source: str, index: int, raw: object, split: str) -> Entry | BadEntry:
    origin = f"spot-the-diff:{source}#{index}"
    if not isinstance(raw, dict):
        return BadEntry(index, source, BAD_ENTRY, f"item {index} is {type(raw).__name__}, not an object", origin)
    img_id, sentences = raw.get("img_id"), raw.get("sentences")
    if not isinstance(img_id, (str, int)) or isinstance(img_id, bool) or str(img_id) == "":
        return BadEntry(index, source, BAD_ENTRY, f"item {index}: img_id must be a string or number", origin)
    if not (isinstance(sentences, list) and sentences and all(isinstance(s, str) for s in sentences)):
        return BadEntry(index, source, BAD_ENTRY, f"item {index}: sentences must be a non-empty list of strings", origin)
    img_id = str(img_id)
    return Entry(index=index, key=(img_id, *sentences), before=f"{img_id}.png", after=f"{img_id}_2.png",
                 origin=origin, captions=tuple(sentences), split=split)
