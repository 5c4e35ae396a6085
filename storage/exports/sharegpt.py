"""``sharegpt``: ``sharegpt.json`` plus the ``dataset_info.json`` entry LLaMA-Factory loads it by.

Records are ``{"id", "messages": [{"role", "content"}], "images": [...]}`` (LLaMA-Factory's ShareGPT
format with the OpenAI-style tags, ``data/README.md`` of hiyouga/LLaMA-Factory), plus the metadata
columns every export carries. The registry entry is named per export (``--dataset-name``, default
``pairsmith_<folder>``), so two exports merged into one ``dataset_info.json`` keep both. Two ways to
train on it:

* ``dataset_dir`` = the export folder: the entry and the relative image paths work as written;
* your own ``dataset_dir``: export with ``--absolute-paths`` (the entry's ``file_name`` and every image
  path then point into the export folder) and copy the entry into your ``dataset_info.json``.
"""

from __future__ import annotations

import json

from pairsmith.storage.exports.base import ExportFormat, ExportItem, inside


class ShareGPTFormat(ExportFormat):
    name = "sharegpt"
    help = "images + sharegpt.json + dataset_info.json (LLaMA-Factory)"

    def begin(self) -> None:
        self.records = self.open_json_list("sharegpt.json")

    def write(self, item: ExportItem) -> None:
        self.records.append({
            "id": item.id,
            "messages": [{"role": role, "content": text} for role, text in item.turns],
            "images": self.image_paths(item),
            **item.meta, "boxes": item.boxes, "box_format": item.box_format,
        })

    def finish(self) -> None:
        self.records.close()
        entry = {
            "file_name": self.path_of("sharegpt.json"),
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"},
        }
        inside(self.folder, "dataset_info.json").write_text(json.dumps({self.dataset_name: entry}, indent=2) + "\n")
        self.files.append("dataset_info.json")
