"""Export kept samples as files that trainers read unchanged.

* ``llava``: ``llava.json``, a list of ``{"id", "image", "conversations": [{"from", "value"}]}``,
  the LLaVA / LLaVA-NeXT format. ``image`` is a list of two paths (multi-image, as
  LLaVA-OneVision and LLaVA-NeXT-Interleave train), or one path with ``--layout side-by-side``.
* ``sharegpt``: ``sharegpt.json``, a list of ``{"messages": [{"role", "content"}], "images"}``,
  plus the ``dataset_info.json`` entry LLaMA-Factory needs to load it (``dataset: pairsmith``).

Images go to ``images/`` next to the JSON; paths in the JSON are relative to the export folder,
which is what LLaVA's ``--image_folder`` and LLaMA-Factory's ``dataset_dir`` expect. Each image
is written once however many samples use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from pairsmith.storage.pair_images import image_extension, open_image, side_by_side
from pairsmith.storage.store import PairStore, sql_in, sql_literal

Format = Literal["llava", "sharegpt"]
Layout = Literal["multi", "side-by-side"]
IMAGE = "<image>"
SIDE_BY_SIDE_NOTE = (
    "The image shows two pictures side by side, separated by a black bar: the first image on the "
    "left and the second image on the right. Coordinates refer to the left picture.\n"
)
DATASET_NAME = "pairsmith"
ID_CHUNK = 500


class ExportFilter(BaseModel):
    run_id: str | None = None
    tasks: list[str] = Field(default_factory=list)
    split: str | None = None

    def where(self) -> str:
        clauses = []
        if self.run_id:
            clauses.append(f"run_id = {sql_literal(self.run_id)}")
        if self.tasks:
            clauses.append(sql_in("task", self.tasks))
        if self.split:
            clauses.append(f"split = {sql_literal(self.split)}")
        return " AND ".join(clauses) or None


@dataclass
class ExportResult:
    samples: int
    images: int
    json_path: Path


def _single_image(text: str) -> str:
    """Fold the two image placeholders of a pair prompt into one side-by-side image."""
    if text.count(IMAGE) != 2:
        return text
    return IMAGE + "\n" + SIDE_BY_SIDE_NOTE + text.replace(IMAGE + "\n", "").replace(IMAGE, "")


def _write_images(pair: dict, images_dir: Path, layout: Layout) -> list[str]:
    """Write one pair's image files (once) and return their paths relative to the export folder."""
    pid = pair["pair_id"]
    if layout == "side-by-side":
        name = f"{pid}_pair.png"
        if not (images_dir / name).exists():
            side_by_side(open_image(pair["image_before"]), open_image(pair["image_after"])).save(images_dir / name)
        return [f"images/{name}"]
    paths = []
    for role in ("before", "after"):
        data = pair[f"image_{role}"]
        name = f"{pid}_{role}.{image_extension(data)}"
        if not (images_dir / name).exists():
            (images_dir / name).write_bytes(data)
        paths.append(f"images/{name}")
    return paths


def _write_sample_image(sample: dict, images_dir: Path) -> list[str]:
    """A sample with its own picture (Img-Diff's side-by-side with red boxes) shows that, in any layout."""
    data = sample["image"]
    name = f"{sample['sample_id']}.{image_extension(data)}"
    if not (images_dir / name).exists():
        (images_dir / name).write_bytes(data)
    return [f"images/{name}"]


def _record(sample: dict, images: list[str], fmt: Format, layout: Layout) -> dict:
    turns = [(m["role"], m["content"]) for m in sample["conversation"]]
    if layout == "side-by-side":
        turns = [(role, _single_image(text)) for role, text in turns]
    n_placeholders = sum(text.count(IMAGE) for _, text in turns)
    if n_placeholders != len(images):
        raise ValueError(f"sample {sample['sample_id']}: {n_placeholders} {IMAGE} tokens for {len(images)} images")
    if fmt == "llava":
        speaker = {"user": "human", "assistant": "gpt", "system": "system"}
        return {
            "id": sample["sample_id"],
            "image": images if len(images) > 1 else images[0],
            "conversations": [{"from": speaker[role], "value": text} for role, text in turns],
        }
    return {
        "messages": [{"role": role, "content": text} for role, text in turns],
        "images": images,
    }


def export_samples(store: PairStore, out: Path, fmt: Format, flt: ExportFilter, layout: Layout = "multi") -> ExportResult:
    samples = store.read("samples", where=flt.where()).to_pylist()
    if not samples:
        raise ValueError(f"no samples match {flt.where() or 'the store'} in {store.uri!r}")
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    by_pair: dict[str, list[dict]] = {}
    for s in sorted(samples, key=lambda s: s["sample_id"]):
        by_pair.setdefault(s["pair_id"], []).append(s)
    pair_ids = sorted(by_pair)
    records: list[dict] = []
    n_images = 0
    for start in range(0, len(pair_ids), ID_CHUNK):  # bounded memory: images of one chunk at a time
        chunk = pair_ids[start:start + ID_CHUNK]
        pairs = store.read(
            "pairs", where=f"{sql_in('pair_id', chunk)} AND status = 'kept'",
            columns=["pair_id", "image_before", "image_after"],
        ).to_pylist()
        for pair in sorted(pairs, key=lambda p: p["pair_id"]):
            pair_images: list[str] | None = None  # written only if a sample shows the pair's own images
            for sample in by_pair[pair["pair_id"]]:
                if sample.get("image"):
                    images = _write_sample_image(sample, images_dir)
                    n_images += 1
                else:
                    if pair_images is None:
                        pair_images = _write_images(pair, images_dir, layout)
                        n_images += len(pair_images)
                    images = pair_images
                records.append(_record(sample, images, fmt, layout))
    json_path = out / f"{fmt}.json"
    json_path.write_text(json.dumps(records, indent=1, ensure_ascii=False))
    if fmt == "sharegpt":
        _write_dataset_info(out, json_path.name)
    return ExportResult(samples=len(records), images=n_images, json_path=json_path)


def _write_dataset_info(out: Path, file_name: str) -> None:
    """LLaMA-Factory's registry entry: merged into an existing dataset_info.json if there is one."""
    info_path = out / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info[DATASET_NAME] = {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {
            "role_tag": "role", "content_tag": "content",
            "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system",
        },
    }
    info_path.write_text(json.dumps(info, indent=2))
