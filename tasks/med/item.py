"""One MED candidate as it moves through the stages, and the per-stage bookkeeping.

Each stage task takes the batch's items, works on those still alive, records a verdict per item
in its own ``StageStats`` and drops an item by setting its stage and reason. Dropped items stay
in the list, so the writer stores them with everything measured before they fell out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from pairsmith.models.failures import failure_reason
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.storage.pair_images import open_image
from pairsmith.storage.store import short_error
from pairsmith.tasks.candidate import Candidate, alive, judge  # noqa: F401 - alive, judge: the stages import them here
from pairsmith.tasks.med.sources import SourceRef


@dataclass
class MedItem(Candidate):
    """One MED source photo and what the stages made of it (``Candidate``: alive until a stage drops it)."""

    ref: SourceRef
    pair_id: str
    image: bytes | None = None
    mime_type: str | None = None
    width: int = 0
    height: int = 0
    category: str | None = None  # MED Fig. 8's Type: the edit request's category
    action: str | None = None
    edit_instruction: str | None = None
    edited: bytes | None = None
    edited_mime: str | None = None
    clip_sim: float | None = None
    bench_candidate: bool | None = None
    caption_before: str | None = None
    caption_after: str | None = None
    difference: str | None = None
    difference_category: str | None = None  # MED Fig. 11's TYPE
    rewritten: str | None = None  # MED Fig. 14's IMPROVED_DESCRIPTION: the SFT answer
    _pixels: dict = field(default_factory=dict, repr=False)

    def before_image(self) -> Image.Image:
        if "before" not in self._pixels:
            self._pixels["before"] = open_image(self.image)
        return self._pixels["before"]

    def after_image(self) -> Image.Image:
        if "after" not in self._pixels:
            self._pixels["after"] = open_image(self.edited)
        return self._pixels["after"]


def keep_if(condition: bool, reason: str) -> Verdict:
    return KEEP if condition else Verdict.drop(reason)


def drop_on_error(stats: StageStats, model: str):
    """The ``on_error`` of ``pairsmith.tasks.stage.call_per_item`` for MED stages: the item a model
    raised for is dropped with the model and the message, the run goes on: as ``<stage>_error`` if
    the error is transient (the same command retries its batch), as ``<stage>_rejected`` if it will
    repeat (a processor refusing the image: final; ``pairsmith.models.failures``)."""

    def fail(item: MedItem, err: Exception) -> None:
        judge(stats, item, Verdict.drop(failure_reason(stats.stage, err)),
              detail=f"{model}: {type(err).__name__}: {short_error(err, limit=300)}")

    return fail
