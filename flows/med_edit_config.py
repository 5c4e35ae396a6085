"""Parameters of the med-edit flow (design.md §4.4). The API key is never a parameter.

Model roles as MED assigns them (§3.1-3.3), each its own entry (``pairsmith.models.adapters.role_chat``; all may
name the same model): ``mllm`` filters, writes edit requests, captions and judges (Qwen2.5-VL-72B in the
paper), ``llm`` writes the difference and the SFT rewrite (Qwen3-32B, text only), ``answer_writer``
writes the benchmark's right and wrong answers (GPT-4o in the paper; here Gemini or a named HF model,
a substitution). ``editor`` is the Gemini image editor (Gemini Flash 2.0 in the paper).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.filters.med_similarity import MedSimilarityThresholds
from pairsmith.models.adapters.clip_scorer import ClipScorerConfig
from pairsmith.models.adapters.gemini_editor import GeminiEditConfig, resolve_api_key
from pairsmith.models.adapters.role_chat import RoleChatConfig
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.ids import NOT_CONTENT, content_key, stable_hash
from pairsmith.storage.image_folder import ImageLimits
from pairsmith.tasks.med.sources import MedSources, check_sources
from pairsmith.tasks.med.bench import BenchSettings
from pairsmith.tasks.sample_builders import SplitFractions

FLOW_NAME = "med-edit"


class MedEditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI", json_schema_extra=NOT_CONTENT)
    sources: MedSources
    batch_size: int = Field(8, ge=1, le=1000, description="sources per batch (one LanceDB commit each)", json_schema_extra=NOT_CONTENT)
    mllm: RoleChatConfig = Field(default_factory=lambda: RoleChatConfig(model_id="Qwen/Qwen2-VL-7B-Instruct"),
                                 description="filter, edit request, captions, judges (MED: Qwen2.5-VL-72B)")
    llm: RoleChatConfig = Field(default_factory=lambda: RoleChatConfig(model_id="Qwen/Qwen2.5-7B-Instruct"),
                                description="difference and SFT rewrite, text only (MED: Qwen3-32B)")
    answer_writer: RoleChatConfig = Field(
        default_factory=lambda: RoleChatConfig(backend="gemini", model_id="gemini-2.5-flash"),
        description="benchmark right / wrong answers (MED: GPT-4o; Gemini or an HF chat model here)")
    bench: BenchSettings = Field(default_factory=BenchSettings, json_schema_extra={"options": {"per_type": "per-type"}})
    clip: ClipScorerConfig = Field(default_factory=ClipScorerConfig)
    editor: GeminiEditConfig = Field(default_factory=GeminiEditConfig)
    request_budget: int = Field(500, ge=0, description="Gemini requests one invocation may send", json_schema_extra=NOT_CONTENT)
    similarity: MedSimilarityThresholds = Field(default_factory=MedSimilarityThresholds)
    splits: SplitFractions = Field(default_factory=SplitFractions)
    image_limits: ImageLimits = Field(default_factory=ImageLimits, description="source images outside these are dropped")
    show_progress: bool = Field(False, json_schema_extra=NOT_CONTENT)
    retry_failed: bool = Field(False, description="redo every item dropped for a failure (an unreadable source, "
                               "an error), not only those whose input changed", json_schema_extra=NOT_CONTENT)

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    def content_key(self) -> str:
        """What decides each pair's content (``pairsmith.storage.ids.content_key``): same key, same
        pair ids, same cached edits."""
        return content_key(self)

    def run_id(self) -> str:
        """From the content only: ``batch_size`` never decides what is edited again."""
        return f"{FLOW_NAME}-{self.content_key()[:12]}"

    def legacy_run_id(self, n_items: int, batch_size: int) -> str:
        """The id pairsmith before per-item resume gave this content's run (it hashed the batch size too)."""
        return f"{FLOW_NAME}-{stable_hash([self.content_key(), batch_size], 12)}"

    def check_inputs(self) -> None:
        """Problems no item could survive, as one ValueError before the flow starts (``pairsmith run``
        calls this): the sources' images folder and captions file (``check_sources``), and a Gemini
        key to pay for edits with (from the environment or the Secret block)."""
        check_sources(self.sources)
        try:
            resolve_api_key(self.editor)
        except Exception as err:  # no key (GeminiAuthError), or a Secret block that cannot be loaded
            raise ValueError(str(err).splitlines()[0] if str(err) else type(err).__name__) from None
