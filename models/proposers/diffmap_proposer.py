"""A region proposer that needs no weights: boxes from the difference map of an aligned pair.

Img-Diff proposes regions with FastSAM and keeps those whose crops differ. When the two images
are pixel-aligned (Prompt2Prompt edits with one seed, inpainting, rendered scene pairs), the
difference map already says where they differ; what it cannot say is where one changed object
ends and the next begins, since touching changes merge into one blob. So this proposer:

1. thresholds the per-pixel colour difference (a fixed level or Otsu) and opens away speckle;
2. segments each image on its own into colour-homogeneous regions (Lab gradient, seeded
   watershed), drops the background (any region larger than ``background_fraction``) and keeps
   regions that mostly changed; adjacent changed regions of similar chroma (the faces of a cube)
   become one object. A changed segment that stayed mostly as it was (at most
   ``occlusion_max_changed`` changed) and changed only where an object of the other image now
   covers it (or no longer does) is occluded or revealed, not changed, and is left out: a new
   object in front of a neighbour must not box the neighbour too (on rendered pairs this raised
   precision from 0.74-0.77 to 0.80-0.81 at the same recall);
3. joins an object of the before image with the objects of the after image it overlaps (a cube
   that became a sphere, an object that grew) and proposes the box around each joined group:
   design.md's box "where the object is in either image";
4. proposes each member of a group of three or more too, and of a group of two whose boxes
   overlap less than ``part_max_iou`` (two touching changes, not one object seen twice), when the
   member covers at least ``min_part_fraction`` of the image; and every strong leftover blob of
   the difference map that no object explains (an object too close in colour to the floor);
5. drops near-duplicate boxes and boxes of which less than ``min_box_changed_fraction`` changed.

Boxes are ``[x1, y1, x2, y2]`` in before-image pixels, edges exclusive (as ``regions.box``).
numpy/OpenCV/scipy only: it runs on any CPU worker and pickles as its config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_serializer

PROPOSER_NAME = "diffmap"


class DiffMapConfig(BaseModel):
    """Defaults as first tuned on rendered pairs; ``RENDER_DIFFMAP`` adds the occlusion, part and
    changed-share rules that took recall@0.5 >= 0.9 at precision >= 0.8 (benchmarks/proposer_recall.py)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    blur_px: int = Field(3, ge=1, le=31, description="Gaussian blur (odd) before differencing; 1 = none")
    diff_threshold: float | Literal["otsu"] = Field(
        15.0, description="a pixel changed if a channel moved more than this (0-255), or 'otsu'"
    )
    otsu_floor: float = Field(8.0, ge=0, le=255, description="with 'otsu': never threshold below this")
    open_px: int = Field(3, ge=1, le=31, description="morphological opening of the change mask; 1 = none")
    segment_blur_px: int = Field(5, ge=1, le=31, description="blur (odd) before the colour gradient used to segment")
    edge_threshold: float = Field(6.0, gt=0, description="Lab gradient below this is a segment's interior")
    seed_erode_px: int = Field(2, ge=0, le=20, description="erode segment interiors by this so touching segments stay apart")
    min_seed_px: int = Field(15, ge=1, description="smallest interior that seeds a segment")
    background_fraction: float = Field(0.25, gt=0, le=1, description="segments larger than this share of the image are background")
    min_changed_fraction: float = Field(0.3, ge=0, le=1, description="a segment is changed if this share of its pixels changed")
    min_object_px: int = Field(30, ge=1, description="smallest changed segment that counts")
    chroma_tolerance: float = Field(12.0, ge=0, description="adjacent changed segments closer than this in Lab a/b are one object")
    pair_overlap: float = Field(0.3, ge=0, le=1, description="before/after objects join if they share this share of the smaller one")
    # The next four are off by default (earlier configs, e.g. imgdiff's, keep their behaviour and
    # their run ids); RENDER_DIFFMAP below turns them on for rendered pairs.
    occlusion_max_changed: float = Field(
        1.0, ge=0, le=1, description="a segment with at most this share changed ... (1 = the rule is off)"
    )
    occlusion_cover: float = Field(
        0.9, ge=0, le=1, description="... whose changed pixels lie this much under the other image's objects is occluded"
    )
    part_max_iou: float = Field(
        0.0, ge=0, le=1, description="a two-object group also proposes each object when their boxes overlap less than this"
    )
    min_part_fraction: float = Field(0.0, ge=0, le=1, description="smallest part box, share of the image area")
    residual_min_px: int = Field(120, ge=1, description="smallest unexplained blob of the change mask proposed on its own")
    residual_min_median_diff: float = Field(40.0, ge=0, le=255, description="...and its median difference (soft shadows fall below)")
    close_px: int = Field(5, ge=1, le=31, description="closing that joins a blob's fragments; 1 = none")
    min_box_changed_fraction: float = Field(0.0, ge=0, le=1, description="drop boxes with a smaller share of changed pixels")
    dedupe_iou: float = Field(0.7, gt=0, le=1, description="a box this similar to an earlier one is a duplicate")
    max_boxes: int = Field(50, ge=1, description="most boxes per pair, joined objects first")
    return_masks: bool = Field(False, description="also return a boolean mask per box (e.g. for inpainting)")


    @model_serializer(mode="wrap")
    def _without_unused_rules(self, handler):
        """Leave the new rules out of dumps while they are off: hashed configs keep their ids."""
        data = handler(self)
        if isinstance(data, dict):
            for name, off in _OFF.items():
                if data.get(name) == off:
                    data.pop(name)
        return data


