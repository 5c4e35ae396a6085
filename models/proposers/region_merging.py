"""From a change-evidence map to a few object-level regions, ranked by evidence.

A thresholded difference map of a real edit falls apart into pieces: one changed object gives a
bright core and several fragments around it, and re-generated textures give weak speckle
everywhere. This module turns the evidence map of ``models.proposers.change_map`` into boxes that each
stand for one change:

1. hysteresis thresholding (``skimage.filters.apply_hysteresis_threshold``; Canny, "A
   Computational Approach to Edge Detection", IEEE PAMI 8(6), 1986): a region needs a strong core
   (evidence ≥ ``high``) and grows over connected pixels that are merely above ``low``; both levels
   rise with the pair's own noise (median + k · sigma, sigma estimated from the lower half of the
   evidence, (median − first quartile) / 0.6745, since changed pixels only ever add to the upper
   tail and a large edit would inflate a plain MAD), so a re-encoded pair with busy textures needs
   clearer evidence than a clean one;
2. a closing and hole filling join an object's pieces; components smaller than ``min_area_fraction``
   of the image are dropped; each box is drawn around the component's pixels that reach ``tighten``
   of its peak, undoing most of the spread of the coarse blur;
3. ``merge_fragments``: regions whose boxes lie within ``merge_gap_fraction`` of the image side of
   each other are merged as long as the merged box stays compact (at most ``max_growth`` times the
   area of the boxes it replaces), so fragments of one object become one box while two separate
   changes stay two;
4. ranking by evidence mass (sum of evidence above ``low``); regions holding less than
   ``min_relative_mass`` of the strongest one's mass are dropped, and at most ``max_regions`` kept;
5. ``group_alike`` (when the blurred CIELAB images are given): one edit of one surface seen in
   pieces (a floor either side of a bathtub, a wall behind a person) leaves several regions that
   changed alike, far apart, so no compact merge joins them. Kept regions whose before colours
   and after colours (per-channel medians of their pixels) each lie within ``group_delta_e`` ΔE*ab
   of each other (complete linkage, ``scipy.cluster.hierarchy``) are also proposed as one group box, after the parts, as in the
   hierarchical grouping of selective search (Uijlings, van de Sande, Gevers and Smeulders,
   "Selective Search for Object Recognition", IJCV 104(2), 2013: the parts and every group of
   them are proposals). The default 10 is half of the change map's "plainly different colour"
   (ΔE 20); two separate edits of different things (two shirts, a sign moved away and put back
   elsewhere) differ by more before or after the edit.

Each region gets a confidence in 0–1: ``1 − exp(−mean_excess / confidence_scale)``, where
``mean_excess`` is the region's mean evidence above the pair's noise level, times the share of the
strongest region's mass it holds (a weak leftover of a big change is less likely a change of its own);
a group gets its weakest part's confidence. Boxes are ``[x1, y1, x2, y2]`` in the map's pixels, edges
exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class RegionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    low: float = Field(0.5, ge=0.0, description="least evidence a region may grow over")
    high: float = Field(1.0, ge=0.0, description="least evidence of a region's core")
    noise_k_low: float = Field(3.0, ge=0.0, description="low is at least median + this many robust sigmas of the pair's evidence")
    noise_k_high: float = Field(6.0, ge=0.0, description="high is at least median + this many robust sigmas")
    close_fraction: float = Field(0.015, ge=0.0, le=0.2, description="closing radius, share of the longer side")
    min_area_fraction: float = Field(0.002, ge=0.0, le=0.5, description="smallest region, share of the image area")
    merge_gap_fraction: float = Field(0.03, ge=0.0, le=0.5, description="fragments closer than this share of the side may merge")
    max_growth: float = Field(1.5, ge=1.0, description="a merged box may cover at most this many times its parts' box area")
    min_relative_mass: float = Field(0.15, ge=0.0, le=1.0, description="drop regions with less than this share of the top mass")
    max_regions: int = Field(5, ge=1, le=100, description="most regions per pair, strongest first")
    tighten: float = Field(
        0.2, ge=0.0, le=1.0, description="box a region's pixels at or above this share of its peak evidence (0 = all)"
    )
    confidence_scale: float = Field(1.0, gt=0.0, description="mean evidence excess that gives confidence 1 − 1/e")
    group_delta_e: float = Field(
        10.0, ge=0.0, description="also box regions whose before and after colours each differ by at most this ΔE*ab "
                                  "(0 = no groups)"
    )


@dataclass(frozen=True)
class ChangeRegion:
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in map pixels, edges exclusive
    area: int  # changed pixels
    mass: float  # sum of evidence above the low level
    mean_excess: float  # mean evidence above the pair's noise level
    confidence: float = 0.0
    # CIELAB of its pixels in the blurred before / aligned after image: per-channel median of a component's
    # pixels, area-weighted mean over merged fragments; None when evidence_regions got no CIELAB images
    colour_before: tuple[float, float, float] | None = None
    colour_after: tuple[float, float, float] | None = None
    parts: int = 1  # regions a group box stands for (1: a region of its own)

    @property
    def box_area(self) -> int:
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1)

    @property
    def fill(self) -> float:
        """Share of the box that the region's changed pixels cover (0–1)."""
        return min(1.0, self.area / max(1, self.box_area))


