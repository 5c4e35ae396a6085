"""The import-med-bench flow: the published MED benchmark as stored pairs and ``med-mcq`` samples.

Every entry becomes a ``med-edit`` pair (origin ``med-bench:<json file>#<index>``) holding the
original photo and its Gemini edit as published, and its question becomes a ``med-mcq`` sample in
the ``bench`` split with the options, answer letter and category as given. Entries that do not fit
the format and images that are missing or unreadable become dropped pairs with a reason. Ids come
from the image names and the question, so importing twice adds nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.ids import stable_hash, stable_id
from pairsmith.storage.image_folder import ImageLimits, check_image_file
from pairsmith.storage.schemas import Message, PairRow, SampleRow, utc_now
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.tasks.med.bench_items import BadEntry, BenchEntry, read_med_json, resolve_image
from pairsmith.tasks.med.samples import MCQ_INSTRUCTION
from pairsmith.tasks.sample_builders import TWO_IMAGES
from pairsmith.tasks.write_batch import write_batch

FLOW_NAME = "import-med-bench"
METHOD = "med-edit"
BATCH = "import"


class ImportMedBenchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI")
    json_path: str = Field(description="MED_bench.json: a list of {image_name, edited_image_name, type, ...}")
    images_dir: str | None = Field(None, description="folder the image names are relative to; default: the JSON's")
    image_limits: ImageLimits = Field(default_factory=ImageLimits, description="images outside these are dropped")

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    def run_id(self) -> str:
        content = Path(self.json_path).read_bytes()
        return f"{FLOW_NAME}-{stable_hash([stable_hash(content.decode(errors='replace')), self.images_dir], 12)}"


class ImportSummary(BaseModel):
    run_id: str
    db: str
    entries: int
    pairs_kept: int
    pairs_dropped: int
    samples: int
    categories: dict[str, int]
    seconds: float


def bench_pair_id(entry_names: tuple[str, str]) -> str:
    return stable_id("med-bench", *entry_names)


@task(name="import-entries", cache_policy=NO_CACHE)
def import_entries(config: ImportMedBenchConfig, run_id: str) -> tuple[list[PairRow], list[SampleRow], list[StageStats]]:
    json_path = Path(config.json_path)
    images_dir = Path(config.images_dir) if config.images_dir else None
    read_stats, load_stats, sample_stats = StageStats("read"), StageStats("load"), StageStats("samples")
    start = time.perf_counter()
    pairs: list[PairRow] = []
    samples: list[SampleRow] = []
    for entry in read_med_json(json_path):
        origin = f"med-bench:{json_path.name}#{entry.index}"
        if isinstance(entry, BadEntry):
            read_stats.record(Verdict.drop(entry.reason))
            pairs.append(_dropped(stable_id("med-bench-entry", json_path.name, entry.index), run_id, origin,
                                  "read", entry.reason, entry.detail))
            continue
        read_stats.record(KEEP)
        pair_id = bench_pair_id((entry.image_name, entry.edited_image_name))
        images, problem = [], None
        for name in (entry.image_name, entry.edited_image_name):
            path = resolve_image(name, json_path.parent, images_dir)
            if path is None:
                problem = ("load_missing_image", f"{name}: not found next to the JSON or in --images")
                break
            verdict, detail, facts = check_image_file(path, config.image_limits)
            if not verdict.keep:
                problem = ("load_" + verdict.reason.removeprefix("source_"), f"{name}: {detail}")
                break
            images.append(facts)
        if problem:
            load_stats.record(Verdict.drop(problem[0]))
            pairs.append(_dropped(pair_id, run_id, origin, "load", *problem, category=entry.category))
            continue
        load_stats.record(KEEP)
        before, after = images
        pairs.append(PairRow(
            pair_id=pair_id, run_id=run_id, method=METHOD, image_before=before["data"], image_after=after["data"],
            width=before["width"], height=before["height"], edit_category=entry.category, origin=origin,
            model_ids=json.dumps({"source": "MED benchmark (DOCCI / Visual Genome photos, Gemini edits)"}),
            bench_candidate=True, status="kept", created_at=utc_now(),
        ))
        samples.append(_mcq(entry, pair_id, run_id))
        sample_stats.record(KEEP)
    for s in (read_stats, load_stats, sample_stats):
        s.seconds = time.perf_counter() - start
    return pairs, samples, [read_stats, load_stats, sample_stats]


def _mcq(entry: BenchEntry, pair_id: str, run_id: str) -> SampleRow:
    prompt = TWO_IMAGES + entry.question + "\n" + "\n".join(entry.options) + "\n" + MCQ_INSTRUCTION
    return SampleRow(
        sample_id=stable_id(pair_id, "med-mcq", entry.question), pair_id=pair_id, run_id=run_id, method=METHOD,
        task="med-mcq",
        conversation=[Message(role="user", content=prompt), Message(role="assistant", content=entry.answer)],
        answer=entry.answer, options=list(entry.options), category=entry.category, split="bench",
        created_at=utc_now(),
    )


def _dropped(pair_id: str, run_id: str, origin: str, stage: str, reason: str, detail: str,
             category: str | None = None) -> PairRow:
    return PairRow(pair_id=pair_id, run_id=run_id, method=METHOD, width=0, height=0, origin=origin,
                   edit_category=category, status="dropped", drop_stage=stage, drop_reason=reason,
                   drop_detail=detail, created_at=utc_now())


@flow(name=FLOW_NAME, description="Store the MED benchmark's photo pairs and multiple-choice questions.")
def import_med_bench(config: ImportMedBenchConfig) -> ImportSummary:
    start = time.perf_counter()
    run_id = config.run_id()
    store = open_store(config.db)
    store.check_reachable()
    pairs, samples, stages = import_entries(config, run_id)
    if BATCH not in store.completed_batches(run_id):
        write_batch.with_options(task_run_name="write-batch-import")(
            config.db, run_id, FLOW_NAME, BATCH, {"pairs": pairs, "samples": samples}, stages)
    publish_dropoff(run_id, run_funnel(store, run_id))
    run_filter = f"run_id = {sql_literal(run_id)}"
    categories: dict[str, int] = {}
    for s in store.read("samples", where=run_filter, columns=["category"]).to_pylist():
        categories[s["category"]] = categories.get(s["category"], 0) + 1
    return ImportSummary(
        run_id=run_id, db=config.db, entries=stages[0].n_in,
        pairs_kept=store.count("pairs", f"{run_filter} AND status = 'kept'"),
        pairs_dropped=store.count("pairs", f"{run_filter} AND status = 'dropped'"),
        samples=store.count("samples", run_filter), categories=dict(sorted(categories.items())),
        seconds=round(time.perf_counter() - start, 3),
    )
