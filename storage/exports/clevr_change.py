"""``clevr-change``: the ``data/`` folder of CLEVR-Change, so change-captioning code trains on it unchanged.

Park, Darrell and Rohrbach, "Robust Change Captioning", ICCV 2019; layout as the public repository
Seth-Park/RobustChangeCaptioning reads it (``scripts/preprocess_captions.py``,
``datasets/rcc_dataset.py``) and as ``pairsmith import clevr-change`` reads it back. For scene index i
(0, 1, ... in the order scenes are met):

* ``images/CLEVR_default_%06d.png`` (before), ``sc_images/CLEVR_semantic_%06d.png`` (after the
  change) and ``nsc_images/CLEVR_nonsemantic_%06d.png`` (the distractor: no semantic change);
* ``change_captions.json`` / ``no_change_captions.json``: ``{"CLEVR_default_%06d.png": [sentences]}``,
  one sentence per ``diff-caption`` sample (its answer; a dig-render pair's sentences joined);
* ``splits.json``: ``{"train": [i, ...], "val": [...], "test": [...]}``, integer indices, which are the
  positions in the sorted ``images/`` folder the loaders index (hence at most 1,000,000 scenes: past
  ``%06d`` the sorted order no longer follows the number);
* ``type_mapping.json``: ``{"color" | "material" | "add" | "drop" | "move": ["%06d.png", ...]}``;
* ``pairsmith_scenes.json`` (ours; the loaders ignore it): per index its split, type, the pair ids
  it came from and which half was completed (below).

**Scenes.** Only ``diff-caption`` samples are read. A pair is a distractor when its subset is
``distractor`` (dig-render camera-only pairs, imported CLEVR-Change distractors); any other pair is a
change. Pairs whose before images are byte-identical and in the same split are one scene: one change
pair (-> ``sc_images``, change captions) and one distractor pair (-> ``nsc_images``, no-change
captions), so an imported CLEVR-Change set comes out as its published scenes again.

**Completed halves.** The published loaders need all three images and both caption lists for every
index (``RCCDataset`` pairs the three folders by sorted position and asserts they are as long;
``preprocess_captions.py`` reads both captions of every split index). A dig-render pair is its own
scene, so one half is missing and is completed with what is true of the pictures, never invented
change text:

* a change pair without a distractor: the nonsemantic image is its before image (no change at all)
  with the no-change caption ``NO_CHANGE_CAPTION``;
* a distractor pair without a change pair: the semantic image is its after image too, with its own
  no-change captions as the change captions, and the scene is in no type list.

``pairsmith_scenes.json`` names each completed half (``"completed": "nonsemantic" | "semantic"``) so
users can drop them; re-importing the export gives one extra distractor pair per completed change
pair and one extra (no-type) change pair per completed distractor.

**Change types.** A change pair's type is its kinds mapped to CLEVR-Change's: ``color``,
``material``, ``add``, ``move`` as they are, ``remove`` -> ``drop``. A pair is listed under a type only
when all its kinds map to that one type. ``shape`` and ``size`` changes (which CLEVR-Change does not
draw) and pairs with several types stay in the export (their captions are right) but in no type
list: ``RCCDataset`` then gives them the auxiliary label -1, which training does not use, and the
importer reads them back with no category.

**Splits.** By default ``train``, ``val`` and ``test`` are exported (all three lists are written,
empty or not: the loaders read each); ``bench`` is refused, CLEVR-Change has no such list.
Images are PNG (a stored JPEG is re-encoded). Images stream to disk; the captions and one hash per
scene are held until the JSON files are written at the end (text only, about 100 bytes a sentence).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field

from pairsmith.storage.exports.base import ExportFormat, ExportItem, SkipSample, inside
from pairsmith.storage.pair_images import image_extension, open_image

CLEVR_SPLITS = ("train", "val", "test")
CLEVR_TYPES = ("color", "material", "add", "drop", "move")  # RCCDataset.type_to_label, without no_change
KIND_TO_TYPE = {"color": "color", "material": "material", "add": "add", "remove": "drop", "drop": "drop",
                "move": "move"}
NO_CHANGE_CAPTION = "there is no change"
MAX_SCENES = 1_000_000
DEFAULT, SEMANTIC, NONSEMANTIC = "images", "sc_images", "nsc_images"
NAMES = {DEFAULT: "CLEVR_default_{:06d}.png", SEMANTIC: "CLEVR_semantic_{:06d}.png",
         NONSEMANTIC: "CLEVR_nonsemantic_{:06d}.png"}


@dataclass
class _Scene:
    index: int
    split: str
    change_pair: str | None = None
    distractor_pair: str | None = None
    type: str | None = None
    change_captions: list[str] = field(default_factory=list)
    no_change_captions: list[str] = field(default_factory=list)


def clevr_type(category: str | None) -> str | None:
    """CLEVR-Change's type of a pair whose change kinds are ``category`` (comma-separated, as dig-render
    stores them, or one imported type); None when the kinds give no single CLEVR-Change type."""
    types = {KIND_TO_TYPE.get(kind.strip()) for kind in (category or "").split(",")}
    return types.pop() if len(types) == 1 and None not in types else None


class ClevrChangeFormat(ExportFormat):
    name = "clevr-change"
    help = "CLEVR-Change's data/ layout (Park et al. 2019): images/, sc_images/, nsc_images/ + 4 JSON files"
    tasks = ("diff-caption",)
    default_splits = CLEVR_SPLITS

    @classmethod
    def check_options(cls, options) -> None:
        if options.layout != "multi":
            raise ValueError("--format clevr-change writes before and after images apart: drop --layout side-by-side")
        if "bench" in options.splits:
            raise ValueError("--split bench: CLEVR-Change's splits.json has train, val and test lists only")

    def begin(self) -> None:
        for folder in NAMES:
            inside(self.folder, folder).mkdir()
        self.scenes: list[_Scene] = []
        self.by_before: dict[tuple[str, str], list[_Scene]] = {}
        self.placed: dict[str, tuple[_Scene, bool]] = {}  # pair id -> its scene, and whether it is the distractor

    def write(self, item: ExportItem) -> None:
        if len(item.images) != 2:
            raise SkipSample("not_a_before_after_pair")
        captions = [text for role, text in item.turns if role == "assistant"]
        if not captions or not captions[-1].strip():
            raise SkipSample("caption_empty")
        pair_id = item.meta["pair_id"]
        if pair_id not in self.placed:
            try:
                before, after = (_png(image.data) for image in item.images)
            except Exception:  # PIL raises UnidentifiedImageError, OSError, SyntaxError ...
                raise SkipSample("image_unreadable") from None
            self.placed[pair_id] = self._place(item, before, after)
        scene, distractor = self.placed[pair_id]
        (scene.no_change_captions if distractor else scene.change_captions).append(captions[-1])

    def _place(self, item: ExportItem, before: bytes, after: bytes) -> tuple[_Scene, bool]:
        """The scene of a pair met for the first time (``before`` / ``after``: PNG bytes), its images written."""
        distractor = item.meta.get("subset") == "distractor"
        key = (hashlib.sha256(before).hexdigest(), item.meta["split"])
        scene = next((s for s in self.by_before.get(key, [])
                      if (s.distractor_pair if distractor else s.change_pair) is None), None)
        if scene is None:
            if len(self.scenes) >= MAX_SCENES:
                raise ValueError(f"more than {MAX_SCENES} scenes: CLEVR-Change's %06d names sort by index only "
                                 "below that; export fewer (--run, --split)")
            scene = _Scene(len(self.scenes), item.meta["split"])
            self.scenes.append(scene)
            self.by_before.setdefault(key, []).append(scene)
            self._image(DEFAULT, scene.index, before)
        if distractor:
            scene.distractor_pair = item.meta["pair_id"]
            self._image(NONSEMANTIC, scene.index, after)
        else:
            scene.change_pair, scene.type = item.meta["pair_id"], clevr_type(item.meta.get("category"))
            self._image(SEMANTIC, scene.index, after)
        return scene, distractor

    def _image(self, folder: str, index: int, data: bytes) -> None:
        inside(self.folder, f"{folder}/{NAMES[folder].format(index)}").write_bytes(data)
        self.n_images += 1

    def _copy(self, source: str, target: str, index: int) -> None:
        shutil.copyfile(inside(self.folder, f"{source}/{NAMES[source].format(index)}"),
                        inside(self.folder, f"{target}/{NAMES[target].format(index)}"))
        self.n_images += 1

    def finish(self) -> None:
        change, no_change, provenance = {}, {}, []
        splits: dict[str, list[int]] = {s: [] for s in CLEVR_SPLITS}
        types: dict[str, list[str]] = {t: [] for t in CLEVR_TYPES}
        for scene in self.scenes:
            completed = None
            if scene.distractor_pair is None:
                self._copy(DEFAULT, NONSEMANTIC, scene.index)
                scene.no_change_captions, completed = [NO_CHANGE_CAPTION], "nonsemantic"
            elif scene.change_pair is None:
                self._copy(NONSEMANTIC, SEMANTIC, scene.index)
                scene.change_captions, completed = list(scene.no_change_captions), "semantic"
            key = NAMES[DEFAULT].format(scene.index)
            change[key], no_change[key] = scene.change_captions, scene.no_change_captions
            splits[scene.split].append(scene.index)
            if scene.type:
                types[scene.type].append(f"{scene.index:06d}.png")
            provenance.append({"index": scene.index, "split": scene.split, "type": scene.type,
                               "change_pair_id": scene.change_pair, "distractor_pair_id": scene.distractor_pair,
                               "completed": completed})
        for name, data in (("change_captions.json", change), ("no_change_captions.json", no_change),
                           ("splits.json", splits), ("type_mapping.json", types),
                           ("pairsmith_scenes.json", provenance)):
            inside(self.folder, name).write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
            self.files.append(name)
        self.files += [f"{folder}/" for folder in NAMES]


def _png(data: bytes) -> bytes:
    """``data`` as PNG bytes: as stored when it is PNG, else decoded and re-encoded losslessly."""
    if image_extension(data) == "png":
        return data
    buffer = io.BytesIO()
    open_image(data).save(buffer, "PNG")
    return buffer.getvalue()
