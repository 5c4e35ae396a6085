"""The recaption flow: kept pairs of earlier runs captioned again by another VLM (docs/adding.md's example).

A caption-only pass, and the whole of it: the config and pipeline (``flows/recaption_config.py``),
the step and the flow below, the example ``configs/recaption.yaml`` and one ``FLOWS`` line. Per batch
of the selected pairs (``RecaptionConfig.where``: kept pairs of the runs ``runs``, sorted by pair id)
one ``recaption_pairs`` task asks the model and the engine commits the batch's new samples with its
stage stats. Everything else is the engine's (``flows/engine/run.py``): the store check, the run id,
resume (a re-run adds nothing; a batch with a ``recaption_error`` is redone; a larger ``limit``
captions only the pairs the run lacks), batch names, progress, the single commit per batch, the
funnel and the summary.

The step asks each pair the question its ``diff-caption`` samples ask (``sample_builders.
diff_caption_sample`` picks one of ``DIFF_CAPTION_QUESTIONS`` per pair) with its before and after
images, in one batched ``VlmChat.generate_batch`` call; the answer becomes a new ``diff-caption``
sample of this run (subset ``recaption``, id ``stable_id(pair_id, "diff-caption", run_id)``, so a
second model's run never overwrites the first's), in the split of the pair's earlier caption samples
(a pair never crosses from test to train) and with their category. Stages (``PIPELINE``):

* ``recaption-images``: a pair row without both images is dropped, ``recaption_missing_images``;
* ``recaption-caption``: an answer with no word in it is dropped, ``recaption_empty``; a model call
  that raised for the pair is dropped ``recaption_error`` (transient: the engine redoes its batch on
  the next run) or ``recaption_rejected`` (deterministic, ``models.failures``).

The source pairs belong to another run, so this run writes no pair rows: a dropped pair is its
reason counted in the batch's ``stage_stats`` row (``drop_reasons``), which the funnel, ``pairsmith
stats`` and resume read. Pairs are indexed by their sorted ids, as propose-regions does: pairs added
to a source run after this run started shift the indices of later ones, so re-caption a finished run.
"""

from __future__ import annotations

import re

from prefect import flow

from pairsmith.flows.engine.run import Batch, Output, Run, RunSpec, RunSummary
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.flows.recaption_config import FLOW_NAME, PIPELINE, RecaptionConfig
from pairsmith.models.failures import failure_reason
from pairsmith.models.adapters.vlm_chat import VlmChat, VlmRequest
from pairsmith.storage.ids import stable_id
from pairsmith.storage.pair_images import open_image
from pairsmith.storage.schemas import SampleRow
from pairsmith.storage.store import open_store, sql_in
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.sample_builders import TWO_IMAGES, SplitFractions, diff_caption_sample, split_for
from pairsmith.tasks.stage import call_per_item, stage

SUBSET = "recaption"
_WORD = re.compile(r"\w")


def caption_text(answer: str | None) -> str | None:
    """The model's answer on one line (whitespace collapsed); None when it has no word character."""
    text = " ".join((answer or "").split())
    return text if _WORD.search(text) else None


def _earlier_samples(store, pair_ids: list[str], run_id: str) -> dict[str, dict]:
    """Per pair, the split and category of its first earlier diff-caption sample (by sample id)."""
    rows = store.read("samples", where=f"{sql_in('pair_id', pair_ids)} AND task = 'diff-caption'",
                      columns=["sample_id", "pair_id", "run_id", "split", "category"]).to_pylist()
    out: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: r["sample_id"]):
        if row["run_id"] != run_id:
            out.setdefault(row["pair_id"], row)
    return out


@stage("recaption-images", "recaption-caption")
def recaption_pairs(images: StageStats, caption: StageStats, pair_ids: list[str], db: str, vlm: VlmChat,
                    run_id: str) -> list[SampleRow]:
    """One ``diff-caption`` sample per pair of ``pair_ids`` whose answer has words; ids are
    ``stable_id(pair_id, "diff-caption", run_id)``, so a second model's run never overwrites the first's."""
    store = open_store(db)
    rows = {r["pair_id"]: r for chunk in store.take("pairs", pair_ids, ["method", "dataset", "image_before",
                                                                        "image_after"]) for r in chunk}
    earlier = _earlier_samples(store, pair_ids, run_id)
    asked: list[tuple[SampleRow, VlmRequest]] = []
    for pid in pair_ids:
        row = rows.get(pid)
        if row is None or row["image_before"] is None or row["image_after"] is None:
            images.record(Verdict.drop("recaption_missing_images"))
            continue
        images.record(KEEP)
        before = earlier.get(pid, {})
        sample = diff_caption_sample(
            pair_id=pid, run_id=run_id, method=row["method"], sentences=[], boxes=[], subset=SUBSET,
            split=before.get("split") or split_for(pid, SplitFractions()), category=before.get("category"),
            dataset=row["dataset"],
        ).model_copy(update={"sample_id": stable_id(pid, "diff-caption", run_id)})
        question = sample.conversation[0].content.removeprefix(TWO_IMAGES)
        asked.append((sample, VlmRequest((open_image(row["image_before"]), open_image(row["image_after"])), question)))
    failed: dict[int, str] = {}
    answers = call_per_item(lambda reqs: vlm.generate_batch([r for _, r in reqs]), list(enumerate(r for _, r in asked)),
                            lambda item, err: failed.__setitem__(item[0], failure_reason("recaption", err)))
    samples = []
    for k, ((sample, _), answer) in enumerate(zip(asked, answers)):
        text = None if k in failed else caption_text(answer)
        if text is None:
            caption.record(Verdict.drop(failed.get(k, "recaption_empty")))
            continue
        caption.record(KEEP)
        conversation = [sample.conversation[0], sample.conversation[1].model_copy(update={"content": text})]
        samples.append(sample.model_copy(update={"answer": text, "conversation": conversation}))
    return samples


class RecaptionSummary(RunSummary):
    pairs: int  # selected by this invocation (kept pairs of the source runs, up to limit)
    samples: int  # diff-caption samples of this run
    pairs_failed: int  # dropped because the model call raised (recaption_error)


@flow(flow_run_name=pairsmith_run_name, name=FLOW_NAME, description="Caption kept pairs of earlier runs again with another VLM.")
def recaption(config: RecaptionConfig) -> RecaptionSummary:
    store = open_store(config.db)
    store.check_reachable()
    every = sorted(r["pair_id"] for r in store.read("pairs", where=config.where(), columns=["pair_id"]).to_pylist())
    ids = every[: config.limit] if config.limit else every
    run = Run.start(RunSpec(FLOW_NAME, config.db, PIPELINE, config.run_id(), len(ids), config.batch_size,
                            description="re-captioning pairs", terminal=config.show_progress), store)
    vlm = VlmChat(config.vlm)  # loaded on the first batch that asks it: a finished run loads nothing

    def caption(batch: Batch) -> Output:
        made = batch.step(recaption_pairs, config.vlm.runtime.on_gpu())(
            [every[i] for i in batch.indices if i < len(every)], config.db, vlm, run.run_id)
        return Output({"samples": made.value}, made.stats)

    run.execute(caption)
    return run.finish(RecaptionSummary, pairs=len(ids))
