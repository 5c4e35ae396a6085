"""Stand-ins for public image-difference datasets in their published layouts, for tests.

The real images are not available here (and never copied into the repository), so tests build
small folders with the same file names and annotation files the public loaders read:

* ``make_clevr_change(root, ...)``: CLEVR-Change as Seth-Park/RobustChangeCaptioning ships it
  (``images/CLEVR_default_%06d.png``, ``sc_images/CLEVR_semantic_%06d.png``,
  ``nsc_images/CLEVR_nonsemantic_%06d.png``, ``change_captions.json``, ``no_change_captions.json``,
  ``splits.json``, ``type_mapping.json``);
* ``make_birds_to_words(root, ...)``: google-research-datasets/birds-to-words' TSV (header line,
  eleven tab-separated columns, one line per annotation) and ``images/<photo id>.jpg`` photos;
* ``make_clevr_dc(root, ...)``: hsgkim/clevr-dc's ``captions.json`` and ``split.json`` with the
  extracted ``bef/<n>.png`` / ``aft/<n>.png`` images;
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


B2W_HEADER = ("img1ObservationURL\timg1ImgURL\timg1Species\timg1Selection\timg2ObservationURL\timg2ImgURL\t"
              "img2Species\timg2Selection\tsplit\tannN\tdescription")


@dataclass
class BirdsToWordsFixture:
    tsv: Path
    images: Path
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (left photo id, right photo id)
    splits: dict[tuple[str, str], str] = field(default_factory=dict)
    descriptions: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # in annN order


def make_birds_to_words(root: Path, n: int = 6, annotators: int = 3) -> BirdsToWordsFixture:
    """A Birds-to-Words folder: ``birds-to-words-v1.0.tsv`` with ``n`` photo pairs of ``annotators``
    lines each, written in reverse annN order and interleaved across pairs (as a TSV may list them),
    and the photos as ``images/<id>.jpg`` (JPEG, 96 x 72). Pair i is in train, val or test by i mod 3;
    its photo URLs use the two hosts the published versions used."""
    root.mkdir(parents=True, exist_ok=True)
    fixture = BirdsToWordsFixture(root / "birds-to-words-v1.0.tsv", root / "images")
    fixture.images.mkdir(exist_ok=True)
    lines = [B2W_HEADER]
    for i in range(n):
        left, right = str(640000 + 2 * i), str(5590000 + 2 * i + 1)
        pair = (left, right)
        fixture.pairs.append(pair)
        fixture.splits[pair] = ("train", "val", "test")[i % 3]
        fixture.descriptions[pair] = [f"animal 1 has a {('brown', 'pale', 'spotted')[k % 3]} breast, pair {i}; "
                                      f"animal 2 is larger, writer {k + 1}" for k in range(annotators)]
        stand_in(i, False, (96, 72)).save(fixture.images / f"{left}.jpg", quality=95)
        stand_in(i, True, (96, 72)).save(fixture.images / f"{right}.jpg", quality=95)
    for k in reversed(range(annotators)):
        for i, (left, right) in enumerate(fixture.pairs):
            url1 = f"https://static.inaturalist.org/photos/{left}/medium.jpg?1444269612"
            url2 = f"https://inaturalist-open-data.s3.amazonaws.com/photos/{right}/medium.jpeg"
            lines.append("\t".join([
                f"https://www.inaturalist.org/observations/{9000 + i}", url1, "Passer domesticus", "base",
                f"https://www.inaturalist.org/observations/{9500 + i}", url2, "Passer montanus", "sameGenus",
                fixture.splits[(left, right)], str(k + 1), fixture.descriptions[(left, right)][k]]))
    fixture.tsv.write_text("\n".join(lines) + "\n")
    return fixture


@dataclass
class ClevrDcFixture:
    root: Path
    splits: dict[int, str] = field(default_factory=dict)
    captions: dict[int, list[str]] = field(default_factory=dict)


def make_clevr_dc(root: Path, n: int = 10, captions_per_scene: int = 3) -> ClevrDcFixture:
    """A CLEVR-DC folder as the repository and its archives give it: ``bef/<n>.png``,
    ``aft/<n>.png`` (96 x 64), ``captions.json`` keyed by the scene number without extension and
    ``split.json`` (train, val, test in consecutive blocks: the rest, 1/5, 1/5)."""
    fixture = ClevrDcFixture(root)
    for sub in ("bef", "aft"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    bounds = (n - 2 * (n // 5), n - n // 5)
    for i in range(n):
        split = "train" if i < bounds[0] else "val" if i < bounds[1] else "test"
        stand_in(i, False, (96, 64)).save(root / "bef" / f"{i}.png")
        stand_in(i, True, (96, 64)).save(root / "aft" / f"{i}.png")
        splits[split].append(i)
        fixture.splits[i] = split
        fixture.captions[i] = [f"the {CLEVR_TYPES[i % 5]} of object {i} changed, said {k}" for k in range(captions_per_scene)]
    (root / "captions.json").write_text(json.dumps({str(i): c for i, c in fixture.captions.items()}))
    (root / "split.json").write_text(json.dumps(splits))
    return fixture
