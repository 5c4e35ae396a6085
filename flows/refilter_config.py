"""Parameters of the refilter flow (``flows/refilter.py``): which run (Img-Diff or med-edit), which thresholds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.filters.refilterable import METHODS, RefilterThresholds
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri


class RefilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI")
    run: str = Field(description=f"the run ({' / '.join(METHODS)}) whose stored scores are re-judged")
    thresholds: RefilterThresholds = Field(default_factory=RefilterThresholds)

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds(cls, value):
        """An Img-Diff-only thresholds file (``ImgDiffThresholds``) is read as its sections."""
        return value.model_dump() if isinstance(value, BaseModel) and not isinstance(value, RefilterThresholds) else value

    def run_id(self) -> str:
        """One run id per (source run, thresholds): re-running the same file overwrites its stats."""
        return f"{self.run}-refilter-{self.thresholds.content_hash()}"
