"""Where Img-Diff candidates come from: source captions, or the image pairs of an earlier run.

Candidate i takes caption i modulo the list's length (``pairsmith.tasks.imgdiff.caption_source``) and its
own seed, so a run longer than the list repeats captions with new images. With ``rounds`` > 1
(Img-Diff supp. §11: several rounds of noun replacement on one caption), candidates
k*rounds ... k*rounds + rounds - 1 take caption k, in rounds 0 ... rounds - 1.

The removal flow can also start from the pairs an ``imgdiff-replace`` run made (Img-Diff removes
objects from its replacement pairs): ``list_source_pairs`` names them, the ``load`` stage
(``pairsmith.tasks.imgdiff.load``) reads one batch's images.
"""

from __future__ import annotations

from pairsmith.storage.ids import stable_id
from pairsmith.storage.store import PairStore, sql_literal
from pairsmith.tasks.imgdiff.items import ImgDiffItem, derived_seed


def plan_caption_items(flow_name: str, content_key: str, seed: int, captions: list[str],
                       indices: range, rounds: int = 1) -> list[ImgDiffItem]:
    """Candidates ``indices`` of a run: deterministic pair ids, captions, rounds and seeds."""
    items = []
    for i in indices:
        k, r = (i // rounds) % len(captions), i % rounds
        items.append(ImgDiffItem(
            index=i, pair_id=stable_id(flow_name, content_key, i), seed=derived_seed("pair", seed, i),
            source_caption=captions[k], rewrite_round=r, origin=f"caption:{k}" + (f"/round:{r}" if rounds > 1 else "")))
    return items


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
