"""Parameters of the finetune flow: LoRA SFT (MED Table 5 settings; MED Eq. 7 as an objective) or GRPO (DiG's), chosen by ``method``.

Both read their samples from LanceDB at a pinned table version (``data``), train LoRA adapters on
a Qwen2-VL-class model (``model_id``: a hub id or a local folder) and write the adapter and a run
card to ``output_dir/<run name>``. The run name is a hash of everything that shapes the result,
so the same config names the same run, and a finished run is not trained twice.

``mix`` trains on several data sources in chosen proportions (``pairsmith.tasks.training.training_mix``);
whatever the selection says, a finetune run never reads ``test`` or ``bench`` samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator, model_validator

from pairsmith.tasks.answers.grounding_reward import DigRewardConfig
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.training.vlm_grpo import GrpoSettings
from pairsmith.models.training.vlm_sft import SftSettings
from pairsmith.models.training.vlm_training import LoraSettings
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.ids import NOT_CONTENT, content_key
from pairsmith.tasks.training.training_data import HELD_OUT_SPLITS, DataSelection
from pairsmith.tasks.training.training_mix import TrainingMix

FLOW_NAME = "finetune"
DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"


class CurriculumStage(BaseModel):
    """One GRPO stage: the grounding subsets it trains on and for how many steps."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    subsets: list[str] = Field(min_length=1, description="sample subsets of this stage")
    steps: int = Field(ge=1, le=10_000_000, description="optimizer steps of this stage")


def dig_curriculum() -> list[CurriculumStage]:
    """DiG: single → double → mixed, 60/20/30 steps. dig-render states the number of differences in
    the prompts of the single and double subsets and not in mixed ones, so only stages 1–2 see it."""
    return [
        CurriculumStage(name="single", subsets=["single"], steps=60),
        CurriculumStage(name="double", subsets=["double"], steps=20),
        CurriculumStage(name="mixed", subsets=["mixed"], steps=30),
    ]


class _FinetuneBase(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI with the samples and pairs tables", validate_default=True)
    model_id: str = Field(DEFAULT_MODEL, description="base model: hub id or local folder (Qwen2-VL class)")
    runtime: ModelRuntime = Field(default_factory=ModelRuntime)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    output_dir: str = Field("./runs", description="runs go to output_dir/<run name>/ (adapter/, run_card.json)", json_schema_extra=NOT_CONTENT)
    tag_data: bool = Field(True, description="tag the samples and pairs versions read, so cleanup keeps them", json_schema_extra=NOT_CONTENT)
    overwrite: bool = Field(False, description="train again even if this run already finished", json_schema_extra=NOT_CONTENT)
    show_progress: bool = Field(False, description="trainer progress bars on stderr (CLI runs)", json_schema_extra=NOT_CONTENT)
    mix: dict[str, float] = Field(
        default_factory=dict, description="data source (a sample's dataset, else its method), or source/task -> "
        "ratio, e.g. {clevr-change: 0.3, spot-the-diff: 0.1, dig-render: 0.6}; empty: every selected sample",
    )
    mix_total: int | None = Field(None, ge=1, description="with a mix: at most this many samples in all")

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    @model_validator(mode="after")
    def _training_data(self) -> "_FinetuneBase":
        held_out = [s for s in self.data.splits if s in HELD_OUT_SPLITS]
        if held_out:
            raise ValueError(f"data.splits: {held_out} are held out for evaluation; finetune never trains on "
                             f"{' or '.join(HELD_OUT_SPLITS)} samples")
        if self.mix_total is not None and not self.mix:
            raise ValueError("mix_total needs a mix")
        try:
            self.training_mix()
        except ValidationError as err:
            raise ValueError(err.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return self

    @model_validator(mode="after")
    def _output_dir_outside_db(self) -> "_FinetuneBase":
        """Runs never go into the database, nor a folder that holds it, where a run folder would mix with it."""
        from pairsmith.storage.exports.base import _local_db

        db = _local_db(self.db)
        out = Path(self.output_dir).expanduser().resolve()
        if db is not None and (out.is_relative_to(db) or out == db):
            raise ValueError(f"output_dir {self.output_dir!r} is inside the database {str(db)!r}; choose a folder outside it")
        if out.exists() and not out.is_dir():
            raise ValueError(f"output_dir {self.output_dir!r} is a file, not a folder; choose a folder for the runs")
        return self

    def training_mix(self) -> TrainingMix | None:
        return TrainingMix(ratios=self.mix, total=self.mix_total) if self.mix else None

    def run_name(self) -> str:
        """Same data, model and training settings, same run (``pairsmith.storage.ids.content_key``:
        where it runs, defaults and NOT_CONTENT fields do not name it)."""
        return f"{FLOW_NAME}-{self.method}-{content_key(self, method=self.method)[:12]}"

    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name()


class SftFinetuneConfig(_FinetuneBase):
    method: Literal["sft"] = "sft"
    data: DataSelection = Field(default_factory=DataSelection)
    train: SftSettings = Field(default_factory=SftSettings)

    @model_validator(mode="after")
    def _difference_needs_the_pair(self) -> "SftFinetuneConfig":
        if self.train.objective == "feature-difference" and self.data.layout != "multi":
            raise ValueError("train.objective feature-difference (MED Eq. 7) encodes the two images separately: "
                             f"data.layout must be multi, got {self.data.layout!r}")
        return self


class GrpoFinetuneConfig(_FinetuneBase):
    method: Literal["grpo"] = "grpo"
    data: DataSelection = Field(default_factory=lambda: DataSelection(tasks=["grounding"]))
    grpo: GrpoSettings = Field(default_factory=GrpoSettings)
    reward: DigRewardConfig = Field(default_factory=DigRewardConfig)
    stages: list[CurriculumStage] = Field(default_factory=dig_curriculum, min_length=1)

    @field_validator("data", mode="before")
    @classmethod
    def _grounding_by_default(cls, value):
        """A partial ``data:`` mapping (e.g. only splits) still means grounding samples."""
        if isinstance(value, dict) and "tasks" not in value:
            return {**value, "tasks": ["grounding"]}
        return value

    @model_validator(mode="after")
    def _grounding_only(self) -> "GrpoFinetuneConfig":
        if self.data.tasks != ["grounding"]:
            raise ValueError(f"GRPO rewards box answers: data.tasks must be ['grounding'], got {self.data.tasks}")
        if self.data.subsets:
            raise ValueError("GRPO picks subsets per curriculum stage: set stages[].subsets, not data.subsets")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return self


AnyFinetuneConfig = Annotated[Union[SftFinetuneConfig, GrpoFinetuneConfig], Field(discriminator="method")]


class FinetuneConfig(RootModel[AnyFinetuneConfig]):
    """Parses a YAML mapping into the SFT or GRPO config its ``method`` names."""
