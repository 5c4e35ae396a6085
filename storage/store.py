"""The one LanceDB database a run writes to: open it, upsert rows, read them back.

Writes go through ``upsert`` only, a ``merge_insert`` on the table's deterministic key, so a
re-run after a crash replaces rows instead of duplicating them. Reads check for other writers'
commits on every call (``read_consistency_interval=0``) because a flow and ``pairsmith stats``
may run in different processes against the same database.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
from lancedb.pydantic import LanceModel

from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri, is_object_store
from pairsmith.storage.schemas import KEYS, TABLES


def sql_literal(value: str) -> str:
    """Quote a string for a LanceDB filter; ids come from hashes, but run names may not."""
    return "'" + value.replace("'", "''") + "'"


def short_error(exc: Exception, limit: int = 200) -> str:
    """One line from an object-store error: the service's own message if it sent one."""
    text = str(exc)
    service = re.search(r"<Message>(.*?)</Message>", text, re.S)
    if service:
        return service.group(1).strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sql_in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(sql_literal(v) for v in values)})"


class PairStore:
    """The pairs / regions / samples / stage_stats tables of one database URI."""

    def __init__(self, uri: str = DEFAULT_DB, storage_options: dict[str, str] | None = None):
        self.uri = check_db_uri(uri)
        self.storage_options = storage_options
        self._db: lancedb.DBConnection | None = None
        self._tables: dict[str, Any] = {}

    @property
    def db(self) -> lancedb.DBConnection:
        if self._db is None:
            self._db = lancedb.connect(
                self.uri,
                storage_options=self.storage_options,
                read_consistency_interval=timedelta(0),
            )
        return self._db

    def check_reachable(self) -> None:
        """List the tables once, so a bad bucket or credentials fail before any work is done."""
        try:
            self.db.list_tables()
        except Exception as exc:  # the backend's own error types vary by store
            raise ValueError(f"--db {self.uri!r}: cannot open the database ({short_error(exc)})") from exc

    def table_names(self) -> list[str]:
        if not is_object_store(self.uri) and not Path(self.uri).exists():
            return []  # reading must not create an empty database folder as a side effect
        return list(self.db.list_tables().tables)

    def _exists(self, name: str) -> bool:
        """Open tables exist; others are looked up (a listing request on an object store)."""
        return name in self._tables or name in self.table_names()

    def table(self, name: str):
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}; tables are {', '.join(TABLES)}")
        if name not in self._tables:
            if name in self.table_names():
                table = self.db.open_table(name)
                _add_missing_columns(table, TABLES[name].to_arrow_schema(), name)
            else:  # exist_ok covers a writer in another process creating it at the same moment
                table = self.db.create_table(name, schema=TABLES[name], exist_ok=True)
            self._tables[name] = table
        return self._tables[name]

    def upsert(self, name: str, rows: Sequence[LanceModel]) -> int:
        """Insert or replace rows by the table's key; returns how many rows were new."""
        if not rows:
            return 0
        model = TABLES[name]
        bad = [type(r).__name__ for r in rows if not isinstance(r, model)]
        if bad:
            raise TypeError(f"table {name!r} takes {model.__name__} rows, got {bad[0]}")
        data = pa.Table.from_pylist([r.model_dump() for r in rows], schema=model.to_arrow_schema())
        result = (
            self.table(name)
            .merge_insert(KEYS[name])
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(data)
        )
        return int(result.num_inserted_rows)

    def read(
        self, name: str, where: str | None = None, columns: list[str] | None = None, limit: int | None = None
    ) -> pa.Table:
        """Rows matching ``where`` (a LanceDB SQL filter), all unless ``limit``; empty if none yet."""
        if not self._exists(name):
            schema = TABLES[name].to_arrow_schema()
            if columns:
                schema = pa.schema([schema.field(c) for c in columns])
            return schema.empty_table()
        query = self.table(name).search()
        if where:
            query = query.where(where)
        if columns:
            query = query.select(columns)
        return query.limit(limit).to_arrow()

    def count(self, name: str, where: str | None = None) -> int:
        if not self._exists(name):
            return 0
        return int(self.table(name).count_rows(where))

    def completed_batches(self, run_id: str) -> set[str]:
        """Batches of a run whose stage stats were committed; the writer commits those last."""
        rows = self.read("stage_stats", where=f"run_id = {sql_literal(run_id)}", columns=["batch"])
        return set(rows.column("batch").to_pylist())

    def runs(self) -> list[dict[str, Any]]:
        """Runs that wrote stage stats, newest first: run_id, flow, last write time."""
        rows = self.read("stage_stats", columns=["run_id", "flow", "created_at"]).to_pylist()
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            seen = latest.get(row["run_id"])
            if seen is None or row["created_at"] > seen["created_at"]:
                latest[row["run_id"]] = row
        return sorted(latest.values(), key=lambda r: r["created_at"], reverse=True)


def _add_missing_columns(table, schema: pa.Schema, name: str) -> None:
    """Bring a table written by an older pairsmith up to the current schema (new columns are null)."""
    present = set(table.schema.names)
    missing = [f for f in schema if f.name not in present]
    if not missing:
        return
    required = [f.name for f in missing if not f.nullable]
    if required:
        raise ValueError(f"table {name!r} lacks required columns {required}; it was not written by pairsmith")
    table.add_columns(pa.schema(missing))


_STORES: dict[str, PairStore] = {}


def open_store(uri: str) -> PairStore:
    """One connection per database and process, shared by the tasks that run there."""
    if uri not in _STORES:
        _STORES[uri] = PairStore(uri)
    return _STORES[uri]
