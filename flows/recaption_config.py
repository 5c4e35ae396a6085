"""Parameters of the recaption flow, validated before Prefect, LanceDB or a model start."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.flows.engine.run import declare
from pairsmith.models.adapters.vlm_chat import VlmConfig
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.ids import NOT_CONTENT, content_key

FLOW_NAME = "recaption"

# The flow's stages in the order they run and are stored (flows/recaption.py): the one place it is written.
PIPELINE = declare(
    FLOW_NAME,
    ("recaption-images", "the stored pair has both images (drops recaption_missing_images)"),
    ("recaption-caption", "the model's answer has words (drops recaption_empty; recaption_error is retried)"),
)


class RecaptionConfig(BaseModel):
    """One recaption run: the kept pairs of the runs ``runs`` get a new ``diff-caption`` sample each,
    written by the VLM ``vlm`` (``pairsmith.models.adapters.vlm_chat``). The run id hashes what changes the
    captions (the source runs and the model settings), not ``db``, ``limit`` or ``batch_size``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI", json_schema_extra=NOT_CONTENT)
    runs: list[str] = Field(min_length=1, description="re-caption the kept pairs of these runs (run ids)")
    vlm: VlmConfig = Field(default_factory=VlmConfig, description="the captioning model (models/adapters/vlm_chat.py)")
    limit: int | None = Field(None, ge=1, description="only the first this many pairs (by id); a larger limit "
                              "extends the same run", json_schema_extra=NOT_CONTENT)
    batch_size: int = Field(16, ge=1, le=1000, description="pairs per task run and LanceDB commit",
                            json_schema_extra=NOT_CONTENT)
    show_progress: bool = Field(False, description="draw a progress bar on stderr (CLI runs)",
                                json_schema_extra=NOT_CONTENT)

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    def where(self) -> str:
        """The pairs this run captions (no clause on an image column: Lance would read the images)."""
        from pairsmith.storage.store import sql_in

        return f"{sql_in('run_id', self.runs)} AND status = 'kept'"

    def check_inputs(self) -> None:
        """Bad input, found before anything is created: a database that does not exist, or one without a
        kept pair of ``runs``. Raises ValueError (one line)."""
        from pairsmith.storage.store import require_stored_pairs

        require_stored_pairs(self.db, self.where(), FLOW_NAME,
                             f"runs: no kept pairs of run {', '.join(self.runs)} in db {self.db!r} to re-caption")

    def run_id(self) -> str:
        """A new model or source run is a new run: its samples are stored beside an older run's."""
        return f"{FLOW_NAME}-{content_key(self)[:12]}"
