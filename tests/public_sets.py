"""Stand-ins for public image-difference datasets in their published layouts, for tests.

The real images are not available here (and never copied into the repository), so tests build
small folders with the same file names and annotation files the public loaders read:

* ``make_clevr_change(root, ...)``: CLEVR-Change as Seth-Park/RobustChangeCaptioning ships it
  (``images/CLEVR_default_%06d.png``, ``sc_images/CLEVR_semantic_%06d.png``,
  ``nsc_images/CLEVR_nonsemantic_%06d.png``, ``change_captions.json``, ``no_change_captions.json``,
  ``splits.json``, ``type_mapping.json``);
* ``make_pair_images(folder, names)``: the 224 x 224 ``<img_id>.png`` / ``<img_id>_2.png`` pairs of
  Spot-the-Diff (or any before/after names) for annotations that exist without their images.

Each image is a flat colour with one square whose colour, place or presence differs between
before and after, so pairs are distinct and small on disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

CLEVR_TYPES = ("color", "material", "add", "drop", "move")


def stand_in(seed: int, changed: bool, size: tuple[int, int] = (224, 224)) -> Image.Image:
    """A flat image with a square; ``changed`` moves and recolours the square."""
    w, h = size
    image = Image.new("RGB", size, ((seed * 37) % 200 + 30, (seed * 91) % 200 + 30, (seed * 53) % 200 + 30))
    x = (seed * 29) % (w - 60) + (40 if changed and (seed * 29) % (w - 60) < w - 110 else 0)
    y = (seed * 17) % (h - 60)
    ImageDraw.Draw(image).rectangle([x, y, x + 40, y + 40], fill=(255, 255, 0) if changed else (20, 20, 200))
    return image


def make_pair_images(folder: Path, pairs: list[tuple[str, str]], size: tuple[int, int] = (224, 224)) -> None:
    """Write a before and an after stand-in for every (before name, after name); formats follow the
    suffix (``.png``, ``.jpg``, ``.webp``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (before, after) in enumerate(pairs):
        for name, changed in ((before, False), (after, True)):
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                stand_in(seed, changed, size).save(path)


def spot_the_diff_images(annotations: list[dict], folder: Path) -> None:
    """The ``<img_id>.png`` / ``<img_id>_2.png`` stand-ins for every img_id of Spot-the-Diff annotations."""
    ids = sorted({str(a["img_id"]) for a in annotations})
    make_pair_images(folder, [(f"{i}.png", f"{i}_2.png") for i in ids])


@dataclass
class ClevrChangeFixture:
    """What ``make_clevr_change`` wrote: per image index its split, type and captions."""

    root: Path
    splits: dict[int, str] = field(default_factory=dict)
    types: dict[int, str] = field(default_factory=dict)
    change_captions: dict[int, list[str]] = field(default_factory=dict)
    no_change_captions: dict[int, list[str]] = field(default_factory=dict)


def make_clevr_change(root: Path, n: int = 10, captions_per_image: int = 2,
                      split_sizes: tuple[int, int, int] | None = None) -> ClevrChangeFixture:
    """A CLEVR-Change folder in the published layout with ``n`` scenes (indices 0..n-1).

    Scene i is in split train, val or test (``split_sizes`` consecutive blocks; default: the rest,
    1/5, 1/5), has change type ``CLEVR_TYPES[i % 5]``, ``captions_per_image`` change captions and
    as many no-change captions. Splits list indices into the sorted ``images/`` folder, and
    ``type_mapping.json`` lists image ids as ``"%06d.png"``, as the published files do.
    """
    sizes = split_sizes or (n - 2 * (n // 5), n // 5, n // 5)
    fixture = ClevrChangeFixture(root)
    for sub in ("images", "sc_images", "nsc_images"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    change, no_change = {}, {}
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    mapping: dict[str, list[str]] = {t: [] for t in CLEVR_TYPES}
    bounds = (sizes[0], sizes[0] + sizes[1])
    for i in range(n):
        split = "train" if i < bounds[0] else "val" if i < bounds[1] else "test"
        kind = CLEVR_TYPES[i % len(CLEVR_TYPES)]
        stand_in(i, False, (96, 64)).save(root / "images" / f"CLEVR_default_{i:06d}.png")
        stand_in(i, True, (96, 64)).save(root / "sc_images" / f"CLEVR_semantic_{i:06d}.png")
        stand_in(i + 1000, False, (96, 64)).save(root / "nsc_images" / f"CLEVR_nonsemantic_{i:06d}.png")
        key = f"CLEVR_default_{i:06d}.png"
        change[key] = [f"the {kind} of object {i} changed, said {k}" for k in range(captions_per_image)]
        no_change[key] = [f"nothing changed in scene {i}, said {k}" for k in range(captions_per_image)]
        splits[split].append(i)
        mapping[kind].append(f"{i:06d}.png")
        fixture.splits[i], fixture.types[i] = split, kind
        fixture.change_captions[i], fixture.no_change_captions[i] = change[key], no_change[key]
    for name, data in (("change_captions.json", change), ("no_change_captions.json", no_change),
                       ("splits.json", splits), ("type_mapping.json", mapping)):
        (root / name).write_text(json.dumps(data))
    return fixture
