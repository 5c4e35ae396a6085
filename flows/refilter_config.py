"""Parameters of the refilter flow (``flows/refilter.py``): which Img-Diff run, which thresholds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.filters.imgdiff.pipelines import ImgDiffThresholds
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri


class RefilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI")
    run: str = Field(description="the imgdiff-replace / imgdiff-remove run whose stored scores are re-judged")
    thresholds: ImgDiffThresholds = Field(default_factory=ImgDiffThresholds)

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    def run_id(self) -> str:
        """One run id per (source run, thresholds): re-running the same file overwrites its stats."""
        return f"{self.run}-refilter-{self.thresholds.content_hash()}"
