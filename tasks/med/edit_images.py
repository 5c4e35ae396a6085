"""MED's paid step: edit each source with Gemini, never paying twice for the same edit.

Before a request is sent, the ``edits`` table is asked for the same (model, source image,
instruction); a stored result is reused. Each new result is stored the moment its response
arrives (one small LanceDB commit per paid response: milliseconds against seconds per Gemini
call), so a run killed mid-batch has kept every edit it paid for. Transient API
errors (``edit_api_error``: 429, 5xx, timeouts) are not stored (a re-run tries again); refusals are,
deterministic API errors (``edit_rejected``: HTTP 400, e.g. a payload over the limit) included, with
the service's message in ``detail`` (a re-run would be refused again; ``editor.retry_rejected``
asks again). A photo re-encoded or scaled to fit the request limit is kept with a note saying so
in the pair's ``drop_detail`` (and the edit's ``detail``).

The per-run request budget caps the requests of one invocation. When it runs out, the batch
stops unwritten and the flow ends early; items already edited are in the cache, so the next run
picks up without paying for them again.

The edited image is decoded as a viewer shows it (``pairsmith.storage.image_decode``: upright,
no orientation tag, 8-bit, alpha over white) before it is stored or measured; an answer that does
not decode is ``edit_bad_image``, one that shows exactly the source's pixels
``edit_no_visible_change`` (its edit instruction states a change the pair would not show).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from prefect import get_run_logger

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.models.adapters.gemini_editor import EditRequest, EditResult, GeminiEditor
from pairsmith.storage.ids import stable_id
from pairsmith.storage.image_decode import ImageLimits, decode_image, same_pixels
from pairsmith.storage.schemas import EditRow, utc_now
from pairsmith.storage.store import open_store, sql_in
from pairsmith.tasks.med.item import MedItem, alive, judge
from pairsmith.tasks.stage import stage

TRANSIENT = frozenset({"edit_api_error"})
BAD_IMAGE = "edit_bad_image"
NO_VISIBLE_CHANGE = "edit_no_visible_change"
MIME = {"JPEG": "image/jpeg", "PNG": "image/png"}
# Gemini's answers are decoded like every source: upright, 8-bit, alpha over white, one frame
RESPONSE_LIMITS = ImageLimits(min_side=1, max_bytes=2**31)


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


@stage("edit")
def edit_images(stats: StageStats, items: list[MedItem], editor: GeminiEditor, db_uri: str,
                budget: RequestBudget) -> bool:
    """Edit the batch's live items; True if the budget ran out before every item had its edit (the
    batch then stays unwritten and the run stops early)."""
    store = open_store(db_uri)
    model = editor.config.model_id
    todo = alive(items)
    ids = {id(i): edit_id(model, i.image, i.edit_instruction) for i in todo}
    cached = {row["edit_id"]: row for row in store.read("edits", where=sql_in("edit_id", list(ids.values())))
              .to_pylist()} if todo else {}
    if editor.config.retry_rejected:
        cached = {k: row for k, row in cached.items() if row["reason"] != "edit_rejected"}
    pending = [i for i in todo if ids[id(i)] not in cached]
    granted = budget.take(len(pending))
    sent = pending[:granted]
    for k, result in editor.edit_each([EditRequest(i.image, i.mime_type, i.edit_instruction) for i in sent]):
        row = _row(ids[id(sent[k])], model, sent[k], result)
        if row.reason not in TRANSIENT:
            store.upsert("edits", [row])  # paid for: kept now, before the next response
        cached[row.edit_id] = row.model_dump()
    if granted < len(pending):
        get_run_logger().warning("edit budget exhausted: %d items of this batch wait for the next run",
                                 len(pending) - granted)
        return True
    for item in todo:
        row = cached[ids[id(item)]]
        if row["reason"]:
            judge(stats, item, Verdict.drop(row["reason"]), detail=row["detail"])
            continue
        verdict, detail, edited = decode_image(row["image"] or b"", RESPONSE_LIMITS)
        if edited is None:
            judge(stats, item, Verdict.drop(BAD_IMAGE), detail=f"{verdict.reason}: {detail}")
            continue
        if same_pixels(item.before_image(), edited.image):
            judge(stats, item, Verdict.drop(NO_VISIBLE_CHANGE), detail="the edited image shows the source's pixels")
            continue
        item.edited, item.edited_mime = edited.data, MIME[edited.stored_format]
        item._pixels["after"] = edited.image.convert("RGB")
        judge(stats, item, KEEP)
        item.drop_detail = row["detail"]  # kept: a note on what was sent (e.g. re-encoded to fit the limit)
    return False


def _row(key: str, model: str, item: MedItem, result: EditResult) -> EditRow:
    return EditRow(
        edit_id=key, model_id=model, source_sha=hashlib.sha256(item.image).hexdigest(),
        instruction=item.edit_instruction, image=result.image, mime_type=result.mime_type, text=result.text,
        reason=result.reason, detail=result.detail, created_at=utc_now(),
    )
