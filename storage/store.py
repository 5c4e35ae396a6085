"""The one LanceDB database a run writes to: open it, upsert rows, read them back.

Writes go through ``upsert`` only, keyed on the table's deterministic id, so a re-run after a crash
replaces rows instead of duplicating them. Reads check for other writers' commits on every call
(``read_consistency_interval=0``) because a flow and ``pairsmith stats`` may run in different
processes against the same database.

**Why writes append when they can** (measured with ``benchmarks/storage_scale.py`` and probes on
LanceDB 0.40 / pylance 14, 320x240 render pairs, 2 busy cores). ``merge_insert`` joins the new rows
against the key column of *every* fragment, and each 10-pair commit adds a fragment, so its cost grew
with the run: 47 ms per batch of 4 tables at the start, 290 ms after 300 batches, 124 ms for a
10-row regions batch into 300 fragments against 6 ms for ``add``. What LanceDB offers against it
did not pay here:

* a BTREE scalar index on the key: merge_insert then joins through the index, but on the fragments
  written since the index was last updated it falls back to a hybrid plan that got *slower* per
  batch (86 -> 948 ms on ``pairs`` within six commits); updating the index after every commit
  (``optimize_indices``) costs 30-130 ms per table per batch;
* compaction during the run: it bounds the fragment count, but every compaction of ``pairs``
  rewrites image bytes (about 2 ms per pair per rewrite even in ``try_binary_copy`` mode), which
  a tiered scheme still pays two or three times per pair;
* the MemWAL ("LSM") write path: rows are not in the base table (``count_rows`` is 0) until a
  flush and compaction, which every reader would then have to know about.

So the store remembers, per table, the keys the table holds at the version it last saw (hashes
in a sorted array: 8 bytes a key). A batch whose keys are all new (every batch of a fresh run) is
a plain ``add``: one fragment, no join, the same cost as the floor. A batch that touches an existing
key (a resumed batch, a refilter) takes ``merge_insert``. The memory is only trusted at the version
it was taken at: when another writer committed in between, the keys are read again, and if one
committed during our own ``add`` the keys just written are checked and any duplicates replaced.

**Why a long run's commits cost the same at the end as at the start.** Even a plain ``add`` costs
more per commit as a table's fragments *and* versions pile up: 10-row appends of 1 kB rows took
4.0 ms each at the start and 11.0 ms after 1,000 commits; merging the small fragments every 64
commits left 3.5 -> 6.3 ms; the rest is the version history (each commit lists the ``_versions``
folder to find the latest manifest: deleting old manifests alone gave 4.2 -> 4.6 ms). So every
``COMPACT_EVERY`` commits of a table the writer merges the small fragments (``storage/compaction.py``)
and removes the versions its own appends superseded (3.9 -> 4.2 ms, flat). Only a version whose
very next version is this writer's own ``add`` is removed, and only once ``RETAIN_VERSIONS`` newer
versions exist: an append keeps every file of the version before it, so removing that version
deletes its manifest and transaction file but never a data, deletion or index file, and a reader
that opened it keeps reading. What is lost is checking such a version out *by number* later; a
reader that does that later pins it with a tag (tagged versions are never removed): exports,
``finetune`` and ``evaluate`` do. The versions before a compaction or a ``merge_insert``, whose files
later versions drop, stay until ``pairsmith maintain`` (``flows/maintenance.py``) cleans up versions
older than its keep-days.

**Duplicate keys inside one write** never reach LanceDB (whose merge_insert refuses them as
"ambiguous"): identical rows collapse into one; rows that share a key but differ keep the later one,
the same rule a later write follows, and each such key is logged and kept in ``store.duplicates``
(table, key, the columns that differed) so a flow can report it. ``duplicate_keys`` checks a whole
database for keys stored twice.

**Reads never touch image bytes unless they ask for them.** Lance stores columns apart, so a scan
that does not select ``image_before`` never reads it, but a *filter* on an image column does
(``image_before IS NOT NULL`` read 317 MB to list 3,000 ids): no reader filters on one. Rows with
images are read with ``scan`` (one streaming pass, batches bounded in bytes by Lance's
``batch_size_bytes`` and its I/O buffer) or ``take`` (rows by key, through a key -> row offset map
of the pinned version, so a lookup never scans), both yielding lists of row dicts. Image columns
stay plain binary columns: LanceDB's blob encoding (``lance.blob.v2``) scanned no faster here,
compaction still rewrote its payloads (disk doubled), and readers would need row-id fetches.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
from lancedb.pydantic import LanceModel

from pairsmith.storage.compaction import TARGET_FRAGMENT_MB, compact_small_fragments
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri, is_object_store, is_writable
from pairsmith.storage.schemas import IMAGE_COLUMNS, KEYS, TABLES

log = logging.getLogger("pairsmith.storage")

BATCH_BYTES = 64 << 20
"""Default byte budget of one batch that ``scan`` / ``take`` yield (images included)."""
COMPACT_EVERY = 64
"""Commits of a table after which its writer merges the small fragments (``storage/compaction.py``) and
removes the versions its own appends superseded."""
RETAIN_VERSIONS = 64
"""The newest versions of a table the writer never removes during a run (other writers' conflict
checks read the transactions of recent versions)."""
WRITE_BATCH_BYTES = 32 << 20
"""An append hands LanceDB Arrow record batches of about this many bytes, as a stream: a whole Arrow
table of a batch's images costs LanceDB's writer several copies of it at once (448 MB of images
peaked at +1.7 GB as one table, +0.4 GB as a stream of 8-row batches)."""


def _record_batches(rows: list[dict[str, Any]], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``rows`` as Arrow record batches of about ``WRITE_BATCH_BYTES`` (bytes and text counted)."""
    start, size = 0, 0
    for i, row in enumerate(rows):
        size += sum(len(v) for v in row.values() if isinstance(v, (bytes, str)))
        if size >= WRITE_BATCH_BYTES:
            yield pa.RecordBatch.from_pylist(rows[start:i + 1], schema=schema)
            start, size = i + 1, 0
    if start < len(rows):
        yield pa.RecordBatch.from_pylist(rows[start:], schema=schema)


