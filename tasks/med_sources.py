"""Where MED's source photos come from: a folder with a captions file, or pairs already stored.

A captions file is JSONL (``{"image": "x.jpg", "caption": "..."}`` per line; ``file_name`` or
``image_name`` also accepted) or COCO-style (``{"images": [{"id", "file_name"}], "annotations":
[{"image_id", "caption"}]}``, first caption per image). Image paths are relative to the images
folder. Listing sources reads no pixels; each batch loads and checks its own images, so a
missing or broken file becomes a reason row for that item only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storage.ids import stable_id
from storage.store import PairStore, sql_in, sql_literal


class FolderSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images_dir: str = Field(description="folder the captions file's image paths are relative to")
    captions: str = Field(description="JSONL or COCO captions JSON")


class StoreSource(BaseModel):
    """Use the before images (and captions) of pairs already in the database as sources."""

    model_config = ConfigDict(extra="forbid")

    methods: list[str] = Field(default_factory=lambda: ["dig-render"])
    run_id: str | None = None
    only_kept: bool = True


class MedSources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    folder: FolderSource | None = None
    store: StoreSource | None = None
    limit: int | None = Field(None, ge=1, description="use at most this many sources")

    @model_validator(mode="after")
    def _some(self) -> "MedSources":
        if self.folder is None and self.store is None:
            raise ValueError("give a folder source, a store source, or both")
        return self


@dataclass(frozen=True)
class SourceRef:
    """One source photo, not yet loaded: either a file or a stored pair's before image."""

    source_id: str
    caption: str
    path: str | None = None
    pair_id: str | None = None
    problem: str | None = None  # set when the listing itself already shows the item is unusable


def read_captions(path: Path) -> list[tuple[str, str]]:
    """(image path, caption) pairs from a JSONL or COCO captions file; one-line errors name the line."""
    if not path.is_file():
        raise ValueError(f"captions file {str(path)!r}: not found")
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None  # several JSON lines
    if not (isinstance(data, dict) and "images" in data and "annotations" in data):
        return _jsonl(path, text)
    names = {img["id"]: img["file_name"] for img in data["images"]}
    out: dict[str, str] = {}
    for ann in data["annotations"]:
        name = names.get(ann.get("image_id"))
        if name is not None and name not in out and str(ann.get("caption", "")).strip():
            out[name] = str(ann["caption"]).strip()
    return list(out.items())


def _jsonl(path: Path, text: str) -> list[tuple[str, str]]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"captions file {str(path)!r} line {n}: not valid JSON ({err.msg})") from None
        name = row.get("image") or row.get("file_name") or row.get("image_name")
        caption = str(row.get("caption", "")).strip()
        if not name:
            raise ValueError(f"captions file {str(path)!r} line {n}: no 'image' field")
        rows.append((str(name), caption))
    return rows


def list_sources(config: MedSources, store: PairStore) -> list[SourceRef]:
    """Every source of the run in a stable order, each once; ids are stable across runs.

    A file's id is its path and caption: the same photo listed with two captions is two sources.
    """
    refs: list[SourceRef] = []
    if config.folder:
        root = Path(config.folder.images_dir)
        for name, caption in read_captions(Path(config.folder.captions)):
            path = root / name
            problem = None if caption else "source_no_caption"
            refs.append(SourceRef(stable_id("file", name, caption), caption, path=str(path), problem=problem))
    if config.store:
        clauses = [sql_in("method", config.store.methods)]
        if config.store.run_id:
            clauses.append(f"run_id = {sql_literal(config.store.run_id)}")
        if config.store.only_kept:
            clauses.append("status = 'kept'")
        rows = store.read("pairs", where=" AND ".join(clauses), columns=["pair_id", "caption_before"]).to_pylist()
        for row in sorted(rows, key=lambda r: r["pair_id"]):
            caption = row["caption_before"] or ""
            refs.append(SourceRef(stable_id("pair", row["pair_id"]), caption, pair_id=row["pair_id"],
                                  problem=None if caption else "source_no_caption"))
    unique = list({ref.source_id: ref for ref in reversed(refs)}.values())[::-1]  # a repeated line is one source
    return unique[: config.limit] if config.limit else unique
