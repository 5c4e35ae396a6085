"""``llava``: ``llava.json``, the LLaVA / LLaVA-NeXT / LLaVA-OneVision training format.

A list of ``{"id", "image", "conversations": [{"from": "human"|"gpt"|"system", "value"}]}`` records
(LLaVA's ``LazySupervisedDataset``, ``llava/train/train.py``), with ``<image>`` where each image goes.
``image`` is a list of paths in the multi layout, also for samples that show one picture, so every
record has the same type (``datasets`` refuses a column that mixes strings and lists); with
``--layout side-by-side`` it is one path, as LLaVA-1.5 trains. Paths are relative to the export
folder (LLaVA's ``--image_folder``). Each record also carries ``task``, ``split``, ``method``,
``category``, ``dataset``, ``subset``, ``pair_id``, ``run_id``, ``boxes`` and ``box_format``.
"""

from __future__ import annotations

from pairsmith.storage.exports.base import ExportFormat, ExportItem

SPEAKER = {"user": "human", "assistant": "gpt", "system": "system"}


class LlavaFormat(ExportFormat):
    name = "llava"
    help = "images + llava.json (LLaVA / LLaVA-NeXT / OneVision conversations)"

    def begin(self) -> None:
        self.records = self.open_json_list("llava.json")

    def write(self, item: ExportItem) -> None:
        paths = self.image_paths(item)
        self.records.append({
            "id": item.id,
            "image": paths[0] if self.options.layout == "side-by-side" else paths,
            "conversations": [{"from": SPEAKER[role], "value": text} for role, text in item.turns],
            **item.meta, "boxes": item.boxes, "box_format": item.box_format,
        })

    def finish(self) -> None:
        self.records.close()
