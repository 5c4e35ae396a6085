"""Resume per item: a run is its content, and a re-run does only the items it has not counted yet.

A run's id comes from what shapes its items (``pairsmith.storage.ids.content_key``), never from how
many items were asked for (``--pairs``, ``--limit``) or how they were cut into batches
(``--batch-size``). Item ``i`` of a run is the same item whatever the run's size, so

* ``render --pairs 8`` then ``render --pairs 10`` is one run: the second renders pairs 8 and 9 only;
* another ``--batch-size`` recomputes nothing;
* a smaller count than the run already holds adds nothing (the run keeps what it has).

Which items are counted is read from the run's stored stage stats: every batch is named by the
index range of its items (``0000008-0000010``), and those ranges never overlap, because new items
are cut into batches only inside the gaps the stored ranges leave. A batch that holds an item to
retry (an item that failed with an error, or one whose reason may have gone away, such as an input
file that changed since) is redone under its own name, so its stats replace themselves and the
funnel never counts an item twice.

Runs stored under a sized id have ids that hashed the size and batch size too. A run of the same
content is found by recomputing that old id from the sizes its stored batch names show
(``find_legacy_run``); it is then continued under its old id, so nothing is redone or orphaned.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from pairsmith.flows.engine.batching import batch_name

_BATCH = re.compile(r"^(\d+)-(\d+)$")


def batch_span(name: str) -> range | None:
    """The item indices a batch named ``start-stop`` covers; None for other names (``select``)."""
    match = _BATCH.match(name or "")
    if not match:
        return None
    start, stop = int(match.group(1)), int(match.group(2))
    return range(start, stop) if stop > start else None


def stored_spans(store, run_id: str) -> dict[str, range]:
    """Batch name -> item indices, for every batch of ``run_id`` whose stage stats are stored."""
    return {name: span for name in store.completed_batches(run_id) if (span := batch_span(name)) is not None}


@dataclass
class ResumePlan:
    """What one invocation of a run does: ``todo`` batches (new items first, then batches redone)."""

    run_id: str
    n_items: int
    todo: list[range] = field(default_factory=list)
    redone: list[str] = field(default_factory=list)  # stored batches run again (an item to retry)
    stored_items: int = 0  # items of [0, n_items) already counted before this invocation
    stored_batches: int = 0  # batches of the run already stored (any range)
    legacy: bool = False  # the run id is a pairsmith before per-item resume one, found by its content

    @property
    def new_items(self) -> int:
        return sum(len(r) for r in self.todo if batch_name(r) not in self.redone)

    @property
    def items_to_do(self) -> int:
        return sum(len(r) for r in self.todo)

    @property
    def done_items(self) -> int:
        """Items of [0, n_items) this invocation does not touch."""
        return max(0, self.n_items - self.items_to_do)


def plan_resume(store, run_id: str, n_items: int, batch_size: int, redo: Iterable[str] = (),
                legacy: bool = False) -> ResumePlan:
    """The batches to run for items ``0..n_items-1`` of ``run_id``.

    Items covered by a stored batch are skipped; the rest are cut into batches of at most
    ``batch_size`` consecutive items, each inside one gap between stored ranges. ``redo`` names
    stored batches to run again whole (under their own name)."""
    spans = stored_spans(store, run_id)
    todo: list[range] = []
    covered = sorted(spans.values(), key=lambda r: r.start)
    position = 0
    for span in [*covered, range(n_items, n_items + 1)]:
        gap_end = min(span.start, n_items)
        for start in range(position, gap_end, batch_size):
            todo.append(range(start, min(start + batch_size, gap_end)))
        position = max(position, span.stop)
        if position >= n_items:
            break
    redone = sorted(name for name in set(redo) if name in spans)
    todo += [spans[name] for name in redone]
    stored = sum(len(range(max(s.start, 0), min(s.stop, n_items))) for s in covered if s.start < n_items)
    return ResumePlan(run_id=run_id, n_items=n_items, todo=todo, redone=redone, stored_items=stored,
                      stored_batches=len(spans), legacy=legacy)


def batches_holding(spans: dict[str, range], indices: Iterable[int]) -> set[str]:
    """Names of the stored batches that hold any of ``indices``."""
    wanted = sorted(set(indices))
    if not wanted:
        return set()
    return {name for name, span in spans.items() if any(i in span for i in wanted)}


def retry_indices(store, run_id: str, ids: list[str], should_retry: Callable[[dict], bool],
                  columns: tuple[str, ...] = ("pair_id", "status", "drop_stage", "drop_reason", "created_at"),
                  table: str = "pairs", key: str = "pair_id") -> set[int]:
    """Indices ``i`` whose stored dropped row (``ids[i]`` in ``table``, this run) ``should_retry``."""
    from pairsmith.storage.store import sql_literal

    if not store._exists(table) or not store.count("stage_stats", f"run_id = {sql_literal(run_id)} AND n_dropped > 0"):
        return set()  # nothing dropped: no row to read
    rows = store.read(table, where=f"run_id = {sql_literal(run_id)} AND status = 'dropped'",
                      columns=list(columns)).to_pylist()
    wanted = {row[key]: row for row in rows if should_retry(row)}
    if not wanted:
        return set()
    return {i for i, item in enumerate(ids) if item in wanted}


# --- runs stored under a sized id ------------------------------------------------------------------------


def find_legacy_run(store, flow_prefix: str, run_id: str, legacy_id: Callable[[int, int], str],
                    requested: tuple[int, int]) -> str | None:
    """The id of a run stored under a sized id with the same content as ``run_id``, or None.

    ``legacy_id(n_items, batch_size)`` is that version's formula for this config. The candidates
    are the stored runs whose id starts with ``flow_prefix``; for each, the sizes are read back from
    its batch names (the largest stop, every batch width) and the ``requested`` sizes of this
    invocation (a crashed run's last batches are missing). A run of the new form that already has
    stats wins: it is ``run_id`` itself. Read-only."""
    if not store._exists("stage_stats"):
        return None
    prefix = flow_prefix.replace("'", "''")
    rows = store.read("stage_stats", where=f"run_id LIKE '{prefix}-%'", columns=["run_id", "batch"]).to_pylist()
    by_run: dict[str, list[range]] = {}
    for row in rows:
        span = batch_span(row["batch"])
        by_run.setdefault(row["run_id"], [])
        if span is not None:
            by_run[row["run_id"]].append(span)
    if run_id in by_run:
        return None
    matches: list[tuple[int, str]] = []
    for other, spans in by_run.items():
        stops = {s.stop for s in spans} | {requested[0]}
        widths = {len(s) for s in spans} | {requested[1]}
        if any(legacy_id(n, b) == other for n in stops for b in widths):
            matches.append((sum(len(s) for s in spans), other))
    if not matches:
        return None
    return max(matches)[1]  # the one that counted most items (an older, smaller run was re-done by it)


def resolve_run_id(store, flow_prefix: str, run_id: str, legacy_id: Callable[[int, int], str] | None,
                   requested: tuple[int, int]) -> tuple[str, bool]:
    """``run_id``, or the id of the same content's run stored under a sized id (then True)."""
    if legacy_id is None:
        return run_id, False
    found = find_legacy_run(store, flow_prefix, run_id, legacy_id, requested)
    return (found, True) if found else (run_id, False)


def owner_note(store, run_id: str) -> str | None:
    """Why a run with stored stats owns no pair rows, naming the runs that now hold them; None when
    it owns some (or never kept any). Read-only.

    Pairs are keyed by ids that do not name the run (the same content gives the same ids), so a
    later run over the same items re-writes them under its own run id: pairsmith before per-item resume made a
    second run for ``--pairs 10`` after ``--pairs 8``; an import of the same files with other
    options does the same today."""
    from pairsmith.flows.engine.funnel import run_funnel
    from pairsmith.storage.store import sql_literal

    if not store._exists("pairs") or store.count("pairs", f"run_id = {sql_literal(run_id)}") > 0:
        return None
    funnel = run_funnel(store, run_id)
    if not funnel or not any(s.n_in for s in funnel):
        return None
    runs = store.runs()
    flow = next((r["flow"] for r in runs if r["run_id"] == run_id), None)
    spans = list(stored_spans(store, run_id).values())
    candidates = []
    for run in runs:
        other = run["run_id"]
        if other == run_id or run["flow"] != flow:
            continue
        theirs = list(stored_spans(store, other).values())
        if all(any(s.start >= t.start and s.stop <= t.stop for t in theirs) for s in spans) and \
                store.count("pairs", f"run_id = {sql_literal(other)}") > 0:
            candidates.append(other)
    if not candidates:  # e.g. propose-regions: a run that only adds regions never owned pairs
        return None
    kept = funnel[-1].n_kept
    return (f"run {run_id} counted {kept} kept pair{'s' if kept != 1 else ''}, but its pairs are now stored under "
            f"run {', '.join(candidates)}, which made the same pairs again (pair ids do not name the run); "
            f"use --run {candidates[0]}")



# --- inputs whose reason may have gone away -----------------------------------------------------------------


def changed_since(path: str | Path | None, when: datetime | None, missing_before: bool = False) -> bool:
    """Whether the file at ``path`` may differ from when an item's row was written (``when``): it was
    modified or replaced since (its mtime or ctime is later: a copy, even ``cp -p``, or a move
    sets the ctime), or it was missing then (``missing_before``) and is there now. A file missing
    now, or a row without a time, counts as unchanged unless the file appeared."""
    if path is None:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    if missing_before or when is None:
        return missing_before
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(st.st_mtime, st.st_ctime) > when.timestamp()


def with_owner_note(message: str, store, run_id: str | None) -> str:
    """``message`` (why a verb found nothing for ``--run``) followed by ``owner_note``, if any."""
    if run_id is None:
        return message
    try:
        note = owner_note(store, run_id)
    except Exception:  # an explanation never hides the error it explains
        note = None
    return f"{message}; {note}" if note else message


# --- redoing single items of a stored batch -----------------------------------------------------------------


@dataclass
class ItemRedo:
    """Items of one stored batch to run again; the batch keeps its name, and its stage stats become
    ``base`` (the stored stats less those items' old outcomes) plus what the items do now."""

    batch: str
    indices: list[int]
    base: list  # list[StageStats]

    def restated(self, new: list) -> list:
        """``base`` plus the stats of the items' new run, stage by stage, in the stored order."""
        from pairsmith.storage.verdict import StageStats

        by_stage = {s.stage: s for s in self.base}
        for s in new:
            by_stage[s.stage] = by_stage[s.stage] + s if s.stage in by_stage else s
        order = [s.stage for s in self.base] + [s.stage for s in new if s.stage not in {b.stage for b in self.base}]
        return [by_stage.get(name, StageStats(name)) for name in order]


def plan_item_redos(store, run_id: str, batches: Iterable[str], ids_of: Callable[[range], list[str]],
                    should_retry: Callable[[dict], bool]) -> tuple[list[ItemRedo], set[str]]:
    """For each stored batch in ``batches``: its dropped items that ``should_retry`` (by their pair
    rows), to be redone alone (``ItemRedo``); or, when its stats cannot be told apart item by item
    (no such row, a row whose stage the batch did not count), the batch's name, to be redone whole."""
    from pairsmith.flows.engine.funnel import funnel_from_rows
    from pairsmith.storage.stage_names import current
    from pairsmith.storage.store import sql_in, sql_literal

    spans = stored_spans(store, run_id)
    redos, whole = [], set()
    for name in sorted(set(batches)):
        span = spans.get(name)
        if span is None:
            continue
        ids = ids_of(span)
        index_of = {pid: span.start + k for k, pid in enumerate(ids)}
        rows = store.read("pairs", where=f"run_id = {sql_literal(run_id)} AND status = 'dropped' AND "
                          f"{sql_in('pair_id', ids)}", columns=["pair_id", "status", "drop_stage", "drop_reason",
                                                                 "created_at"]).to_pylist() if ids else []
        stats = store.read("stage_stats", where=f"run_id = {sql_literal(run_id)} AND batch = {sql_literal(name)}"
                           ).to_pylist()
        flow = stats[0]["flow"] if stats else None
        rows = [dict(r, drop_stage=current(flow, r["drop_stage"])) for r in rows]  # stored before the rename
        chosen = [r for r in rows if should_retry(r)]
        base = _less(funnel_from_rows(stats), chosen)
        if not chosen or base is None:
            whole.add(name)
            continue
        redos.append(ItemRedo(name, sorted(index_of[r["pair_id"]] for r in chosen), base))
    return redos, whole


def _less(stages: list, rows: list[dict]) -> list | None:
    """``stages`` (one batch's, in order) with the outcome of every dropped row taken out; None if a
    row's stage or reason is not counted there (then only a whole redo keeps the stats right)."""
    import copy

    out = [copy.deepcopy(s) for s in stages]
    names = [s.stage for s in out]
    for row in rows:
        if row["drop_stage"] not in names:
            return None
        at = names.index(row["drop_stage"])
        dropped_at = out[at]
        if dropped_at.reasons.get(row["drop_reason"], 0) <= 0:
            return None
        for s in out[:at]:
            s.n_in -= 1
            s.n_kept -= 1
        dropped_at.n_in -= 1
        dropped_at.n_dropped -= 1
        dropped_at.reasons[row["drop_reason"]] -= 1
        if not dropped_at.reasons[row["drop_reason"]]:
            del dropped_at.reasons[row["drop_reason"]]
    if any(s.n_in < 0 or s.n_kept < 0 or s.n_dropped < 0 for s in out):
        return None
    return out