@dataclass(frozen=True)
class Levels:
    """The evidence levels one pair was thresholded at."""

    noise: float  # median evidence of the valid pixels
    spread: float  # 1.4826 * MAD
    low: float
    high: float


def levels(evidence: np.ndarray, valid: np.ndarray, config: RegionConfig) -> Levels:
    values = evidence[valid] if valid.any() else np.zeros(1, np.float32)
    q25, noise = (float(v) for v in np.quantile(values, [0.25, 0.5]))
    spread = (noise - q25) / 0.6745  # from the lower half only: changed pixels sit in the upper tail
    low = max(config.low, noise + config.noise_k_low * spread)
    high = max(config.high, noise + config.noise_k_high * spread, low)
    return Levels(noise, spread, low, high)


def evidence_regions(evidence: np.ndarray, valid: np.ndarray, config: RegionConfig,
                     lab: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[list[ChangeRegion], Levels]:
    """Ranked regions of an evidence map (H x W float) where ``valid`` (H x W bool), and the levels used.

    ``lab``: the blurred before and aligned after images in CIELAB (H x W x 3, as ``ChangeMap``
    keeps them); with it each region carries its mean colours and groups of regions that changed
    alike follow the ranked regions (``group_alike``). ValueError when the shapes differ.
    """
    import cv2
    from scipy import ndimage
    from skimage.filters import apply_hysteresis_threshold

    if evidence.shape != valid.shape:
        raise ValueError(f"regions: evidence {evidence.shape} and valid {valid.shape} differ in shape")
    if lab is not None and any(image.shape != (*evidence.shape, 3) for image in lab):
        raise ValueError(f"regions: CIELAB images {[image.shape for image in lab]} do not match evidence {evidence.shape}")
    lv = levels(evidence, valid, config)
    h, w = evidence.shape
    mask = apply_hysteresis_threshold(np.where(valid, evidence, 0.0), lv.low, lv.high)
    radius = int(round(config.close_fraction * max(h, w)))
    if radius > 0 and mask.any():
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, disc).astype(bool)
        mask = ndimage.binary_fill_holes(mask) & valid
    labels, n = ndimage.label(mask)
    excess = np.clip(evidence - lv.low, 0.0, None)
    above_noise = np.clip(evidence - lv.noise, 0.0, None)
    regions = []
    for k, (ys, xs) in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[ys, xs] == k
        area = int(part.sum())
        if area < config.min_area_fraction * h * w:
            continue
        colours = [tuple(float(v) for v in np.median(image[ys, xs][part], axis=0)) for image in lab] if lab else [None] * 2
        regions.append(ChangeRegion(
            box=_tight_box(evidence[ys, xs], part, xs.start, ys.start, config.tighten), area=area,
            mass=float(excess[ys, xs][part].sum()), mean_excess=float(above_noise[ys, xs][part].mean()),
            colour_before=colours[0], colour_after=colours[1],
        ))
    regions = merge_fragments(regions, config.merge_gap_fraction * max(h, w), config.max_growth)
    ranked = rank_regions(regions, config)
    return ranked + group_alike(ranked, config.group_delta_e), lv


def _tight_box(evidence: np.ndarray, part: np.ndarray, x0: int, y0: int, share: float) -> tuple[int, int, int, int]:
    """Box of the region's pixels whose evidence reaches ``share`` of its peak (95th percentile).

    The coarse blur that keeps texture noise out also spreads a change beyond its edges; for a
    blurred step the half-height contour is the true edge, so a share of 0.2 (0.84 sigma out) undoes
    most of the spread while keeping weaker parts of the same change (0.2: no loss on the marked
    MED sample, whose marks are coarse).
    """
    if share > 0:
        peak = float(np.percentile(evidence[part], 95))
        core = part & (evidence >= share * peak)
        if core.any():
            part = core
    ys, xs = np.nonzero(part)
    return (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)


