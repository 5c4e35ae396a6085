"""The propose-regions flow: boxes where stored pairs differ, for pairs that came without any.

Edited photos (MED's Gemini edits, the imported MED benchmark) arrive as two images of different
size and framing and no boxes. Per batch of stored pairs, ``models.proposers.pair_proposer`` registers the
after image onto the before image (global transform, then dense residual flow), compares them
(CIELAB ΔE and SSIM), judges whether the edit changed the whole picture, and proposes ranked,
merged change regions with a confidence each. The flow stores:

* on the pair: the alignment (method, transform, agreement score, or why there is none) and the
  extent verdict (``change_extent`` local | global, its score and reason);
* as ``regions`` of this run: every box in before-image pixels with its ``confidence``; boxes
  under ``min_confidence`` are stored too, dropped with ``confidence_too_low``;
* with ``grounding.enabled``: a DiG-style ``grounding`` sample (method ``med-edit``) for each local
  ``med-edit`` pair with at least one kept box — real-photo grounding data.

Stages (the run's funnel; ``register`` and ``region_propose`` were ``align`` and ``propose`` before
issue 25): ``register`` (align_no_transform, align_error, align_rejected), ``extent`` (extent_reframed,
extent_unaligned, extent_redrawn), ``region_propose`` (propose_no_regions), ``confidence``
(confidence_too_low: no box of the pair passed), and ``grounding`` when enabled.

The run id hashes every setting that changes the output (not ``db``, ``limit`` or ``batch_size``), and region
and sample ids include it, so a second proposer config writes a second run next to the first, and
``pairsmith stats --run`` compares them. The pair's alignment and extent columns hold the verdicts
of the latest run that processed it.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from pairsmith.flows.engine.run import Batch, Output, Run, RunSpec, RunSummary, declare
from pairsmith.models.failures import failure_reason
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.models.proposers.pair_proposer import PairProposal, PairProposer
from pairsmith.storage.ids import stable_id
from pairsmith.storage.pair_images import open_image
from pairsmith.storage.schemas import PairRow, RegionRow, SampleRow, utc_now
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.sample_builders import grounding_sample, split_for
from pairsmith.tasks.stage import stage

from pairsmith.flows.propose_regions_config import FLOW_NAME, GroundingConfig, ProposeRegionsConfig  # noqa: F401

PROPOSER_NAME = "diffmap"
GROUNDING_METHOD = "med-edit"


# The flow's stages in the order they run and are stored (``align_and_propose``).
PIPELINE = declare(
    FLOW_NAME,
    ("register", "register the after image onto the before image (models/proposers/pair_proposer.py)"),
    ("extent", "drop edits that changed the whole picture"),
    ("region_propose", "propose ranked change regions"),
    ("confidence", "keep the pair if a region reaches min_confidence"),
    ("grounding", "a grounding sample per local med-edit pair (grounding.enabled only)"),
)


class ProposeSummary(RunSummary):
    pairs: int
    aligned: int
    local: int
    global_edits: int
    with_regions: int
    regions: int
    samples: int


def _pair_columns(row: dict, found: PairProposal | None, run_id: str, failed: str = "align_error") -> dict:
    """The alignment and extent columns a run writes on a pair (``found`` None: the proposer failed,
    for the reason ``failed``)."""
    if found is None:
        return dict(row, align_method=None, align_transform=None, align_score=None, align_reason=failed,
                    change_extent=None, change_extent_score=None, change_extent_reason=None, verdict_run_id=run_id)
    a, e = found.alignment, found.extent
    return dict(
        row, align_method=a.method, align_transform=[float(v) for v in a.transform], align_score=a.score,
        align_reason=a.reason, change_extent=e.extent if e else None, change_extent_score=e.score if e else None,
        change_extent_reason=e.reason if e else None, verdict_run_id=run_id,
    )


@stage("register", "extent", "region_propose", "confidence", "grounding")
def align_and_propose(
    align: StageStats, extent: StageStats, propose: StageStats, confidence: StageStats, grounding: StageStats,
    pair_ids: list[str], config: ProposeRegionsConfig, run_id: str,
) -> tuple[list[PairRow], list[RegionRow], list[SampleRow]]:
    """One batch: propose, then one pair row (updated), region rows and samples; counts the stages
    (``grounding`` only when grounding samples are enabled)."""
    store = open_store(config.db)
    columns = list(store.table("pairs").schema.names)
    rows = {r["pair_id"]: r for chunk in store.take("pairs", pair_ids, columns) for r in chunk}
    stats = {s.stage: s for s in (align, extent, propose, confidence, grounding)}
    proposer = PairProposer(config.proposer)
    pairs, regions, samples = [], [], []
    for pid in pair_ids:
        row = rows[pid]
        if row["image_before"] is None or row["image_after"] is None:  # e.g. an import's reason row
            stats["register"].record(Verdict.drop("pair_missing_images"))
            continue
        try:
            found = proposer.propose(open_image(row["image_before"]), open_image(row["image_after"]))
        except Exception as err:  # this pair only: align_error (transient) is retried on a re-run,
            # align_rejected (a degenerate image: it would fail the same way) is not
            reason = failure_reason("align", err)
            get_run_logger().warning("pair %s: proposing failed (%s): %s: %s", pid, reason, type(err).__name__, err)
            pairs.append(PairRow(**_pair_columns(row, None, run_id, reason)))
            stats["register"].record(Verdict.drop(reason))
            continue
        pairs.append(PairRow(**_pair_columns(row, found, run_id)))
        if found.extent is None:
            stats["register"].record(Verdict.drop(found.alignment.reason or "align_no_transform"))
            continue
        stats["register"].record(KEEP)
        if found.extent.extent == "global":
            stats["extent"].record(Verdict.drop(found.extent.reason or "extent_global"))
            continue
        stats["extent"].record(KEEP)
        stats["region_propose"].record(KEEP if found.boxes else Verdict.drop("propose_no_regions"))
        if not found.boxes:
            continue
        kept = []
        for k, (box, confidence, kind, changed) in enumerate(
                zip(found.boxes, found.confidences, found.kinds, found.changed_fraction)):
            ok = confidence >= config.min_confidence
            regions.append(RegionRow(
                region_id=stable_id(pid, run_id, k), pair_id=pid, run_id=run_id, box=box, proposer=PROPOSER_NAME,
                change_type=kind, changed_fraction=changed, confidence=confidence,
                status="kept" if ok else "dropped", reason=None if ok else "confidence_too_low", created_at=utc_now(),
            ))
            if ok:
                kept.append(box)
        stats["confidence"].record(KEEP if kept else Verdict.drop("confidence_too_low"))
        if kept and config.grounding.enabled:
            if row["method"] != GROUNDING_METHOD:
                stats["grounding"].record(Verdict.drop("grounding_not_med_edit"))
                continue
            samples.append(_grounding(row, kept, run_id, config.grounding))
            stats["grounding"].record(KEEP)
    return pairs, regions, samples


def _grounding(row: dict, boxes: list[list[float]], run_id: str, config: GroundingConfig) -> SampleRow:
    """DiG's grounding prompt over a real edit; boxes on the before image, benchmark pairs stay ``bench``."""
    pid = row["pair_id"]
    split = "bench" if row.get("bench_candidate") else split_for(pid, config.splits)
    sample = grounding_sample(
        pair_id=pid, run_id=run_id, method=GROUNDING_METHOD, boxes=boxes, width=row["width"], height=row["height"],
        subset=GROUNDING_METHOD, state_count=False, split=split, category=row.get("edit_category"),
    )
    # one sample per pair *and run*: a second proposer config never overwrites the first one's sample
    return sample.model_copy(update={"sample_id": stable_id(pid, "grounding", GROUNDING_METHOD, run_id)})


