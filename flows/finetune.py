"""The finetune flow: LoRA SFT or GRPO of a VLM on stored samples (design.md §4.5).

1. Pin the ``samples`` / ``pairs`` table versions (tagging the one read) so the run can be traced.
2. Select the samples (one selection for SFT; one per curriculum stage for GRPO), never a ``test``
   or ``bench`` one, in the config's ``mix`` of data sources if it has one; samples that cannot be
   shown to a model or that the mix leaves out are counted with their reason, never fatal.
3. Train (``train-sft`` or ``train-grpo``), save the adapter, then write the run card last: a run
   card with ``status: complete`` means the adapter beside it is whole. Re-running a finished run
   returns it without training again (``overwrite: true`` retrains); a crashed run trains afresh.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import BaseModel

from pairsmith.flows.engine.flow_runs import claim_run
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.task_runners import gpu_task
from pairsmith.storage.verdict import StageStats
from pairsmith.flows.finetune_config import FLOW_NAME, GrpoFinetuneConfig, SftFinetuneConfig
from pairsmith.flows.engine.run_card import RUN_CARD, RunCard
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.storage.schemas import utc_now
from pairsmith.storage.store import open_store
from pairsmith.tasks.training.train_vlm import StagePlan, TrainedAdapter, train_grpo, train_sft
from pairsmith.tasks.training.training_data import (
    ProcessorCheck, pin_tables, release_pinned, remove_if_empty, select_samples_task)

RUN_ARTIFACT_KEY = "finetune-run"


class FinetuneSummary(BaseModel):
    run_name: str
    method: str
    run_dir: str
    adapter_dir: str
    run_card: str
    samples_version: int
    n_samples: int
    stages: list[dict]
    resumed: bool
    seconds: float


def _summary(card: RunCard, run_dir: Path, resumed: bool, seconds: float) -> FinetuneSummary:
    return FinetuneSummary(
        run_name=card.run_name, method=card.method, run_dir=str(run_dir),
        adapter_dir=str(card.adapter_path(run_dir)), run_card=str(run_dir / RUN_CARD),
        samples_version=card.data["samples_version"], n_samples=card.data["n_samples"], stages=card.stages,
        resumed=resumed, seconds=round(seconds, 3),
    )


def _finished_card(run_dir: Path) -> RunCard | None:
    path = run_dir / RUN_CARD
    if not path.exists():
        return None
    card = RunCard.read(path)
    return card if card.status == "complete" and card.adapter_path(run_dir).exists() else None


def _validation_rows(config: GrpoFinetuneConfig, pinned, stage, check) -> list:
    """GRPO validation (``GrpoSettings.validation``, DiG supp. Table 5): the stage's subsets in the validation split."""
    validation = config.grpo.validation
    if validation is None:
        return []
    data = config.data.model_copy(update={"splits": [validation.split]})
    selected = batch_step(select_samples_task, f"{stage.name}-validation")(config.db, pinned, data, stage.subsets,
                                                                           training=True, check=check)
    return selected.value.rows


def _plans(config: SftFinetuneConfig | GrpoFinetuneConfig, pinned) -> tuple[list[StagePlan], StageStats, dict]:
    """The stages' samples, the selection's counts and, with a mix, what it took per stage."""
    logger = get_run_logger()
    mix, mixed = config.training_mix(), {}
    check = ProcessorCheck(config.model_id, config.runtime)  # sizes the model's processor refuses: counted, not fatal
    if config.method == "sft":
        selected = batch_step(select_samples_task, "sft")(config.db, pinned, config.data, training=True, mix=mix,
                                                                  check=check)
        plans = [StagePlan("sft", config.data.subsets, config.train.max_steps, selected.value.rows)]
        stats = selected.stats[0]
        if selected.value.mix is not None:
            mixed["sft"] = selected.value.mix.as_dict()
    else:
        plans, stats = [], StageStats(select_samples_task.name)
        for stage in config.stages:
            selected = batch_step(select_samples_task, stage.name)(config.db, pinned, config.data, stage.subsets,
                                                                   training=True, mix=mix, check=check)
            stats = stats + selected.stats[0]
            if selected.value.mix is not None:
                mixed[stage.name] = selected.value.mix.as_dict()
            if not selected.value.rows:
                logger.warning("stage %r: no grounding samples in subsets %s; skipped", stage.name, stage.subsets)
                continue
            plans.append(StagePlan(stage.name, stage.subsets, stage.steps, selected.value.rows,
                                   _validation_rows(config, pinned, stage, check)))
    if not any(p.rows for p in plans):
        raise ValueError(
            f"no trainable samples for {config.data.where(training=True)} in {config.db!r} at samples version "
            f"{pinned.samples_version} ({stats.n_dropped} dropped: {dict(stats.reasons) or 'none'})"
        )
    return plans, stats, mixed


