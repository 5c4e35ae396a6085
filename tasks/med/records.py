"""Turn a MED batch into rows: every candidate as a pair (kept or dropped), samples for the kept."""

from __future__ import annotations

import json

from pairsmith.storage.verdict import KEEP, StageStats
from pairsmith.storage.schemas import PairRow, SampleRow, utc_now
from pairsmith.tasks.med.item import MedItem, alive
from pairsmith.tasks.med.samples import METHOD, diff_qa_sample, mcq_sample
from pairsmith.tasks.sample_builders import SplitFractions, split_for
from pairsmith.tasks.stage import stage


def _origin(item: MedItem) -> str:
    return f"file:{item.ref.path}" if item.ref.path else f"pair:{item.ref.pair_id}"


@stage("med_samples")
def build_med_records(
    stats: StageStats, items: list[MedItem], run_id: str, model_ids: dict[str, str], splits: SplitFractions,
) -> tuple[list[PairRow], list[SampleRow]]:
    """The batch's pairs (every item, kept or dropped) and the samples of its kept pairs."""
    pairs = [
        PairRow(
            pair_id=i.pair_id, run_id=run_id, method=METHOD, image_before=i.image, image_after=i.edited,
            width=i.width, height=i.height, caption_before=i.caption_before or i.ref.caption or None,
            caption_after=i.caption_after, edit_instruction=i.edit_instruction, edit_category=i.category,
            difference=i.difference, model_ids=json.dumps(model_ids), pair_clip_sim=i.clip_sim,
            origin=_origin(i), bench_candidate=i.bench_candidate,
            status="kept" if i.alive else "dropped", drop_stage=i.drop_stage, drop_reason=i.drop_reason,
            drop_detail=i.drop_detail, created_at=utc_now(),
        )
        for i in items
    ]
    samples: list[SampleRow] = []
    for item in alive(items):
        split = "bench" if item.bench_candidate else split_for(item.pair_id, splits)
        common = dict(pair_id=item.pair_id, run_id=run_id, category=item.difference_category, split=split)
        samples.append(diff_qa_sample(**common, difference=item.difference))
        if item.wrong_options:
            samples.append(mcq_sample(**common, correct=item.difference, wrong=item.wrong_options))
        stats.record(KEEP)
    return pairs, samples
