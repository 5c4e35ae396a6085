"""Img-Diff's last stages, ``regions`` and ``samples``: judge each pair by its regions, and turn the batch into rows.

A pair that reached the region stages and has no region left is dropped at ``regions`` as
``regions_none_kept``, the verdict ``pairsmith refilter`` reproduces from the stored rows; each kept
region becomes one training sample. The rows are every pair and region (kept or dropped, with every
score in its ``scores`` mapping, stored under the same column names) and the samples.
"""

from __future__ import annotations

import json

from pairsmith.filters.imgdiff.pipelines import NO_REGION_KEPT, REGIONS, REPLACE, SAMPLES
from pairsmith.storage.schemas import PairRow, RegionRow, SampleRow, utc_now
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.imgdiff.items import ImgDiffItem, RegionCandidate, Score, alive, judge, png_bytes
from pairsmith.tasks.imgdiff.samples import diff_caption_region_sample, object_presence_sample
from pairsmith.tasks.sample_builders import SplitFractions, split_for
from pairsmith.tasks.stage import stage


def _scores(row_type: type, scores: dict[str, Score], owner: str) -> dict[str, Score]:
    """The scores mapping as row fields; a score with no column of its own is a bug in the stage
    that wrote it, not a row to store without it."""
    unknown = set(scores) - set(row_type.model_fields)
    if unknown:
        raise ValueError(f"{owner}: scores {sorted(unknown)} have no {row_type.__name__} column")
    return scores


def _pair_row(item: ImgDiffItem, run_id: str, method: str, model_ids: str) -> PairRow:
    rewrite = item.rewrite
    width, height = item.size
    instruction = f"replace {rewrite.replaced} with {rewrite.new}" if rewrite and rewrite.ok else None
    return PairRow(
        pair_id=item.pair_id, run_id=run_id, method=method, image_before=png_bytes(item.before),
        image_after=png_bytes(item.after), width=width, height=height, caption_before=item.source_caption,
        caption_after=item.caption_after, edit_instruction=instruction,
        edit_category=rewrite.category if rewrite else None, seed=item.seed, model_ids=model_ids, origin=item.origin,
        status="kept" if item.alive else "dropped", drop_stage=item.drop_stage, drop_reason=item.drop_reason,
        drop_detail=item.drop_detail, created_at=utc_now(), **_scores(PairRow, item.scores, f"pair {item.pair_id}"),
    )


def _region_row(item: ImgDiffItem, region: RegionCandidate, run_id: str) -> RegionRow:
    return RegionRow(
        region_id=region.region_id, pair_id=item.pair_id, run_id=run_id, box=region.box, proposer=region.proposer,
        image_edited=png_bytes(region.image_edited), status="kept" if region.alive else "dropped",
        reason=region.drop_reason, drop_detail=region.drop_detail, created_at=utc_now(),
        **_scores(RegionRow, region.scores, f"region {region.region_id}"),
    )


def _sample(item: ImgDiffItem, region: RegionCandidate, run_id: str, method: str, split: str) -> SampleRow:
    common = dict(pair_id=item.pair_id, region_id=region.region_id, run_id=run_id, method=method, box=region.box,
                  split=split)
    if method == REPLACE.method:
        return diff_caption_region_sample(**common, picture=region.picture, difference=region.scores["difference_caption"],
                                          category=item.rewrite.category if item.rewrite else None)
    return object_presence_sample(**common, original=item.before, inpainted=region.image_edited,
                                  description=region.scores["object_description"])


@stage(REGIONS.name, SAMPLES.name)
def regions(
    regions_stats: StageStats, sample_stats: StageStats, items: list[ImgDiffItem], run_id: str, method: str,
    model_ids: dict[str, str], splits: SplitFractions,
) -> tuple[list[PairRow], list[RegionRow], list[SampleRow]]:
    """The batch's pair, region and sample rows; counts the ``regions`` (pairs) and ``samples``
    (kept regions) stages."""
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
    region_rows = [_region_row(item, region, run_id) for item in items for region in item.regions]
    return pairs, region_rows, samples
