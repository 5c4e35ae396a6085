"""Where Img-Diff candidates come from: source captions, or the image pairs of an earlier run.

Candidate i takes caption i modulo the list's length (``pairsmith.tasks.imgdiff.caption_source``) and its
own seed, so a run longer than the list repeats captions with new images.

The removal flow can also start from the pairs an ``imgdiff-replace`` run made (Img-Diff removes
objects from its replacement pairs): ``list_source_pairs`` names them, ``load_source_pairs`` reads
one batch's images.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.storage.ids import stable_id
from pairsmith.storage.pair_images import open_image
from pairsmith.storage.store import PairStore, open_store, sql_in, sql_literal
from pairsmith.tasks.imgdiff.items import ImgDiffItem, derived_seed, judge

LOAD_STAGE = "load"


def plan_caption_items(flow_name: str, content_key: str, seed: int, captions: list[str],
                       indices: range) -> list[ImgDiffItem]:
    """Candidates ``indices`` of a run: deterministic pair ids, captions and seeds."""
    return [
        ImgDiffItem(index=i, pair_id=stable_id(flow_name, content_key, i), seed=derived_seed("pair", seed, i),
                    source_caption=captions[i % len(captions)], origin=f"caption:{i % len(captions)}")
        for i in indices
    ]


def list_source_pairs(store: PairStore, run: str, limit: int) -> list[str]:
    """Ids of the first ``limit`` pairs of ``run`` (by id) that have both images."""
    rows = store.read("pairs", where=f"run_id = {sql_literal(run)}",
                      columns=["pair_id", "method", "image_before", "image_after"]).to_pylist()
    if not rows:
        raise ValueError(f"source run {run!r} has no pairs in {store.uri!r}")
    ids = sorted(r["pair_id"] for r in rows if r["image_before"] and r["image_after"])
    if not ids:
        raise ValueError(f"source run {run!r} has no pair with both images (all failed before generation)")
    return ids[:limit]


def plan_source_items(flow_name: str, content_key: str, source_ids: list[str], indices: range) -> list[ImgDiffItem]:
    return [ImgDiffItem(index=i, pair_id=stable_id(flow_name, content_key, source_ids[i]), seed=None,
                        origin=f"pair:{source_ids[i]}") for i in indices]


@task(name="load-source-pairs", cache_policy=NO_CACHE)
def load_source_pairs(items: list[ImgDiffItem], db: str) -> StageStats:
    """Read each item's source pair (images, captions, seed); an unreadable one drops as ``load_*``."""
    stats, start = StageStats(LOAD_STAGE), time.perf_counter()
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
        item.pair_clip_sim = row.get("pair_clip_sim")
        judge(stats, item, KEEP)
    stats.seconds = time.perf_counter() - start
    return stats
