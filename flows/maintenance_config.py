"""Parameters of the maintenance flow (``flows/maintenance.py``): which tables, how long versions stay."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.storage.compaction import TARGET_FRAGMENT_MB
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.schemas import TABLES


class MaintenanceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI")
    keep_versions_days: float = Field(
        7.0, ge=0.0, le=3650.0,
        description="never remove versions younger than this many days; 0 keeps only the latest and tagged "
        "versions, which is safe only when nothing else uses the database", json_schema_extra={"option": "keep-days"},
    )
    drop_export_tags_older_than_days: float | None = Field(
        None, ge=0.0, le=36500.0,
        description="delete export-* tags older than this many days first (default: keep every export reproducible)",
        json_schema_extra={"option": "drop-export-tags-older-than"},
    )
    target_fragment_mb: float = Field(
        TARGET_FRAGMENT_MB, ge=1.0, le=65536.0,
        description="size in MiB that compaction merges small fragments into; fragments over a quarter of it "
        "are left alone",
    )
    tables: list[str] = Field(default_factory=lambda: list(TABLES), description="tables to maintain")

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    def check_inputs(self) -> None:
        """A database with tables (``pairsmith maintain`` calls it before Prefect starts); ValueError otherwise."""
        from pairsmith.storage.store import PairStore

        store = PairStore(self.db)
        if not store.exists() or not store.table_names():
            raise ValueError(f"--db {store.uri!r}: no tables yet; nothing to maintain")

    @field_validator("tables")
    @classmethod
    def _tables(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in TABLES]
        if unknown:
            raise ValueError(f"unknown table {unknown[0]!r}; tables are {', '.join(TABLES)}")
        return value
