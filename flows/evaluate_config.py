"""Parameters of the evaluate flow: which model (base, adapter or a finetune run card), which samples."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pairsmith.flows.finetune_config import DEFAULT_MODEL
from pairsmith.flows.engine.run import declare
from pairsmith.flows.engine.run_card import RunCard
from pairsmith.models.adapters.adapted_vlm_chat import AdaptedVlmConfig, adapter_fingerprint
from pairsmith.models.adapters.caption_judge import JUDGE_PROMPT, CaptionJudgeConfig
from pairsmith.models.runtime import ModelRuntime
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.ids import NOT_CONTENT, content_key, stable_hash
from pairsmith.tasks.evaluate import generate_answers, judge_captions
from pairsmith.tasks.evaluate.cocot import Prompting
from pairsmith.tasks.evaluate.generate_answers import SCORED_TASKS
from pairsmith.tasks.training import training_data
from pairsmith.tasks.training.training_data import DataSelection, PinnedTables

FLOW_NAME = "evaluate"

# The flow's stages in the order they run and are stored: the selection (batch ``select``), then per batch.
PIPELINE = declare(
    FLOW_NAME,
    (training_data.STAGE, "the held-out samples the model can be asked (tasks/training/training_data.py)"),
    (generate_answers.STAGE, "ask the model and parse each answer"),
    (judge_captions.STAGE, "an LLM judge scores caption answers (with a judge only)"),
)


def held_out() -> DataSelection:
    return DataSelection(tasks=["grounding", "med-mcq", "diff-caption"], splits=["test"])


class EvaluateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI; results go to its eval_predictions / eval_results",
                    validate_default=True, json_schema_extra=NOT_CONTENT)
    model_id: str | None = Field(
        None, description=f"base model: hub id or local folder; default: the run card's, else {DEFAULT_MODEL}",
        json_schema_extra={**NOT_CONTENT, "option": "model"},
    )
    adapter: str | None = Field(None, description="LoRA adapter folder from the finetune flow", json_schema_extra=NOT_CONTENT)
    run_card: str | None = Field(None, description="a finetune run card (or its folder): sets model_id and adapter", json_schema_extra=NOT_CONTENT)
    # The nested settings that are command-line options too (pairsmith evaluate): sub-field -> option
    runtime: ModelRuntime = Field(default_factory=ModelRuntime, json_schema_extra={"options": {"device": "device"}})
    data: DataSelection = Field(
        default_factory=held_out, description="held-out samples; tasks without samples are skipped",
        json_schema_extra={"options": {"tasks": "task", "splits": "split", "limit": "limit", "layout": "layout",
                                       "datasets": "dataset"}},
    )
    max_new_tokens: int = Field(256, ge=1, le=8192)
    generation_batch_size: int = Field(8, ge=1, le=256, description="requests per generate() call", json_schema_extra=NOT_CONTENT)
    batch_size: int = Field(64, ge=1, le=100_000, description="samples per task run and per LanceDB commit", json_schema_extra=NOT_CONTENT)
    prompting: Prompting = Field(
        "direct", description="'direct': the sample's question; 'cocot': CoCoT's similarities-and-differences "
        "instruction first, its answer given as context to the question (Img-Diff supp. §12)",
    )
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0, description="IoU at which a box counts as found (F1)")
    judge: CaptionJudgeConfig | None = Field(
        None, description="an LLM judge that scores caption answers 0-100 against their references "
        "with OmniDiff's prompt (supp. Fig. 6; GPT-4o in the paper): a transformers chat model or Gemini; "
        "none by default",
        json_schema_extra={"options": {"model_id": "judge-model", "backend": "judge-backend"}},
    )
    tag_data: bool = Field(True, description="tag the samples and pairs versions read, so cleanup keeps them",
                           json_schema_extra=NOT_CONTENT)
    show_progress: bool = Field(False, json_schema_extra=NOT_CONTENT)

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    @model_validator(mode="after")
    def _model(self) -> "EvaluateConfig":
        unknown = sorted(set(self.data.tasks) - set(SCORED_TASKS))
        if unknown:
            raise ValueError(f"data.tasks: no metric for {unknown}; evaluate scores {', '.join(SCORED_TASKS)}")
        if self.run_card is not None:
            if self.adapter is not None:
                raise ValueError("give adapter or run_card, not both")
            RunCard.read(self.run_card)  # one clear line now, not a failure after Prefect starts
        return self

    def check_inputs(self) -> None:
        """Before Prefect or a model starts (``pairsmith evaluate`` calls it): a database with samples
        this config selects. Raises ValueError (one line)."""
        from pairsmith.storage.store import PairStore

        store = PairStore(self.db)
        if "samples" not in store.table_names():
            raise ValueError(f"--db {store.uri!r}: no samples yet; run 'pairsmith render' first")
        where = self.data.where()
        if store.count("samples", where) == 0:
            raise ValueError(f"--db {store.uri!r}: no samples match {where}; pick held-out samples with --split / --task")

    def base_model(self) -> str:
        if self.model_id is not None:
            return self.model_id
        return RunCard.read(self.run_card).base_model if self.run_card else DEFAULT_MODEL

    def adapter_path(self) -> str | None:
        if self.run_card is None:
            return self.adapter
        return str(RunCard.read(self.run_card).adapter_path(self.run_card))

    def vlm(self) -> AdaptedVlmConfig:
        adapter = self.adapter_path()
        return AdaptedVlmConfig(
            model_id=self.base_model(), adapter_path=adapter, adapter_fingerprint=adapter_fingerprint(adapter),
            runtime=self.runtime,
            max_new_tokens=self.max_new_tokens, temperature=0.0, batch_size=self.generation_batch_size,
        )

    def eval_id(self, pinned: PinnedTables, limit: int | None = None) -> str:
        """Same model weights, same samples, same decoding: same evaluation (it resumes, not repeats).

        ``data.limit`` does not count: a larger limit extends the evaluation (the first samples are
        the same ones); ``limit`` gives the id pairsmith before per-item resume made, which counted it.
        With a judge, the judge prompt's text counts too: a new prompt is a new evaluation, never a
        resume that mixes scores from two prompts."""
        # What it reads is the pinned versions, not the version or tag asked for.
        data = self.data.model_copy(update={"table_version": None, "table_tag": None, "limit": limit})
        key = content_key(self.model_copy(update={"data": data}), model=self.base_model(),
                          adapter=adapter_fingerprint(self.adapter_path()),
                          samples_version=pinned.samples_version, pairs_version=pinned.pairs_version,
                          judge_prompt=stable_hash(JUDGE_PROMPT) if self.judge is not None else None)
        return f"{FLOW_NAME}-{key[:12]}"
