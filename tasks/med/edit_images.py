"""MED's paid step: edit each source with Gemini, never paying twice for the same edit.

Before a request is sent, the ``edits`` table is asked for the same (model, source image,
instruction); a stored result is reused. New results are stored after every chunk of requests,
as they arrive, so a run that dies mid-batch has already kept what it paid for. Transient API
errors are not stored (a re-run tries again); refusals are (a re-run would be refused again).

The per-run request budget caps the requests of one invocation. When it runs out, the batch
stops unwritten and the flow ends early; items already edited are in the cache, so the next run
picks up without paying for them again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.models.gemini_editor import EditRequest, EditResult, GeminiEditor
from pairsmith.storage.ids import stable_id
from pairsmith.storage.pair_images import image_extension
from pairsmith.storage.schemas import EditRow, utc_now
from pairsmith.storage.store import open_store, sql_in
from pairsmith.tasks.med.item import MedItem, alive, judge

TRANSIENT = frozenset({"edit_api_error"})


@dataclass
class RequestBudget:
    """Requests this invocation may still send; shared by all batches of a run."""

    left: int

    def take(self, n: int) -> int:
        granted = min(n, self.left)
        self.left -= granted
        return granted


def edit_id(model_id: str, image: bytes, instruction: str) -> str:
    return stable_id("edit", model_id, hashlib.sha256(image).hexdigest(), instruction)


def _mime(data: bytes) -> str:
    return "image/png" if image_extension(data) == "png" else "image/jpeg"


@task(name="edit-images", cache_policy=NO_CACHE)
def edit_images(
    items: list[MedItem], editor: GeminiEditor, db_uri: str, budget: RequestBudget, chunk: int = 8,
) -> tuple[StageStats, bool]:
    """Returns the stage stats and whether the budget ran out before every item had its edit."""
    stats, start = StageStats("edit"), time.perf_counter()
    store = open_store(db_uri)
    model = editor.config.model_id
    todo = alive(items)
    ids = {id(i): edit_id(model, i.image, i.edit_instruction) for i in todo}
    cached = {row["edit_id"]: row for row in store.read("edits", where=sql_in("edit_id", list(ids.values())))
              .to_pylist()} if todo else {}
    pending = [i for i in todo if ids[id(i)] not in cached]
    granted = budget.take(len(pending))
    exhausted = granted < len(pending)
    for k in range(0, granted, chunk):
        part = pending[k:min(k + chunk, granted)]
        results = editor.edit_batch([EditRequest(i.image, i.mime_type, i.edit_instruction) for i in part])
        rows = [_row(ids[id(i)], model, i, r) for i, r in zip(part, results)]
        store.upsert("edits", [row for row in rows if row.reason not in TRANSIENT])
        cached.update({row.edit_id: row.model_dump() for row in rows})
    if exhausted:
        get_run_logger().warning("edit budget exhausted: %d items of this batch wait for the next run",
                                 len(pending) - granted)
        return stats, True
    for item in todo:
        row = cached[ids[id(item)]]
        if row["reason"]:
            judge(stats, item, Verdict.drop(row["reason"]), detail=row["detail"])
            continue
        item.edited, item.edited_mime = row["image"], row["mime_type"] or _mime(row["image"])
        judge(stats, item, KEEP)
    stats.seconds = time.perf_counter() - start
    return stats, False


def _row(key: str, model: str, item: MedItem, result: EditResult) -> EditRow:
    return EditRow(
        edit_id=key, model_id=model, source_sha=hashlib.sha256(item.image).hexdigest(),
        instruction=item.edit_instruction, image=result.image, mime_type=result.mime_type, text=result.text,
        reason=result.reason, detail=result.detail, created_at=utc_now(),
    )
