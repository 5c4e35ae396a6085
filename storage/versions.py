"""Named, reproducible versions of the database: what an export read, pinned by a LanceDB tag.

Every LanceDB write makes a new table version. An export pins the current version of every table
first, reads only from those versions (a flow writing meanwhile cannot leak into it), and tags them
all with one name, ``export-<UTC time>``. ``pairsmith export --at TAG`` later reads exactly the same
rows. Tagged versions survive maintenance (see ``flows/maintenance.py``) until the tag is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from pairsmith.storage.schemas import TABLES
from pairsmith.storage.store import PairStore

EXPORT_TAG_PREFIX = "export-"


@dataclass(frozen=True)
class Snapshot:
    """One version per table; a tag names the same set in every table."""

    versions: dict[str, int]
    tag: str | None = None


def current_versions(store: PairStore) -> dict[str, int]:
    """The version of every table that exists: the latest, or the pinned one in a pinned view."""
    return {name: store.table(name).version for name in store.table_names() if name in TABLES}


def pinned_store(store: PairStore, at: dict[str, int] | str) -> PairStore:
    """A read-only view of ``store`` at the given versions (table -> version) or tag.

    Only the pinned tables are in the view: a table created after the tag (``regions`` once
    ``propose-regions`` ran, say) does not carry it and is simply absent, as it was then.
    """
    if isinstance(at, str):
        tag = at
        at = list_tags(store).get(tag, {})
        if not at:
            known = ", ".join(sorted(list_tags(store))) or "none"
            raise ValueError(f"--at {tag!r}: no such tag in {store.uri!r} (tags: {known})")
    view = PairStore(store.uri, storage_options=store.storage_options, only=at)
    for name, version in at.items():
        view.table(name).checkout(version)
    return view


def tag_versions(store: PairStore, tag: str, versions: dict[str, int]) -> None:
    for name, version in versions.items():
        store.table(name).tags.create(tag, version)


def list_tags(store: PairStore) -> dict[str, dict[str, int]]:
    """tag -> {table: version}, over every table."""
    out: dict[str, dict[str, int]] = {}
    for name in store.table_names():
        if name not in TABLES:
            continue
        for tag, info in store.table(name).tags.list().items():
            out.setdefault(tag, {})[name] = int(info["version"])
    return out


def new_export_tag(store: PairStore, now: datetime | None = None) -> str:
    """``export-YYYYmmddTHHMMSSZ``, with a counter if an export in the same second took that name."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    taken = set(list_tags(store))
    tag, n = f"{EXPORT_TAG_PREFIX}{stamp}", 2
    while tag in taken:
        tag, n = f"{EXPORT_TAG_PREFIX}{stamp}-{n}", n + 1
    return tag


def pin_for_export(store: PairStore, at: str | None = None) -> tuple[PairStore, Snapshot]:
    """The store to export from and the snapshot it shows: an existing tag, or now, tagged at once
    with a new ``export-...`` tag (``delete_tag`` it if the export fails)."""
    if at is not None:
        view = pinned_store(store, at)
        return view, Snapshot(versions=current_versions(view), tag=at)
    versions = current_versions(store)
    # tagged before anything is read: a run writing meanwhile removes the untagged versions its own
    # appends superseded (storage/store.py), and a pinned view reopens its version on every read
    tag = new_export_tag(store)
    tag_versions(store, tag, versions)
    return pinned_store(store, versions), Snapshot(versions=versions, tag=tag)


def delete_tag(store: PairStore, tag: str) -> None:
    """Delete ``tag`` from every table that has it (an export that failed names nothing)."""
    for name in store.table_names():
        if name in TABLES and tag in store.table(name).tags.list():
            store.table(name).tags.delete(tag)
