"""Named, reproducible versions of the database: what an export read, pinned by a LanceDB tag.

Every LanceDB write makes a new table version. An export pins the current version of every table
first, reads only from those versions (a flow writing meanwhile cannot leak into it), and tags them
all with one name, ``export-<UTC time>``. ``pairsmith export --at TAG`` later reads exactly the same
rows. Tagged versions survive maintenance (see ``flows/maintenance.py``) until the tag is deleted
(``pairsmith versions --delete TAG``).

**While an export runs** its versions are pinned by a *running* tag that names its owner,
``export-<UTC time>.running.<host>.<pid>``; the export renames it to ``export-<UTC time>`` when its
folder is in place, and deletes it if the export fails. A process killed with ``kill -9`` cannot do
either: the next export and ``pairsmith maintain`` delete a running tag whose owner is gone
(``storage/process_owner.py``: its pid is gone or reused on this host, or it is a day old from
another host), never the tag of an export still running.

**A read-only database** (a read-only mount) is exported without a tag: its versions cannot be
tagged, and nothing can remove them meanwhile either; the command says it could not tag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone

from pairsmith.storage.schemas import TABLES
from pairsmith.storage.store import PairStore

EXPORT_TAG_PREFIX = "export-"
RUNNING = ".running."
"""Marks a tag that pins versions for a command still running: ``<tag>.running.<host>.<pid>``."""


@dataclass(frozen=True)
class Snapshot:
    """One version per table; a tag names the same set in every table."""

    versions: dict[str, int]
    tag: str | None = None
    pinning: str | None = None  # the running tag that pins the versions until ``finish_export``
    untagged: str | None = None  # why no tag could be made (a read-only database)


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
    view = PairStore(store.uri, storage_options=store.storage_options, only=at, read_only=True)
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
    taken = {t.split(RUNNING)[0] for t in list_tags(store)}  # a running export's name is taken too
    tag, n = f"{EXPORT_TAG_PREFIX}{stamp}", 2
    while tag in taken:
        tag, n = f"{EXPORT_TAG_PREFIX}{stamp}-{n}", n + 1
    return tag


def running_tag(tag: str) -> str:
    """The tag that pins ``tag``'s versions while this process works on them."""
    from pairsmith.storage.process_owner import host_name

    return f"{tag}{RUNNING}{host_name()}.{os.getpid()}"


def _running_owner(tag: str) -> tuple[str, int] | None:
    """(host, pid) of a running tag, None for any other tag."""
    if RUNNING not in tag:
        return None
    host, _, pid = tag.rsplit(RUNNING, 1)[1].rpartition(".")
    return (host, int(pid)) if host and pid.isdigit() else None


def pin_for_export(store: PairStore, at: str | None = None) -> tuple[PairStore, Snapshot]:
    """The store to export from and the snapshot it shows: an existing tag, or now, pinned at once
    by a running tag (``finish_export`` names it ``Snapshot.tag``; ``delete_tag`` it if the export
    fails). A database that cannot be written is read at its current versions, untagged
    (``Snapshot.untagged`` says why). Running tags of exports that died are swept first."""
    if at is not None:
        view = pinned_store(store, at)
        return view, Snapshot(versions=current_versions(view), tag=at)
    versions = current_versions(store)
    if not store.writable:
        return pinned_store(store, versions), Snapshot(
            versions=versions, untagged=f"{store.uri!r} is not writable (a read-only mount or folder)")
    sweep_dead_tags(store)
    # tagged before anything is read: a run writing meanwhile removes the untagged versions its own
    # appends superseded (storage/store.py), and a pinned view reopens its version on every read
    tag = new_export_tag(store)
    pinning = running_tag(tag)
    tag_versions(store, pinning, versions)
    return pinned_store(store, versions), Snapshot(versions=versions, tag=tag, pinning=pinning)


def finish_export(store: PairStore, snapshot: Snapshot) -> None:
    """The export is in place: its running tag becomes ``snapshot.tag`` (tag first, then untag)."""
    if snapshot.pinning is None:
        return
    tag_versions(store, snapshot.tag, snapshot.versions)
    delete_tag(store, snapshot.pinning)


def dead_running_tags(store: PairStore) -> list[str]:
    """Running tags whose owner is gone (``storage/process_owner.py``): what a killed command left."""
    from pairsmith.storage.process_owner import owner_is_gone

    dead = []
    for tag in list_tags(store):
        owner = _running_owner(tag)
        if owner is None:
            continue
        made = _tag_time(tag)
        if owner_is_gone(owner[0], owner[1], made.timestamp() if made else 0.0):
            dead.append(tag)
    return sorted(dead)


def _tag_time(tag: str) -> datetime | None:
    stamp = tag.removeprefix(EXPORT_TAG_PREFIX)[:16]
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def sweep_dead_tags(store: PairStore) -> list[str]:
    """Delete the running tags of commands that died (the versions they pinned can then be cleaned)."""
    dead = dead_running_tags(store)
    for tag in dead:
        delete_tag(store, tag)
    return dead


def delete_tag(store: PairStore, tag: str) -> None:
    """Delete ``tag`` from every table that has it (an export that failed names nothing)."""
    for name in store.table_names():
        if name in TABLES and tag in store.table(name).tags.list():
            store.table(name).tags.delete(tag)
