"""Turn an Img-Diff batch into rows: every pair and region (kept or dropped, with every score) and
the samples of the kept regions; judge the pair-level ``regions`` stage on the way.

A pair that reached the region stages and has no region left is dropped at ``regions`` as
``regions_none_kept``, the verdict ``pairsmith refilter`` reproduces from the stored rows.
"""

from __future__ import annotations

import json
import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.filters.imgdiff.stages import NO_REGION_KEPT, REGIONS
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.storage.schemas import PairRow, RegionRow, SampleRow, utc_now
from pairsmith.tasks.imgdiff.items import ImgDiffItem, RegionCandidate, alive, judge, png_bytes
from pairsmith.tasks.imgdiff.samples import diff_caption_region_sample, object_presence_sample
from pairsmith.tasks.sample_builders import SplitFractions, split_for

REPLACE, REMOVE = "imgdiff-replace", "imgdiff-remove"
SAMPLES_STAGE = "samples"


def _pair_row(item: ImgDiffItem, run_id: str, method: str, model_ids: str) -> PairRow:
    rewrite = item.rewrite
    width, height = item.size
    instruction = f"replace {rewrite.replaced} with {rewrite.new}" if rewrite and rewrite.ok else None
    return PairRow(
        pair_id=item.pair_id, run_id=run_id, method=method, image_before=png_bytes(item.before),
        image_after=png_bytes(item.after), width=width, height=height, caption_before=item.source_caption,
        caption_after=item.caption_after, edit_instruction=instruction,
        edit_category=rewrite.category if rewrite else None, seed=item.seed, model_ids=model_ids,
        pair_clip_sim=item.pair_clip_sim, origin=item.origin,
        status="kept" if item.alive else "dropped", drop_stage=item.drop_stage, drop_reason=item.drop_reason,
        drop_detail=item.drop_detail, created_at=utc_now(),
    )


def _region_row(item: ImgDiffItem, region: RegionCandidate, run_id: str) -> RegionRow:
    scores = {name: getattr(region, name) for name in (
        "crop_clip_sim", "itm_before", "itm_after", "itm_cosine_before", "itm_cosine_after", "citm_before",
        "citm_after", "citm_cosine_before", "citm_cosine_after", "caption_sim", "changed_fraction",
        "proposal_score", "region_caption_before", "region_caption_after", "difference_caption",
        "object_description")}
    return RegionRow(
        region_id=region.region_id, pair_id=item.pair_id, run_id=run_id, box=region.box, proposer=region.proposer,
        image_edited=png_bytes(region.image_edited), status="kept" if region.alive else "dropped",
        reason=region.reason, drop_detail=region.detail, created_at=utc_now(), **scores,
    )


def _sample(item: ImgDiffItem, region: RegionCandidate, run_id: str, method: str, split: str) -> SampleRow:
    common = dict(pair_id=item.pair_id, region_id=region.region_id, run_id=run_id, method=method, box=region.box,
                  split=split)
    if method == REPLACE:
        return diff_caption_region_sample(**common, picture=region.picture, difference=region.difference_caption,
                                          category=item.rewrite.category if item.rewrite else None)
    return object_presence_sample(**common, original=item.before, inpainted=region.image_edited,
                                  description=region.object_description)


@task(name="build-records", cache_policy=NO_CACHE)
def build_imgdiff_records(
    items: list[ImgDiffItem], run_id: str, method: str, model_ids: dict[str, str], splits: SplitFractions,
) -> tuple[list[PairRow], list[RegionRow], list[SampleRow], StageStats, StageStats]:
    """Rows of the batch, and the ``regions`` (pairs) and ``samples`` (kept regions) stage stats."""
    regions_stats, sample_stats, start = StageStats(REGIONS), StageStats(SAMPLES_STAGE), time.perf_counter()
    for item in alive(items):
        judge(regions_stats, item, KEEP if item.live_regions() else Verdict.drop(NO_REGION_KEPT))
    samples = []
    for item in alive(items):
        split = split_for(item.pair_id, splits)
        for region in item.live_regions():
            samples.append(_sample(item, region, run_id, method, split))
            sample_stats.record(KEEP)
    ids = json.dumps(model_ids, sort_keys=True)
    pairs = [_pair_row(item, run_id, method, ids) for item in items]
    regions = [_region_row(item, region, run_id) for item in items for region in item.regions]
    elapsed = time.perf_counter() - start
    regions_stats.seconds, sample_stats.seconds = elapsed / 2, elapsed / 2
    return pairs, regions, samples, regions_stats, sample_stats