def sql_literal(value: str) -> str:
    """Quote a string for a LanceDB filter; ids come from hashes, but run names may not."""
    return "'" + value.replace("'", "''") + "'"


_SOURCE_LOCATION = re.compile(r",?\s*(?:/[^\s,]+)?/[^\s,/]+\.rs:\d+:\d+")
"""The Rust source location Lance appends to its errors (``, /home/runner/.../local.rs:273:40``)."""


def short_error(exc: BaseException, limit: int = 200) -> str:
    """One line from a storage error: the service's own message if it sent one, else the message
    with line breaks collapsed and Lance's Rust source locations left out."""
    text = str(exc)
    service = re.search(r"<Message>(.*?)</Message>", text, re.S)
    if service:
        return service.group(1).strip()
    text = " ".join(_SOURCE_LOCATION.sub("", text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_stored_pairs(db: str, where: str, reader: str, nothing: str) -> None:
    """Bad input of a flow that reads stored pairs, found before anything is created: no database at
    ``db`` (the message names ``reader``, the flow), or no pair matching ``where`` (``nothing``, one
    line). Raises ValueError."""
    store = PairStore(db)
    if not store.exists():
        raise ValueError(f"db {db!r}: no such database ({reader} reads the pairs stored there)")
    if store.count("pairs", where) == 0:
        raise ValueError(nothing)


def sql_in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(sql_literal(v) for v in values)})"


@dataclass(frozen=True)
class DuplicateKey:
    """Rows of one write that shared a key but differed; the later one was stored."""

    table: str
    key: str
    columns: tuple[str, ...]


