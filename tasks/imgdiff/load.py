"""Img-Diff removal from an earlier run, ``load``: read each item's source pair from the database.

The removal flow can start from the pairs an ``imgdiff-replace`` run made (Img-Diff removes
objects from its replacement pairs, see ``pairsmith.tasks.imgdiff.sources.list_source_pairs``);
this stage takes the place of caption pairs and image generation.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import LOAD
from pairsmith.storage.pair_images import open_image
from pairsmith.storage.store import open_store, sql_in
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, judge
from pairsmith.tasks.stage import stage


@stage(LOAD.name)
def load(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Read each item's source pair (images, captions, seed, pair similarity) from ``ctx.settings.db``;
    an unreadable one drops as ``load_missing_images`` or ``load_error``."""
    db = ctx.component("db")
    ids = [item.origin.removeprefix("pair:") for item in items]
    rows = {r["pair_id"]: r for r in open_store(db).read("pairs", where=sql_in("pair_id", ids)).to_pylist()}
    for item, source_id in zip(items, ids):
        row = rows.get(source_id)
        if row is None or not row["image_before"] or not row["image_after"]:
            judge(stats, item, Verdict.drop("load_missing_images"), f"source pair {source_id} has no images")
            continue
        try:
            item.before, item.after = open_image(row["image_before"]), open_image(row["image_after"])
        except Exception as err:  # a corrupt image drops its pair, not the batch
            judge(stats, item, Verdict.drop("load_error"), f"source pair {source_id}: {type(err).__name__}: {err}")
            continue
        if item.after.size != item.before.size:
            item.after = item.after.resize(item.before.size)
        item.source_caption, item.caption_after, item.seed = row["caption_before"], row["caption_after"], row["seed"]
        item.scores.update({c: row.get(c) for c in LOAD.writes})
        judge(stats, item, KEEP)