def _batches_with_rewritten_pairs(store, run_id: str, every: list[str], written: dict) -> set[str]:
    """Stored batches of the run holding a pair whose row was written after the batch (an import or
    render that made it again): its images may have changed, so its proposal is redone."""
    from pairsmith.flows.engine.resume import stored_spans

    when: dict[str, object] = {}
    for row in store.read("stage_stats", where=f"run_id = {sql_literal(run_id)}",
                          columns=["batch", "created_at"]).to_pylist():
        when[row["batch"]] = min(when.get(row["batch"], row["created_at"]), row["created_at"])
    return {name for name, span in stored_spans(store, run_id).items()
            if any(i < len(every) and written[every[i]] > when[name] for i in span)}


@flow(flow_run_name=pairsmith_run_name, name=FLOW_NAME, description="Align stored pairs, judge the edit's extent and propose the regions that changed.")
def propose_regions(config: ProposeRegionsConfig) -> ProposeSummary:
    store = open_store(config.db)
    store.check_reachable()
    written = {r["pair_id"]: r["created_at"] for r in store.read("pairs", where=config.where(),
                                                                 columns=["pair_id", "created_at"]).to_pylist()}
    every = sorted(written)
    ids = every[: config.limit] if config.limit else every
    # Per pair (pairsmith.flows.engine.resume): a larger --limit or another batch size redoes nothing;
    # a batch with an error, or with a pair written again since (new images), is redone.
    run = Run.start(RunSpec(
        FLOW_NAME, config.db, PIPELINE, config.run_id(), len(ids), config.batch_size, config.legacy_run_id,
        redo=lambda store, run_id: _batches_with_rewritten_pairs(store, run_id, every, written),
        description="proposing regions",
    ), store)

    def propose(batch: Batch) -> Output:
        # a batch redone whole may reach past a smaller --limit
        proposed = batch.step(align_and_propose)([every[i] for i in batch.indices if i < len(every)], config,
                                                 run.run_id)
        pairs, regions, samples = proposed.value
        stages = [s for s in proposed.stats if s.stage != "grounding" or config.grounding.enabled]
        return Output({"pairs": pairs, "regions": regions, "samples": samples}, stages)

    run.execute(propose)
    by = {s.stage: s for s in run.funnel()}

    def kept(stage: str) -> int:
        return by[stage].n_kept if stage in by else 0

    in_run = f"run_id = {sql_literal(run.run_id)}"
    return run.finish(
        ProposeSummary, pairs=len(ids), aligned=kept("register"), local=kept("extent"),
        global_edits=by["extent"].n_dropped if "extent" in by else 0, with_regions=kept("confidence"),
        regions=store.count("regions", f"{in_run} AND status = 'kept'"),
    )
