"""The recaption flow: kept pairs of earlier runs captioned again by another VLM (docs/adding.md's example).

A caption-only pass: per batch of the selected pairs (``RecaptionConfig.where``: kept pairs of the
runs ``runs``, sorted by pair id) one ``recaption_pairs`` task (``tasks/recaption.py``) asks the model
and the engine commits the batch's new ``diff-caption`` samples with its stage stats. Everything else
is the engine's (``flows/engine/run.py``): the store check, the run id, resume (a re-run adds nothing;
a batch with a ``recaption_error`` is redone; a larger ``limit`` captions only the pairs the run
lacks), batch names, progress, the single commit per batch, the funnel and the summary.

Pairs are indexed by their sorted ids, as propose-regions does: pairs added to a source run after
this run started shift the indices of later ones, so re-caption a source run once it is finished.
"""

from __future__ import annotations

from prefect import flow

from pairsmith.flows.engine.run import Batch, Output, Run, RunSpec, RunSummary
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.flows.recaption_config import FLOW_NAME, PIPELINE, RecaptionConfig
from pairsmith.models.vlm_chat import VlmChat
from pairsmith.storage.store import open_store
from pairsmith.tasks.recaption import recaption_pairs


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
