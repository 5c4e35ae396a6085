"""The med-edit flow: Gemini micro-edits of real photos, aligned captions, QA and MCQ (design.md §4.4).

Per batch of sources, MED's pipeline (§3.1-3.2, Figs. 7-14; ``pairsmith.tasks.med.vlm_steps``): load ->
editability filter -> edit request -> Gemini edit -> CLIP similarity -> caption completion -> edited
image's caption -> difference -> judge 1 -> judge 2 -> rewrite -> records -> one LanceDB commit. After
the last batch, the benchmark (§3.3, ``pairsmith.tasks.med.bench``) is selected and written, and its
MCQ answer letters are balanced. A batch whose stage stats are
stored is skipped on a re-run, and paid edits are cached, so no re-run pays for an edit twice.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from pairsmith.flows.engine.resume import batches_holding, changed_since, retry_indices, stored_spans
from pairsmith.flows.engine.run import Batch, Output, Run, RunSpec, RunSummary, declare
from pairsmith.flows.med_edit_config import FLOW_NAME, MedEditConfig
from pairsmith.flows.engine.run_outcome import is_error_reason
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.models.adapters.clip_scorer import ClipScorer
from pairsmith.models.adapters.gemini_editor import GeminiEditor
from pairsmith.models.adapters.role_chat import RoleChat
from pairsmith.storage.ids import stable_id
from pairsmith.storage.schemas import SampleRow
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.tasks.med.records import build_med_records
from pairsmith.tasks.med.edit_images import RequestBudget, edit_images
from pairsmith.tasks.med.load_sources import load_sources
from pairsmith.tasks.med.samples import balance_letters
from pairsmith.tasks.med.score_similarity import score_similarity
from pairsmith.tasks.med.sources import list_sources
from pairsmith.tasks.med.bench import BENCH_STAGE, build_bench
from pairsmith.tasks.med.vlm_steps import (
    med_caption, med_complete, med_difference, med_filter, med_judge_1, med_judge_2, med_request, med_rewrite,
)

# The flow's stages in the order they are stored (tasks/med/; MED §3.1-3.3): the one place it is written.
PIPELINE = declare(
    FLOW_NAME,
    ("source", "the source photo is there, readable and within the image limits"),
    (med_filter.name, "the MLLM judges the photo editable"),
    (med_request.name, "the MLLM writes the edit request"),
    ("edit", "Gemini edits the photo"),
    ("similarity", "CLIP similarity of the edit to the original"),
    (med_complete.name, "the MLLM completes the source caption"),
    (med_caption.name, "the MLLM captions the edited image"),
    (med_difference.name, "the LLM states the difference"),
    (med_judge_1.name, "judge 1"),
    (med_judge_2.name, "judge 2"),
    (med_rewrite.name, "the LLM rewrites the difference"),
    ("med_samples", "the pair's records, QA and MCQ samples"),
    (BENCH_STAGE, "the run's benchmark selection (its own batch, after the last)"),
)
BALANCE_BATCH = "balance-mcq-letters"  # the run-wide pass after the last batch (no stage stats)


class MedRunSummary(RunSummary):
    sources: int
    pairs_kept: int
    pairs_dropped: int
    samples: int
    bench_items: int
    requests_sent: int
    stopped_early: str | None


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
def balance_mcq_letters(db_uri: str, run_id: str) -> list[SampleRow]:
    """The run's MCQs with their right letters re-dealt, per split, so each letter is right equally
    often (the caller commits them through the single writer)."""
    store = open_store(db_uri)
    rows = store.read("samples", where=f"run_id = {sql_literal(run_id)} AND task = 'med-mcq'").to_pylist()
    by_split: dict[str, list[SampleRow]] = {}
    for row in rows:
        by_split.setdefault(row["split"], []).append(SampleRow(**row))
    return [s for group in by_split.values() for s in balance_letters(group)]


@flow(flow_run_name=pairsmith_run_name, name=FLOW_NAME, description="Gemini micro-edits of photos with aligned captions, QA and MCQ samples.")
def med_edit(config: MedEditConfig) -> MedRunSummary:
    content_key = config.content_key()
    store = open_store(config.db)
    store.check_reachable()
    refs = list_sources(config.sources, store)
    pair_ids = [stable_id(FLOW_NAME, content_key, ref.source_id) for ref in refs]

    def holding_retries(store, run_id: str) -> set[str]:
        retry = retry_indices(store, run_id, pair_ids, _source_to_retry(refs, pair_ids, config.retry_failed))
        return batches_holding(stored_spans(store, run_id), retry)

    # Per item (pairsmith.flows.engine.resume): sources already counted are skipped, whatever the
    # batch size; batches with errors, or with a source whose file changed since, are redone;
    # transient errors are retried, refused edits only when asked (editor.retry_rejected).
    run = Run.start(RunSpec(
        FLOW_NAME, config.db, PIPELINE, config.run_id(), len(refs), config.batch_size, config.legacy_run_id,
        redo=holding_retries, error_also=("edit_rejected",) if config.editor.retry_rejected else (),
        description="editing photos", terminal=config.show_progress,
    ), store)
    run_id = run.run_id
    mllm, llm, clip, editor = (RoleChat(config.mllm), RoleChat(config.llm), ClipScorer(config.clip),
                               GeminiEditor(config.editor))
    # On a GPU worker the model stages take a slot of the `tag:gpu` concurrency limit.
    mllm_gpu = config.mllm.backend == "transformers" and config.mllm.runtime.on_gpu()
    llm_gpu = config.llm.backend == "transformers" and config.llm.runtime.on_gpu()
    clip_gpu = config.clip.runtime.on_gpu()
    model_ids = {"mllm": config.mllm.model_id, "llm": config.llm.model_id, "editor": config.editor.model_id,
                 "clip": config.clip.model_name, "answer_writer": config.answer_writer.model_id}
    budget = RequestBudget(config.request_budget)

    def make(batch: Batch) -> Output | None:
        name, indices = batch.name, batch.indices
        items, source_stats = load_sources.with_options(task_run_name=f"load-sources-{name}")(
            [refs[i] for i in indices], [pair_ids[i] for i in indices], config.db, config.image_limits)
        stages = [source_stats]
        stages += batch.step(med_filter, mllm_gpu)(items, mllm).stats
        stages += batch.step(med_request, mllm_gpu)(items, mllm).stats
        edit = batch.step(edit_images)(items, editor, config.db, budget)
        if edit.value:
            run.stop("edit request budget exhausted; re-run to continue (paid edits are cached)")
            return None
        stages += edit.stats
        stages += batch.step(score_similarity, clip_gpu)(items, clip, config.similarity).stats
        stages += batch.step(med_complete, mllm_gpu)(items, mllm).stats
        stages += batch.step(med_caption, mllm_gpu)(items, mllm).stats
        stages += batch.step(med_difference, llm_gpu)(items, llm).stats
        stages += batch.step(med_judge_1, mllm_gpu)(items, mllm).stats
        stages += batch.step(med_judge_2, mllm_gpu)(items, mllm).stats
        stages += batch.step(med_rewrite, llm_gpu)(items, llm).stats
        built = batch.step(build_med_records)(items, run_id, model_ids, config.splits)
        pairs, samples = built.value
        return Output({"pairs": pairs, "samples": samples}, [*stages, *built.stats])

    run.execute(make)
    bench = None if run.stopped else build_bench(config.db, run_id, FLOW_NAME, RoleChat(config.answer_writer),
                                                 config.bench)
    run.write(BALANCE_BATCH, {"samples": balance_mcq_letters(config.db, run_id)})
    return run.finish(MedRunSummary, sources=len(refs), requests_sent=config.request_budget - budget.left,
                      bench_items=sum(len(ids) for ids in bench.selected.values()) if bench else 0)
