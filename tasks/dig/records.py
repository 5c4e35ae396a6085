"""Turn a rendered batch into table rows: pairs, ground-truth regions and training samples.

Dropped pairs become rows too (with their renders where they exist, the stage and the reason),
and so do the regions of a dropped pair, each with its own verdict, so a threshold can later be
re-applied to what is stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from pairsmith.filters.change_visibility import VisibilityThresholds, keep_change
from pairsmith.storage.verdict import KEEP, StageStats
from pairsmith.scenes.blender_render import RenderSettings
from pairsmith.scenes.change_text import CaptionStyle, describe_changes, describe_scene, referring_captions
from pairsmith.scenes.ground_truth import box_from_mask, encode_png
from pairsmith.scenes.pair_plan import PairPlan
from pairsmith.scenes.scene_sampler import ObjectMap, subset_for
from pairsmith.storage.ids import stable_id
from pairsmith.storage.schemas import PairRow, RegionRow, SampleRow, utc_now
from pairsmith.tasks.dig.prompts import GroundingPromptName
from pairsmith.tasks.dig.render_pairs import RenderedPair
from pairsmith.tasks.sample_builders import SplitFractions, diff_caption_sample, grounding_sample, split_for
from pairsmith.tasks.stage import stage

METHOD = "dig-render"
DISTRACTOR_CAPTION = "Nothing changed between the two images; only the camera moved slightly."


@dataclass
class BatchRecords:
    pairs: list[PairRow] = field(default_factory=list)
    regions: list[RegionRow] = field(default_factory=list)
    samples: list[SampleRow] = field(default_factory=list)


def _scene_json(objects: ObjectMap) -> str:
    return json.dumps({"objects": [{"id": i, **o.model_dump(mode="json")} for i, o in objects.items()]})


def _locator(index_map: np.ndarray | None):
    return lambda object_id: box_from_mask(index_map == object_id + 1) if index_map is not None else None


def _dropped_plan_row(plan: PairPlan, run_id: str, render: RenderSettings) -> PairRow:
    return PairRow(
        pair_id=plan.pair_id, run_id=run_id, method=METHOD, width=render.width, height=render.height,
        seed=plan.seed, status="dropped", drop_stage="scene_plan", drop_reason=plan.drop_reason,
        drop_detail=plan.drop_detail, created_at=utc_now(),
    )


@stage("dig_samples")
def build_dig_records(
    stats: StageStats,
    plans: list[PairPlan],
    rendered: list[RenderedPair],
    run_id: str,
    render: RenderSettings,
    visibility: VisibilityThresholds,
    splits: SplitFractions,
    caption_style: CaptionStyle = "referring",
    grounding_prompt: GroundingPromptName = "pairsmith",
) -> BatchRecords:
    """The batch's pairs, regions and samples; counts the ``samples`` stage (one verdict per pair
    that reached it). A ``move`` gives two regions (its old place, then its new one), each boxed
    and judged, both carrying the change's sentence."""
    out = BatchRecords()
    out.pairs += [_dropped_plan_row(p, run_id, render) for p in plans if p.drop_reason]
    w, h = render.width, render.height
    min_px = visibility.min_pixels(w, h)
    model_ids = json.dumps({"renderer": "blender-cycles", "samples": render.samples, "denoise": render.denoise})
    for pair in rendered:
        plan = pair.plan
        kinds = ",".join(sorted({c.kind for c in pair.changes})) or ("camera" if plan.distractor else None)
        if caption_style == "plain":
            sentences = describe_changes(pair.changes, pair.before, pair.after,
                                         _locator(pair.index_before), _locator(pair.index_after), w, h)
        else:
            sentences = [c.text for c in referring_captions(pair.changes, pair.before, pair.after, w, h, plan.seed)]
        kept = pair.verdict.keep
        subset = (plan.subset or subset_for(len(pair.changes))) if kept else None
        out.pairs.append(PairRow(
            pair_id=plan.pair_id, run_id=run_id, method=METHOD,
            image_before=pair.png_before, image_after=pair.png_after, width=w, height=h,
            caption_before=describe_scene(pair.before) if pair.before else None,
            caption_after=describe_scene(pair.after) if pair.after else None,
            edit_category=kinds, seed=plan.seed, model_ids=model_ids,
            scene_before=_scene_json(pair.before) if pair.before else None,
            scene_after=_scene_json(pair.after) if pair.after else None,
            changes=json.dumps([c.to_json() for c in pair.changes]),
            index_before=encode_png(pair.index_before) if pair.index_before is not None else None,
            index_after=encode_png(pair.index_after) if pair.index_after is not None else None,
            subset=subset, n_changes=len(pair.changes), attempts=pair.attempts,
            camera_jitter=list(pair.camera) if pair.camera else None,
            status="kept" if kept else "dropped",
            drop_stage=pair.drop_stage, drop_reason=pair.verdict.reason, drop_detail=pair.drop_detail,
            created_at=utc_now(),
        ))
        boxes = []
        for k, (change, regions, sentence) in enumerate(zip(pair.changes, pair.measures, sentences)):
            for m in regions:
                if m.box is None:
                    continue
                verdict = keep_change(change.kind, m.visible_px_before, m.visible_px_after,
                                      m.changed_fraction if pair.png_after else None,
                                      min_px, visibility.min_changed_fraction)
                key = (plan.pair_id, "render-gt", k) if m.place is None else (plan.pair_id, "render-gt", k, m.place)
                out.regions.append(RegionRow(
                    region_id=stable_id(*key), pair_id=plan.pair_id, run_id=run_id,
                    box=m.box, proposer="render-gt", change_type=change.kind, place=m.place,
                    object_description=(change.before or change.after).describe(),
                    visible_px_before=m.visible_px_before, visible_px_after=m.visible_px_after,
                    changed_fraction=m.changed_fraction if pair.png_after else None,
                    difference_caption=sentence,
                    status="kept" if kept and verdict.keep else "dropped",
                    reason=verdict.reason if not verdict.keep else (None if kept else pair.verdict.reason),
                    created_at=utc_now(),
                ))
                boxes.append(m.box)
        if not kept:
            continue
        out.samples += _samples(plan, run_id, boxes, sentences, kinds, subset, w, h, splits, grounding_prompt)
        stats.record(KEEP)
    return out


def _samples(plan: PairPlan, run_id: str, boxes, sentences, kinds, subset, w, h, splits,
             prompt_name: GroundingPromptName = "pairsmith") -> list[SampleRow]:
    """Grounding with the count stated (single/double) and without it (mixed), plus a caption;
    ``prompt_name`` picks the grounding prompt (``pairsmith.tasks.dig.prompts``)."""
    split = split_for(plan.pair_id, splits)
    common = dict(pair_id=plan.pair_id, run_id=run_id, method=METHOD, split=split, category=kinds)
    rows = []
    if plan.subset is not None:  # DiG's disjoint subsets: the pair's own subset only, the count in stages 1-2
        rows.append(grounding_sample(**common, boxes=boxes, width=w, height=h, subset=subset,
                                     state_count=subset != "mixed", prompt_name=prompt_name))
    elif subset in ("single", "double"):
        rows.append(grounding_sample(**common, boxes=boxes, width=w, height=h, subset=subset, state_count=True,
                                    prompt_name=prompt_name))
    if plan.subset is None:
        rows.append(grounding_sample(**common, boxes=boxes, width=w, height=h, subset="mixed", state_count=False,
                                    prompt_name=prompt_name))
    rows.append(diff_caption_sample(
        **common, sentences=sentences or [DISTRACTOR_CAPTION], boxes=boxes, subset=subset,
    ))
    return rows
