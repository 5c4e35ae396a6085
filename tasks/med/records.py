"""Turn a MED batch into rows: every candidate as a pair (kept or dropped), samples for the kept.

A pair stores the complete original caption (Fig. 9) as ``caption_before``, the edited image's caption
(Fig. 10) as ``caption_after``, the edit prompt (Fig. 8) as ``edit_instruction`` and its Type as
``edit_category``, Fig. 11's difference as ``difference``; its ``med-diff-qa`` sample answers with the
rewritten description (Fig. 14) and carries Fig. 11's TYPE as ``category``.
"""

from __future__ import annotations

import json

from pairsmith.storage.verdict import KEEP, StageStats
from pairsmith.storage.schemas import PairRow, SampleRow, utc_now
from pairsmith.tasks.med.item import MedItem, alive
from pairsmith.tasks.med.samples import METHOD, diff_qa_sample
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
        # Every kept pair trains (train/val/test by its id); the benchmark builder (tasks/med/bench.py)
        # moves the pairs it selects to "bench" once the run's batches are all stored (MED §3.3).
        samples.append(diff_qa_sample(pair_id=item.pair_id, run_id=run_id, category=item.difference_category,
                                      split=split_for(item.pair_id, splits), difference=item.rewritten))
        stats.record(KEEP)
    return pairs, samples
