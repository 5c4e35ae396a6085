"""The med-edit flow: Gemini micro-edits of real photos, aligned captions, QA and MCQ (design.md §4.4).

Per batch of sources, MED's pipeline (§3.1-3.2, Figs. 7-14; ``pairsmith.tasks.med.vlm_steps``): load ->
editability filter -> edit request -> Gemini edit -> CLIP similarity -> caption completion -> edited
image's caption -> difference -> judge 1 -> judge 2 -> rewrite -> records -> one LanceDB commit. After
the last batch, the benchmark (§3.3, ``pairsmith.tasks.med.bench``) is selected and written, and its
MCQ answer letters are balanced. A batch whose stage stats are
stored is skipped on a re-run, and paid edits are cached, so no re-run pays for an edit twice.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from pairsmith.flows.engine.batching import batch_name
from pairsmith.flows.engine.resume import (
    batches_holding, changed_since, plan_resume, resolve_run_id, retry_indices, stored_spans,
)
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel
from pairsmith.flows.med_edit_config import FLOW_NAME, MedEditConfig
from pairsmith.flows.engine.progress import RunProgress
from pairsmith.flows.engine.run_outcome import batches_with_errors, is_error_reason
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.flow_runs import claim_run
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.models.clip_scorer import ClipScorer
from pairsmith.models.gemini_editor import GeminiEditor
from pairsmith.models.role_chat import RoleChat
from pairsmith.storage.ids import stable_id
from pairsmith.storage.schemas import SampleRow
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.tasks.med.records import build_med_records
from pairsmith.tasks.med.edit_images import RequestBudget, edit_images
from pairsmith.tasks.med.load_sources import load_sources
from pairsmith.tasks.med.samples import balance_letters
from pairsmith.tasks.med.score_similarity import score_similarity
from pairsmith.tasks.med.sources import list_sources
from pairsmith.tasks.med.bench import build_bench
from pairsmith.tasks.med.vlm_steps import (
    med_caption, med_complete, med_difference, med_filter, med_judge_1, med_judge_2, med_request, med_rewrite,
)
from pairsmith.tasks.write_batch import write_batch


class MedRunSummary(BaseModel):
    run_id: str
    db: str
    sources: int
    batches: int
    batches_resumed: int
    pairs_kept: int
    pairs_dropped: int
    samples: int
    bench_items: int
    requests_sent: int
    stopped_early: str | None
    seconds: float


def _source_to_retry(refs, pair_ids: list[str], retry_failed: bool):
    """Which dropped rows a re-run redoes: a source photo dropped at ``source`` whose file changed or
    appeared since (``resume.changed_since``), or with ``retry_failed`` any source drop and any error."""
    path_of = {pid: ref.path for ref, pid in zip(refs, pair_ids)}

    def should(row: dict) -> bool:
        if retry_failed and (row["drop_stage"] == "source" or is_error_reason(row["drop_reason"])):
            return True
        return row["drop_stage"] == "source" and changed_since(
            path_of.get(row["pair_id"]), row["created_at"], missing_before=row["drop_reason"] == "source_missing")

    return should


@task(name="balance-mcq-letters", cache_policy=NO_CACHE)
def balance_mcq_letters(db_uri: str, run_id: str) -> int:
    """Re-deal the right letters of the run's MCQs, per split, so each letter is right equally often."""
    store = open_store(db_uri)
    rows = store.read("samples", where=f"run_id = {sql_literal(run_id)} AND task = 'med-mcq'").to_pylist()
    by_split: dict[str, list[SampleRow]] = {}
    for row in rows:
        by_split.setdefault(row["split"], []).append(SampleRow(**row))
    balanced = [s for group in by_split.values() for s in balance_letters(group)]
    store.upsert("samples", balanced)
    return len(balanced)


