"""Compaction sized in bytes: merge a table's small fragments, leave the big ones alone.

Each commit adds a fragment, and both LanceDB's ``add`` and ``merge_insert`` cost more per commit as
fragments pile up (``add`` measured 12 -> 31 ms of CPU for a 10-row commit after 1,800 commits;
15 ms again once compacted). LanceDB's own ``optimize()`` picks fragments by *row* count (under a
million rows), so a table of image rows always looked small and was rewritten whole. Here a
fragment is *small* when its data files hold less than ``SMALL_SHARE`` of the target size in bytes;
only small fragments (and ones mostly deleted by updates) are merged, into fragments of about the
target size, so a pair's image bytes are rewritten once on their way to a big fragment and never
again. The writer (``PairStore.upsert``) runs this every ``COMPACT_EVERY`` commits of a table during
long runs; ``pairsmith maintain`` runs it and then cleans up old versions.
"""

from __future__ import annotations

from dataclasses import dataclass

TARGET_FRAGMENT_MB = 256.0
SMALL_SHARE = 0.25  # a fragment under this share of the target size is merged with its small neighbours
DELETED_SHARE = 0.1  # Lance's default: a fragment with more deleted rows than this is rewritten
READ_BATCH_BYTES = 16 << 20  # what compaction reads at a time, so memory does not grow with the table


@dataclass
class CompactionPlan:
    rewrite: list[int]  # fragment ids to merge
    keep: list[int]  # fragment ids Lance must leave alone
    target_rows: int  # rows per merged fragment
    bytes_per_row: float
    bytes_rewritten: int  # data bytes of the fragments to merge
    has_deletions: bool  # one of them is mostly deleted rows

    def worth_running(self) -> bool:
        """Two or more fragments to merge, or one to rid of its deleted rows."""
        return len(self.rewrite) > 1 or self.has_deletions


def compaction_plan(fragments: list, target_bytes: int) -> CompactionPlan:
    """Which fragments to merge. ``fragments`` are pylance ``FragmentMetadata``.

    A fragment is rewritten when its data files hold less than ``SMALL_SHARE`` of ``target_bytes``
    or more than ``DELETED_SHARE`` of its rows are deleted; the row target is ``target_bytes`` over
    the table's bytes per row.
    """
    sizes = {f.id: sum(d.file_size_bytes or 0 for d in f.files) for f in fragments}
    bytes_per_row = max(1.0, sum(sizes.values()) / max(1, sum(f.physical_rows or 0 for f in fragments)))
    rewrite, keep, deletions = [], [], False
    for f in fragments:
        deleted = f.deletion_file.num_deleted_rows if f.deletion_file is not None else 0
        mostly_deleted = deleted > DELETED_SHARE * max(1, f.physical_rows or 0)
        if sizes[f.id] < SMALL_SHARE * target_bytes or mostly_deleted:
            rewrite.append(f.id)
            deletions |= mostly_deleted
        else:
            keep.append(f.id)
    return CompactionPlan(rewrite, keep, max(1, int(target_bytes / bytes_per_row)), bytes_per_row,
                          sum(sizes[i] for i in rewrite), deletions)


def compact_small_fragments(ds, target_bytes: int) -> tuple[CompactionPlan, int]:
    """Merge the small fragments of the pylance dataset ``ds``; returns the plan and fragments removed.

    Pages are copied without re-encoding where Lance can (``try_binary_copy``)."""
    plan = compaction_plan([f.metadata for f in ds.get_fragments()], target_bytes)
    if not plan.worth_running():
        return plan, 0
    metrics = ds.optimize.compact_files(
        target_rows_per_fragment=plan.target_rows, excluded_fragment_ids=plan.keep,
        compaction_mode="try_binary_copy", batch_size=max(1, int(READ_BATCH_BYTES / plan.bytes_per_row)),
        num_threads=1,
    )
    return plan, int(metrics.fragments_removed)
