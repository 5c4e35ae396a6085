"""Load one batch of MED sources: the image bytes and size, or the reason an item cannot be used."""

from __future__ import annotations

import io
import time
from pathlib import Path

from PIL import Image
from prefect import task
from prefect.cache_policies import NO_CACHE

from filters.verdict import KEEP, StageStats, Verdict
from storage.pair_images import image_extension
from storage.store import open_store, sql_in
from tasks.med_item import MedItem, judge
from tasks.med_sources import SourceRef

MIME = {"png": "image/png", "jpg": "image/jpeg"}


def _check(data: bytes, max_pixels: int) -> tuple[Verdict, str | None, tuple[int, int]]:
    """Whether bytes are a usable photo; decoding fully catches truncated files too."""
    if not data:
        return Verdict.drop("source_empty_file"), None, (0, 0)
    try:
        with Image.open(io.BytesIO(data)) as img:
            size = img.size
            if size[0] * size[1] > max_pixels:
                return Verdict.drop("source_too_large"), f"{size[0]}x{size[1]} pixels", size
            img.load()
        image_extension(data)
    except Exception as err:  # PIL raises many types for broken files
        return Verdict.drop("source_unreadable"), f"{type(err).__name__}: {err}", (0, 0)
    return KEEP, None, size


@task(name="load-sources", cache_policy=NO_CACHE)
def load_sources(refs: list[SourceRef], pair_ids: list[str], db_uri: str, max_pixels: int) -> tuple[list[MedItem], StageStats]:
    stats, start = StageStats("source"), time.perf_counter()
    stored = [r.pair_id for r in refs if r.pair_id]
    before = {row["pair_id"]: row["image_before"] for row in open_store(db_uri).read(
        "pairs", where=sql_in("pair_id", stored), columns=["pair_id", "image_before"]).to_pylist()} if stored else {}
    items = []
    for ref, pair_id in zip(refs, pair_ids):
        item = MedItem(ref=ref, pair_id=pair_id)
        items.append(item)
        if ref.problem:
            judge(stats, item, Verdict.drop(ref.problem))
            continue
        if ref.path is not None:
            path = Path(ref.path)
            if not path.is_file():
                judge(stats, item, Verdict.drop("source_missing_file"), detail=str(path))
                continue
            data = path.read_bytes()
        else:
            data = before.get(ref.pair_id) or b""
        verdict, detail, (w, h) = _check(data, max_pixels)
        if verdict.keep:
            item.image, item.width, item.height = data, w, h
            item.mime_type = MIME[image_extension(data)]
        judge(stats, item, verdict, detail=detail)
    stats.seconds = time.perf_counter() - start
    return items, stats
