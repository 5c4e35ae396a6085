"""The propose-regions flow: boxes where stored pairs differ, for pairs that came without any.

Edited photos (MED's Gemini edits, the imported MED benchmark) arrive as two images of different
size and framing and no boxes. Per batch of stored pairs: align the after image onto the before
image's frame (``pairsmith.models.pair_alignment``), propose changed regions on the aligned pair (the
weight-free diff-map proposer by default, FastSAM as an option), and store the boxes in
before-image pixels as ``regions`` of this run, with the alignment (method, transform, score, or
the reason it failed) on the pair. Work happens at ``work_side`` pixels; boxes are scaled back.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.flows.engine.batching import batch_name, batch_ranges
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel
from pairsmith.flows.engine.run_outcome import batches_with_errors
from pairsmith.models.diffmap_proposer import DiffMapConfig, DiffMapProposer
from pairsmith.models.pair_alignment import AlignConfig, align_pair, warp_onto_before
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.ids import stable_hash, stable_id
from pairsmith.storage.pair_images import open_image
from pairsmith.storage.schemas import PairRow, RegionRow, utc_now
from pairsmith.storage.store import open_store, sql_in, sql_literal
from pairsmith.tasks.write_batch import write_batch

FLOW_NAME = "propose-regions"
# JPEG photos re-rendered by an editor differ a little everywhere: a higher, adaptive threshold.
PHOTO_DIFFMAP = DiffMapConfig(diff_threshold="otsu", otsu_floor=25.0, blur_px=5, residual_min_px=400)


class ProposeRegionsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI")
    methods: list[str] = Field(default_factory=lambda: ["med-edit"], description="pairs of these pipelines")
    run_ids: list[str] = Field(default_factory=list, description="only pairs of these runs; empty = all")
    only_kept: bool = True
    limit: int | None = Field(None, ge=1)
    work_side: int = Field(640, ge=64, le=4096, description="longer side the pair is aligned and compared at")
    align: AlignConfig = Field(default_factory=AlignConfig)
    proposer: Literal["diffmap"] = "diffmap"
    diffmap: DiffMapConfig = Field(default_factory=lambda: PHOTO_DIFFMAP)
    max_boxes: int = Field(10, ge=1, le=100, description="boxes kept per pair, in the proposer's order")
    batch_size: int = Field(16, ge=1, le=1000)

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    def where(self) -> str:
        clauses = [sql_in("method", self.methods)]
        if self.run_ids:
            clauses.append(sql_in("run_id", self.run_ids))
        if self.only_kept:
            clauses.append("status = 'kept'")
        clauses.append("image_before IS NOT NULL AND image_after IS NOT NULL")
        return " AND ".join(clauses)

    def run_id(self) -> str:
        content = self.model_dump(mode="json", exclude={"db", "batch_size"})
        return f"{FLOW_NAME}-{stable_hash(content, 12)}"


class ProposeSummary(BaseModel):
    run_id: str
    pairs: int
    aligned: int
    with_regions: int
    regions: int
    seconds: float


def _scaled(img, side: int):
    s = min(1.0, side / max(img.size))
    return img if s == 1.0 else img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))))


@task(name="align-and-propose", cache_policy=NO_CACHE)
def align_and_propose(
    pair_ids: list[str], config: ProposeRegionsConfig, run_id: str,
) -> tuple[list[PairRow], list[RegionRow], StageStats, StageStats]:
    store = open_store(config.db)
    rows = {r["pair_id"]: r for r in store.read("pairs", where=sql_in("pair_id", pair_ids)).to_pylist()}
    align_stats, propose_stats = StageStats("align"), StageStats("propose")
    start = time.perf_counter()
    proposer = DiffMapProposer(config.diffmap)
    pairs, regions, aligned = [], [], []
    for pid in pair_ids:
        row = rows[pid]
        before_full, after_full = open_image(row["image_before"]), open_image(row["image_after"])
        before, after = _scaled(before_full, config.work_side), _scaled(after_full, config.work_side)
        try:
            alignment = align_pair(before, after, config.align)
        except Exception as err:  # OpenCV on a degenerate image: this pair only, retried on a re-run
            get_run_logger().warning("pair %s: alignment failed: %s: %s", pid, type(err).__name__, err)
            row.update(align_method=None, align_transform=None, align_score=None, align_reason="align_error")
            align_stats.record(Verdict.drop("align_error"))
            pairs.append(PairRow(**row))
            continue
        # The work-size transform, expressed between the full-size images.
        to_full = np.diag([before_full.width / before.width, before_full.height / before.height, 1.0])
        from_full = np.diag([after.width / after_full.width, after.height / after_full.height, 1.0])
        full = to_full @ alignment.matrix() @ from_full
        row.update(align_method=alignment.method, align_transform=[float(v) for v in full.ravel()],
                   align_score=alignment.score, align_reason=alignment.reason)
        pairs.append(PairRow(**row))
        align_stats.record(KEEP if alignment.ok else Verdict.drop(alignment.reason))
        if alignment.ok:
            aligned.append((pid, before, warp_onto_before(before, after, alignment), to_full))
    proposals = proposer.propose_batch([(b, a) for _, b, a, _ in aligned]) if aligned else []
    for (pid, _, _, to_full), found in zip(aligned, proposals):
        sx, sy = to_full[0, 0], to_full[1, 1]
        boxes = found.boxes[: config.max_boxes]
        propose_stats.record(KEEP if boxes else Verdict.drop("propose_no_regions"))
        for k, ((x1, y1, x2, y2), kind, changed) in enumerate(zip(boxes, found.kinds, found.changed_fraction)):
            regions.append(RegionRow(
                region_id=stable_id(pid, run_id, k), pair_id=pid, run_id=run_id,
                box=[x1 * sx, y1 * sy, x2 * sx, y2 * sy], proposer=config.proposer,
                change_type=kind, changed_fraction=changed, status="kept", created_at=utc_now(),
            ))
    align_stats.seconds = propose_stats.seconds = time.perf_counter() - start
    return pairs, regions, align_stats, propose_stats


@flow(name=FLOW_NAME, description="Align stored pairs and propose the regions where they differ.")
def propose_regions(config: ProposeRegionsConfig) -> ProposeSummary:
    start = time.perf_counter()
    run_id = config.run_id()
    store = open_store(config.db)
    store.check_reachable()
    ids = sorted(store.read("pairs", where=config.where(), columns=["pair_id"]).column("pair_id").to_pylist())
    ids = ids[: config.limit] if config.limit else ids
    batches = batch_ranges(len(ids), config.batch_size)
    done = store.completed_batches(run_id) - batches_with_errors(store, run_id)
    for indices in batches:
        name = batch_name(indices)
        if name in done:
            continue
        pairs, regions, align_stats, propose_stats = align_and_propose.with_options(
            task_run_name=f"align-and-propose-{name}")([ids[i] for i in indices], config, run_id)
        write_batch.with_options(task_run_name=f"write-batch-{name}")(
            config.db, run_id, FLOW_NAME, name, {"pairs": pairs, "regions": regions}, [align_stats, propose_stats])
    funnel = run_funnel(store, run_id)
    if funnel:
        publish_dropoff(run_id, funnel)
    by = {s.stage: s for s in funnel}
    return ProposeSummary(
        run_id=run_id, pairs=len(ids), aligned=by["align"].n_kept if "align" in by else 0,
        with_regions=by["propose"].n_kept if "propose" in by else 0,
        regions=store.count("regions", f"run_id = {sql_literal(run_id)}"), seconds=round(time.perf_counter() - start, 3),
    )
