"""Load one batch of MED sources: the image bytes and size, or the reason an item cannot be used.

A file is read only if it lies inside the images folder (checked again here, at the moment of
reading); one that cannot be read (any ``OSError``, e.g. a name too long for the file system) is
that item's ``source_unreadable`` row. Photos are decoded as a viewer shows them
(``pairsmith.storage.image_decode``: upright, so the editor, the store and every box share the
frame viewers show; 8-bit; alpha over white; a multi-frame file is ``source_multiframe`` unless
``image_limits.frame`` picks one) and go to the editor and into the store as PNG or JPEG: a PNG or
JPEG that already is such a picture as it is, anything else as PNG.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.image_folder import ImageLimits, check_image_bytes
from pairsmith.storage.input_files import PATH_OUTSIDE_ROOT, PathOutsideRoot, inside_root
from pairsmith.storage.store import open_store, sql_in
from pairsmith.storage.verdict import StageStats, Verdict
from pairsmith.tasks.med.item import MedItem, judge
from pairsmith.tasks.med.sources import SourceRef

MIME = {"JPEG": "image/jpeg", "PNG": "image/png"}


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
            judge(stats, item, Verdict.drop(ref.problem), detail=ref.path)
            continue
        if ref.path is not None:
            try:
                path = inside_root(ref.root, Path(ref.path).absolute()) if ref.root else Path(ref.path)
                if not path.is_file():
                    judge(stats, item, Verdict.drop("source_missing"), detail=ref.path)
                    continue
                data = path.read_bytes()
            except PathOutsideRoot as err:
                judge(stats, item, Verdict.drop(PATH_OUTSIDE_ROOT), detail=str(err))
                continue
            except OSError as err:
                judge(stats, item, Verdict.drop("source_unreadable"), detail=f"{type(err).__name__}: {err.strerror or err}")
                continue
        else:
            data = before.get(ref.pair_id) or b""
        verdict, detail, facts = check_image_bytes(data, limits)
        if verdict.keep:  # decoded as a viewer shows it: upright, 8-bit, alpha over white, one frame
            item.image, item.mime_type = facts["data"], MIME[facts["stored_format"]]
            item.width, item.height = facts["width"], facts["height"]
        judge(stats, item, verdict, detail=detail or None)
    stats.seconds = time.perf_counter() - start
    return items, stats
