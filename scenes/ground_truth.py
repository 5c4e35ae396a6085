"""Ground-truth difference boxes, cut from the renders' object-id maps.

A change's region is the set of pixels its object covers in the before image, the after image, or
both (a cube that grows covers more pixels after than before). Using the id maps, not the 3D
bounding box, makes the box tight to what is visible: occluded parts are not boxed, and an object
hidden behind another has no region at all. For ``add`` the region is where the new object shows
in the after image, which is also where the before image shows the empty spot.

A ``move`` has two regions, following DiG's rules (design.md §4.1): where the object stood
(``from``: its pixels in the before image, the place that changed) and where it went (``to``: its
pixels in the after image, the empty spot of the before image that it fills). Each is measured on
its own, so the visibility filter judges both places.

``frame`` picks which pixels of a non-move change make its box: ``union`` (the default) those of
both images, as above; ``before``, DiG's prompt's rule (DiG supplementary §6, "Prompt for DiG
Task"): an item that is missing or looks different is boxed where it is on the before image, and a
new item at the empty area of the before image it fills (its pixels in the after image).

Boxes are ``[x1, y1, x2, y2]`` in pixel-edge coordinates: a mask spanning columns 3..7 gives
x1 = 3, x2 = 8, so ``x2 - x1`` is the width in pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from pairsmith.scenes.scene_sampler import Change

BoxFrame = Literal["union", "before"]


@dataclass(frozen=True)
class ChangeMeasure:
    """What the renders show of one change; the visibility filter judges these numbers."""

    box: list[float] | None
    visible_px_before: int
    visible_px_after: int
    region_px: int
    changed_fraction: float
    place: str | None = None  # move: "from" (the old place) or "to" (the spot it moved to)


def box_from_mask(mask: np.ndarray) -> list[float] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def change_mask(change: Change, index_before: np.ndarray, index_after: np.ndarray,
                frame: BoxFrame = "union") -> np.ndarray:
    """Pixels that show the changed object in either image (``union``), or on the before image where
    it was, a new object where it appears (``before``); ids in the maps are object id + 1."""
    value = change.object_id + 1
    in_before = index_before == value if change.before is not None else np.zeros_like(index_before, bool)
    in_after = index_after == value if change.after is not None else np.zeros_like(index_after, bool)
    if frame == "before":
        return in_before if change.before is not None else in_after
    return in_before | in_after


def pixel_change(rgb_before: np.ndarray, rgb_after: np.ndarray, delta: int) -> np.ndarray:
    """Pixels whose largest channel difference exceeds ``delta`` (0-255)."""
    diff = np.abs(rgb_before.astype(np.int16) - rgb_after.astype(np.int16)).max(axis=-1)
    return diff > delta


def _measure(mask: np.ndarray, seen_before: int, seen_after: int, changed_pixels: np.ndarray | None,
             place: str | None = None) -> ChangeMeasure:
    region_px = int(mask.sum())
    fraction = float(changed_pixels[mask].mean()) if changed_pixels is not None and region_px else 0.0
    return ChangeMeasure(box_from_mask(mask), seen_before, seen_after, region_px, fraction, place)


def measure_change(
    change: Change,
    index_before: np.ndarray,
    index_after: np.ndarray,
    changed_pixels: np.ndarray | None,
    frame: BoxFrame = "union",
) -> ChangeMeasure:
    """Measure one change's region (its pixels as ``frame`` says). Pass ``changed_pixels`` =
    None before the color render exists."""
    value = change.object_id + 1
    seen_before = int((index_before == value).sum()) if change.before is not None else 0
    seen_after = int((index_after == value).sum()) if change.after is not None else 0
    return _measure(change_mask(change, index_before, index_after, frame), seen_before, seen_after, changed_pixels)


def measure_regions(
    change: Change,
    index_before: np.ndarray,
    index_after: np.ndarray,
    changed_pixels: np.ndarray | None,
    frame: BoxFrame = "union",
) -> list[ChangeMeasure]:
    """A change's regions: one, or for a ``move`` its old place and its new place (see above)."""
    if change.kind != "move":
        return [measure_change(change, index_before, index_after, changed_pixels, frame)]
    value = change.object_id + 1
    was, now = index_before == value, index_after == value
    seen_before, seen_after = int(was.sum()), int(now.sum())
    return [_measure(was, seen_before, seen_after, changed_pixels, "from"),
            _measure(now, seen_before, seen_after, changed_pixels, "to")]


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def encode_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()