_OFF = {"occlusion_max_changed": 1.0, "occlusion_cover": 0.9, "part_max_iou": 0.0, "min_part_fraction": 0.0,
        "min_box_changed_fraction": 0.0}

# Rendered pairs (benchmarks/proposer_recall.py --db; tuned on seeds 101/202, checked on 303/404).
RENDER_DIFFMAP = DiffMapConfig(occlusion_max_changed=0.7, part_max_iou=0.5, min_part_fraction=0.01,
                               min_box_changed_fraction=0.3)


@dataclass
class DiffMapProposals:
    """Boxes of one pair, in proposal order; ``kinds`` says how each box was found."""

    boxes: list[list[float]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # "object" (joined group), "part" (one member), "blob"
    changed_fraction: list[float] = field(default_factory=list)  # share of the box's pixels that changed
    masks: list[np.ndarray] | None = None
    threshold: float = 0.0  # the difference level used (Otsu's, if asked for)


def _rgb(image: Any) -> np.ndarray:
    """PIL image or HxWx3 uint8 array -> contiguous uint8 RGB array."""
    if hasattr(image, "convert"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"diffmap: expected an RGB image (H x W x 3), got shape {array.shape}")
    return np.ascontiguousarray(array.astype(np.uint8, copy=False))


def _odd(px: int) -> int:
    return px if px % 2 else px + 1


class DiffMapProposer:
    """Propose change regions of aligned before/after pairs; no model, no state beyond the config."""

    name = PROPOSER_NAME

    def __init__(self, config: DiffMapConfig | None = None):
        self.config = config or DiffMapConfig()

    def propose_batch(self, pairs: Sequence[tuple[Any, Any]]) -> list[DiffMapProposals]:
        """One ``DiffMapProposals`` per ``(before, after)`` pair, in order."""
        return [self.propose(before, after) for before, after in pairs]

    def propose(self, before: Any, after: Any) -> DiffMapProposals:
        import cv2

        c = self.config
        a, b = _rgb(before), _rgb(after)
        if b.shape != a.shape:  # Img-Diff resizes the second image to the first; boxes stay in before pixels
            b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
        diff, changed, level = self._change_mask(a, b)
        out = DiffMapProposals(threshold=level, masks=[] if c.return_masks else None)
        if not changed.any():
            return out
        objects_a = self._changed_objects(a, changed)
        objects_b = self._changed_objects(b, changed)
        candidates = self._object_boxes(self._unoccluded(objects_a, objects_b[0], changed),
                                        self._unoccluded(objects_b, objects_a[0], changed))
        covered = np.zeros(changed.shape, bool)
        for labels, ids in ((objects_a[0], objects_a[1]), (objects_b[0], objects_b[1])):
            if ids:
                covered |= labels > 0
        candidates += self._residual_blobs(diff, changed, covered)
        self._dedupe_into(out, candidates, changed)
        return out

    # 1. where the pair differs
    def _change_mask(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        import cv2

        c = self.config
        if c.blur_px > 1:
            k = _odd(c.blur_px)
            a, b = cv2.GaussianBlur(a, (k, k), 0), cv2.GaussianBlur(b, (k, k), 0)
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2).astype(np.uint8)
        if c.diff_threshold == "otsu":
            otsu, _ = cv2.threshold(diff, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            level = max(float(otsu), c.otsu_floor)
        else:
            level = float(c.diff_threshold)
        mask = (diff > level).astype(np.uint8)
        if c.open_px > 1:
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((c.open_px, c.open_px), np.uint8))
        return diff, mask.astype(bool), level

    # 2. objects of one image that changed
    def _segments(self, image: np.ndarray) -> np.ndarray:
        """Label map (1..n) of colour-homogeneous regions: seeds inside flat areas, grown by watershed."""
        import cv2

        c = self.config
        k = _odd(c.segment_blur_px)
        smooth = cv2.GaussianBlur(image, (k, k), 0) if k > 1 else image
        lab = cv2.cvtColor(smooth, cv2.COLOR_RGB2LAB).astype(np.float32)
        grad = np.zeros(lab.shape[:2], np.float32)
        for ch in range(3):
            gx = cv2.Sobel(lab[..., ch], cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(lab[..., ch], cv2.CV_32F, 0, 1, ksize=3)
            grad = np.maximum(grad, np.sqrt(gx * gx + gy * gy) / 8.0)  # /8: Sobel's gain
        flat = (grad < c.edge_threshold).astype(np.uint8)
        if c.seed_erode_px:
            size = 2 * c.seed_erode_px + 1
            flat = cv2.erode(flat, np.ones((size, size), np.uint8))
        n, seeds = cv2.connectedComponents(flat, connectivity=4)
        sizes = np.bincount(seeds.ravel(), minlength=n)
        keep = sizes >= c.min_seed_px
        keep[0] = False
        relabel = np.zeros(n, np.int32)
        relabel[keep] = np.arange(1, int(keep.sum()) + 1)
        markers = relabel[seeds]
        if not keep.any():
            return markers
        cv2.watershed(np.ascontiguousarray(smooth[..., ::-1]), markers)
        _assign_ridges(markers, cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32))
        return markers

    def _changed_objects(self, image: np.ndarray, changed: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Label map of changed objects (0 = none) and their ids; adjacent similar segments merged."""
        import cv2

        c = self.config
        seg = self._segments(image)
        n = int(seg.max()) + 1
        total = np.bincount(seg.ravel(), minlength=n)
        moved = np.bincount(seg[changed], minlength=n)
        h, w = seg.shape
        ok = (total >= c.min_object_px) & (total <= c.background_fraction * h * w)
        ok &= moved >= c.min_changed_fraction * np.maximum(total, 1)
        ok[0] = False
        ids = np.flatnonzero(ok)
        if ids.size == 0:
            return np.zeros_like(seg), []
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float64)
        flat_seg = seg.ravel()
        chroma = np.stack(
            [np.bincount(flat_seg, weights=lab[..., ch].ravel(), minlength=n) for ch in (1, 2)], axis=1
        ) / np.maximum(total, 1)[:, None]
        parent = {int(i): int(i) for i in ids}

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for p, q in _adjacent_labels(seg):
            if p in parent and q in parent and np.linalg.norm(chroma[p] - chroma[q]) < c.chroma_tolerance:
                parent[find(p)] = find(q)
        group = np.zeros(n, np.int32)
        roots = sorted({find(int(i)) for i in ids})
        index = {r: k + 1 for k, r in enumerate(roots)}
        for i in ids:
            group[i] = index[find(int(i))]
        return group[seg], list(range(1, len(roots) + 1))

    def _unoccluded(self, objects, other: np.ndarray, changed: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """``objects`` without those occluded (or revealed) by the other image's objects, renumbered 1..k."""
        c = self.config
        labels, ids = objects
        if not ids or c.occlusion_max_changed >= 1.0:
            return objects
        n = int(labels.max()) + 1
        size = np.bincount(labels.ravel(), minlength=n)
        moved = np.bincount(labels[changed], minlength=n)
        under = np.bincount(labels[changed & (other > 0)], minlength=n)
        keep = [i for i in ids if not (moved[i] <= c.occlusion_max_changed * size[i]
                                       and under[i] >= c.occlusion_cover * max(moved[i], 1))]
        if len(keep) == len(ids):
            return objects
        renumber = np.zeros(n, np.int32)
        renumber[keep] = np.arange(1, len(keep) + 1)
        return renumber[labels], list(range(1, len(keep) + 1))

    # 3. join before/after objects that overlap
    def _object_boxes(self, objects_a, objects_b) -> list[tuple[list[float], str, np.ndarray | None]]:
        from scipy import ndimage

        c = self.config
        (la, ida), (lb, idb) = objects_a, objects_b
        nodes = [("a", i) for i in ida] + [("b", i) for i in idb]
        if not nodes:
            return []
        boxes = {("a", i): s for i, s in zip(ida, ndimage.find_objects(la))}
        boxes |= {("b", i): s for i, s in zip(idb, ndimage.find_objects(lb))}
        size_a = np.bincount(la.ravel(), minlength=len(ida) + 1)
        size_b = np.bincount(lb.ravel(), minlength=len(idb) + 1)
        both = (la > 0) & (lb > 0)
        shared = np.zeros((len(ida) + 1, len(idb) + 1), np.int64)
        np.add.at(shared, (la[both], lb[both]), 1)
        parent = {node: node for node in nodes}

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for i in ida:
            for j in idb:
                if shared[i, j] and shared[i, j] >= c.pair_overlap * min(size_a[i], size_b[j]):
                    parent[find(("a", i))] = find(("b", j))
        groups: dict[Any, list] = {}
        for node in nodes:
            groups.setdefault(find(node), []).append(node)

        def box(slices) -> list[float]:
            ys, xs = slices
            return [float(xs.start), float(ys.start), float(xs.stop), float(ys.stop)]

        def mask(members) -> np.ndarray | None:
            if not c.return_masks:
                return None
            out = np.zeros(la.shape, bool)
            for side, i in members:
                out |= (la == i) if side == "a" else (lb == i)
            return out

        joined, parts = [], []
        for members in sorted(groups.values(), key=lambda m: sorted(m)):
            member_boxes = [box(boxes[m]) for m in members]
            union = [min(b[0] for b in member_boxes), min(b[1] for b in member_boxes),
                     max(b[2] for b in member_boxes), max(b[3] for b in member_boxes)]
            joined.append((union, "object", mask(members)))
            several = len(members) > 2 or (
                len(members) == 2 and _iou_one(member_boxes[0], member_boxes[1:])[0] < c.part_max_iou)
            if several:  # a group of several objects: each may be the change on its own
                parts += [(b, "part", mask([m])) for m, b in zip(members, member_boxes)
                          if (b[2] - b[0]) * (b[3] - b[1]) >= c.min_part_fraction * la.size]
        return joined + parts

    # 4. strong blobs no object explains
    def _residual_blobs(self, diff: np.ndarray, changed: np.ndarray, covered: np.ndarray):
        import cv2

        c = self.config
        near = cv2.dilate(covered.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        rest = (changed & ~near).astype(np.uint8)
        if c.close_px > 1:
            rest = cv2.morphologyEx(rest, cv2.MORPH_CLOSE, np.ones((c.close_px, c.close_px), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(rest, connectivity=8)
        out = []
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[k])
            if area < c.residual_min_px:
                continue
            blob = labels == k
            if float(np.median(diff[blob])) < c.residual_min_median_diff:
                continue
            out.append(([float(x), float(y), float(x + w), float(y + h)], "blob", blob if c.return_masks else None))
        return out

    # 5. drop near-duplicates
    def _dedupe_into(self, out: DiffMapProposals, candidates, changed: np.ndarray) -> None:
        import cv2

        c = self.config
        integral = cv2.integral(changed.astype(np.uint8))
        for box, kind, mask in candidates:
            if len(out.boxes) >= c.max_boxes:
                break
            if out.boxes and _iou_one(box, out.boxes).max() >= c.dedupe_iou:
                continue
            x1, y1, x2, y2 = (int(v) for v in box)
            moved = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
            if moved < c.min_box_changed_fraction * max(1, (x2 - x1) * (y2 - y1)):
                continue
            out.boxes.append(box)
            out.kinds.append(kind)
            out.changed_fraction.append(round(float(moved) / max(1, (x2 - x1) * (y2 - y1)), 4))
            if out.masks is not None:
                out.masks.append(mask)


def _assign_ridges(markers: np.ndarray, lab: np.ndarray) -> None:
    """Give watershed's ridge pixels (-1, and the image frame) the neighbouring segment closest in colour.

    Ridges run along object edges; handing them to whichever label is larger would grow objects
    by a pixel on some sides and not others, and boxes would no longer be tight.
    """
    n = int(markers.max()) + 1
    if n <= 1:
        markers[markers < 0] = 0
        return
    for _ in range(4):  # ridge pixels whose neighbours are all ridge pixels wait a round
        ridge = markers <= 0
        if not ridge.any():
            return
        labels = np.where(ridge, 0, markers).ravel()
        counts = np.bincount(labels, minlength=n).astype(np.float64)
        means = np.stack([np.bincount(labels, weights=lab[..., ch].ravel(), minlength=n) for ch in range(3)], 1)
        means /= np.maximum(counts, 1)[:, None]
        ys, xs = np.nonzero(ridge)
        best = np.zeros(len(ys), np.int32)
        best_d = np.full(len(ys), np.inf)
        h, w = markers.shape
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)):
            ny, nx = np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)
            neighbour = markers[ny, nx]
            d = np.linalg.norm(lab[ys, xs] - means[np.maximum(neighbour, 0)], axis=1)
            better = (neighbour > 0) & (d < best_d)
            best[better], best_d[better] = neighbour[better], d[better]
        markers[ys, xs] = np.where(best > 0, best, markers[ys, xs])
    markers[markers < 0] = 0


def _adjacent_labels(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of different labels that touch horizontally or vertically."""
    pairs = set()
    for p, q in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        differ = p != q
        if differ.any():
            stacked = np.unique(np.stack([p[differ], q[differ]], axis=1), axis=0)
            pairs.update((int(x), int(y)) for x, y in stacked)
    return pairs


def _iou_one(box: Sequence[float], others: Sequence[Sequence[float]]) -> np.ndarray:
    o = np.asarray(others, dtype=np.float64)
    iw = np.clip(np.minimum(box[2], o[:, 2]) - np.maximum(box[0], o[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], o[:, 3]) - np.maximum(box[1], o[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (o[:, 2] - o[:, 0]) * (o[:, 3] - o[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