class _KnownKeys:
    """The keys a table holds at one version, as sorted 64-bit hashes (a false hit only costs a merge)."""

    def __init__(self, version: int, keys: Iterable[str]):
        self.version = version
        self._sorted = np.sort(np.fromiter((hash(k) for k in keys), dtype=np.int64))
        self._recent: set[int] = set()

    def any_of(self, keys: Sequence[str]) -> bool:
        hashes = [hash(k) for k in keys]
        if any(h in self._recent for h in hashes):
            return True
        if not len(self._sorted):
            return False
        probe = np.asarray(hashes, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted, probe), len(self._sorted) - 1)
        return bool((self._sorted[at] == probe).any())

    def add(self, keys: Iterable[str], version: int) -> None:
        self._recent.update(hash(k) for k in keys)
        self.version = version
        if len(self._recent) > 1 << 16:
            self._sorted = np.sort(np.concatenate([self._sorted, np.fromiter(self._recent, dtype=np.int64)]))
            self._recent.clear()


class PairStore:
    """The pairs / regions / samples / stage_stats tables of one database URI."""

    def __init__(self, uri: str = DEFAULT_DB, storage_options: dict[str, str] | None = None,
                 only: Iterable[str] | None = None, read_only: bool = False):
        """``only``: the tables this handle shows (a pinned view); others read as absent and are never created.
        ``read_only``: the handle only reads, so a database that cannot be written (a read-only mount)
        opens; ``writable`` says whether it could write (then a missing column is added on open, else
        left out of reads), and ``require_writable`` is the one-line error a write gets."""
        self.uri = check_db_uri(uri, writable=not read_only)
        self.read_only = read_only
        self.storage_options = storage_options
        self.only = frozenset(only) if only is not None else None
        self._db: lancedb.DBConnection | None = None
        self._tables: dict[str, Any] = {}
        self._known: dict[str, _KnownKeys] = {}
        self._offsets: dict[tuple[str, int], dict[str, int]] = {}
        self._commits: dict[str, int] = {}
        self._superseded: dict[str, list[int]] = {}  # table -> versions this writer's own appends followed
        self.duplicates: list[DuplicateKey] = []

    @property
    def db(self) -> lancedb.DBConnection:
        if self._db is None:
            self._db = lancedb.connect(
                self.uri,
                storage_options=self.storage_options,
                read_consistency_interval=timedelta(0),
            )
        return self._db

    @property
    def writable(self) -> bool:
        """Whether this process can write the database (checked each time: a mount can change)."""
        return is_writable(self.uri)

    def require_writable(self, what: str) -> None:
        """ValueError naming the database when it cannot be written (``what``: the write that needs it)."""
        if not self.writable:
            raise ValueError(f"--db {self.uri!r} is not writable (a read-only mount or folder); {what} needs write access")

    def check_reachable(self) -> None:
        """List the tables once, so a bad bucket or credentials fail before any work is done."""
        try:
            self.db.list_tables()
        except Exception as exc:  # the backend's own error types vary by store
            raise ValueError(f"--db {self.uri!r}: cannot open the database ({short_error(exc)})") from exc

    def exists(self) -> bool:
        """Whether the database is there (an object store is assumed to be: listing it is a request)."""
        return is_object_store(self.uri) or Path(self.uri).exists()

    def table_names(self) -> list[str]:
        if not self.exists():
            return []  # reading must not create an empty database folder as a side effect
        names = list(self.db.list_tables().tables)
        return names if self.only is None else [n for n in names if n in self.only]

    def _exists(self, name: str) -> bool:
        """Open tables exist; others are looked up (a listing request on an object store)."""
        return name in self._tables or name in self.table_names()

    def table(self, name: str):
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}; tables are {', '.join(TABLES)}")
        if name not in self._tables:
            if name in self.table_names():
                table = self.db.open_table(name)
                if not self.read_only or self.writable:  # a read-only store is read as it is
                    _add_missing_columns(table, TABLES[name].to_arrow_schema(), name)
            elif self.only is not None or self.read_only:
                where = "this pinned view of" if self.only is not None else "the read-only database"
                raise ValueError(f"table {name!r} is not in {where} {self.uri!r}")
            else:  # exist_ok covers a writer in another process creating it at the same moment
                table = self.db.create_table(name, schema=TABLES[name], exist_ok=True)
            self._tables[name] = table
        return self._tables[name]

    # -- writes ---------------------------------------------------------------------------------

    def upsert(self, name: str, rows: Sequence[LanceModel]) -> int:
        """Insert or replace rows by the table's key; returns how many rows were new.

        Rows of this call that share a key collapse first (see the module docstring): the later
        one is stored, and a differing pair is logged and added to ``self.duplicates``.
        """
        if not rows:
            return 0
        model = TABLES[name]
        bad = [type(r).__name__ for r in rows if not isinstance(r, model)]
        if bad:
            raise TypeError(f"table {name!r} takes {model.__name__} rows, got {bad[0]}")
        rows = self._collapse_duplicates(name, rows)
        key = KEYS[name]
        keys = [getattr(r, key) for r in rows]
        schema = model.to_arrow_schema()
        dumped = [r.model_dump() for r in rows]
        table = self.table(name)
        known = self._known_keys(name, table)
        if known.any_of(keys):
            data = pa.Table.from_pylist(dumped, schema=schema)
            result = table.merge_insert(key).when_matched_update_all().when_not_matched_insert_all().execute(data)
            inserted, appended = int(result.num_inserted_rows), False
        else:
            result = table.add(pa.RecordBatchReader.from_batches(schema, _record_batches(dumped, schema)))
            inserted, appended = len(rows), True
        if int(result.version) == known.version + 1:
            if appended:  # our append directly followed that version, so holds every file of it
                self._superseded.setdefault(name, []).append(known.version)
            known.add(keys, int(result.version))
        else:  # another writer committed meanwhile: re-read the keys next time; if it wrote the same
            # new keys (an append, or a merge that inserted them too), keep one copy of each
            self._known.pop(name, None)
            self._replace_concurrent_duplicates(name, pa.Table.from_pylist(dumped, schema=schema))
        self._commits[name] = self._commits.get(name, 0) + 1
        if self._commits[name] >= COMPACT_EVERY:
            self._compact(name)
        return inserted

    def _compact(self, name: str) -> None:
        """Merge the small fragments this writer's commits left (the keys stay the same) and remove
        the versions its appends superseded."""
        self._commits[name] = 0
        self._remove_superseded(name)
        ds = self.dataset(name)
        try:
            _, removed = compact_small_fragments(ds, int(TARGET_FRAGMENT_MB * (1 << 20)))
        except Exception as err:  # a concurrent writer's commit can conflict; the next round retries
            log.warning("%s: compaction during the run skipped: %s", name, short_error(err))
            return
        known = self._known.get(name)
        if removed and known is not None:
            latest = int(self.table(name).version)
            if latest == known.version + 1:
                known.version = latest
            else:
                self._known.pop(name, None)

    def _remove_superseded(self, name: str) -> None:
        """Remove the versions that this writer's own appends directly followed, except the newest
        ``RETAIN_VERSIONS`` and tagged ones: only their manifests and transaction files go (see the
        module docstring)."""
        pending = self._superseded.get(name, [])
        cut = int(self.table(name).version) - RETAIN_VERSIONS
        old = [v for v in pending if v < cut]
        self._superseded[name] = [v for v in pending if v >= cut]
        if not old:
            return
        try:
            stats = self.dataset(name).cleanup_old_versions(versions=old, error_if_tagged_old_versions=False)
        except Exception as err:  # another process's cleanup may have removed some already
            log.warning("%s: removing %d superseded versions skipped: %s", name, len(old), short_error(err))
            return
        log.debug("%s: removed %d superseded versions (%d bytes of manifests)", name, stats.old_versions,
                  stats.bytes_removed)

    def update(self, name: str, rows: Sequence[dict[str, Any]]) -> int:
        """Set some columns of existing rows, by key (each dict: the key plus the columns to set).

        The other columns, image bytes included, stay as stored and never pass through Python.
        Keys not in the table are ignored; returns how many rows changed.
        """
        if not rows:
            return 0
        key = KEYS[name]
        columns = list(rows[0])
        if key not in columns or any(list(r) != columns for r in rows):
            raise ValueError(f"update of {name!r}: every row needs {key!r} and the same columns")
        schema = TABLES[name].to_arrow_schema()
        data = pa.Table.from_pylist(list({r[key]: r for r in rows}.values()),
                                    schema=pa.schema([schema.field(c) for c in columns]))
        result = self.table(name).merge_insert(key).when_matched_update_all().execute(data)
        return int(result.num_updated_rows)

    def _collapse_duplicates(self, name: str, rows: Sequence[LanceModel]) -> list[LanceModel]:
        key = KEYS[name]
        by_key: dict[str, LanceModel] = {}
        for row in rows:
            k = getattr(row, key)
            seen = by_key.get(k)
            if seen is not None:
                before, after = seen.model_dump(exclude={"created_at"}), row.model_dump(exclude={"created_at"})
                differing = tuple(c for c in after if before.get(c) != after[c])
                if differing:
                    self.duplicates.append(DuplicateKey(name, k, differing))
                    log.warning("%s: two rows of one write share %s %s and differ in %s; the later one is kept",
                                name, key, k, ", ".join(differing))
            by_key[k] = row
        return list(by_key.values())

    def _known_keys(self, name: str, table) -> _KnownKeys:
        version = int(table.version)  # the latest: read_consistency_interval=0 checks on each call
        known = self._known.get(name)
        if known is None or known.version != version:
            ds = table.to_lance()
            keys = ds.to_table(columns=[KEYS[name]]).column(KEYS[name]).to_pylist() if ds.count_rows() else []
            known = self._known[name] = _KnownKeys(ds.version, keys)
        return known

    def _replace_concurrent_duplicates(self, name: str, data: pa.Table) -> None:
        """Another writer committed during our append: if it stored the same keys, one copy of each stays.

        Every writer that sees the duplicates deletes all copies but the first stored (lowest
        ``_rowid``), so two writers doing it at once agree and converge on one row per key (deleting
        and re-adding its own rows, as each writer once did, left both copies when both did it).
        The copies are the same item (keys are content ids). A delete that loses a commit race to
        the other writer's delete is tried again on what is then stored.
        """
        key = KEYS[name]
        keys = data.column(key).to_pylist()
        for attempt in range(5):
            stored = self.table(name).to_lance().to_table(columns=[key], with_row_id=True,
                                                          filter=sql_in(key, keys)).to_pylist()
            first: dict[str, int] = {}
            extra: list[int] = []
            for row in sorted(stored, key=lambda r: r["_rowid"]):
                if row[key] in first:
                    extra.append(row["_rowid"])
                else:
                    first[row[key]] = row["_rowid"]
            if not extra:
                return
            log.warning("%s: a concurrent writer stored %d of the same keys; keeping one copy of each",
                        name, len(extra))
            try:
                self.table(name).delete(f"_rowid IN ({', '.join(map(str, extra))})")
                return
            except Exception as err:  # a commit conflict with the other writer's delete
                if attempt == 4:
                    raise
                log.debug("%s: deleting duplicate copies conflicted (%s); reading again", name, err)

    # -- reads ----------------------------------------------------------------------------------

    def read(
        self, name: str, where: str | None = None, columns: list[str] | None = None, limit: int | None = None
    ) -> pa.Table:
        """Rows matching ``where`` (a LanceDB SQL filter), all unless ``limit``; empty if none yet.

        For small reads and reads without image columns; rows with images go through ``scan``/``take``.
        """
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

    def dataset(self, name: str):
        """The pylance dataset of ``name`` at this handle's version (the latest, or a pinned one); None if absent."""
        if not self._exists(name):
            return None
        return self.table(name).to_lance()

    def scan(
        self, name: str, where: str | None = None, columns: list[str] | None = None, batch_bytes: int = BATCH_BYTES,
    ) -> Iterator[list[dict[str, Any]]]:
        """Rows matching ``where`` in one streaming pass, as lists of row dicts of about ``batch_bytes``.

        Lance bounds its reads in bytes (``batch_size_bytes``; with a filter, the bound applies before
        filtering, so an output batch may hold up to about twice the budget) and its read-ahead
        buffer; batches are cut to the budget before they become Python objects, so memory stays
        flat however large the table (a single row larger than the budget comes alone). Image
        columns are read only if ``columns`` names them (all columns when None); they are fetched
        after the filter, for matching rows only.
        """
        ds = self.dataset(name)
        if ds is None:
            return
        images = [c for c in (columns or ds.schema.names) if c in IMAGE_COLUMNS.get(name, ())]
        scanner = ds.scanner(
            columns=columns, filter=where, batch_size_bytes=batch_bytes, io_buffer_size=max(2 * batch_bytes, 32 << 20),
            batch_readahead=1, fragment_readahead=1, late_materialization=images or None,
        )
        for batch in scanner.to_batches():
            yield from _slices(batch, batch_bytes)

    def take(
        self, name: str, keys: Iterable[str], columns: list[str], batch_bytes: int = BATCH_BYTES,
    ) -> Iterator[list[dict[str, Any]]]:
        """Rows of these keys (in table order; unknown keys are skipped), in batches of about ``batch_bytes``.

        Each row is fetched by its offset in this version (one key-column scan builds the map,
        once per version), so a lookup never scans the table. Batch sizes adapt to the bytes of
        the rows fetched so far.
        """
        ds = self.dataset(name)
        if ds is None:
            return
        offsets = self._key_offsets(name, ds)
        wanted = sorted({offsets[k] for k in keys if k in offsets})
        columns = list(dict.fromkeys([KEYS[name], *columns]))
        step, i = 8, 0
        while i < len(wanted):
            chunk = ds.take(wanted[i:i + step], columns=columns)
            i += len(chunk)
            step = max(1, int(batch_bytes // max(1, chunk.nbytes / max(1, chunk.num_rows))))
            yield chunk.to_pylist()

    def _key_offsets(self, name: str, ds) -> dict[str, int]:
        cached = self._offsets.get((name, ds.version))
        if cached is None:
            self._offsets = {k: v for k, v in self._offsets.items() if k[0] != name}  # one version per table
            keys = ds.scanner(columns=[KEYS[name]], scan_in_order=True).to_table().column(KEYS[name]).to_pylist()
            cached = self._offsets[(name, ds.version)] = {k: i for i, k in enumerate(keys)}
        return cached

    def count(self, name: str, where: str | None = None) -> int:
        if not self._exists(name):
            return 0
        return int(self.table(name).count_rows(where))

    def duplicate_keys(self) -> dict[str, list[str]]:
        """Keys stored more than once, per table (empty when every table's keys are unique)."""
        out: dict[str, list[str]] = {}
        for name in self.table_names():
            if name not in TABLES:
                continue
            keys = self.read(name, columns=[KEYS[name]]).column(KEYS[name])
            counts = pa.compute.value_counts(keys)
            twice = [v["values"] for v in counts.to_pylist() if v["counts"] > 1]
            if twice:
                out[name] = sorted(twice)
        return out

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


def _slices(batch: pa.RecordBatch, budget: int) -> Iterator[list[dict[str, Any]]]:
    """Row dicts of ``batch`` in runs of at most ``budget`` bytes (at least one row each)."""
    if batch.num_rows == 0:
        return
    per_row = batch.nbytes / batch.num_rows
    step = max(1, int(budget // max(1.0, per_row)))
    for start in range(0, batch.num_rows, step):
        yield batch.slice(start, step).to_pylist()


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