def _gap(p: Sequence[int], q: Sequence[int]) -> int:
    """Chebyshev distance between two boxes (0 when they touch or overlap)."""
    dx = max(0, max(p[0], q[0]) - min(p[2], q[2]))
    dy = max(0, max(p[1], q[1]) - min(p[3], q[3]))
    return max(dx, dy)


def _union(p: ChangeRegion, q: ChangeRegion) -> ChangeRegion:
    box = (min(p.box[0], q.box[0]), min(p.box[1], q.box[1]), max(p.box[2], q.box[2]), max(p.box[3], q.box[3]))
    area = p.area + q.area

    def mean(a: Sequence[float] | None, b: Sequence[float] | None) -> tuple[float, float, float] | None:
        if a is None or b is None:
            return None
        return tuple((u * p.area + v * q.area) / max(area, 1) for u, v in zip(a, b))

    return ChangeRegion(box=box, area=area, mass=p.mass + q.mass,
                        mean_excess=(p.mean_excess * p.area + q.mean_excess * q.area) / max(area, 1),
                        colour_before=mean(p.colour_before, q.colour_before),
                        colour_after=mean(p.colour_after, q.colour_after))


def merge_fragments(regions: Sequence[ChangeRegion], gap: float, max_growth: float) -> list[ChangeRegion]:
    """Merge regions whose boxes are within ``gap`` pixels while the merged box stays compact.

    Greedy and deterministic: the closest admissible pair (smallest growth first on ties) merges,
    until no pair is admissible. A pair is admissible when the gap between the boxes is at most
    ``gap`` and the union box covers at most ``max_growth`` times the summed box areas of the two.
    """
    out = list(regions)
    while len(out) > 1:
        best = None
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                p, q = out[i], out[j]
                distance = _gap(p.box, q.box)
                if distance > gap:
                    continue
                merged = _union(p, q)
                growth = merged.box_area / max(1, p.box_area + q.box_area)
                if growth > max_growth:
                    continue
                key = (distance, growth, i, j)
                if best is None or key < best[0]:
                    best = (key, i, j, merged)
        if best is None:
            break
        _, i, j, merged = best
        out = [r for k, r in enumerate(out) if k not in (i, j)] + [merged]
    return out


def rank_regions(regions: Sequence[ChangeRegion], config: RegionConfig) -> list[ChangeRegion]:
    """Strongest first, weak leftovers dropped, each with its confidence."""
    ranked = sorted(regions, key=lambda r: (-r.mass, r.box))
    if not ranked:
        return []
    top = ranked[0].mass
    out = []
    for r in ranked:
        share = r.mass / top if top > 0 else 1.0
        if share < config.min_relative_mass:
            continue
        confidence = (1.0 - float(np.exp(-r.mean_excess / config.confidence_scale))) * min(1.0, share)
        out.append(replace(r, confidence=round(confidence, 4)))
        if len(out) >= config.max_regions:
            break
    return out


def group_alike(regions: Sequence[ChangeRegion], delta_e: float) -> list[ChangeRegion]:
    """Group boxes of regions that changed alike (step 5 above), strongest group first.

    Regions without colours, and all when ``delta_e`` is 0, form no group. Two regions are alike when
    both their before colours and their after colours lie within ``delta_e`` (ΔE*ab, CIE
    1976); complete linkage makes every two members of a group alike. A group's box is the union of
    its parts' boxes, its mass and area their sums, its confidence the weakest part's.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    coloured = [r for r in regions if r.colour_before is not None and r.colour_after is not None]
    if delta_e <= 0 or len(coloured) < 2:
        return []
    before = pdist(np.array([r.colour_before for r in coloured]))
    after = pdist(np.array([r.colour_after for r in coloured]))
    clusters = fcluster(linkage(np.maximum(before, after), method="complete"), delta_e, criterion="distance")
    groups = []
    for label in sorted(set(clusters.tolist())):
        members = [r for r, c in zip(coloured, clusters) if c == label]
        if len(members) < 2:
            continue
        group = members[0]
        for r in members[1:]:
            group = _union(group, r)
        groups.append(replace(group, confidence=min(r.confidence for r in members), parts=len(members)))
    return sorted(groups, key=lambda g: (-g.mass, g.box))


def box_confidence(evidence: np.ndarray, box: Sequence[float], lv: Levels, config: RegionConfig) -> float:
    """Confidence (0–1) of a box found another way, from the evidence of its pixels above ``lv.low``."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    patch = evidence[max(0, y1):max(0, y2), max(0, x1):max(0, x2)]
    strong = patch[patch >= lv.low]
    if strong.size == 0:
        return 0.0
    return round(1.0 - float(np.exp(-float(np.mean(strong - lv.noise)) / config.confidence_scale)), 4)