@flow(flow_run_name=pairsmith_run_name, name=FLOW_NAME, description="Gemini micro-edits of photos with aligned captions, QA and MCQ samples.")
def med_edit(config: MedEditConfig) -> MedRunSummary:
    start = time.perf_counter()
    logger = get_run_logger()
    content_key = config.content_key()
    store = open_store(config.db)
    store.check_reachable()
    refs = list_sources(config.sources, store)
    run_id, legacy = resolve_run_id(store, FLOW_NAME, config.run_id(), config.legacy_run_id,
                                    (len(refs), config.batch_size))
    pair_ids = [stable_id(FLOW_NAME, content_key, ref.source_id) for ref in refs]
    claim_run(run_id, store, FLOW_NAME, len(refs))  # a flow run of it killed with -9: marked CRASHED in Prefect
    # Per item (pairsmith.flows.engine.resume): sources already counted are skipped, whatever the
    # batch size; batches with errors, or with a source whose file changed since, are redone.
    retry = retry_indices(store, run_id, pair_ids, _source_to_retry(refs, pair_ids, config.retry_failed))
    # transient errors are retried; refused edits only when asked (editor.retry_rejected)
    refused = ("edit_rejected",) if config.editor.retry_rejected else ()
    redo = batches_with_errors(store, run_id, also=refused) | batches_holding(stored_spans(store, run_id), retry)
    work = plan_resume(store, run_id, len(refs), config.batch_size, redo=redo, legacy=legacy)
    pending = work.todo
    mllm, llm, clip, editor = (RoleChat(config.mllm), RoleChat(config.llm), ClipScorer(config.clip),
                               GeminiEditor(config.editor))
    # On a GPU worker the model stages take a slot of the `tag:gpu` concurrency limit.
    mllm_gpu = config.mllm.backend == "transformers" and config.mllm.runtime.on_gpu()
    llm_gpu = config.llm.backend == "transformers" and config.llm.runtime.on_gpu()
    clip_gpu = config.clip.runtime.on_gpu()
    model_ids = {"mllm": config.mllm.model_id, "llm": config.llm.model_id, "editor": config.editor.model_id,
                 "clip": config.clip.model_name, "answer_writer": config.answer_writer.model_id}
    budget = RequestBudget(config.request_budget)
    stopped: str | None = None
    with RunProgress(key=f"{FLOW_NAME}-progress", total=work.done_items + work.items_to_do, done=work.done_items,
                     description="editing photos", terminal=config.show_progress) as progress:
        for indices in pending:
            name = batch_name(indices)
            items, source_stats = load_sources.with_options(task_run_name=f"load-sources-{name}")(
                [refs[i] for i in indices], [pair_ids[i] for i in indices], config.db, config.image_limits)
            stages = [source_stats]
            stages += batch_step(med_filter, name, mllm_gpu)(items, mllm).stats
            stages += batch_step(med_request, name, mllm_gpu)(items, mllm).stats
            edit = batch_step(edit_images, name)(items, editor, config.db, budget)
            if edit.value:
                stopped = "edit request budget exhausted; re-run to continue (paid edits are cached)"
                logger.warning("run %s stops early: %s", run_id, stopped)
                break
            stages += edit.stats
            stages += batch_step(score_similarity, name, clip_gpu)(items, clip, config.similarity).stats
            stages += batch_step(med_complete, name, mllm_gpu)(items, mllm).stats
            stages += batch_step(med_caption, name, mllm_gpu)(items, mllm).stats
            stages += batch_step(med_difference, name, llm_gpu)(items, llm).stats
            stages += batch_step(med_judge_1, name, mllm_gpu)(items, mllm).stats
            stages += batch_step(med_judge_2, name, mllm_gpu)(items, mllm).stats
            stages += batch_step(med_rewrite, name, llm_gpu)(items, llm).stats
            built = batch_step(build_med_records, name)(items, run_id, model_ids, config.splits)
            pairs, samples = built.value
            batch_step(write_batch, name)(
                config.db, run_id, FLOW_NAME, name, {"pairs": pairs, "samples": samples},
                [*stages, *built.stats],
            )
            progress.advance(len(indices))
            progress.flush()
    bench = None if stopped else build_bench(config.db, run_id, FLOW_NAME, RoleChat(config.answer_writer), config.bench)
    balance_mcq_letters(config.db, run_id)
    funnel = run_funnel(store, run_id)
    if funnel:
        publish_dropoff(run_id, funnel)
    run_filter = f"run_id = {sql_literal(run_id)}"
    return MedRunSummary(
        run_id=run_id, db=config.db, sources=len(refs), batches=work.stored_batches + len(pending) - len(work.redone),
        batches_resumed=work.stored_batches - len(work.redone),
        pairs_kept=store.count("pairs", f"{run_filter} AND status = 'kept'"),
        pairs_dropped=store.count("pairs", f"{run_filter} AND status = 'dropped'"),
        samples=store.count("samples", run_filter),
        bench_items=sum(len(ids) for ids in bench.selected.values()) if bench else 0,
        requests_sent=config.request_budget - budget.left, stopped_early=stopped,
        seconds=round(time.perf_counter() - start, 3),
    )