def _publish(card: RunCard) -> None:
    from prefect.artifacts import create_table_artifact

    rows = [{"stage": s["name"], "samples": s["n_samples"], "steps": s["steps"],
             "final loss": s["final_loss"], "final reward": s["final_reward"]} for s in card.stages]
    create_table_artifact(
        table=rows, key=RUN_ARTIFACT_KEY,
        description=f"{card.method.upper()} run `{card.run_name}` of `{card.base_model}` on samples "
                    f"version {card.data['samples_version']} of `{card.data['db']}`.",
    )


@flow(flow_run_name=pairsmith_run_name, name=FLOW_NAME, description="LoRA SFT or GRPO of a VLM on stored samples; saves the adapter and a run card.")
def finetune(config: SftFinetuneConfig | GrpoFinetuneConfig) -> FinetuneSummary:
    """Train; a run that fails (or is interrupted) deletes the ``finetune-*`` tag it made and the run
    folders it created if they hold no file, so nothing of it pins versions or clutters ``runs/``."""
    made: dict = {}
    try:
        return _finetune(config, made)
    except BaseException:
        if "pinned" in made:
            release_pinned(made["store"], made["pinned"])
        remove_if_empty(made.get("folders", []))
        raise


def _finetune(config: SftFinetuneConfig | GrpoFinetuneConfig, made: dict) -> FinetuneSummary:
    start = time.perf_counter()
    started_at = utc_now()
    logger = get_run_logger()
    run_dir = config.run_dir()
    done = None if config.overwrite else _finished_card(run_dir)
    if done is not None:
        logger.info("run %s already finished (%s); not training again", done.run_name, run_dir / RUN_CARD)
        return _summary(done, run_dir, resumed=True, seconds=time.perf_counter() - start)

    config.runtime.check_model_source(config.model_id)  # in seconds, naming the model: before any tag or folder
    store = open_store(config.db)
    store.check_reachable()
    claim_run(config.run_name())  # a flow run of it killed with -9: marked CRASHED in Prefect
    pinned = made["pinned"] = pin_tables(store, config.data, tag_as=config.run_name() if config.tag_data else None)
    made["store"] = store
    logger.info("reading samples version %d, pairs version %d of %s", pinned.samples_version,
                pinned.pairs_version, config.db)
    plans, stats, mixed = _plans(config, pinned)
    made["folders"] = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # innermost first
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_CARD).unlink(missing_ok=True)  # a card appears only when the new adapter is whole
    gpu = config.runtime.on_gpu()  # on a GPU worker training takes a `tag:gpu` slot, as every model stage does
    common = dict(model_id=config.model_id, runtime=config.runtime, lora=config.lora, db=config.db, pinned=pinned,
                  layout=config.data.layout, run_dir=run_dir, show_progress=config.show_progress,
                  box=config.data.boxes())
    if config.method == "sft":
        trained: TrainedAdapter = gpu_task(train_sft, gpu)(settings=config.train, plan=plans[0], **common)
    else:
        trained = gpu_task(train_grpo, gpu)(settings=config.grpo, reward=config.reward, plans=plans, **common)

    all_rows = [r for p in plans for r in p.rows]
    counts: dict[str, int] = {}
    for p in plans:
        for r in p.rows:
            key = f"{p.name}:{r['task']}/{r['subset'] or '-'}/{r['split']}"
            counts[key] = counts.get(key, 0) + 1
    card = RunCard(
        run_name=config.run_name(), method=config.method, status="complete", base_model=config.model_id,
        adapter_dir=str(trained.adapter_dir.relative_to(run_dir)),
        data={**pinned.as_dict(), "selection": config.data.model_dump(mode="json"), "n_samples": len(all_rows),
              "n_pairs": len({r["pair_id"] for r in all_rows}), "counts": dict(sorted(counts.items())),
              "n_dropped": stats.n_dropped, "drop_reasons": dict(stats.reasons.most_common()),
              **({"mix": mixed} if mixed else {})},
        stages=[s.summary() for s in trained.stages],
        logs={s.name: s.log.history for s in trained.stages},
        config=config.model_dump(mode="json"),
        started_at=started_at, finished_at=utc_now(), seconds=round(time.perf_counter() - start, 3),
    )
    card.write(run_dir)
    _publish(card)
    for s in card.stages:
        reward = f", final reward {s['final_reward']:.4f}" if s["final_reward"] is not None else ""
        logger.info("stage %s: %d steps, final loss %.4f%s", s["name"], s["steps"], s["final_loss"] or 0.0, reward)
    return _summary(card, run_dir, resumed=False, seconds=time.perf_counter() - start)
