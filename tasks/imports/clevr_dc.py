"""CLEVR-DC: CLEVR scenes under drastic viewpoint change, with one semantic change or none.

Kim, Kim, Lee, Park and Kim, "Viewpoint-Agnostic Change Captioning with Cycle Consistency", ICCV
2021; public repository hsgkim/clevr-dc (README, ``split.json``, ``captions.json``; the images
as ``bef.tar.gz`` and ``aft.tar.gz``, linked from ``bef/README.md`` and ``aft/README.md``). One of
the public sets of OmniDiff's training mix (OmniDiff supp. Table 9: 43k pairs, 385k captions, i.e.
the train and val scenes) and one of its benchmarks (supp. Table 11). The camera moves to a random
place in every after image; the scene gets one of: a colour change, a material change, an added,
a removed or a moved object, or nothing (a distractor), 8,000 scenes each (48,000 in all).

The folder ``--root`` holds the repository's files and the extracted archives:

* ``bef/<n>.png`` (before) and ``aft/<n>.png`` (after) for scene n; the zero-padded names
  ``%06d.png`` and the folders ``images/`` / ``sc_images/`` that Tu et al.'s CLEVR-DC loader
  (tuyunbin, DIRL / SCORER: ``pad_img.py`` renames the extracted images so) uses are read too;
* ``captions.json``: ``{"<n>": [sentences]}`` (``change_captions.json`` with ``"%06d.png"`` keys
  after that loader's ``rename_dc_caption.py``);
* ``split.json`` (or ``splits.json``): ``{"train": [n, ...], "val": [...], "test": [...]}``, scene
  numbers (indices into the zero-padded, sorted image folder, as that loader's
  ``preprocess_captions_dc.py`` reads them: the same numbers).

Each captioned scene is one pair (origin ``clevr-dc:captions.json#<n>``), each of its sentences one
``diff-caption`` sample in the scene's split. The repository publishes no per-scene change type
(nor which scenes are the distractors), so ``edit_category`` is left empty. A caption key that is
not a scene number, a scene without a non-blank sentence, and a scene in no split or in two are
reason rows; missing images are ``load_missing_image`` rows, as in every import.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from pairsmith.storage.input_files import read_json_file
from pairsmith.tasks.imports.base import BAD_ENTRY, BadEntry, Entry, ImportConfig, Importer, sentences

LAYOUTS = (("bef", "aft"), ("images", "sc_images"))  # published archives; Tu et al.'s renamed folders
CAPTION_FILES = ("captions.json", "change_captions.json")
SPLIT_FILES = ("split.json", "splits.json")
SPLITS = ("train", "val", "test")
SCENE = re.compile(r"^(\d+)(?:\.png)?$")


class ClevrDcConfig(ImportConfig):
    importer: ClassVar[str] = "clevr-dc"

    root: str = Field(description="CLEVR-DC folder: bef/ and aft/ (the extracted bef.tar.gz, aft.tar.gz), "
                      "captions.json and split.json")


def _first(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_file()), None)


def _folders(root: Path) -> tuple[str, str] | None:
    return next((pair for pair in LAYOUTS if all((root / p).is_dir() for p in pair)), None)


class ClevrDcImporter(Importer[ClevrDcConfig]):
    name = "clevr-dc"
    method = "clevr-dc"
    config_class = ClevrDcConfig
    folder_options = ("root",)

    def input_files(self, config: ClevrDcConfig) -> list[Path]:
        root = Path(config.root)
        return [_first(root, CAPTION_FILES) or root / CAPTION_FILES[0], _first(root, SPLIT_FILES) or root / SPLIT_FILES[0]]

    def image_roots(self, config: ClevrDcConfig) -> list[Path]:
        return [Path(config.root)]

    def check(self, config: ClevrDcConfig) -> None:
        root = Path(config.root)
        if root.is_dir():
            missing = ([] if _folders(root) else ["bef/ and aft/"]) + \
                [names[0] for names in (CAPTION_FILES, SPLIT_FILES) if _first(root, names) is None]
            if missing:
                raise ValueError(f"--root {config.root!r}: no {', '.join(missing)} (the published layout has bef/, aft/, "
                                 "captions.json and split.json)")
        super().check(config)

    def read(self, config: ClevrDcConfig) -> list[Entry | BadEntry]:
        root = Path(config.root)
        captions_path, split_path = self.input_files(config)
        captions, splits = read_json_file(captions_path, "--root"), read_json_file(split_path, "--root")
        for path, data in ((captions_path, captions), (split_path, splits)):
            if not isinstance(data, dict):
                raise ValueError(f"--root {str(path)!r}: expected a JSON object, got {type(data).__name__}")
        split_of: dict[int, list[str]] = {}
        for label, scenes in splits.items():
            if not isinstance(scenes, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in scenes):
                raise ValueError(f"--root {str(split_path)!r}: {label!r} must list scene numbers")
            for n in scenes:
                split_of.setdefault(n, []).append(label)
        before_dir, after_dir = _folders(root) or LAYOUTS[0]
        names = {d: {p.name for p in (root / d).iterdir()} if (root / d).is_dir() else set() for d in (before_dir, after_dir)}
        source = captions_path.name
        keyed = sorted(captions.items(), key=lambda kv: (_scene(kv[0]) is None, _scene(kv[0]) or 0, kv[0]))
        out: list[Entry | BadEntry] = []
        for position, (key, value) in enumerate(keyed):
            n = _scene(key)
            origin = f"clevr-dc:{source}#{n if n is not None else key}"

            def bad(detail: str, index=n if n is not None else -1 - position, origin=origin) -> BadEntry:
                return BadEntry(index, source, BAD_ENTRY, f"{source} {key!r}: {detail}", origin)

            if n is None:
                out.append(bad("not a scene number"))
                continue
            if not sentences(value):
                out.append(bad("captions must be a list of strings with at least one non-blank"))
                continue
            found = sorted(set(split_of.get(n, [])))
            if len(found) != 1:
                out.append(bad(f"scene {n} is in {' and '.join(found) if found else 'no split'} of {split_path.name}"))
                continue
            if found[0] not in SPLITS:
                out.append(bad(f"split {found[0]!r} is not train, val or test"))
                continue
            out.append(Entry(index=n, key=(n, *sentences(value)), before=f"{before_dir}/{_image(n, names[before_dir])}",
                             after=f"{after_dir}/{_image(n, names[after_dir])}", origin=origin,
                             captions=sentences(value), split=found[0]))
        return out


def _scene(key: str) -> int | None:
    match = SCENE.match(key)
    return int(match.group(1)) if match else None


def _image(n: int, present: set[str]) -> str:
    """Scene n's file: ``<n>.png`` as published, or ``%06d.png`` as Tu et al.'s loader renames it."""
    padded = f"{n:06d}.png"
    return padded if padded in present and f"{n}.png" not in present else f"{n}.png"
