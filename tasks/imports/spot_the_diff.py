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

from typing import ClassVar

from pairsmith.tasks.imports.base import BAD_ENTRY, AnnotationListConfig, AnnotationListImporter, BadEntry, Entry
from pairsmith.tasks.imports.base import sentences as captions_of


class SpotTheDiffConfig(AnnotationListConfig):
    importer: ClassVar[str] = "spot-the-diff"


class SpotTheDiffImporter(AnnotationListImporter[SpotTheDiffConfig]):
    name = "spot-the-diff"
    method = "spot-the-diff"
    config_class = SpotTheDiffConfig
    published_splits = {"train": "train", "val": "val", "test": "test"}
    entry_fields = "img_id, sentences"

    def entry(self, source: str, index: int, raw: dict, split: str) -> Entry | BadEntry:
        origin = f"spot-the-diff:{source}#{index}"
        img_id, sentences = raw.get("img_id"), raw.get("sentences")
        if not isinstance(img_id, (str, int)) or isinstance(img_id, bool) or str(img_id) == "":
            return BadEntry(index, source, BAD_ENTRY, f"item {index}: img_id must be a string or number", origin)
        if not captions_of(sentences):
            return BadEntry(index, source, BAD_ENTRY, f"item {index}: sentences must be a list of strings with at least "
                            "one non-blank",
                            origin)
        img_id = str(img_id)
        return Entry(index=index, key=(img_id, *sentences), before=f"{img_id}.png", after=f"{img_id}_2.png",
                     origin=origin, captions=captions_of(sentences), split=split)
