"""Parameters of the propose-regions flow (``flows/propose_regions.py``), validated before Prefect or
LanceDB start; the run id hashes every setting that changes the output (not ``db``, ``limit`` or
``batch_size``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.models.proposers.pair_proposer import PHOTO, PairProposerConfig
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.ids import NOT_CONTENT, content_key
from pairsmith.storage.store import sql_in
from pairsmith.tasks.sample_builders import SplitFractions

FLOW_NAME = "propose-regions"


class GroundingConfig(BaseModel):
    """Real-photo grounding samples; off until the proposer's precision is trusted (README)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = Field(False, description="write a grounding sample per local med-edit pair with kept boxes")
    splits: SplitFractions = Field(default_factory=SplitFractions, description="val/test shares (bench pairs stay bench)")


class ProposeRegionsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI", json_schema_extra=NOT_CONTENT)
    methods: list[str] = Field(default_factory=lambda: ["med-edit"], description="pairs of these pipelines")
    run_ids: list[str] = Field(default_factory=list, description="only pairs of these runs; empty = all")
    only_kept: bool = True
    limit: int | None = Field(None, ge=1, description="only the first this many pairs (by id); a larger limit "
                              "extends the same run", json_schema_extra=NOT_CONTENT)
    proposer: PairProposerConfig = Field(default_factory=lambda: PHOTO, description="models/proposers/pair_proposer.py settings")
    min_confidence: float = Field(0.3, ge=0.0, le=1.0, description="boxes below this confidence are stored as dropped")
    grounding: GroundingConfig = Field(default_factory=GroundingConfig)
    batch_size: int = Field(16, ge=1, le=1000, description="pairs per task run and LanceDB commit",
                            json_schema_extra=NOT_CONTENT)

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    def where(self) -> str:
        clauses = [sql_in("method", self.methods)]
        if self.run_ids:
            clauses.append(sql_in("run_id", self.run_ids))
        if self.only_kept:
            clauses.append("status = 'kept'")
        # no clause on an image column: Lance would read every selected row's image bytes to test it
        # (a resumed run would read them all again); a pair without images is dropped in its batch.
        return " AND ".join(clauses)

    def check_inputs(self) -> None:
        """Bad input, found before anything is created (``pairsmith run`` calls it): a database that
        does not exist, or one without a pair this config selects. Raises ValueError (one line)."""
        from pairsmith.storage.store import require_stored_pairs

        require_stored_pairs(self.db, self.where(), FLOW_NAME, f"db {self.db!r}: no pairs of methods {', '.join(self.methods)}"
                             + (f" in runs {', '.join(self.run_ids)}" if self.run_ids else "") + " to propose regions on")

    def run_id(self) -> str:
        """A new proposer config is a new run: its regions are stored beside an older run's, never over
        them (``pairsmith.storage.ids.content_key``: defaults count for nothing)."""
        return f"{FLOW_NAME}-{content_key(self)[:12]}"

    def legacy_run_id(self, n_pairs: int, batch_size: int) -> str:
        """The id pairsmith before per-item resume gave this run: a ``limit`` counted in it."""
        return f"{FLOW_NAME}-{content_key(self, limit=n_pairs)[:12]}"
