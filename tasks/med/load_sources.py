"""Load one batch of MED sources: the image bytes and size, or the reason an item cannot be used."""

from __future__ import annotations

import io
import time
from pathlib import Path

from PIL import Image
from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.verdict import StageStats, Verdict
from pairsmith.storage.image_folder import ImageLimits, check_image_bytes
from pairsmith.storage.store import open_store, sql_in
from pairsmith.tasks.med.item import MedItem, judge
from pairsmith.tasks.med.sources import SourceRef

# What Gemini takes as inline image data; other formats are sent as PNG.
EDITOR_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def _editable(data: bytes, fmt: str | None) -> tuple[bytes, str]:
    if fmt in EDITOR_MIME:
        return data, EDITOR_MIME[fmt]
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, format="PNG")
    return buf.getvalue(), "image/png"


@task(name="load-sources", cache_policy=NO_CACHE)
def load_sources(
    refs: list[SourceRef], pair_ids: list[str], db_uri: str, limits: ImageLimits,
) -> tuple[list[MedItem], StageStats]:
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
                judge(stats, item, Verdict.drop("source_missing"), detail=str(path))
                continue
            data = path.read_bytes()
        else:
            data = before.get(ref.pair_id) or b""
        verdict, detail, facts = check_image_bytes(data, limits)
        if verdict.keep:
            item.image, item.mime_type = _editable(data, facts["format"])
            item.width, item.height = facts["width"], facts["height"]
        judge(stats, item, verdict, detail=detail or None)
    stats.seconds = time.perf_counter() - start
    return items, stats
