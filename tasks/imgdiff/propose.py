"""Img-Diff step 4, ``propose``: candidate regions of each pair, from FastSAM and from the pair's difference map.

FastSAM segments the images (both for replacement, as Img-Diff does; the original only for
removal, whose masks are inpainted) in one batched call; the diff-map proposer boxes where the two
aligned images differ, without weights. Their boxes are pooled (the union; NMS later removes
overlaps) and each region records its proposer. Masks are kept only when a later step needs them
(removal), cut to the box so a batch of 1024 px images does not hold hundreds of full-size masks.

A pair with no proposal stays alive here and is dropped at the end as ``regions_none_kept``.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import PROPOSE
from pairsmith.models.proposers.diffmap_proposer import DiffMapProposer
from pairsmith.models.adapters.fastsam_proposer import FastSamProposer
from pairsmith.storage.ids import stable_id
from pairsmith.storage.verdict import KEEP, StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext, MissingComponent
from pairsmith.tasks.imgdiff.items import ImgDiffItem, RegionCandidate, alive, int_box, judge, model_step
from pairsmith.tasks.stage import stage


def _region(item: ImgDiffItem, proposer: str, side: str, k: int, box, score=None, changed=None,
            mask=None) -> RegionCandidate:
    """A region with a deterministic id; a ``mask`` (full image) is kept, cut to the box."""
    box = [round(float(v), 2) for v in box]
    cut = None
    if mask is not None:
        x1, y1, x2, y2 = int_box(box, *item.size)
        cut = mask[y1:y2, x1:x2].copy()
    return RegionCandidate(
        region_id=stable_id(item.pair_id, proposer, side, k, box), box=box, proposer=proposer, mask=cut,
        scores={"proposal_score": None if score is None else float(score),
                "changed_fraction": None if changed is None else float(changed)},
    )


def _names(fastsam: FastSamProposer | None, diffmap: DiffMapProposer | None) -> str:
    return " + ".join(([fastsam.config.weights] if fastsam else []) + (["diffmap"] if diffmap else []))


@stage(PROPOSE.name)
def propose(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Add every proposal as a region of its pair. Uses ``ctx.models.fastsam`` and ``ctx.models.diffmap``
    (either may be None: ``proposers`` of the flow config), ``ctx.settings.fastsam_sides`` (the images
    FastSAM segments) and ``ctx.settings.keep_masks``."""
    fastsam, diffmap = ctx.models.fastsam, ctx.models.diffmap
    fastsam_sides, keep_masks = ctx.settings.fastsam_sides, ctx.settings.keep_masks
    if fastsam is None and diffmap is None:
        raise MissingComponent(f"stage {PROPOSE.name!r} needs 'fastsam' or 'diffmap': this run's context has neither")
    todo = alive(items)
    if not todo:
        return

    def proposals(part: list[ImgDiffItem]) -> list[list[RegionCandidate]]:
        found: dict[str, list[RegionCandidate]] = {item.pair_id: [] for item in part}
        if fastsam is not None:
            images = [(item, side) for item in part for side in fastsam_sides]
            step = fastsam.config.batch_size  # the adapter's own forward size; full masks of one chunk at a time
            for start in range(0, len(images), step):
                chunk = images[start:start + step]
                for (item, side), props in zip(chunk, fastsam.propose_batch([getattr(i, s) for i, s in chunk])):
                    for k, (box, score) in enumerate(zip(props.box_list(), props.scores)):
                        found[item.pair_id].append(_region(item, "fastsam", side, k, box, score,
                                                           mask=props.masks[k] if keep_masks else None))
        if diffmap is not None:
            for item, result in zip(part, diffmap.propose_batch([(item.before, item.after) for item in part])):
                masks = result.masks or [None] * len(result.boxes)
                for k, (box, changed, mask) in enumerate(zip(result.boxes, result.changed_fraction, masks)):
                    found[item.pair_id].append(_region(item, "diffmap", "pair", k, box, changed=changed,
                                                       mask=mask if keep_masks else None))
        return [found[item.pair_id] for item in part]

    for item, regions in zip(todo, model_step(stats, todo, proposals, _names(fastsam, diffmap))):
        if regions is None:
            continue
        item.regions = regions
        judge(stats, item, KEEP)
