"""CLEVR-Change: rendered CLEVR scenes with one semantic change, and distractors with none.

Park, Darrell and Rohrbach, "Robust Change Captioning", ICCV 2019; public repository
Seth-Park/RobustChangeCaptioning (layout read from its ``scripts/preprocess_captions.py``,
``datasets/rcc_dataset.py``, ``test.py`` and ``utils/eval_utils.py``). The extracted ``data/`` folder
(``--root``) holds, for scene index i:

* ``images/CLEVR_default_%06d.png`` (before), ``sc_images/CLEVR_semantic_%06d.png`` (after a
  semantic change) and ``nsc_images/CLEVR_nonsemantic_%06d.png`` (the same scene after only a camera
  and lighting change: the distractor);
* ``change_captions.json`` and ``no_change_captions.json``: ``{"CLEVR_default_%06d.png": [sentences]}``;
* ``splits.json``: ``{"train": [i, ...], "val": [...], "test": [...]}``, indices into the sorted
  ``images/`` folder, which for the published names is the number in the file name (the index the
  preprocessing script reads from the name);
* ``type_mapping.json``: ``{"color" | "material" | "add" | "drop" | "move": ["%06d.png", ...]}``.

Each scene gives two pairs: before -> semantic change (``edit_category`` = its type from
``type_mapping``, null if it has none) with the change captions, and before -> distractor
(``subset`` ``distractor``, ``edit_category`` ``no_change``, the label the repository's loader uses)
with the no-change captions; every caption is a ``diff-caption`` sample in the scene's published
split. A scene in no split, or in two, is a reason row.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from pairsmith.storage.input_files import read_json_file
from pairsmith.tasks.imports.base import BAD_ENTRY, BadEntry, Entry, ImportConfig, Importer
from pairsmith.tasks.imports.base import sentences

FILES = ("change_captions.json", "no_change_captions.json", "splits.json", "type_mapping.json")
FOLDERS = ("images", "sc_images", "nsc_images")
DEFAULT_NAME = re.compile(r"^CLEVR_default_(\d+)\.png$")
NO_CHANGE = "no_change"
DISTRACTOR = "distractor"


class ClevrChangeConfig(ImportConfig):
    importer: ClassVar[str] = "clevr-change"

    root: str = Field(description="CLEVR-Change's data/ folder: images/, sc_images/, nsc_images/ and the four JSON files")


class ClevrChangeImporter(Importer[ClevrChangeConfig]):
    name = "clevr-change"
    method = "clevr-change"
    config_class = ClevrChangeConfig
    folder_options = ("root",)

    def input_files(self, config: ClevrChangeConfig) -> list[Path]:
        return [Path(config.root) / name for name in FILES]

    def image_roots(self, config: ClevrChangeConfig) -> list[Path]:
        return [Path(config.root)]

    def check(self, config: ClevrChangeConfig) -> None:
        root = Path(config.root)
        if root.is_dir():
            missing = [n for n in FOLDERS if not (root / n).is_dir()] + [n for n in FILES if not (root / n).is_file()]
            if missing:
                raise ValueError(f"--root {config.root!r}: no {', '.join(missing)} (the published layout has "
                                 f"{', '.join(FOLDERS + FILES)})")
        super().check(config)

    def read(self, config: ClevrChangeConfig) -> list[Entry | BadEntry]:
        root = Path(config.root)
        change, no_change, splits, types = (read_json_file(root / name, "--root") for name in FILES)
        for name, data in zip(FILES, (change, no_change, splits, types)):
            if not isinstance(data, dict):
                raise ValueError(f"--root {str(root / name)!r}: expected a JSON object, got {type(data).__name__}")
        split_of = _index_map(splits, root / "splits.json", lambda v: int(v))
        type_of = _index_map(types, root / "type_mapping.json", lambda v: int(str(v).split(".")[0]))
        keys = sorted(set(change) | set(no_change), key=lambda k: (_index(k) is None, _index(k) or 0, k))
        out: list[Entry | BadEntry] = []
        for key in keys:
            index = _index(key)
            for kind, captions_file, captions in (("semantic", FILES[0], change), (DISTRACTOR, FILES[1], no_change)):
                if key in captions:
                    out.append(_entry(key, index, kind, captions_file, captions[key], split_of, type_of))
        return out


def _index(name: str) -> int | None:
    match = DEFAULT_NAME.match(name)
    return int(match.group(1)) if match else None


def _index_map(data: dict, path: Path, parse) -> dict[int, list[str]]:
    """index -> the keys (splits, types) listing it; an unreadable index is a one-line ValueError."""
    out: dict[int, list[str]] = {}
    for label, values in data.items():
        if not isinstance(values, list):
            raise ValueError(f"--root {str(path)!r}: {label!r} must list image indices")
        for value in values:
            try:
                out.setdefault(parse(value), []).append(label)
            except (TypeError, ValueError):
                raise ValueError(f"--root {str(path)!r}: {label!r} lists {value!r}, not an image index") from None
    return out


def _entry(key: str, index: int | None, kind: str, source: str, captions: object,
           split_of: dict[int, list[str]], type_of: dict[int, list[str]]) -> Entry | BadEntry:
    where = f"{index:06d}" if index is not None else key
    origin = f"clevr-change:{source}#{where}"
    bad_index = index if index is not None else -1

    def bad(detail: str) -> BadEntry:
        return BadEntry(bad_index, f"{source}:{key}", BAD_ENTRY, f"{key}: {detail}", origin)

    if index is None:
        return bad("not a CLEVR_default_<number>.png name")
    if not sentences(captions):
        return bad("captions must be a list of strings with at least one non-blank")
    splits = sorted(set(split_of.get(index, [])))
    if len(splits) != 1:
        return bad(f"scene {index} is in {' and '.join(splits) if splits else 'no split'} of splits.json")
    if splits[0] not in ("train", "val", "test"):
        return bad(f"split {splits[0]!r} is not train, val or test")
    suffix = key.removeprefix("CLEVR_default_")
    if kind == DISTRACTOR:
        after, category, subset = f"nsc_images/CLEVR_nonsemantic_{suffix}", NO_CHANGE, DISTRACTOR
    else:
        kinds = sorted(set(type_of.get(index, [])))
        if len(kinds) > 1:
            return bad(f"scene {index} has two change types in type_mapping.json: {', '.join(kinds)}")
        after, category, subset = f"sc_images/CLEVR_semantic_{suffix}", (kinds[0] if kinds else None), None
    return Entry(index=index, key=(kind, index), before=f"images/{key}", after=after, origin=origin,
                 captions=sentences(captions), split=splits[0], category=category, subset=subset)
