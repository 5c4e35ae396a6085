"""Any image-difference set as a JSONL of before/after paths and captions (``pairsmith import folder``).

For sets without an importer of their own (OmniDiff, Birds-to-Words, your own photos), convert the
annotations to one JSON object per line::

    {"before": "pairs/0001_a.jpg", "after": "pairs/0001_b.jpg", "captions": ["the cup is gone", ...],
     "split": "test", "category": "remove", "id": "0001"}

``before`` and ``after`` are paths relative to ``--images`` (default: the JSONL's folder);
``captions`` is a list of reference sentences (or ``caption``, one string), each stored as a
``diff-caption`` sample, all kept; ``split`` (train / val / test / bench, default ``--split``),
``category`` (a change type, if the set has one) and ``id`` (kept in the origin) are optional; a
``null`` reads as absent. Every row carries ``--dataset`` as its dataset name. A line that is not
JSON stops the import before it starts (exit 2, naming the line); a line that is JSON but not such
an object, names a key not listed here (a misspelt ``captoin`` would otherwise lose its captions
silently) or gives both ``captions`` and ``caption`` is a reason row.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from pairsmith.storage.input_files import read_jsonl_file
from pairsmith.tasks.imports.base import BAD_ENTRY, SPLITS, BadEntry, Entry, ImportConfig, Importer
from pairsmith.tasks.imports.base import is_text, sentences


KEYS = ("before", "after", "captions", "caption", "split", "category", "id")
"""The keys a line may have."""


class PairFolderConfig(ImportConfig):
    importer: ClassVar[str] = "folder"

    pairs: str = Field(description="JSONL: one {before, after, captions, split?, category?, id?} per line")
    images_dir: str | None = Field(None, description="folder the before/after paths are relative to (default: "
                                   "the JSONL's)", json_schema_extra={"option": "images"})
    dataset: str = Field("folder", min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$",
                         description="dataset name stored on every row, e.g. omnidiff")
    split: Literal["train", "val", "test", "bench"] = Field("train", description="split of lines that name none")


class PairFolderImporter(Importer[PairFolderConfig]):
    name = "folder"
    method = "folder"
    config_class = PairFolderConfig
    folder_options = ("images_dir",)

    def input_files(self, config: PairFolderConfig) -> list[Path]:
        return [Path(config.pairs)]

    def image_roots(self, config: PairFolderConfig) -> list[Path]:
        return [Path(config.images_dir) if config.images_dir else Path(config.pairs).parent]

    def dataset(self, config: PairFolderConfig) -> str:
        return config.dataset

    def read(self, config: PairFolderConfig) -> list[Entry | BadEntry]:
        path = Path(config.pairs)
        return [_entry(config, path.name, n, raw) for n, raw in read_jsonl_file(path, "--pairs")]


def _entry(config: PairFolderConfig, source: str, line: int, raw: object) -> Entry | BadEntry:
    where = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), (str, int)) else f"line {line}"
    origin = f"{config.dataset}:{source}#{where}"

    def bad(detail: str) -> BadEntry:
        return BadEntry(line, source, BAD_ENTRY, f"line {line}: {detail}", origin)

    if not isinstance(raw, dict):
        return bad(f"{type(raw).__name__}, not an object")
    unknown = sorted(k for k in raw if k not in KEYS)
    if unknown:
        return bad(f"unknown key {unknown[0]!r} (keys: {', '.join(KEYS)})")
    raw = {k: v for k, v in raw.items() if v is not None}  # a null reads as absent
    if "captions" in raw and "caption" in raw:
        return bad("give 'captions' or 'caption', not both")
    before, after = raw.get("before"), raw.get("after")
    if not (is_text(before) and is_text(after)):
        return bad("'before' and 'after' must be image paths")
    captions = raw["captions"] if "captions" in raw else [raw["caption"]] if "caption" in raw else None
    if not sentences(captions):
        return bad("needs 'captions' (a list of strings, at least one non-blank) or 'caption' (a non-blank string)")
    split = config.split if raw.get("split") is None else raw["split"]
    if split not in SPLITS:
        return bad(f"split {split!r} is not one of {', '.join(SPLITS)}")
    category = raw.get("category")
    if category is not None and not isinstance(category, str):
        return bad("'category' must be a string")
    return Entry(index=line, key=(before, after, *captions), before=before, after=after, origin=origin,
                 captions=sentences(captions), split=split, category=category)
