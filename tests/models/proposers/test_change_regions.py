"""From an edited photo pair to few, object-level boxes: change map, fragment merging, extent verdict."""

from __future__ import annotations

import io
import pickle
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from benchmarks.proposer_recall import match_count
from pairsmith.models.proposers.change_extent import ExtentConfig, change_extent
from pairsmith.models.proposers.change_map import ChangeMapConfig, change_map
from pairsmith.models.proposers.pair_proposer import PHOTO, RENDER, PairProposer
from pairsmith.models.proposers.region_merging import (
    ChangeRegion,
    RegionConfig,
    evidence_regions,
    group_alike,
    merge_fragments,
    rank_regions,
)


def photo(seed: int = 0, size=(320, 240)) -> Image.Image:
    """A photo-like scene: smooth colour noise with a dozen discs, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 215, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = int(rng.integers(0, size[0] - 40)), int(rng.integers(0, size[1] - 40))
        draw.ellipse([x, y, x + 30, y + 30], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return img


def jpeg(img: Image.Image, quality: int = 85) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


EDIT_BOX = [200, 60, 270, 130]


def edited(before: Image.Image) -> Image.Image:
    """The before photo with one object painted in, returned at twice the size and re-encoded."""
    after = before.copy()
    ImageDraw.Draw(after).rectangle([EDIT_BOX[0], EDIT_BOX[1], EDIT_BOX[2] - 1, EDIT_BOX[3] - 1], fill=(20, 40, 230))
    return jpeg(after.resize((before.width * 2, before.height * 2), Image.BICUBIC))


# ---- change map ----

def test_change_map_marks_the_edit_and_nothing_where_the_after_image_is_missing():
    before = np.asarray(photo(1))
    after = before.copy()
    after[60:130, 200:270] = (20, 40, 230)
    valid = np.ones(before.shape[:2], bool)
    valid[:, :30] = False  # the warp did not reach the left edge
    cmap = change_map(before, after, valid, ChangeMapConfig())
    assert cmap.evidence[80:110, 220:250].min() > 1.0  # plainly changed
    assert np.percentile(cmap.evidence[cmap.valid & (np.indices(valid.shape)[1] < 150)], 99) < 0.2
    assert not cmap.valid[:, :30].any() and (cmap.evidence[:, :30] == 0).all()
    assert not cmap.valid[:, 30:35].any()  # a margin as wide as the blur: the fill's edge is no change
    same = change_map(before, before, np.ones_like(valid), ChangeMapConfig())
    assert same.evidence.max() < 1e-3 and same.changed_share(0.5) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        change_map(before, after[:10], valid, ChangeMapConfig())


# ---- fragments, ranking, confidence ----

def _region(box, area=None, mass=100.0, mean_excess=1.0) -> ChangeRegion:
    x1, y1, x2, y2 = box
    return ChangeRegion(box=box, area=area or (x2 - x1) * (y2 - y1), mass=mass, mean_excess=mean_excess)


def test_fragments_of_one_object_merge_into_one_box_and_separate_changes_stay_apart():
    fragments = [_region((100, 100, 130, 150)), _region((134, 100, 160, 148)), _region((102, 153, 158, 170)),
                 _region((10, 10, 40, 40))]  # three pieces of one object, and a change far away
    merged = merge_fragments(fragments, gap=6, max_growth=1.5)
    boxes = sorted(r.box for r in merged)
    assert boxes == [(10, 10, 40, 40), (100, 100, 160, 170)]
    whole = next(r for r in merged if r.box == (100, 100, 160, 170))
    assert whole.mass == 300.0 and whole.area == sum(f.area for f in fragments[:3])


def test_fragments_are_not_merged_into_a_box_that_is_mostly_empty():
    """Two thin strips at a right angle: their union box would be four times their own area."""
    strips = [_region((0, 0, 100, 10)), _region((100, 0, 110, 100))]
    assert len(merge_fragments(strips, gap=6, max_growth=1.5)) == 2
    assert len(merge_fragments(strips, gap=6, max_growth=10.0)) == 1


def test_ranking_drops_weak_leftovers_and_gives_stronger_regions_more_confidence():
    regions = [_region((0, 0, 10, 10), mass=5.0, mean_excess=0.2), _region((50, 50, 90, 90), mass=400.0, mean_excess=2.0),
               _region((20, 20, 40, 40), mass=100.0, mean_excess=1.0)]
    ranked = rank_regions(regions, RegionConfig(min_relative_mass=0.1))
    assert [r.box for r in ranked] == [(50, 50, 90, 90), (20, 20, 40, 40)]
    assert 0 < ranked[1].confidence < ranked[0].confidence < 1
    assert len(rank_regions(regions, RegionConfig(min_relative_mass=0.0, max_regions=1))) == 1


def test_evidence_regions_one_box_per_blob_with_hysteresis():
    evidence = np.zeros((200, 300), np.float32)
    evidence[50:90, 40:100] = 2.0  # a strong change
    evidence[90:110, 40:100] = 0.7  # its weaker rim: grown into (above low, touching the core)
    evidence[150:170, 200:260] = 0.7  # weak everywhere, no core: not a change
    regions, lv = evidence_regions(evidence, np.ones(evidence.shape, bool), RegionConfig(close_fraction=0.0))
    assert [r.box for r in regions] == [(40, 50, 100, 110)]
    assert lv.low == 0.5 and lv.high == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        evidence_regions(evidence, np.ones((10, 10), bool), RegionConfig())


# ---- groups of regions that changed alike ----

def test_regions_that_changed_alike_get_a_group_box_and_different_changes_none():
    floor_left = replace(_region((0, 200, 100, 300), mass=300.0), confidence=0.9,
                         colour_before=(40.0, 20.0, 30.0), colour_after=(80.0, 0.0, 5.0))
    floor_right = replace(_region((250, 210, 400, 300), mass=200.0), confidence=0.6,
                          colour_before=(44.0, 22.0, 31.0), colour_after=(77.0, 2.0, 6.0))
    shirt = replace(_region((150, 20, 200, 90)), confidence=0.8,  # changed to the floor's colour, but was not floor
                    colour_before=(70.0, 0.0, 5.0), colour_after=(80.0, 0.0, 5.0))
    groups = group_alike([floor_left, shirt, floor_right], delta_e=10.0)
    assert [(g.box, g.parts, g.confidence, g.mass) for g in groups] == [((0, 200, 400, 300), 2, 0.6, 500.0)]
    assert group_alike([floor_left, shirt, floor_right], delta_e=0.0) == []
    assert group_alike([_region((0, 0, 10, 10)), _region((50, 50, 60, 60))], delta_e=10.0) == []  # no colours


def test_a_floor_recoloured_either_side_of_an_occluder_is_proposed_whole_and_in_parts():
    """A dark floor turns white left and right of a tub that hides its middle; a square far above turns blue."""
    before = photo(8, size=(400, 300))
    draw = ImageDraw.Draw(before)
    draw.rectangle([0, 200, 399, 299], fill=(90, 55, 35))  # the floor
    draw.rectangle([130, 170, 269, 299], fill=(210, 195, 170))  # the tub in front of it
    after = before.copy()
    draw = ImageDraw.Draw(after)
    draw.rectangle([0, 200, 129, 299], fill=(235, 235, 240))
    draw.rectangle([270, 200, 399, 299], fill=(235, 235, 240))
    draw.rectangle([170, 20, 239, 89], fill=(30, 60, 200))
    found = PairProposer(PHOTO).propose(before, jpeg(after))
    assert found.extent.extent == "local"
    groups = [b for b, k in zip(found.boxes, found.kinds) if k == "group"]
    parts = [b for b, k in zip(found.boxes, found.kinds) if k == "region"]
    assert len(groups) == 1 and found.kinds[-1] == "group"  # the floor, after its parts; the square joins none
    assert match_count(groups, [[0, 200, 400, 300]], 0.5) == 1 and groups[0][1] > 150
    assert match_count(parts, [[0, 200, 130, 300], [270, 200, 400, 300], [170, 20, 240, 90]], 0.4) == 3
    no_groups = PHOTO.model_copy(update={"regions": RegionConfig(group_delta_e=0.0)})
    assert PairProposer(no_groups).propose(before, jpeg(after)).kinds == ["region"] * 3


def test_evidence_regions_refuses_colour_images_of_another_shape():
    evidence = np.zeros((20, 30), np.float32)
    with pytest.raises(ValueError, match="CIELAB"):
        evidence_regions(evidence, np.ones((20, 30), bool), RegionConfig(), (np.zeros((20, 30, 3)), np.zeros((20, 31, 3))))


# ---- the extent verdict ----

def test_extent_rules_and_score():
    structure = np.zeros((10, 10), np.float32)
    valid = np.ones((10, 10), bool)
    local = change_extent(1.0, 0.95, structure, valid, ExtentConfig())
    assert (local.extent, local.reason, local.score) == ("local", None, 0.0)
    reframed = change_extent(0.6, 0.95, structure, valid, ExtentConfig())
    assert (reframed.extent, reframed.reason, reframed.score) == ("global", "extent_reframed", 0.4)
    assert change_extent(1.0, 0.5, structure, valid, ExtentConfig()).reason == "extent_unaligned"
    structure[:8] = 1.0
    redrawn = change_extent(1.0, 0.95, structure, valid, ExtentConfig())
    assert (redrawn.reason, redrawn.changed_share) == ("extent_redrawn", 0.8)
    assert change_extent(0.6, 0.95, structure, valid, ExtentConfig(enabled=False)).extent == "local"


# ---- the whole proposer ----

def test_a_local_edit_of_a_resized_reencoded_photo_gets_one_box_in_before_pixels():
    before = photo(3)
    found = PairProposer(PHOTO).propose(before, edited(before))
    assert found.alignment.ok and found.extent.extent == "local"
    assert match_count(found.boxes, [EDIT_BOX], 0.5) == 1 and len(found.boxes) <= 2
    assert found.confidences[0] > 0.5 and found.kinds[0] == "region"
    # the stored transform maps full-size after pixels onto full-size before pixels
    m = np.asarray(found.alignment.transform).reshape(3, 3)
    assert np.allclose(m @ [640, 480, 1], [320, 240, 1], atol=2)


def test_a_reframed_pair_gets_the_global_verdict_and_no_boxes():
    before = photo(4, size=(400, 300))
    crop = before.crop((100, 70, 340, 250)).resize((480, 360), Image.BICUBIC)  # 36 % of the view, zoomed
    found = PairProposer(PHOTO).propose(before, jpeg(crop))
    assert found.extent.extent == "global" and found.extent.reason == "extent_reframed"
    assert found.extent.coverage < 0.5 and found.extent.score > 0.5
    assert found.boxes == [] and found.confidences == []


def test_unrelated_images_get_the_global_verdict_and_identical_ones_no_boxes():
    unrelated = PairProposer(PHOTO).propose(photo(5), photo(6))
    assert unrelated.extent.extent == "global" and unrelated.boxes == []
    same = PairProposer(PHOTO).propose(photo(7), jpeg(photo(7), quality=90))
    assert same.extent.extent == "local" and same.boxes == []


def test_render_preset_gives_object_boxes_with_confidences_and_pickles():
    before = Image.new("RGB", (160, 120), (128, 128, 128))
    after = before.copy()
    ImageDraw.Draw(before).rectangle([20, 30, 59, 79], fill=(200, 40, 40))
    ImageDraw.Draw(after).rectangle([20, 30, 59, 79], fill=(40, 60, 200))
    found = PairProposer(RENDER).propose(before, after)
    assert found.boxes == [[20.0, 30.0, 60.0, 80.0]] and found.kinds == ["object"] and found.confidences[0] > 0.5
    proposer = PairProposer(RENDER)
    assert pickle.loads(pickle.dumps(proposer)).config == RENDER
